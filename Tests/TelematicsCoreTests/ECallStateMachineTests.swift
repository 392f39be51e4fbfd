import Testing
@testable import TelematicsCore

/// Drives a machine from idle into each state, remembering the timers it started.
struct Harness {
    var machine: ECallStateMachine
    var timers: [ECallTimer: ECallTimerID] = [:]
    var now: ECallInstant = 1_000
    var log: [ECallStep] = []

    init(_ config: ECallConfiguration = ECallConfiguration()) { machine = ECallStateMachine(configuration: config) }

    mutating func note(_ step: ECallStep) -> ECallStep {
        for t in step.stopTimers {
            // A step stops only a timer that runs (the state it leaves carried it).
            #expect(timers[t] != nil, "stopped \(t), which was not running")
            timers[t] = nil
        }
        for t in step.startTimers { timers[t.id.timer] = t.id }
        log.append(step)
        return step
    }

    /// Every line action of the steps so far.
    var lineLog: [ECallLineAction] { log.flatMap(\.line) }

    @discardableResult
    mutating func send(_ e: Event) -> ECallStep {
        now += 10
        let t = now
        switch e {
        case .crash: return note(machine.crashDetected(at: t, utc: 1_700_000_000))
        case .sos: return note(machine.sosPressed(at: t, utc: 1_700_000_000))
        case .test: return note(machine.testRequested(at: t, utc: 1_700_000_000))
        case .cancel: return note(machine.cancelRequested(at: t))
        case .answered: return note(machine.callAnswered(at: t))
        case .failed: return note(machine.callFailed(.busy, at: t))
        case .sendMSD: return note(machine.sendMSDReceived(at: t))
        case .llAck: return note(machine.llAckReceived(at: t))
        case .alAck: return note(machine.alAckReceived(clearDown: false, at: t))
        case .alAckClearDown: return note(machine.alAckReceived(clearDown: true, at: t))
        case .cleared: return note(machine.callCleared(at: t))
        case .dropped: return note(machine.callDropped(at: t))
        case .incoming: return note(machine.incomingCall(at: t))
        case .network: return note(machine.networkAvailable(at: t))
        case .timer(let timer):
            // The running timer's real id, or a stale one when it is not running.
            let id = timers[timer] ?? ECallTimerID(timer: timer, generation: 999_999)
            if timers[timer] != nil { timers[timer] = nil }
            return note(machine.timerExpired(id, at: t))
        }
    }

    enum Event: Hashable, CustomStringConvertible {
        case crash, sos, test, cancel, answered, failed, sendMSD, llAck, alAck, alAckClearDown, cleared, dropped, incoming, network
        case timer(ECallTimer)
        var description: String {
            switch self {
            case .timer(let t): t.rawValue
            case .crash: "crash"
            case .sos: "SOS"
            case .test: "test"
            case .cancel: "cancel"
            case .answered: "answered"
            case .failed: "failed"
            case .sendMSD: "SEND MSD"
            case .llAck: "LL-ACK"
            case .alAck: "AL-ACK"
            case .alAckClearDown: "AL-ACK clear-down"
            case .cleared: "cleared"
            case .dropped: "dropped"
            case .incoming: "incoming call"
            case .network: "network available"
            }
        }
        static let all: [Event] = [.crash, .sos, .test, .cancel, .answered, .failed, .sendMSD, .llAck, .alAck,
                                   .alAckClearDown, .cleared, .dropped, .incoming, .network] + ECallTimer.allCases.map { .timer($0) }
    }

    /// The states of the table, and how to reach each from idle.
    enum Start: String, CaseIterable {
        case idle, manualPending, dialling, redialWait, waitingForSendMSD, transmittingMSD, waitingForALACK, voice,
             callbackWindow, callback
        var path: [Event] {
            switch self {
            case .idle: []
            case .manualPending: [.sos]
            case .dialling: [.crash]
            case .redialWait: [.crash, .failed]
            case .waitingForSendMSD: [.crash, .answered]
            case .transmittingMSD: [.crash, .answered, .sendMSD]
            case .waitingForALACK: [.crash, .answered, .sendMSD, .llAck]
            case .voice: [.crash, .answered, .sendMSD, .llAck, .alAck]
            case .callbackWindow: [.crash, .answered, .sendMSD, .llAck, .alAck, .cleared]
            case .callback: [.crash, .answered, .sendMSD, .llAck, .alAck, .cleared, .incoming]
            }
        }
    }

    static func at(_ start: Start, _ config: ECallConfiguration = ECallConfiguration()) -> Harness {
        var h = Harness(config)
        for e in start.path { h.send(e) }
        h.log = []
        return h
    }
}

/// What a transition must do: the phase after, and what its step must hold.
enum Must: Equatable {
    case start(ECallTimer)
    case cancel(ECallTimer)
    case line(ECallLineAction)
    case dial(number: String, attempt: Int)
    case reject(ECallRejection)
    case phaseEntered(ECallPhase)
    case ending(ECallReport.Ending)
    case transmit(messageIdentifier: Int)

    func matches(_ step: ECallStep) -> Bool {
        switch self {
        case .start(let t): step.startTimers.contains { $0.id.timer == t }
        case .cancel(let t): step.stopTimers.contains(t)
        case .line(let a): step.line.contains(a)
        case .dial(let number, let attempt): step.places(number: number, attempt: attempt)
        case .reject(let r): step.rejection == r
        case .phaseEntered(let p): step.phase == p
        case .ending(let e): step.report?.ending == e
        case .transmit(let m): step.line.contains { if case .transmitMSD(m, _, _) = $0 { true } else { false } }
        }
    }
}

typealias H = Harness

/// Every (state, event) pair that does something. Every pair not listed must do nothing at
/// all: no action, the same phase (late timers, duplicates, events out of place).
let effects: [H.Start: [H.Event: (ECallPhase, [Must])]] = [
    .idle: [
        .crash: (.dialling, [.start(.t2), .dial(number: "112", attempt: 1)]),
        .sos: (.manualPending, [.start(.t1)]),
        .test: (.dialling, [.dial(number: "TEST", attempt: 1)]),
        .cancel: (.idle, [.reject(.nothingToCancel)]),
    ],
    .manualPending: [
        .crash: (.dialling, [.cancel(.t1), .start(.t2), .dial(number: "112", attempt: 1)]),
        .sos: (.idle, [.cancel(.t1)]),
        .test: (.manualPending, [.reject(.callInProgress)]),
        .cancel: (.idle, [.cancel(.t1)]),
        .timer(.t1): (.dialling, [.start(.t2), .dial(number: "112", attempt: 1)]),
    ],
    .dialling: [
        .sos: (.dialling, [.reject(.callInProgress)]),
        .test: (.dialling, [.reject(.callInProgress)]),
        .cancel: (.dialling, [.reject(.automaticCallCannotBeCancelled)]),
        .answered: (.waitingForSendMSD, [.line(.sendInitiation), .start(.t3), .start(.t5)]),
        .failed: (.redialWait, [.start(.redial)]),
        // Never answered: a failed set-up, redialled (it used to end the eCall, with no MSD).
        .cleared: (.redialWait, [.start(.redial)]),
        .dropped: (.redialWait, [.start(.redial)]),
        .timer(.t2): (.callbackWindow, [.line(.hangUp), .ending(.neverConnected)]),
    ],
    .redialWait: [
        .sos: (.redialWait, [.reject(.callInProgress)]),
        .test: (.redialWait, [.reject(.callInProgress)]),
        .cancel: (.redialWait, [.reject(.automaticCallCannotBeCancelled)]),
        .timer(.redial): (.dialling, [.dial(number: "112", attempt: 2)]),
        .network: (.dialling, [.cancel(.redial), .dial(number: "112", attempt: 2)]),
        .timer(.t2): (.callbackWindow, [.ending(.neverConnected), .cancel(.redial)]),
    ],
    .waitingForSendMSD: [
        .sos: (.waitingForSendMSD, [.reject(.callInProgress)]),
        .test: (.waitingForSendMSD, [.reject(.callInProgress)]),
        .cancel: (.waitingForSendMSD, [.reject(.automaticCallCannotBeCancelled)]),
        .sendMSD: (.transmittingMSD, [.cancel(.t5), .cancel(.t3), .line(.stopInitiation), .transmit(messageIdentifier: 1), .start(.t7)]),
        .cleared: (.callbackWindow, [.line(.stopInitiation), .ending(.clearedByRemote), .cancel(.t5)]),
        .dropped: (.dialling, [.cancel(.t5), .line(.stopInitiation), .dial(number: "112", attempt: 2)]),
        .timer(.t3): (.waitingForSendMSD, [.line(.stopInitiation)]),
        .timer(.t5): (.voice, [.cancel(.t3), .line(.switchToVoice(msdFailure: .noSendMSD))]),
        .timer(.t2): (.callbackWindow, [.line(.stopInitiation), .line(.hangUp), .ending(.t2Expired)]),
    ],
    .transmittingMSD: [
        .sos: (.transmittingMSD, [.reject(.callInProgress)]),
        .test: (.transmittingMSD, [.reject(.callInProgress)]),
        .cancel: (.transmittingMSD, [.reject(.automaticCallCannotBeCancelled)]),
        .llAck: (.waitingForALACK, [.cancel(.t7), .start(.t6)]),
        .alAck: (.voice, [.cancel(.t7), .line(.switchToVoice(msdFailure: nil))]),
        .alAckClearDown: (.callbackWindow, [.cancel(.t7), .line(.hangUp), .ending(.clearedByALACK)]),
        .cleared: (.callbackWindow, [.cancel(.t7), .ending(.clearedByRemote)]),
        .dropped: (.dialling, [.cancel(.t7), .dial(number: "112", attempt: 2)]),
        .timer(.t7): (.voice, [.line(.switchToVoice(msdFailure: .noLowerLayerAck))]),
        .timer(.t2): (.callbackWindow, [.cancel(.t7), .line(.hangUp), .ending(.t2Expired)]),
    ],
    .waitingForALACK: [
        .sos: (.waitingForALACK, [.reject(.callInProgress)]),
        .test: (.waitingForALACK, [.reject(.callInProgress)]),
        .cancel: (.waitingForALACK, [.reject(.automaticCallCannotBeCancelled)]),
        .alAck: (.voice, [.cancel(.t6), .line(.switchToVoice(msdFailure: nil))]),
        .alAckClearDown: (.callbackWindow, [.cancel(.t6), .line(.hangUp), .ending(.clearedByALACK)]),
        .cleared: (.callbackWindow, [.cancel(.t6), .ending(.clearedByRemote)]),
        .dropped: (.dialling, [.cancel(.t6), .dial(number: "112", attempt: 2)]),
        .timer(.t6): (.voice, [.line(.switchToVoice(msdFailure: .noApplicationAck))]),
        .timer(.t2): (.callbackWindow, [.cancel(.t6), .line(.hangUp), .ending(.t2Expired)]),
    ],
    .voice: [
        .sos: (.voice, [.reject(.callInProgress)]),
        .test: (.voice, [.reject(.callInProgress)]),
        .cancel: (.voice, [.reject(.automaticCallCannotBeCancelled)]),
        .sendMSD: (.transmittingMSD, [.transmit(messageIdentifier: 2), .start(.t7)]),
        .cleared: (.callbackWindow, [.cancel(.t2), .ending(.clearedByRemote), .start(.t9)]),
        .dropped: (.dialling, [.dial(number: "112", attempt: 2)]),
        .timer(.t2): (.callbackWindow, [.line(.hangUp), .ending(.t2Expired), .start(.t9)]),
    ],
    .callbackWindow: [
        .crash: (.dialling, [.cancel(.t9), .start(.t2), .dial(number: "112", attempt: 1)]),
        .sos: (.manualPending, [.cancel(.t9), .start(.t1)]),
        .test: (.dialling, [.cancel(.t9), .dial(number: "TEST", attempt: 1)]),
        .cancel: (.callbackWindow, [.reject(.nothingToCancel)]),
        .incoming: (.voice, [.line(.answerIncomingCall)]),
        .timer(.t9): (.idle, [.phaseEntered(.idle)]),
    ],
    .callback: [
        .sos: (.voice, [.reject(.callInProgress)]),
        .test: (.voice, [.reject(.callInProgress)]),
        .cancel: (.voice, [.reject(.automaticCallCannotBeCancelled)]),
        .sendMSD: (.transmittingMSD, [.transmit(messageIdentifier: 2)]),
        .cleared: (.callbackWindow, [.phaseEntered(.callbackWindow)]),
        .dropped: (.callbackWindow, [.phaseEntered(.callbackWindow)]),
    ],
]

@Suite("eCall state machine (EN 16062)")
struct ECallStateMachineTests {
    static let pairs: [(H.Start, H.Event)] = H.Start.allCases.flatMap { s in H.Event.all.map { (s, $0) } }

    @Test("every state × event pair does what the table says, and nothing where it says nothing", arguments: pairs)
    func table(_ start: H.Start, _ event: H.Event) {
        var h = H.at(start)
        let before = h.machine.phase
        let step = h.send(event)
        if let (phase, musts) = effects[start]?[event] {
            #expect(h.machine.phase == phase, "\(start) + \(event): phase \(h.machine.phase)")
            for m in musts {
                #expect(m.matches(step), "\(start) + \(event): missing \(m) in \(step)")
            }
            // A step that stops a timer stops only one that was running, and each timer once.
            #expect(Set(step.stopTimers).count == step.stopTimers.count, "\(start) + \(event): \(step.stopTimers)")
        } else {
            #expect(step == .doNothing, "\(start) + \(event) should do nothing, did \(step)")
            #expect(h.machine.phase == before)
        }
    }

    @Test("a timer that fired late, after its state was left, does nothing")
    func lateTimer() {
        var h = H.at(.waitingForSendMSD)
        let t5 = h.timers[.t5]!
        h.send(.sendMSD)
        #expect(h.machine.timerExpired(t5, at: h.now + 1) == .doNothing)
        #expect(h.machine.phase == .transmittingMSD)
        // A stale T7 from the first transfer during a second one does nothing either.
        h.send(.llAck)
        h.send(.alAck)
        let firstT7 = ECallTimerID(timer: .t7, generation: 1)
        h.send(.sendMSD)
        #expect(h.machine.timerExpired(firstT7, at: h.now + 1) == .doNothing)
        #expect(h.machine.phase == .transmittingMSD)
    }

    @Test("a re-sent MSD keeps the first timestamp and counts the identifier up")
    func resend() {
        var h = H.at(.voice)
        var sent: [(Int, UInt32)] = []
        for _ in 0..<3 {
            for a in h.send(.sendMSD).line { if case .transmitMSD(let id, let ts, _) = a { sent.append((id, ts)) } }
            h.send(.llAck)
            h.send(.alAck)
        }
        #expect(sent.map(\.0) == [2, 3, 4])
        #expect(sent.allSatisfy { $0.1 == 1_700_000_000 })
    }

    @Test("an automatic call cannot be cancelled; a manual one only during T1; T1 = 0 dials at once")
    func cancellation() {
        var h = H.at(.dialling)
        #expect(h.send(.cancel) == .rejected(.automaticCallCannotBeCancelled))
        var m = H.at(.manualPending)
        m.send(.timer(.t1))
        #expect(m.send(.cancel) == .rejected(.cancellationWindowOver))
        var zero = ECallConfiguration()
        zero.t1Ms = 0
        var z = H(zero)
        let step = z.send(.sos)
        #expect(z.machine.phase == .dialling)
        #expect(step.places(number: "112", attempt: 1))
    }

    @Test("a test call goes to the test number and its MSD says testCall")
    func testCall() {
        var h = H()
        h.send(.test)
        h.send(.answered)
        let step = h.send(.sendMSD)
        #expect(step.line.contains(.transmitMSD(messageIdentifier: 1, timestamp: 1_700_000_000, kind: .test)))
        #expect(h.log.contains { $0.places(number: "TEST", attempt: 1) })
        #expect(h.machine.activeKind == .test)
    }

    @Test("before the first connection the unit redials every interval until T2")
    func redialUntilT2() {
        var h = H.at(.dialling)
        for attempt in 2...6 {
            h.send(.failed)
            #expect(h.log.last?.startTimers == [ECallTimerStart(id: h.timers[.redial]!, afterMs: 30_000)])
            let a = h.send(.timer(.redial))
            #expect(a.places(number: "112", attempt: attempt))
        }
        h.send(.failed)
        let end = h.send(.timer(.t2))
        #expect(end.report?.ending == .neverConnected && end.report?.attempts == 6)
        #expect(h.machine.phase == .callbackWindow)
    }

    @Test("after a drop the unit redials at once, then within 120 s of the drop, then gives up")
    func redialAfterDrop() {
        var h = H.at(.transmittingMSD)
        let dropAt = h.now + 10
        let first = h.send(.dropped)
        #expect(first.places(number: "112", attempt: 2))
        var attempts = 2
        // Attempts fail; each wait is at most 5 s and the window closes 120 s after the drop.
        while h.machine.phase == .dialling {
            h.now = max(h.now, dropAt + Int64(attempts - 2) * 5_000)
            let a = h.send(.failed)
            if h.machine.phase == .callbackWindow {
                #expect(a.report?.ending == .droppedNotReconnected)
                break
            }
            guard let t = a.startTimers.first, t.id.timer == .redial else { Issue.record("no redial timer: \(a)"); return }
            let ms = t.afterMs
            #expect(ms <= 5_000)
            h.now += ms
            attempts += 1
            _ = h.send(.timer(.redial))
        }
        #expect(h.now - dropAt <= 120_000 + 5_000)
        #expect(attempts > 10)
    }

    @Test("a redial that reconnects after the AL-ACK goes straight to voice (pull mode)")
    func reconnectAfterAck() {
        var h = H.at(.voice)
        h.send(.dropped)
        let a = h.send(.answered)
        #expect(h.machine.phase == .voice)
        #expect(!a.line.contains(.sendInitiation))
        // The PSAP can still ask for the MSD.
        #expect(h.send(.sendMSD).line.contains(.transmitMSD(messageIdentifier: 2, timestamp: 1_700_000_000, kind: .automatic)))
    }

    @Test("pull mode sends no INITIATION and starts no T3")
    func pullMode() {
        var c = ECallConfiguration()
        c.pushMode = false
        var h = H.at(.dialling, c)
        let a = h.send(.answered)
        #expect(!a.line.contains(.sendInitiation))
        #expect(h.timers[.t3] == nil && h.timers[.t5] != nil)
    }

    @Test("an eCall-only unit deregisters at T10; a callback inside T9 is answered")
    func eCallOnly() {
        var c = ECallConfiguration()
        c.eCallOnly = true
        var h = H.at(.callbackWindow, c)
        #expect(h.timers[.t9] != nil && h.timers[.t10] != nil)
        h.send(.timer(.t9))
        #expect(h.machine.phase == .callbackWindow)
        #expect(h.send(.incoming).line.contains(.answerIncomingCall))
        h.send(.cleared)
        let end = h.send(.timer(.t10))
        #expect(end.line.contains(.deregisterFromNetwork))
        #expect(h.machine.phase == .idle)
    }

    @Test("T9 running out during a callback ends the window when the callback ends")
    func t9DuringCallback() {
        var h = H.at(.callback)
        #expect(h.send(.timer(.t9)) == .doNothing)
        h.send(.cleared)
        #expect(h.machine.phase == .idle)
    }

    @Test("a maximum number of attempts, as ERA-GLONASS requires, ends the call")
    func maximumAttempts() {
        var c = ECallConfiguration()
        c.maximumAttempts = 3
        var h = H.at(.dialling, c)
        h.send(.failed); h.send(.timer(.redial))
        h.send(.failed); h.send(.timer(.redial))
        let a = h.send(.failed)
        #expect(a.report?.attempts == 3 && a.report?.ending == .neverConnected)
    }
}

@Suite("eCall self-test")
struct ECallSelfTestTests {
    @Test("a missing network, crash signal or GNSS fix is a failure; no GNSS service is reported, not passed")
    func checks() {
        let ok = ECallSelfTest(linkAttached: true, crashSignalFresh: true, gnssFix: true)
        #expect(ok.failures.isEmpty)
        let bad = ECallSelfTest(linkAttached: false, crashSignalFresh: false, gnssFix: false)
        #expect(bad.failures == [.networkAccess, .crashSignal, .gnss])
        let noGNSS = ECallSelfTest(linkAttached: true, crashSignalFresh: true, gnssFix: nil)
        #expect(noGNSS.failures.isEmpty)
        #expect(noGNSS.json["gnss"] == .string("notFitted"))
    }
}

extension ECallStep {
    /// Whether the step dials this number as this attempt.
    func places(number: String, attempt: Int) -> Bool {
        line.contains { if case .placeCall(let d) = $0 { d.number == number && d.attempt == attempt } else { false } }
    }
}
