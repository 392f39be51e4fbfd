import Testing
@testable import TelematicsCore

/// The backend link's machine: every state × event, the backoff, the window.
@Suite("Uplink machine: connection, backoff, in-flight window")
struct UplinkMachineTests {
    enum Start: String, CaseIterable, CustomStringConvertible {
        case offline, downDue, downWaiting, connecting, up
        var description: String { rawValue }

        /// The state, reached from a new machine (window 3).
        func make() -> UplinkMachine {
            var m = UplinkMachine(window: 3)
            switch self {
            case .offline: _ = m.close()
            case .downDue: break
            case .downWaiting: m.connectFailed("no route", at: 0, jitter: 1)  // next attempt at 500
            case .connecting: m.connectCalled()
            case .up:
                m.connectCalled()
                _ = m.connAck(0, at: 0, jitter: 1)
                m.sent("a", as: 1)
                m.sent("b", as: 2)
                m.published(1)  // "a" acknowledged, "b" in flight
            }
            return m
        }
    }

    enum Event: String, CaseIterable, CustomStringConvertible {
        case connectCalled, connectFailed, connAckAccepted, connAckRefused, lostUnexpectedly, lostOnOwnClose
        case pubackOfB, privacyOnline, privacyOffline, close
        var description: String { rawValue }

        /// Applies the event at 1 000 ms with no jitter; the actions, and whether a live link
        /// went down unexpectedly (the shell's warning).
        func apply(to m: inout UplinkMachine) -> (actions: [UplinkAction], warn: Bool) {
            switch self {
            case .connectCalled: m.connectCalled(); return ([], false)
            case .connectFailed: m.connectFailed("no route", at: 1_000, jitter: 1); return ([], false)
            case .connAckAccepted: return (m.connAck(0, at: 1_000, jitter: 1), false)
            case .connAckRefused: return (m.connAck(5, at: 1_000, jitter: 1), false)
            case .lostUnexpectedly: return ([], m.connectionLost("gone", unexpected: true, at: 1_000, jitter: 1))
            case .lostOnOwnClose: return ([], m.connectionLost("closed", unexpected: false, at: 1_000, jitter: 1))
            case .pubackOfB: m.published(2); return ([], false)
            case .privacyOnline: return (m.privacyChanged(connects: true), false)
            case .privacyOffline: return (m.privacyChanged(connects: false), false)
            case .close: return (m.close(), false)
            }
        }
    }

    struct Expected {
        var phase: UplinkMachine.Phase
        var actions: [UplinkAction] = []
        var warn = false
    }

    typealias P = UplinkMachine.Phase
    static let due = P.down(nextAttemptAt: .min)
    /// After the first failure at 1 000 ms (0.5 s), and after the second (1 s).
    static let retry1 = P.down(nextAttemptAt: 1_500), retry2 = P.down(nextAttemptAt: 2_000)
    static let waiting = P.down(nextAttemptAt: 500)

    /// What each event does in each state; anything absent leaves the state as it was, with no action.
    static let table: [String: Expected] = [
        "offline/privacyOnline": Expected(phase: due),
        "downDue/connectCalled": Expected(phase: .connecting),
        "downDue/connectFailed": Expected(phase: retry1),
        "downDue/privacyOffline": Expected(phase: .offline),
        "downDue/close": Expected(phase: .offline),
        "downWaiting/connectCalled": Expected(phase: .connecting),
        "downWaiting/connectFailed": Expected(phase: retry2),
        "downWaiting/privacyOffline": Expected(phase: .offline),
        "downWaiting/close": Expected(phase: .offline),
        "connecting/connAckAccepted": Expected(phase: .up, actions: [.announceOnline]),
        "connecting/connAckRefused": Expected(phase: retry1, actions: [.disconnect]),
        "connecting/lostUnexpectedly": Expected(phase: retry1),
        "connecting/lostOnOwnClose": Expected(phase: retry1),
        "connecting/privacyOffline": Expected(phase: .offline, actions: [.disconnect]),
        "connecting/close": Expected(phase: .offline, actions: [.disconnect]),
        "up/lostUnexpectedly": Expected(phase: retry1, warn: true),
        "up/lostOnOwnClose": Expected(phase: retry1),
        "up/privacyOffline": Expected(phase: .offline, actions: [.sayGoodbye, .disconnect]),
        "up/close": Expected(phase: .offline, actions: [.sayGoodbye, .disconnect]),
    ]

    static let pairs = Start.allCases.flatMap { s in Event.allCases.map { (s, $0) } }

    @Test("every state × event pair does what the table says, and nothing where it says nothing", arguments: pairs)
    func table(_ start: Start, _ event: Event) {
        var m = start.make()
        let before = m
        let (actions, warn) = event.apply(to: &m)
        guard let expected = Self.table["\(start)/\(event)"] else {
            if event == .pubackOfB && start == .up { return }  // the window's own test below
            #expect(m == before, "\(start)/\(event) changed the machine")
            #expect(actions.isEmpty && !warn)
            return
        }
        #expect(m.phase == expected.phase)
        #expect(actions == expected.actions)
        #expect(warn == expected.warn)
        // Leaving "up" in any way: nothing stays in flight (it goes again on the next connection).
        if start == .up, m.phase != .up { #expect(m.inFlight.isEmpty && m.room == 0) }
    }

    @Test("the backoff doubles from 0.5 s to a 30 s cap, times the jitter (clamped to 0.5-1.0)")
    func backoff() {
        #expect((1...8).map { UplinkMachine.backoffMs(failures: $0, jitter: 1) } == [500, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000])
        #expect(UplinkMachine.backoffMs(failures: 3, jitter: 0.5) == 1_000)
        #expect(UplinkMachine.backoffMs(failures: 3, jitter: 0.1) == 1_000)
        #expect(UplinkMachine.backoffMs(failures: 3, jitter: .nan) == 2_000)
        #expect(UplinkMachine.backoffMs(failures: 1_000_000, jitter: 1) == 30_000)
        var m = UplinkMachine(window: 1)
        #expect(m.isDue(at: 0))
        m.connectFailed("no route", at: 10_000, jitter: 0.75)
        #expect(!m.isDue(at: 10_374) && m.isDue(at: 10_375))
        #expect(m.msUntilAttempt(at: 10_000) == 375 && m.msUntilAttempt(at: 20_000) == 0)
    }

    @Test("on the wire, a stored message carries its sequence number and send time in front of its body")
    func envelope() {
        let cases: [(String, String)] = [
            (#"{"id":"a","type":"opened"}"#, #"{"seq":7,"sentAt":1700,"id":"a","type":"opened"}"#),
            ("{}", #"{"seq":7,"sentAt":1700}"#),
            ("not an object", "not an object"),
        ]
        for (body, wire) in cases {
            #expect(String(decoding: wireEnvelope(payload: body, sequence: 7, sentAtMs: 1_700), as: UTF8.self) == wire)
        }
    }

    @Test("no CONNACK for the timeout: overdue (the shell gives the connection up); not before, nor in any other phase")
    func connAckTimeout() {
        var m = UplinkMachine(window: 1)
        #expect(!m.connAckOverdue(at: 50_000, timeoutMs: 10_000))  // down
        m.connectCalled(at: 1_000)
        #expect(!m.connAckOverdue(at: 10_999, timeoutMs: 10_000) && m.connAckOverdue(at: 11_000, timeoutMs: 10_000))
        _ = m.connAck(0, at: 2_000, jitter: 1)
        #expect(!m.connAckOverdue(at: 50_000, timeoutMs: 10_000))  // up
        var untimed = UplinkMachine(window: 1)
        untimed.connectCalled()
        #expect(!untimed.connAckOverdue(at: .max, timeoutMs: 10_000))  // a shell that keeps no time
    }

    @Test("the window: at most `window` in flight; an acknowledgement frees a place and its row; a new connection sends again what was in flight")
    func window() {
        var m = UplinkMachine(window: 2)
        #expect(m.room == 0)  // not connected
        m.connectCalled()
        let up = m.connAck(0, at: 0, jitter: 1)
        #expect(up == [.announceOnline] && m.room == 2)
        m.sent("a", as: 1)
        m.sent("b", as: 2)
        #expect(m.room == 0)
        m.published(1)
        m.published(99)  // not ours: nothing
        #expect(m.room == 1 && m.acknowledged == ["a"] && m.inFlight == [2: "b"])
        let freed = m.takeAcknowledged()
        #expect(freed == ["a"] && m.acknowledged.isEmpty)
        // Lost with "b" unacknowledged: it stays in the outbox and goes on the next connection.
        let warn = m.connectionLost("gone", unexpected: true, at: 0, jitter: 1)
        #expect(warn && m.inFlight.isEmpty && m.failures == 1 && m.lastError == "gone")
        m.connectCalled()
        let again = m.connAck(0, at: 600, jitter: 1)
        #expect(again == [.announceOnline] && m.reconnects == 1 && m.failures == 0 && m.lastError == nil && m.room == 2)
    }

    @Test("offline says why; back online the next attempt is due at once")
    func privacy() {
        var m = UplinkMachine(window: 4)
        m.connectFailed("no route", at: 0, jitter: 1)
        let off = m.privacyChanged(connects: false)
        #expect(off.isEmpty && m.phase == .offline && m.lastError == "offline (privacy)" && !m.isDue(at: .max))
        let on = m.privacyChanged(connects: true)
        #expect(on.isEmpty && m.isDue(at: 0) && m.lastError == nil)
    }
}
