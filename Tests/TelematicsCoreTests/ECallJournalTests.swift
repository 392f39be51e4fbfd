import Testing
@testable import TelematicsCore

@Suite("eCall journal and resume")
struct ECallJournalTests {
    let base = ECallJournal(stage: .inCall, kind: .automatic, number: "112", attempts: 1, msdTimestamp: 1_700_000_000,
                            messageIdentifier: 2, everConnected: true, msdAcknowledged: true, startedAtUTC: 1_000,
                            clearedAtUTC: nil, writtenAtUTC: 1_030, t9Expired: false)

    @Test("the journal's text reads back to the same journal; a bad one names the key")
    func text() throws {
        #expect(try ECallJournal.parse(base.text) == base)
        var w = base
        w.stage = .callbackWindow
        w.clearedAtUTC = 1_100
        #expect(try ECallJournal.parse(w.text) == w)
        #expect(throws: ParseError.self) { try ECallJournal.parse("stage = onFire\nkind = automatic\nnumber = 112\n") }
        #expect(throws: ParseError.self) { try ECallJournal.parse("stage = callbackWindow\nkind = automatic\nnumber = 112\n") }
    }

    @Test("what the machine journals: the call in progress, then its callback window, nothing when idle")
    func journaled() {
        var h = Harness.at(.voice)
        let j = h.machine.journal(nowUTC: 50, startedAtUTC: 10, clearedAtUTC: nil)
        #expect(j?.stage == .inCall && j?.kind == .automatic && j?.msdAcknowledged == true && j?.everConnected == true)
        h.send(.cleared)
        #expect(h.machine.journal(nowUTC: 60, startedAtUTC: 10, clearedAtUTC: 60)?.stage == .callbackWindow)
        h.send(.timer(.t9))
        #expect(h.machine.journal(nowUTC: 70, startedAtUTC: 10, clearedAtUTC: 60) == nil)
    }

    @Test("a call dropped by the daemon's crash is redialled within 120 s, in pull mode after the AL-ACK")
    func resumeConnected() {
        var m = ECallStateMachine()
        let actions = m.resume(from: base, at: 5_000, nowUTC: 1_040)
        #expect(m.phase == .dialling)
        #expect(actions.places(number: "112", attempt: 2))
        // T2 keeps its remaining time: 3600 s - 40 s.
        #expect(actions.startTimers.contains { $0.id.timer == .t2 && $0.afterMs == 3_560_000 })
        let answered = m.callAnswered(at: 5_100)
        #expect(m.phase == .voice && !answered.line.contains(.sendInitiation))
        // The identifier continues from the journal.
        #expect(m.sendMSDReceived(at: 5_200).line.contains(.transmitMSD(messageIdentifier: 3, timestamp: 1_700_000_000, kind: .automatic)))
    }

    @Test("past the 120 s window, or past T2, the resumed call ends; before any connection it is redialled")
    func resumeLimits() {
        var late = ECallStateMachine()
        let a = late.resume(from: base, at: 0, nowUTC: 1_030 + 121)
        #expect(a.report?.ending == .droppedNotReconnected)
        #expect(late.phase == .callbackWindow)
        var never = base
        never.everConnected = false
        never.msdAcknowledged = false
        var m = ECallStateMachine()
        #expect(m.resume(from: never, at: 0, nowUTC: 1_030 + 600).places(number: "112", attempt: 2))
        var t2 = ECallStateMachine()
        let b = t2.resume(from: never, at: 0, nowUTC: 1_000 + 3_601)
        #expect(b.report?.ending == .neverConnected)
    }

    @Test("a callback window resumes with what is left of T9, and not at all after it")
    func resumeWindow() {
        var w = base
        w.stage = .callbackWindow
        w.clearedAtUTC = 2_000
        var m = ECallStateMachine()
        let a = m.resume(from: w, at: 0, nowUTC: 2_600)
        #expect(m.phase == .callbackWindow)
        #expect(a.startTimers.contains { $0.id.timer == .t9 && $0.afterMs == 3_000_000 })
        #expect(m.incomingCall(at: 10).line.contains(.answerIncomingCall))
        var gone = ECallStateMachine()
        #expect(gone.resume(from: w, at: 0, nowUTC: 2_000 + 3_601) == .doNothing)
        #expect(gone.phase == .idle)
    }

    @Test("a journal is expired 13 h after its call")
    func expiry() {
        var w = base
        w.clearedAtUTC = 10_000
        #expect(!w.isExpired(nowUTC: 10_000 + 13 * 3600))
        #expect(w.isExpired(nowUTC: 10_000 + 13 * 3600 + 1))
    }
}
