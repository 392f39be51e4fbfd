import Logging
import ServiceLifecycle
import TelematicsCore

/// Sends the unit's own cyclic status frame (TCU_Status) at the cycle time its DBC gives,
/// with an alive counter that the body controller and cluster watch.
public struct StatusTransmitter: Service {
    let bus: VehicleBusService
    let period: Duration
    let logger: Logger
    /// Signals other services own (the eCall state and lamp).
    let extra: @Sendable () -> [String: Double]

    public init(bus: VehicleBusService, logger: Logger, extra: @escaping @Sendable () -> [String: Double] = { [:] }) {
        self.bus = bus
        self.extra = extra
        let cycle = bus.database.message(named: TransmittedMessage.status)?.cycleTimeMs ?? 1000
        self.period = .milliseconds(cycle)
        self.logger = logger
    }

    /// The status frame's signals for one cycle.
    public static func signals(counter: Int) -> [String: Double] {
        ["TCU_Alive_Counter": Double(counter % 16)]
    }

    public func run() async throws {
        var counter = 0
        var failing = false
        while !Task.isShuttingDownGracefully {
            do {
                try bus.transmit(message: TransmittedMessage.status, signals: Self.signals(counter: counter).merging(extra()) { $1 }, missingAsZero: true)
                if failing { logger.notice("status frame transmitted again"); failing = false }
            } catch {
                if !failing { logger.error("cannot transmit the status frame", metadata: ["error": "\(error)"]) }
                failing = true
            }
            counter = (counter + 1) % 16
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: period) }
            } catch {
                return
            }
        }
    }
}
