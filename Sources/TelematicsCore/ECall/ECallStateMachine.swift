// Overview
//
// The eCall state machine of the in-vehicle system (EN 16062's rules, whatever the transport),
// with the timers T1-T10 and the redial rules. It is a value: one method per event, named for
// what happened; each returns one `ECallStep`, what the shell must carry out (timers to stop
// and start, what to do on the line: place a call, transmit the MSD, hang up...; the report of
// a call that ended; the phase entered; a refusal). It never does IO, never reads a clock and
// never logs: time comes in with every event (monotonic milliseconds, and UTC seconds for the
// MSD timestamp), timers leave in `startTimers` and come back as `timerExpired` events. Each
// state carries the timers that run in it, so an expiry is acted on only when it is the one
// its state is running.
//
//     idle ──crash──────────────> dialling (automatic: cannot be cancelled)
//     idle ──SOS──> manualPending (T1) ──cancel / 2nd press──> idle
//                        └──T1──> dialling (manual)
//     idle ──test──> dialling (test number, testCall set)
//     dialling ──answered──> waitingForSendMSD (T5; push mode: INITIATION with T3)
//     dialling ──failed (or cleared / dropped before an answer)──> redialWait ──redial timer / network back──> dialling
//     waitingForSendMSD ──SEND MSD──> transmittingMSD (T7) ; ──T5──> voice (no MSD)
//     transmittingMSD ──LL-ACK──> waitingForALACK (T6) ; ──T7──> voice (MSD failed)
//     waitingForALACK ──AL-ACK──> voice ; ──AL-ACK clear-down──> callbackWindow ; ──T6──> voice
//     voice ──SEND MSD──> transmittingMSD (messageIdentifier + 1, same timestamp)
//     any call state ──hang-up / T2──> callbackWindow (T9, T10) ; ──drop──> redialWait (120 s)
//     callbackWindow ──incoming call──> voice (callback) ; ──T9──> idle (or T10 when eCall-only)
//
// A late or stale timer (not the one its state runs) and an event that makes no sense in the
// current state answer `.doNothing`, or a rejection for a request (cancelling an automatic call).

/// Milliseconds on the monotonic clock of the shell.
public typealias ECallInstant = Int64

/// The EN 16062 timers, plus the unit's redial timer.
public enum ECallTimer: String, Sendable, CaseIterable, Equatable {
    /// Manual trigger to call start: the occupants' chance to cancel.
    case t1 = "T1"
    /// Whole call, from setup to clear-down: 60 min.
    case t2 = "T2"
    /// INITIATION signalling in push mode: 2 s.
    case t3 = "T3"
    /// Call answered to SEND MSD: 5 s.
    case t5 = "T5"
    /// LL-ACK to AL-ACK: 5 s.
    case t6 = "T6"
    /// MSD transmission to LL-ACK: 20 s.
    case t7 = "T7"
    /// Clear-down to the end of the callback window: 1 h.
    case t9 = "T9"
    /// Clear-down to deregistration of an eCall-only unit: 12 h.
    case t10 = "T10"
    /// Gap before the next dialling attempt.
    case redial = "redial"
}

/// A started timer; an expiry whose generation is not the current one is stale.
public struct ECallTimerID: Hashable, Sendable {
    public var timer: ECallTimer
    public var generation: UInt64
}

/// The configuration of the machine: timer values and redial rules.
public struct ECallConfiguration: Sendable, Equatable {
    public var t1Ms: Int64 = 5_000
    public var t2Ms: Int64 = 3_600_000
    public var t3Ms: Int64 = 2_000
    public var t5Ms: Int64 = 5_000
    public var t6Ms: Int64 = 5_000
    public var t7Ms: Int64 = 20_000
    public var t9Ms: Int64 = 3_600_000
    public var t10Ms: Int64 = 43_200_000
    /// Before the first connection: the gap between attempts (no limit but T2).
    public var redialIntervalMs: Int64 = 30_000
    /// After a drop: redial for at most this long from the drop (EN 16062: 120 s).
    public var dropRedialWindowMs: Int64 = 120_000
    /// After a drop: the gap between attempts inside the window (the first is immediate).
    public var dropRedialIntervalMs: Int64 = 5_000
    /// An upper bound on attempts per eCall (ERA-GLONASS: 10); nil for none.
    public var maximumAttempts: Int?
    /// Push mode: the unit sends INITIATION when answered; pull mode: it waits for SEND MSD.
    public var pushMode = true
    /// An eCall-only unit stays registered for T10 after the call, then deregisters.
    public var eCallOnly = false
    public var emergencyNumber = "112"
    public var testNumber = "TEST"

    public init() {}
}

/// Why the call was made.
public enum ECallKind: String, Sendable, Equatable {
    case automatic, manual, test
}

/// What the occupants see on the unit's status (TCU_eCall_State on CAN).
public enum ECallPhase: String, Sendable, Equatable {
    case idle, manualPending, dialling, redialWait, waitingForSendMSD, transmittingMSD,
         waitingForALACK, voice, callbackWindow

    /// A call is being placed or is on (a pending SOS press counts); not idle, and not the
    /// callback window, which the journal keeps for as long as it lasts.
    public var isCallInProgress: Bool {
        switch self {
        case .idle, .callbackWindow: false
        case .manualPending, .dialling, .redialWait, .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice: true
        }
    }
}

/// Why the IVS switched to voice without a confirmed MSD.
public enum MSDFailure: String, Sendable, Equatable {
    /// T5: the PSAP never asked for the MSD.
    case noSendMSD
    /// T7: no LL-ACK.
    case noLowerLayerAck
    /// T6: no AL-ACK.
    case noApplicationAck
}

/// How a call attempt failed to connect.
public enum CallFailure: String, Sendable, Equatable {
    case busy, noAnswer, noNetwork, rejected
}

/// Why a request was refused.
public enum ECallRejection: String, Sendable, Equatable {
    case automaticCallCannotBeCancelled
    case cancellationWindowOver
    case nothingToCancel
    case callInProgress
}

/// How an eCall ended, for the report to the backend.
public struct ECallReport: Sendable, Equatable {
    public enum Ending: String, Sendable, Equatable {
        /// The PSAP or the network cleared the call down.
        case clearedByRemote
        /// The PSAP cleared down with the AL-ACK.
        case clearedByALACK
        /// T2 ran out and the unit cleared down.
        case t2Expired
        /// No connection within the redial rules.
        case neverConnected
        /// Dropped, and redialling within 120 s did not reconnect.
        case droppedNotReconnected
    }
    public var kind: ECallKind
    public var ending: Ending
    public var attempts: Int
    public var msdAcknowledged: Bool
    /// The highest messageIdentifier sent.
    public var lastMessageIdentifier: Int
    public var msdTimestamp: UInt32
    public var startedAt: ECallInstant
    public var endedAt: ECallInstant

    public init(kind: ECallKind, ending: Ending, attempts: Int, msdAcknowledged: Bool, lastMessageIdentifier: Int,
                msdTimestamp: UInt32, startedAt: ECallInstant, endedAt: ECallInstant) {
        self.kind = kind
        self.ending = ending
        self.attempts = attempts
        self.msdAcknowledged = msdAcknowledged
        self.lastMessageIdentifier = lastMessageIdentifier
        self.msdTimestamp = msdTimestamp
        self.startedAt = startedAt
        self.endedAt = endedAt
    }
}

/// A timer the shell starts; its expiry comes back as `timerExpired(id, at:)`.
public struct ECallTimerStart: Sendable, Equatable {
    public var id: ECallTimerID
    public var afterMs: Int64
}

/// What the unit does on the line, through its transport (the circuit-switched modem or SIP).
public enum ECallLineAction: Sendable, Equatable {
    /// Dial this attempt.
    case placeCall(ECallDial)
    /// Push mode: tell the PSAP an MSD is ready (INITIATION), until T3 or SEND MSD.
    case sendInitiation
    case stopInitiation
    /// Build the MSD with this identifier and the frozen timestamp (position fresh) and send it.
    case transmitMSD(messageIdentifier: Int, timestamp: UInt32, kind: ECallKind)
    case switchToVoice(msdFailure: MSDFailure?)
    /// The unit clears the call down.
    case hangUp
    case answerIncomingCall
    case deregisterFromNetwork
}

/// A dialling attempt: the number (the circuit-switched call's), the kind (NG-eCall's service
/// URN) and the MSD a transport sends with the set-up (NG-eCall's INVITE): its identifier and
/// the call's frozen timestamp.
public struct ECallDial: Sendable, Equatable {
    public var number: String
    public var attempt: Int
    public var kind: ECallKind
    public var messageIdentifier: Int
    public var msdTimestamp: UInt32
    /// The PSAP acknowledged the MSD before a drop: the redial sends none with its set-up (the
    /// PSAP asks for one if it wants, as in pull mode).
    public var msdAcknowledged: Bool

    public init(number: String, attempt: Int, kind: ECallKind, messageIdentifier: Int, msdTimestamp: UInt32, msdAcknowledged: Bool = false) {
        self.number = number
        self.attempt = attempt
        self.kind = kind
        self.messageIdentifier = messageIdentifier
        self.msdTimestamp = msdTimestamp
        self.msdAcknowledged = msdAcknowledged
    }
}

/// The machine's answer to one event: the timers that stop, the timers that start, what to do
/// on the line (in order), the report of a call that ended, the phase entered, a refused
/// request. An event that changes nothing answers `.doNothing`.
public struct ECallStep: Sendable, Equatable {
    /// Timers no longer running: if one still fires, its expiry is stale.
    public var stopTimers: [ECallTimer] = []
    public var startTimers: [ECallTimerStart] = []
    public var line: [ECallLineAction] = []
    public var report: ECallReport?
    /// The phase the event entered (nil when the phase stayed).
    public var phase: ECallPhase?
    public var rejection: ECallRejection?

    public init() {}

    public static let doNothing = ECallStep()

    static func rejected(_ r: ECallRejection) -> ECallStep {
        var s = ECallStep()
        s.rejection = r
        return s
    }
}

/// The EN 16062 in-vehicle state machine. See the overview at the top of this file.
public struct ECallStateMachine: Sendable {
    /// The callback window's timers: they keep running through a callback.
    struct WindowTimers: Sendable, Equatable {
        /// Nil once T9 ran out.
        var t9: ECallTimerID?
        /// Only for an eCall-only unit; nil once it ran out.
        var t10: ECallTimerID?
    }

    /// One eCall from trigger to clear-down.
    struct Call: Sendable, Equatable {
        var kind: ECallKind
        var number: String
        var attempts = 0
        var msdTimestamp: UInt32
        var messageIdentifier = 1
        var everConnected = false
        var msdAcknowledged = false
        var startedAt: ECallInstant
        /// Set after an abnormal drop: redialling is allowed until this instant.
        var redialDeadline: ECallInstant?
        /// T2, for the whole call (a callback has none).
        var t2: ECallTimerID?
        /// Set for the PSAP's callback: the window's timers, still running.
        var callback: WindowTimers?

        var isCallback: Bool { callback != nil }
    }

    /// After clear-down: reachable for the PSAP's callback.
    struct Window: Sendable, Equatable {
        var clearedAt: ECallInstant
        var timers: WindowTimers
        /// The call that ended, for a callback's MSD.
        var last: Call
    }

    private enum State: Sendable, Equatable {
        /// No eCall; triggers are accepted.
        case idle
        /// SOS pressed; T1 runs; a cancel or a second press returns to idle.
        case manualPending(msdTimestamp: UInt32, since: ECallInstant, t1: ECallTimerID)
        /// A dialling attempt is in progress.
        case dialling(Call)
        /// Between attempts; the redial timer runs.
        case redialWait(Call, redial: ECallTimerID)
        /// Answered; T5 runs. In push mode INITIATION is sent while T3 runs (nil after it).
        case waitingForSendMSD(Call, t5: ECallTimerID, t3: ECallTimerID?)
        /// The MSD is being sent; T7 runs until the LL-ACK.
        case transmittingMSD(Call, t7: ECallTimerID)
        /// LL-ACK received; T6 runs until the AL-ACK.
        case waitingForALACK(Call, t6: ECallTimerID)
        /// Voice with the PSAP; the PSAP may ask for the MSD again.
        case voice(Call)
        /// Cleared down; T9 (and T10) run; an incoming call is answered.
        case callbackWindow(Window)
    }

    public let configuration: ECallConfiguration
    private var state: State = .idle
    /// The next timer's generation: every started timer has its own.
    private var nextGeneration: UInt64 = 1

    public init(configuration: ECallConfiguration = ECallConfiguration()) {
        self.configuration = configuration
    }

    /// The observable phase.
    public var phase: ECallPhase {
        switch state {
        case .idle: .idle
        case .manualPending: .manualPending
        case .dialling: .dialling
        case .redialWait: .redialWait
        case .waitingForSendMSD: .waitingForSendMSD
        case .transmittingMSD: .transmittingMSD
        case .waitingForALACK: .waitingForALACK
        case .voice: .voice
        case .callbackWindow: .callbackWindow
        }
    }

    /// The call of a call state (dialling to voice), nil otherwise.
    private var currentCall: Call? {
        switch state {
        case .dialling(let c), .redialWait(let c, _), .waitingForSendMSD(let c, _, _), .transmittingMSD(let c, _),
             .waitingForALACK(let c, _), .voice(let c): c
        case .idle, .manualPending, .callbackWindow: nil
        }
    }

    /// The current call's kind, if a call or its callback window is active.
    public var activeKind: ECallKind? {
        switch state {
        case .idle: nil
        case .manualPending: .manual
        case .dialling(let c), .redialWait(let c, _), .waitingForSendMSD(let c, _, _), .transmittingMSD(let c, _),
             .waitingForALACK(let c, _), .voice(let c): c.kind
        case .callbackWindow(let w): w.last.kind
        }
    }

    // MARK: - Journal and resume

    struct Snapshot {
        var call: Call
        var inCall: Bool
        var t9Expired: Bool
    }

    /// The call to journal: in a call (manual pending counts: its press must not be lost),
    /// or its callback window.
    var snapshot: Snapshot? {
        switch state {
        case .idle: return nil
        case .manualPending(let ts, let since, _):
            return Snapshot(call: Call(kind: .manual, number: configuration.emergencyNumber, msdTimestamp: ts, startedAt: since),
                            inCall: true, t9Expired: false)
        case .dialling(let c), .redialWait(let c, _), .waitingForSendMSD(let c, _, _), .transmittingMSD(let c, _),
             .waitingForALACK(let c, _), .voice(let c):
            return Snapshot(call: c, inCall: !c.isCallback, t9Expired: false)
        case .callbackWindow(let w):
            return Snapshot(call: w.last, inCall: false, t9Expired: w.timers.t9 == nil)
        }
    }

    /// Resumes from a journal after the daemon restarted (`now` on the new monotonic clock,
    /// `nowUTC` to measure how long the unit was away). A call in progress counts as dropped
    /// when the journal was last written: it is redialled if the redial rules still allow it
    /// (no limit before the first connection, 120 s after a drop, always within T2); a
    /// callback window keeps what is left of T9 and T10.
    public mutating func resume(from j: ECallJournal, at now: ECallInstant, nowUTC: Int64) -> ECallStep {
        guard case .idle = state else { return .doNothing }
        var s = ECallStep()
        var c = Call(kind: j.kind, number: j.number, attempts: j.attempts, msdTimestamp: j.msdTimestamp,
                     messageIdentifier: j.messageIdentifier, everConnected: j.everConnected,
                     msdAcknowledged: j.msdAcknowledged, startedAt: now - max(0, nowUTC - j.startedAtUTC) * 1000)
        switch j.stage {
        case .inCall:
            let elapsedMs = max(0, nowUTC - j.startedAtUTC) * 1000
            let t2Left = configuration.t2Ms - elapsedMs
            guard t2Left > 0 else {
                endCall(c, c.everConnected ? .t2Expired : .neverConnected, at: now, hangUp: false, &s)
                return s
            }
            if c.everConnected {
                let sinceDropMs = max(0, nowUTC - j.writtenAtUTC) * 1000
                let windowLeft = configuration.dropRedialWindowMs - sinceDropMs
                guard windowLeft > 0 else {
                    endCall(c, .droppedNotReconnected, at: now, hangUp: false, &s)
                    return s
                }
                c.redialDeadline = now + windowLeft
            }
            c.t2 = start(.t2, t2Left, &s)
            dial(c, at: now, startT2: false, &s)
            return s
        case .callbackWindow:
            let since = max(0, nowUTC - (j.clearedAtUTC ?? j.writtenAtUTC)) * 1000
            let t9Left = configuration.t9Ms - since
            let t10Left = configuration.t10Ms - since
            if configuration.eCallOnly {
                guard t10Left > 0 else {
                    s.line.append(.deregisterFromNetwork)
                    return s
                }
            } else {
                guard t9Left > 0 else { return .doNothing }
            }
            var timers = WindowTimers()
            if t9Left > 0 { timers.t9 = start(.t9, t9Left, &s) }
            if configuration.eCallOnly { timers.t10 = start(.t10, t10Left, &s) }
            enter(.callbackWindow(Window(clearedAt: now - since, timers: timers, last: c)), &s)
            return s
        }
    }

    // MARK: - Timers and states

    private mutating func start(_ t: ECallTimer, _ ms: Int64, _ s: inout ECallStep) -> ECallTimerID {
        let id = ECallTimerID(timer: t, generation: nextGeneration)
        nextGeneration += 1
        s.startTimers.append(ECallTimerStart(id: id, afterMs: ms))
        return id
    }

    private func stop(_ id: ECallTimerID?, _ s: inout ECallStep) {
        if let id { s.stopTimers.append(id.timer) }
    }

    /// Stops the timers of the call phase being left (T2 and the window's belong to the call).
    private func stopPhaseTimers(_ s: inout ECallStep) {
        switch state {
        case .redialWait(_, let redial): stop(redial, &s)
        case .waitingForSendMSD(_, let t5, let t3):
            stop(t3, &s)
            stop(t5, &s)
        case .transmittingMSD(_, let t7): stop(t7, &s)
        case .waitingForALACK(_, let t6): stop(t6, &s)
        case .idle, .manualPending, .dialling, .voice, .callbackWindow: break
        }
    }

    private mutating func enter(_ new: State, _ s: inout ECallStep) {
        state = new
        s.phase = phase
    }

    /// Keeps the state and its timers, with the call changed.
    private mutating func update(_ c: Call) {
        switch state {
        case .dialling: state = .dialling(c)
        case .redialWait(_, let redial): state = .redialWait(c, redial: redial)
        case .waitingForSendMSD(_, let t5, let t3): state = .waitingForSendMSD(c, t5: t5, t3: t3)
        case .transmittingMSD(_, let t7): state = .transmittingMSD(c, t7: t7)
        case .waitingForALACK(_, let t6): state = .waitingForALACK(c, t6: t6)
        case .voice: state = .voice(c)
        case .idle, .manualPending, .callbackWindow: break
        }
    }

    // MARK: - Triggers

    /// The airbag controller reported a crash: an automatic eCall, which nobody can cancel.
    public mutating func crashDetected(at now: ECallInstant, utc: UInt32) -> ECallStep {
        switch state {
        case .idle, .callbackWindow:
            return beginCall(.automatic, at: now, utc: utc)
        case .manualPending(let ts, _, let t1):
            // A crash while the occupants could still cancel: the call becomes automatic now.
            var s = ECallStep()
            stop(t1, &s)
            dial(Call(kind: .automatic, number: configuration.emergencyNumber, msdTimestamp: ts, startedAt: now), at: now, startT2: true, &s)
            return s
        case .dialling, .redialWait, .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice:
            return .doNothing
        }
    }

    /// The SOS button was pressed: a manual eCall after T1, or the cancel of one pending.
    public mutating func sosPressed(at now: ECallInstant, utc: UInt32) -> ECallStep {
        switch state {
        case .idle, .callbackWindow:
            if configuration.t1Ms <= 0 { return beginCall(.manual, at: now, utc: utc) }
            var s = ECallStep()
            leaveCallbackWindow(&s)
            let t1 = start(.t1, configuration.t1Ms, &s)
            enter(.manualPending(msdTimestamp: utc, since: now, t1: t1), &s)
            return s
        case .manualPending:
            // A second press cancels.
            return cancelRequested(at: now)
        case .dialling, .redialWait, .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice:
            return .rejected(.callInProgress)
        }
    }

    /// A test call to the configured test number, with testCall set in the MSD.
    public mutating func testRequested(at now: ECallInstant, utc: UInt32) -> ECallStep {
        switch state {
        case .idle, .callbackWindow:
            return beginCall(.test, at: now, utc: utc)
        case .manualPending, .dialling, .redialWait, .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice:
            return .rejected(.callInProgress)
        }
    }

    /// The occupants (menu or second SOS press) ask to cancel.
    public mutating func cancelRequested(at now: ECallInstant) -> ECallStep {
        switch state {
        case .manualPending(_, _, let t1):
            var s = ECallStep()
            stop(t1, &s)
            enter(.idle, &s)
            return s
        case .dialling(let c), .redialWait(let c, _), .waitingForSendMSD(let c, _, _), .transmittingMSD(let c, _),
             .waitingForALACK(let c, _), .voice(let c):
            return .rejected(c.kind == .automatic ? .automaticCallCannotBeCancelled : .cancellationWindowOver)
        case .idle, .callbackWindow:
            return .rejected(.nothingToCancel)
        }
    }

    private mutating func beginCall(_ kind: ECallKind, at now: ECallInstant, utc: UInt32) -> ECallStep {
        var s = ECallStep()
        leaveCallbackWindow(&s)
        let number = kind == .test ? configuration.testNumber : configuration.emergencyNumber
        dial(Call(kind: kind, number: number, msdTimestamp: utc, startedAt: now), at: now, startT2: true, &s)
        return s
    }

    /// A new call ends the callback window of the previous one (T10: "stops at a new call").
    private func leaveCallbackWindow(_ s: inout ECallStep) {
        guard case .callbackWindow(let w) = state else { return }
        stop(w.timers.t9, &s)
        stop(w.timers.t10, &s)
    }

    private mutating func dial(_ call: Call, at now: ECallInstant, startT2: Bool, _ s: inout ECallStep) {
        var c = call
        c.attempts += 1
        if startT2 { c.t2 = start(.t2, configuration.t2Ms, &s) }
        s.line.append(.placeCall(ECallDial(number: c.number, attempt: c.attempts, kind: c.kind, messageIdentifier: c.messageIdentifier,
                                           msdTimestamp: c.msdTimestamp, msdAcknowledged: c.msdAcknowledged)))
        enter(.dialling(c), &s)
    }

    // MARK: - Call progress

    /// The PSAP answered.
    public mutating func callAnswered(at now: ECallInstant) -> ECallStep {
        guard case .dialling(var c) = state else { return .doNothing }
        c.everConnected = true
        var s = ECallStep()
        if c.msdAcknowledged {
            // Redial after a drop that followed the AL-ACK: pull mode, the PSAP asks if it wants.
            s.line.append(.switchToVoice(msdFailure: nil))
            enter(.voice(c), &s)
            return s
        }
        var t3: ECallTimerID?
        if configuration.pushMode {
            s.line.append(.sendInitiation)
            t3 = start(.t3, configuration.t3Ms, &s)
        }
        let t5 = start(.t5, configuration.t5Ms, &s)
        enter(.waitingForSendMSD(c, t5: t5, t3: t3), &s)
        return s
    }

    /// The attempt did not connect (busy, no answer, no network).
    public mutating func callFailed(_ reason: CallFailure, at now: ECallInstant) -> ECallStep {
        guard case .dialling(let c) = state else { return .doNothing }
        var s = ECallStep()
        if let max = configuration.maximumAttempts, c.attempts >= max {
            endCall(c, .neverConnected, at: now, hangUp: false, &s)
            return s
        }
        var interval = configuration.redialIntervalMs
        if let deadline = c.redialDeadline {
            // After a drop: keep trying only inside the 120 s window.
            guard now < deadline else {
                endCall(c, .droppedNotReconnected, at: now, hangUp: false, &s)
                return s
            }
            interval = min(configuration.dropRedialIntervalMs, deadline - now)
        }
        let redial = start(.redial, interval, &s)
        enter(.redialWait(c, redial: redial), &s)
        return s
    }

    /// The network became available (the unit attached): a call waiting to redial for want of
    /// coverage dials now instead of at the end of its interval.
    public mutating func networkAvailable(at now: ECallInstant) -> ECallStep {
        guard case .redialWait(let c, let redial) = state else { return .doNothing }
        if let deadline = c.redialDeadline, now >= deadline { return .doNothing }
        var s = ECallStep()
        stop(redial, &s)
        dial(c, at: now, startT2: false, &s)
        return s
    }

    /// The PSAP asks for the MSD (SEND MSD), first time or again.
    public mutating func sendMSDReceived(at now: ECallInstant) -> ECallStep {
        var s = ECallStep()
        switch state {
        case .waitingForSendMSD(let c, let t5, let t3):
            stop(t5, &s)
            if t3 != nil {
                stop(t3, &s)
                s.line.append(.stopInitiation)
            }
            s.line.append(.transmitMSD(messageIdentifier: c.messageIdentifier, timestamp: c.msdTimestamp, kind: c.kind))
            let t7 = start(.t7, configuration.t7Ms, &s)
            enter(.transmittingMSD(c, t7: t7), &s)
            return s
        case .voice(var c):
            // A re-send: identifier + 1, the same timestamp, a fresh position.
            c.messageIdentifier = min(255, c.messageIdentifier + 1)
            s.line.append(.transmitMSD(messageIdentifier: c.messageIdentifier, timestamp: c.msdTimestamp, kind: c.kind))
            let t7 = start(.t7, configuration.t7Ms, &s)
            enter(.transmittingMSD(c, t7: t7), &s)
            return s
        case .transmittingMSD, .waitingForALACK:
            // Already sending, or sent and waiting: a repeated request changes nothing.
            return .doNothing
        case .idle, .manualPending, .dialling, .redialWait, .callbackWindow:
            return .doNothing
        }
    }

    /// The modem's lower-layer acknowledgement of the MSD.
    public mutating func llAckReceived(at now: ECallInstant) -> ECallStep {
        guard case .transmittingMSD(let c, let t7) = state else { return .doNothing }
        var s = ECallStep()
        stop(t7, &s)
        let t6 = start(.t6, configuration.t6Ms, &s)
        enter(.waitingForALACK(c, t6: t6), &s)
        return s
    }

    /// The PSAP's application-layer acknowledgement; `clearDown` asks the unit to end the call.
    public mutating func alAckReceived(clearDown: Bool, at now: ECallInstant) -> ECallStep {
        switch state {
        case .waitingForALACK(var c, let timer), .transmittingMSD(var c, let timer):
            // An AL-ACK implies the LL-ACK; accept it even if the LL-ACK was missed.
            c.msdAcknowledged = true
            var s = ECallStep()
            if clearDown {
                if c.isCallback {
                    s.line.append(.hangUp)
                    endCallback(c, at: now, &s)
                } else {
                    endCall(c, .clearedByALACK, at: now, hangUp: true, &s)
                }
                return s
            }
            stop(timer, &s)
            s.line.append(.switchToVoice(msdFailure: nil))
            enter(.voice(c), &s)
            return s
        case .voice, .idle, .manualPending, .dialling, .redialWait, .waitingForSendMSD, .callbackWindow:
            // A second AL-ACK, or one with no MSD sent: nothing to do.
            return .doNothing
        }
    }

    /// The PSAP or the network cleared the call down normally.
    public mutating func callCleared(at now: ECallInstant) -> ECallStep {
        var s = ECallStep()
        switch state {
        case .voice(let c) where c.isCallback, .transmittingMSD(let c, _) where c.isCallback, .waitingForALACK(let c, _) where c.isCallback:
            endCallback(c, at: now, &s)
            return s
        case .dialling:
            // Cleared before it was ever answered: a set-up that failed, redialled within
            // EN 16062's rules, not an emergency call ended by the PSAP.
            return callFailed(.rejected, at: now)
        case .waitingForSendMSD(let c, _, let t3):
            if t3 != nil { s.line.append(.stopInitiation) }
            endCall(c, .clearedByRemote, at: now, hangUp: false, &s)
            return s
        case .transmittingMSD(let c, _), .waitingForALACK(let c, _), .voice(let c):
            endCall(c, .clearedByRemote, at: now, hangUp: false, &s)
            return s
        case .redialWait, .idle, .manualPending, .callbackWindow:
            return .doNothing
        }
    }

    /// The connection broke without a clear-down: redial within 120 s of the drop.
    public mutating func callDropped(at now: ECallInstant) -> ECallStep {
        var s = ECallStep()
        switch state {
        case .voice(let c) where c.isCallback, .transmittingMSD(let c, _) where c.isCallback, .waitingForALACK(let c, _) where c.isCallback:
            // A dropped callback is not redialled: the PSAP calls again if it needs to.
            endCallback(c, at: now, &s)
            return s
        case .waitingForSendMSD(var c, _, _), .transmittingMSD(var c, _), .waitingForALACK(var c, _), .voice(var c):
            if case .waitingForSendMSD(_, _, .some) = state { s.line.append(.stopInitiation) }
            c.redialDeadline = now + configuration.dropRedialWindowMs
            if let max = configuration.maximumAttempts, c.attempts >= max {
                endCall(c, .droppedNotReconnected, at: now, hangUp: false, &s)
                return s
            }
            stopPhaseTimers(&s)
            dial(c, at: now, startT2: false, &s)
            return s
        case .dialling:
            // Broken before it was answered: a failed set-up, redialled within the rules.
            return callFailed(.rejected, at: now)
        case .redialWait, .idle, .manualPending, .callbackWindow:
            return .doNothing
        }
    }

    /// The PSAP calls back.
    public mutating func incomingCall(at now: ECallInstant) -> ECallStep {
        guard case .callbackWindow(let w) = state else { return .doNothing }
        var c = w.last
        c.callback = w.timers
        var s = ECallStep()
        s.line.append(.answerIncomingCall)
        enter(.voice(c), &s)
        return s
    }

    /// A timer came back. A timer that is not the one its state runs (late or stale) does nothing.
    public mutating func timerExpired(_ id: ECallTimerID, at now: ECallInstant) -> ECallStep {
        var s = ECallStep()
        switch id.timer {
        case .t1:
            guard case .manualPending(let ts, _, let t1) = state, t1 == id else { return .doNothing }
            dial(Call(kind: .manual, number: configuration.emergencyNumber, msdTimestamp: ts, startedAt: now), at: now, startT2: true, &s)
        case .redial:
            guard case .redialWait(let c, let redial) = state, redial == id else { return .doNothing }
            dial(c, at: now, startT2: false, &s)
        case .t3:
            guard case .waitingForSendMSD(let c, let t5, let t3) = state, t3 == id else { return .doNothing }
            state = .waitingForSendMSD(c, t5: t5, t3: nil)
            s.line.append(.stopInitiation)
        case .t5:
            guard case .waitingForSendMSD(let c, let t5, let t3) = state, t5 == id else { return .doNothing }
            if t3 != nil {
                stop(t3, &s)
                s.line.append(.stopInitiation)
            }
            s.line.append(.switchToVoice(msdFailure: .noSendMSD))
            enter(.voice(c), &s)
        case .t7:
            guard case .transmittingMSD(let c, let t7) = state, t7 == id else { return .doNothing }
            s.line.append(.switchToVoice(msdFailure: .noLowerLayerAck))
            enter(.voice(c), &s)
        case .t6:
            guard case .waitingForALACK(let c, let t6) = state, t6 == id else { return .doNothing }
            s.line.append(.switchToVoice(msdFailure: .noApplicationAck))
            enter(.voice(c), &s)
        case .t2:
            guard var c = currentCall, c.t2 == id else { return .doNothing }
            c.t2 = nil
            if case .waitingForSendMSD(_, _, .some) = state { s.line.append(.stopInitiation) }
            // Between attempts there is no line to hang up.
            let lineOpen: Bool
            if case .redialWait = state { lineOpen = false } else { lineOpen = true }
            endCall(c, c.everConnected ? .t2Expired : .neverConnected, at: now, hangUp: lineOpen, &s)
        case .t9:
            if case .callbackWindow(var w) = state, w.timers.t9 == id {
                if configuration.eCallOnly {
                    // An eCall-only unit stays reachable until T10.
                    w.timers.t9 = nil
                    state = .callbackWindow(w)
                    return .doNothing
                }
                stop(w.timers.t10, &s)
                enter(.idle, &s)
            } else if var c = currentCall, c.callback?.t9 == id {
                // During a callback: no longer running, which the callback's end reads.
                c.callback?.t9 = nil
                update(c)
                return .doNothing
            } else {
                return .doNothing
            }
        case .t10:
            if case .callbackWindow(let w) = state, w.timers.t10 == id {
                stop(w.timers.t9, &s)
                s.line.append(.deregisterFromNetwork)
                enter(.idle, &s)
            } else if var c = currentCall, c.callback?.t10 == id {
                // During a callback: the unit deregisters when the callback ends.
                c.callback?.t10 = nil
                update(c)
                return .doNothing
            } else {
                return .doNothing
            }
        }
        return s
    }

    // MARK: - Endings

    private mutating func endCall(_ c: Call, _ ending: ECallReport.Ending, at now: ECallInstant, hangUp: Bool, _ s: inout ECallStep) {
        stopPhaseTimers(&s)
        stop(c.t2, &s)
        if hangUp { s.line.append(.hangUp) }
        s.report = ECallReport(
            kind: c.kind, ending: ending, attempts: c.attempts, msdAcknowledged: c.msdAcknowledged,
            lastMessageIdentifier: c.messageIdentifier, msdTimestamp: c.msdTimestamp,
            startedAt: c.startedAt, endedAt: now
        )
        var last = c
        last.redialDeadline = nil
        last.t2 = nil
        var timers = WindowTimers()
        timers.t9 = start(.t9, configuration.t9Ms, &s)
        if configuration.eCallOnly { timers.t10 = start(.t10, configuration.t10Ms, &s) }
        enter(.callbackWindow(Window(clearedAt: now, timers: timers, last: last)), &s)
    }

    /// A callback ended: back to the window, whose T9 (and T10) kept running.
    private mutating func endCallback(_ c: Call, at now: ECallInstant, _ s: inout ECallStep) {
        stopPhaseTimers(&s)
        let timers = c.callback ?? WindowTimers()
        var last = c
        last.callback = nil
        if timers.t9 == nil && !configuration.eCallOnly {
            // T9 ran out during the callback.
            enter(.idle, &s)
        } else if timers.t9 == nil && timers.t10 == nil {
            s.line.append(.deregisterFromNetwork)
            enter(.idle, &s)
        } else {
            enter(.callbackWindow(Window(clearedAt: now, timers: timers, last: last)), &s)
        }
    }
}
