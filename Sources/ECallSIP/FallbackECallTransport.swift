import Synchronization
import TelematicsCore

/// NG first, circuit-switched when IMS is not there: each call goes through the transport that
/// dialled it (NG while its network answers), and what belongs to a call follows it. The unit
/// is attached while either is; the service hears one attachment and one loss, not each one's.
public final class FallbackECallTransport: ECallTransport, Sendable {
    private let primary: any ECallTransport
    private let secondary: any ECallTransport
    private let shared = Shared()

    private final class Shared: Sendable {
        /// For each call, whether it went through the primary (NG).
        let routes = Mutex<[Int: Bool]>([:])
        let attachedTo = Mutex<(primary: Bool, secondary: Bool)>((false, false))
    }

    /// `make` builds each transport with the delivery it is to use.
    public init(deliver: @escaping @Sendable (ECallLinkEvent) -> Void,
                primary makePrimary: (@escaping @Sendable (ECallLinkEvent) -> Void) -> any ECallTransport,
                secondary makeSecondary: (@escaping @Sendable (ECallLinkEvent) -> Void) -> any ECallTransport) {
        let shared = shared
        func relay(primary: Bool) -> @Sendable (ECallLinkEvent) -> Void {
            { event in
                switch event {
                case .attached, .detached:
                    let up: Bool
                    if case .attached = event { up = true } else { up = false }
                    let (before, after) = shared.attachedTo.withLock { a -> (Bool, Bool) in
                        let before = a.primary || a.secondary
                        if primary { a.primary = up } else { a.secondary = up }
                        return (before, a.primary || a.secondary)
                    }
                    if before != after { deliver(event) }
                case .received(.incoming(let call)):
                    shared.routes.withLock { $0[call] = primary }
                    deliver(event)
                case .received, .malformed, .notice:
                    deliver(event)
                }
            }
        }
        primary = makePrimary(relay(primary: true))
        secondary = makeSecondary(relay(primary: false))
    }

    public var isAttached: Bool { primary.isAttached || secondary.isAttached }
    public var carriesMSDInSetup: Bool { true }

    @discardableResult
    public func dial(call: Int, number: String, kind: ECallKind, msd: [UInt8]) -> ECallDialOutcome {
        if primary.isAttached {
            let outcome = primary.dial(call: call, number: number, kind: kind, msd: msd)
            if outcome != .noNetwork {
                shared.routes.withLock { $0[call] = true }
                return outcome
            }
        }
        shared.routes.withLock { $0[call] = false }
        return secondary.dial(call: call, number: number, kind: kind, msd: msd)
    }

    @discardableResult
    public func send(_ message: ECallWire) -> Bool {
        let call: Int
        switch message {
        case .hello, .deregister:
            let a = primary.send(message)
            let b = secondary.send(message)
            return a || b
        case .dial(let c, let number):
            return dial(call: c, number: number, kind: .automatic, msd: []) != .noNetwork
        case .initiation(let c), .msd(let c, _, _), .hangUp(let c), .answer(let c): call = c
        case .setup, .sendMSD, .llAck, .alAck, .cleared, .dropped, .incoming: return false
        }
        let viaPrimary = shared.routes.withLock { $0[call] } ?? false
        return (viaPrimary ? primary : secondary).send(message)
    }

    public func start() {
        primary.start()
        secondary.start()
    }

    public func shutdown() {
        primary.shutdown()
        secondary.shutdown()
    }
}
