#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization
import TelematicsCore

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
