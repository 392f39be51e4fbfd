#if canImport(Glibc)
import Glibc
#endif
import CarCrypto
import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// Carries out remote commands from the backend (`vehicles/{vin}/commands`): verifies each
/// (signature, VIN, expiry, counter, licence, role, privacy: see `CommandVerifier`), checks the
/// car can do it (not moving, ignition off, doors shut, battery), transmits the DBC's request
/// frame on the CAN bus and confirms from the status frames within a timeout. Every command
/// gets its results on `vehicles/{vin}/results` at command-result priority: `inProgress`, then
/// `successful` or `failed` with a cause. A refused command runs nothing.
public final class RemoteCommandService: Service, Sendable {
    let bus: VehicleBusService
    let registration: CarRegistration
    let privacy: PrivacySetting
    let outbox: OutboxService
    let vin: String
    let logger: Logger
    let confirmTimeoutMs: Int64
    /// A wake-up's work: every state block sent again.
    let onWakeUp: @Sendable () -> Void
    let clocks: Clocks
    private let wakeUps: Mutex<WakeUpBudget>
    private let inputs: AsyncStream<[UInt8]>
    private let input: AsyncStream<[UInt8]>.Continuation
    private let rolling = Atomic<Int>(0)
    /// Rung from the CAN reader when a quantity a confirmation looks at changes.
    private let statusChanged = Bell()

    public init(bus: VehicleBusService, registration: CarRegistration, privacy: PrivacySetting, outbox: OutboxService, vin: String,
                logger: Logger, confirmTimeoutMs: Int64 = 10_000, wakeUpsPerDay: Int64 = 10, onWakeUp: @escaping @Sendable () -> Void = {},
                clocks: Clocks = .system) {
        self.bus = bus
        self.registration = registration
        self.privacy = privacy
        self.outbox = outbox
        self.vin = vin
        self.logger = logger
        self.confirmTimeoutMs = confirmTimeoutMs
        wakeUps = Mutex(WakeUpBudget(perDay: wakeUpsPerDay))
        self.onWakeUp = onWakeUp
        self.clocks = clocks
        (inputs, input) = AsyncStream.makeStream(bufferingPolicy: .bufferingOldest(64))
        bus.watch(RemoteExecution.confirmingQuantities) { [statusChanged] _ in statusChanged.ring() }
    }

    /// A command as it arrived (from the backend link's thread); handled in arrival order.
    public func receive(_ payload: [UInt8]) { input.yield(payload) }

    public func run() async throws {
        await withGracefulShutdownHandler {
            for await payload in inputs { await handle(payload) }
        } onGracefulShutdown: { [input] in
            input.finish()
        }
    }

    private var nowMs: Int64 { clocks.wallMs }

    private func result(_ id: String, _ action: String, _ status: String, cause: String? = nil) {
        let now = nowMs
        outbox.submit(RemoteCommand.resultMessage(commandId: id, action: action, status: status, cause: cause, vin: vin,
                                                  id: messageID(unixMs: now), nowMs: now))
    }

    func handle(_ payload: [UInt8]) async {
        guard let json = try? JSON.parse(String(decoding: payload, as: UTF8.self)) else {
            logger.warning("remote command refused: not JSON", metadata: ["command.bytes": "\(payload.count)"])
            return
        }
        let command: RemoteCommand
        switch RemoteCommand.parse(json) {
        case .failure(let m):
            logger.warning("remote command refused: malformed", metadata: ["command.field": "\(m.field)"])
            if let id = json["id"]?.stringValue { result(id, json["action"]?.stringValue ?? "?", "failed", cause: "malformed: \(m.field)") }
            return
        case .success(let c):
            command = c
        }
        let r = registration.current
        if let rejection = CommandVerifier.verify(command, vin: vin, key: r.commandKey, lastCounter: r.lastCommandCounter, nowMs: nowMs,
                                                  registration: r, privacy: privacy.current, mac: CarCrypto.hmacSHA256) {
            logger.warning("remote command refused", metadata: ["command.id": "\(command.id)", "command.action": "\(command.action.rawValue)",
                                                                "command.cause": "\(rejection.cause)"])
            // A command for another car is not this car's to answer.
            if rejection != .wrongVehicle { result(command.id, command.action.rawValue, "failed", cause: rejection.cause) }
            return
        }
        // Used before it runs, durably: a replay after a restart is refused too.
        registration.useCommandCounter(command.counter)
        logger.notice("remote command", metadata: ["command.id": "\(command.id)", "command.action": "\(command.action.rawValue)"])
        if let cause = precondition(command.action) {
            result(command.id, command.action.rawValue, "failed", cause: cause)
            return
        }
        result(command.id, command.action.rawValue, "inProgress")
        let outcome = await execute(command)
        logger.notice("remote command done", metadata: ["command.id": "\(command.id)", "command.result": "\(outcome ?? "successful")"])
        result(command.id, command.action.rawValue, outcome == nil ? "successful" : "failed", cause: outcome)
    }

    /// The readings the remote decisions look at, from the bus's current state.
    func car() -> RemoteExecution.Car {
        let doors: [VehicleQuantity] = [.doorFrontLeftOpen, .doorFrontRightOpen, .doorRearLeftOpen, .doorRearRightOpen]
        return RemoteExecution.Car(
            speedKmh: bus.value(.speed)?.number, ignitionOn: bus.value(.ignitionOn)?.flag,
            anyDoorOpen: doors.contains { bus.value($0)?.flag == true }, batteryVolts: bus.value(.batteryVoltage)?.number,
            centralLock: bus.value(.centralLock)?.raw, hazardLights: bus.value(.hazardLights)?.flag,
            climatisationState: bus.value(.climatisationState)?.raw)
    }

    /// Why the car cannot do it now, as the real service says it; nil when it can.
    func precondition(_ action: RemoteCommand.Action) -> String? { RemoteExecution.refusal(action, car: car())?.rawValue }

    /// Transmits the request and waits for the status frames to show it done; the failure's cause, or nil.
    func execute(_ c: RemoteCommand) async -> String? {
        guard let request = RemoteExecution.request(c, counter: rolling.add(1, ordering: .relaxed).newValue) else {
            // A wake-up: the command arriving woke the car; the budget protects the 12 V battery.
            let now = nowMs
            guard wakeUps.withLock({ $0.take(nowMs: now) }) else { return "wakeUpBudgetExhausted" }
            onWakeUp()
            return nil
        }
        do {
            try bus.transmit(message: request.message, signals: request.signals, missingAsZero: true, xorChecksum: request.xorChecksum)
        } catch {
            logger.error("cannot transmit the remote command", metadata: ["error": "\(error)"])
            return "transmitFailed"
        }
        // Looked at again each time the status frames change it, until the deadline.
        let deadline = clocks.monotonic().adding(milliseconds: confirmTimeoutMs)
        while true {
            let seen = statusChanged.rung
            if RemoteExecution.isConfirmed(c.action, car: car()) { return nil }
            let left = deadline.milliseconds(since: clocks.monotonic())
            guard left > 0, !Task.isCancelled else { return "noConfirmation" }
            await statusChanged.wait(after: seen, timeoutMs: left)
        }
    }
}
