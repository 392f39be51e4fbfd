// The eCall's transports, as the eCall service sees them: what it sends (`ECallWire`'s unit
// messages) and what it hears back (`ECallLinkEvent`). A protocol only: the transports are
// adapters, each on a thread of its own.

/// What the link tells the eCall service.
public enum ECallLinkEvent: Sendable, Equatable {
    case attached
    case detached(reason: String)
    case received(ECallWire)
    case malformed(String)
    /// Something the transport saw that the log should say (a negative acknowledgement, a
    /// request it refused); the call goes on.
    case notice(String)
}

/// How the eCall reaches the network, an adapter's job: `ECallLinkClient` (the ECallLink
/// module) models a circuit-switched call (EN 16062) over a local TCP protocol;
/// `SIPECallTransport` (ECallSIP) is NG-eCall (EN 17184, RFC 8147): `dial` is the INVITE with
/// the MSD as a body part, its 200 OK the answer with the PSAP's acknowledgement, an INFO the
/// PSAP's request for a new MSD. Both deliver the same events to the same machine.
public protocol ECallTransport: AnyObject, Sendable {
    /// Attached to a network that can carry an emergency call.
    var isAttached: Bool { get }
    /// Sends one message toward the network; false when there is no network.
    @discardableResult func send(_ message: ECallWire) -> Bool
    /// Whether the call's set-up carries the MSD (NG-eCall's INVITE), so `dial` needs it.
    var carriesMSDInSetup: Bool { get }
    /// Places a call; `msd` is the MSD for a transport that sends it with the set-up.
    @discardableResult func dial(call: Int, number: String, kind: ECallKind, msd: [UInt8]) -> ECallDialOutcome
    /// Starts delivering `ECallLinkEvent`s (on a thread of the transport's own).
    func start()
    func shutdown()
}

/// The unit's side of the eCall link: keeps a connection to the network (simulator), on its
/// own thread, reconnecting with capped backoff; nothing here touches the disk or the
/// backend, so the eCall path never waits on them.
extension ECallTransport {
    public var carriesMSDInSetup: Bool { false }

    @discardableResult
    public func dial(call: Int, number: String, kind: ECallKind, msd: [UInt8]) -> ECallDialOutcome {
        send(.dial(call: call, number: number)) ? .placed : .noNetwork
    }
}

/// What became of a dial at once.
public enum ECallDialOutcome: Sendable, Equatable {
    /// No network: the attempt failed.
    case noNetwork
    /// On its way; the MSD goes when the PSAP asks for it.
    case placed
    /// On its way with the MSD in its set-up (NG-eCall's INVITE).
    case placedWithMSD
}
