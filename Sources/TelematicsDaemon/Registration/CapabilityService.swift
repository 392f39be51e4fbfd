import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// Publishes the `capabilities` state block: for each connected service whether it works, until
/// when, and the status codes that say why not (registration, licence and its expiry, the
/// user's role, the privacy level). It looks once a second, so a licence that expires while
/// the car runs is reported within a second, and sends only when something changed. Only a
/// registered car tells the backend (an unregistered one has no account to show them to, and
/// after a factory reset the backend has just deleted the car's data); `tcuctl status` always
/// shows them.
public final class CapabilityService: Service, Sendable {
    let registration: CarRegistration
    let privacy: PrivacySetting
    let outbox: OutboxService
    let vin: String
    let clocks: Clocks
    private let sent = Mutex<JSON?>(nil)
    static let tickMs: Int64 = 1_000

    public init(registration: CarRegistration, privacy: PrivacySetting, outbox: OutboxService, vin: String,
                clocks: Clocks = .system) {
        self.registration = registration
        self.privacy = privacy
        self.outbox = outbox
        self.vin = vin
        self.clocks = clocks
    }

    /// The capabilities now (for `tcuctl status` too).
    public func current() -> [Capability] {
        Capabilities.evaluate(registration.current, privacy: privacy.current, nowMs: clocks.wallMs)
    }

    /// Sends the block again at the next look (the link came back from "offline").
    public func resend() { sent.withLock { $0 = nil } }

    public func run() async throws {
        while !Task.isShuttingDownGracefully {
            let now = clocks.wallMs
            let block = Capabilities.json(current())
            let registered = [.completed, .inactive].contains(registration.current.status)
            if !registered {
                sent.withLock { $0 = nil }
            } else if sent.withLock({ s in defer { s = block }; return s != block }) {
                outbox.submit(stateMessage(block: "capabilities", values: block, capturedAtMs: now, vin: vin, id: messageID(unixMs: now)))
            }
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Self.tickMs)) }
            } catch {
                break
            }
        }
    }
}
