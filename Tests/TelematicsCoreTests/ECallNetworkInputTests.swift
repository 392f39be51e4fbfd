import Testing
@testable import TelematicsCore

/// The network's messages as the machine's events: each message about the current call is the
/// event it names, one about another call does nothing, and what only the unit sends does
/// nothing either, in every state.
@Suite("eCall: the network's messages to the machine")
struct ECallNetworkInputTests {
    static let current = 7

    /// A network message, and the machine event it must be when it is about the current call.
    static let messages: [(ECallWire, H.Event?)] = [
        (.setup(call: current, outcome: .answered), .answered),
        (.setup(call: current, outcome: .busy), .failed),
        (.sendMSD(call: current), .sendMSD),
        (.llAck(call: current), .llAck),
        (.alAck(call: current, clearDown: false), .alAck),
        (.alAck(call: current, clearDown: true), .alAckClearDown),
        (.cleared(call: current), .cleared),
        (.dropped(call: current), .dropped),
        (.hello(vin: "VSSZZZKLZNR012345"), nil),
        (.dial(call: current, number: "112"), nil),
        (.initiation(call: current), nil),
        (.msd(call: current, messageIdentifier: 1, bytes: [1]), nil),
        (.hangUp(call: current), nil),
        (.answer(call: current), nil),
        (.deregister, nil),
    ]

    static let pairs = H.Start.allCases.flatMap { s in messages.indices.map { (s, $0) } }

    @Test("about the current call: the event it names; about another: nothing; sent only by the unit: nothing", arguments: pairs)
    func mapping(_ start: H.Start, _ index: Int) {
        let (message, event) = Self.messages[index]
        var viaNetwork = H.at(start)
        var direct = viaNetwork
        var call = Self.current
        viaNetwork.now += 10
        let got = viaNetwork.machine.networkMessage(message, current: &call, at: viaNetwork.now)
        #expect(call == Self.current)
        if let event {
            #expect(got == direct.send(event))
            #expect(viaNetwork.machine.phase == direct.machine.phase)
        } else {
            #expect(got == .doNothing && viaNetwork.machine.phase == direct.machine.phase)
        }
        // The same message about an earlier call changes nothing.
        var stale = H.at(start)
        var other = Self.current
        if let older = Self.renumbered(message, Self.current - 1) {
            #expect(stale.machine.networkMessage(older, current: &other, at: 2_000) == .doNothing)
            #expect(stale.machine.phase == H.at(start).machine.phase && other == Self.current)
        }
    }

    /// The message with another call number (nil for those that carry none).
    static func renumbered(_ m: ECallWire, _ n: Int) -> ECallWire? {
        switch m {
        case .setup(_, let o): .setup(call: n, outcome: o)
        case .sendMSD: .sendMSD(call: n)
        case .llAck: .llAck(call: n)
        case .alAck(_, let c): .alAck(call: n, clearDown: c)
        case .cleared: .cleared(call: n)
        case .dropped: .dropped(call: n)
        case .incoming: .incoming(call: n)
        case .dial(_, let number): .dial(call: n, number: number)
        case .initiation: .initiation(call: n)
        case .msd(_, let id, let bytes): .msd(call: n, messageIdentifier: id, bytes: bytes)
        case .hangUp: .hangUp(call: n)
        case .answer: .answer(call: n)
        case .hello, .deregister: nil
        }
    }

    @Test("an incoming call is answered in the callback window only, and becomes the current call", arguments: H.Start.allCases)
    func incoming(_ start: H.Start) {
        var h = H.at(start)
        var call = Self.current
        let actions = h.machine.networkMessage(.incoming(call: 42), current: &call, at: 5_000)
        if start == .callbackWindow {
            #expect(actions.line.contains(.answerIncomingCall) && call == 42 && h.machine.phase == .voice)
        } else {
            #expect(actions == .doNothing && call == Self.current)
        }
    }

    @Test("losing the network: a dialling attempt fails (redial), a connected call drops (redial within 120 s), elsewhere nothing",
          arguments: H.Start.allCases)
    func networkLost(_ start: H.Start) {
        var lost = H.at(start)
        var direct = lost
        lost.now += 10
        let got = lost.machine.networkLost(at: lost.now)
        switch direct.machine.phase {
        case .dialling:
            #expect(got == direct.machine.callFailed(.noNetwork, at: lost.now))
        case .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice:
            #expect(got == direct.send(.dropped))
        case .idle, .manualPending, .redialWait, .callbackWindow:
            #expect(got == .doNothing)
        }
    }
}
