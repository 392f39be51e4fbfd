import ECallSIP
import Synchronization
import TelematicsCore
import Testing

/// A transport the test attaches and detaches by hand; it records what it is given.
final class SwitchableTransport: ECallTransport, @unchecked Sendable {
    let deliver: @Sendable (ECallLinkEvent) -> Void
    let attached = Atomic<Bool>(false)
    let sent = Mutex<[ECallWire]>([])
    let carriesMSD: Bool
    init(_ deliver: @escaping @Sendable (ECallLinkEvent) -> Void, carriesMSD: Bool) {
        self.deliver = deliver
        self.carriesMSD = carriesMSD
    }
    var isAttached: Bool { attached.load(ordering: .relaxed) }
    var carriesMSDInSetup: Bool { carriesMSD }
    func send(_ message: ECallWire) -> Bool {
        guard isAttached else { return false }
        sent.withLock { $0.append(message) }
        return true
    }
    func dial(call: Int, number: String, kind: ECallKind, msd: [UInt8]) -> ECallDialOutcome {
        guard send(.dial(call: call, number: number)) else { return .noNetwork }
        return carriesMSD && !msd.isEmpty ? .placedWithMSD : .placed
    }
    func set(attached up: Bool) {
        attached.store(up, ordering: .relaxed)
        deliver(up ? .attached : .detached(reason: "test"))
    }
    func start() {}
    func shutdown() {}
}

@Suite("NG first, circuit-switched when IMS is not there")
struct FallbackECallTransportTests {
    final class Rig: @unchecked Sendable {
        let heard = Mutex<[ECallLinkEvent]>([])
        var ng: SwitchableTransport!
        var cs: SwitchableTransport!
        var fallback: FallbackECallTransport!
        init() {
            fallback = FallbackECallTransport(deliver: { [self] e in heard.withLock { $0.append(e) } },
                                              primary: { [self] d in ng = SwitchableTransport(d, carriesMSD: true); return ng },
                                              secondary: { [self] d in cs = SwitchableTransport(d, carriesMSD: false); return cs })
        }
    }

    @Test("a call goes over NG while its network answers, otherwise over the circuit-switched link; what belongs to a call follows it")
    func routing() {
        let r = Rig()
        r.ng.set(attached: true)
        r.cs.set(attached: true)
        #expect(r.fallback.dial(call: 1, number: "112", kind: .automatic, msd: [1, 2]) == .placedWithMSD)
        #expect(r.fallback.send(.msd(call: 1, messageIdentifier: 2, bytes: [3])))
        r.ng.set(attached: false)
        // IMS gone: the next attempt is circuit-switched, and carries no MSD in its set-up.
        #expect(r.fallback.dial(call: 2, number: "112", kind: .automatic, msd: [1, 2]) == .placed)
        #expect(r.fallback.send(.msd(call: 2, messageIdentifier: 1, bytes: [4])))
        #expect(r.ng.sent.withLock { $0 } == [.dial(call: 1, number: "112"), .msd(call: 1, messageIdentifier: 2, bytes: [3])])
        #expect(r.cs.sent.withLock { $0 } == [.dial(call: 2, number: "112"), .msd(call: 2, messageIdentifier: 1, bytes: [4])])
        // Neither: no network.
        r.cs.set(attached: false)
        #expect(r.fallback.dial(call: 3, number: "112", kind: .automatic, msd: []) == .noNetwork)
    }

    @Test("the service hears one attachment and one loss, not each transport's")
    func attachment() {
        let r = Rig()
        r.cs.set(attached: true)
        r.ng.set(attached: true)
        r.cs.set(attached: false)
        #expect(r.heard.withLock { $0 } == [.attached])
        r.ng.set(attached: false)
        #expect(r.heard.withLock { $0 } == [.attached, .detached(reason: "test")])
        #expect(!r.fallback.isAttached)
    }

    @Test("a call-back is answered on the transport it came by")
    func callback() {
        let r = Rig()
        r.ng.set(attached: true)
        r.cs.set(attached: true)
        r.cs.deliver(.received(.incoming(call: 1001)))
        #expect(r.fallback.send(.answer(call: 1001)))
        #expect(r.cs.sent.withLock { $0 } == [.answer(call: 1001)])
        #expect(r.ng.sent.withLock { $0 }.isEmpty)
    }
}
