#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization
import TelematicsCore

/// What the link tells the eCall service.
public enum ECallLinkEvent: Sendable, Equatable {
    case attached
    case detached(reason: String)
    case received(ECallWire)
    case malformed(String)
}

/// How the eCall reaches the network. `ECallLinkClient` models a circuit-switched call
/// (EN 16062) over a local TCP protocol; an NG-eCall transport (EN 17184: SIP INVITE with the
/// MSD as a body part, the PSAP's acknowledgement in EmergencyCallData.Control) implements
/// the same calls: `dial` is the INVITE, `msd` its MSD part, `alAck` the acknowledgement,
/// `sendMSD` the PSAP's send-data request; it never produces the in-band T3/T5/T6/T7 events.
public protocol ECallTransport: AnyObject, Sendable {
    /// Attached to a network that can carry an emergency call.
    var isAttached: Bool { get }
    /// Sends one message toward the network; false when there is no network.
    @discardableResult func send(_ message: ECallWire) -> Bool
    /// Starts delivering `ECallLinkEvent`s (on a thread of the transport's own).
    func start()
    func shutdown()
}

/// The unit's side of the eCall link: keeps a connection to the network (simulator), on its
/// own thread, reconnecting with capped backoff; nothing here touches the disk or the
/// backend, so the eCall path never waits on them.
public final class ECallLinkClient: ECallTransport, Sendable {
    private let endpoint: TCPEndpoint
    private let vin: String
    private let deliver: @Sendable (ECallLinkEvent) -> Void
    private let connection = Mutex<LineConnection?>(nil)
    private let stop = StopSignal()
    private let thread = Mutex<DedicatedThread?>(nil)

    public init(endpoint: TCPEndpoint, vin: String, deliver: @escaping @Sendable (ECallLinkEvent) -> Void) {
        self.endpoint = endpoint
        self.vin = vin
        self.deliver = deliver
    }

    public var isAttached: Bool { connection.withLock { $0 != nil } }

    /// Sends a message; false when the unit has no network (the caller treats it as such).
    @discardableResult
    public func send(_ message: ECallWire) -> Bool {
        guard let c = connection.withLock({ $0 }) else { return false }
        return c.send(message.json.text)
    }

    public func start() {
        thread.withLock { $0 = DedicatedThread(name: "ecall-link") { self.loop() } }
    }

    public func shutdown() {
        stop.set()
        thread.withLock({ $0 })?.join()
        connection.withLock { c in c?.close(); c = nil }
    }

    private func loop() {
        var backoffMs: Int64 = 100
        while !stop.isSet {
            let c: LineConnection
            do {
                c = try LineConnection.connect(endpoint)
            } catch {
                if stop.wait(timeoutMs: backoffMs) { return }
                backoffMs = min(backoffMs * 2, 2_000)
                continue
            }
            backoffMs = 100
            c.send(ECallWire.hello(vin: vin).json.text)
            connection.withLock { $0 = c }
            deliver(.attached)
            var reason = "stopped"
            reading: while !stop.isSet {
                switch c.readLine(timeoutMs: 100) {
                case .timeout: continue
                case .closed:
                    reason = "the network closed the link"
                    break reading
                case .line(let text):
                    do { deliver(.received(try ECallWire.parse(text))) } catch { deliver(.malformed("\(error.message): \(text)")) }
                }
            }
            connection.withLock { $0 = nil }
            c.close()
            deliver(.detached(reason: reason))
        }
    }
}
