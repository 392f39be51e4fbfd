// Overview
//
// The eCall state machine of the in-vehicle system, circuit-switched (EN 16062), with the
// timers T1-T10 and the redial rules. It is a value: one method per event, named for what
// happened; each returns the actions the shell must carry out (place a call, start or cancel
// a timer, transmit the MSD, hang up, ...). It never does IO, never reads a clock and never
// logs: time comes in with every event (monotonic milliseconds, and UTC seconds for the MSD
// timestamp), timers leave as `.startTimer` actions and come back as `timerExpired` events.
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
// A late or stale timer (its generation is not the one running) and an event that makes no
// sense in the current state return no actions, or a rejection for a request (cancelling an
// automatic call).

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

/// What the shell must do.
public enum ECallAction: Sendable, Equatable {
    case startTimer(ECallTimerID, afterMs: Int64)
    case cancelTimer(ECallTimer)
    /// Dial; `pushMode` says whether to send INITIATION once answered.
    case placeCall(number: String, attempt: Int)
    case sendInitiation
    case stopInitiation
    /// Build the MSD with this identifier and the frozen timestamp (position fresh) and send it.
    case transmitMSD(messageIdentifier: Int, timestamp: UInt32, kind: ECallKind)
    case switchToVoice(msdFailure: MSDFailure?)
    /// The unit clears the call down.
    case hangUp
    case answerIncomingCall
    case deregisterFromNetwork
    case report(ECallReport)
    case phaseChanged(ECallPhase)
    case reject(ECallRejection)
}

/// The EN 16062 in-vehicle state machine. See the overview at the top of this file.
public struct ECallStateMachine: Sendable {
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
        var isCallback = false
    }

    /// After clear-down: reachable for the PSAP's callback.
    struct Window: Sendable, Equatable {
        var clearedAt: ECallInstant
        /// T9 ran out (an eCall-only unit still waits for T10).
        var t9Expired = false
        /// The call that ended, for a callback's MSD.
        var last: Call
    }

    private enum State: Sendable, Equatable {
        /// No eCall; triggers are accepted.
        case idle
        /// SOS pressed; T1 running; a cancel or a second press returns to idle.
        case manualPending(msdTimestamp: UInt32, since: ECallInstant)
        /// A dialling attempt is in progress.
        case dialling(Call)
        /// Between attempts; the redial timer runs.
        case redialWait(Call)
        /// Answered; T5 runs. `initiating`: push mode's INITIATION is being sent (T3 runs).
        case waitingForSendMSD(Call, initiating: Bool)
        /// The MSD is being sent; T7 runs until the LL-ACK.
        case transmittingMSD(Call)
        /// LL-ACK received; T6 runs until the AL-ACK.
        case waitingForALACK(Call)
        /// Voice with the PSAP; the PSAP may ask for the MSD again.
        case voice(Call)
        /// Cleared down; T9 (and T10) run; an incoming call is answered.
        case callbackWindow(Window)
    }

    public let configuration: ECallConfiguration
    private var state: State = .idle
    private var generations: [ECallTimer: UInt64] = [:]
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

    /// The current call's kind, if a call or its callback window is active.
    public var activeKind: ECallKind? {
        switch state {
        case .idle: nil
        case .manualPending: .manual
        case .dialling(let c), .redialWait(let c), .waitingForSendMSD(let c, _), .transmittingMSD(let c),
             .waitingForALACK(let c), .voice(let c): c.kind
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
        case .manualPending(let ts, let since):
            return Snapshot(call: Call(kind: .manual, number: configuration.emergencyNumber, msdTimestamp: ts, startedAt: since),
                            inCall: true, t9Expired: false)
        case .dialling(let c), .redialWait(let c), .waitingForSendMSD(let c, _), .transmittingMSD(let c),
             .waitingForALACK(let c), .voice(let c):
            return c.isCallback ? Snapshot(call: c, inCall: false, t9Expired: false) : Snapshot(call: c, inCall: true, t9Expired: false)
        case .callbackWindow(let w):
            return Snapshot(call: w.last, inCall: false, t9Expired: w.t9Expired)
        }
    }

    /// Resumes from a journal after the daemon restarted (`now` on the new monotonic clock,
    /// `nowUTC` to measure how long the unit was away). A call in progress counts as dropped
    /// when the journal was last written: it is redialled if the redial rules still allow it
    /// (no limit before the first connection, 120 s after a drop, always within T2); a
    /// callback window keeps what is left of T9 and T10.
    public mutating func resume(from j: ECallJournal, at now: ECallInstant, nowUTC: Int64) -> [ECallAction] {
        guard case .idle = state else { return [] }
        var c = Call(kind: j.kind, number: j.number, attempts: j.attempts, msdTimestamp: j.msdTimestamp,
                     messageIdentifier: j.messageIdentifier, everConnected: j.everConnected,
                     msdAcknowledged: j.msdAcknowledged, startedAt: now - max(0, nowUTC - j.startedAtUTC) * 1000)
        switch j.stage {
        case .inCall:
            let elapsedMs = max(0, nowUTC - j.startedAtUTC) * 1000
            let t2Left = configuration.t2Ms - elapsedMs
            guard t2Left > 0 else {
                return endCall(c, c.everConnected ? .t2Expired : .neverConnected, at: now, hangUp: false)
            }
            var actions = [start(.t2, t2Left)]
            if c.everConnected {
                let sinceDropMs = max(0, nowUTC - j.writtenAtUTC) * 1000
                let windowLeft = configuration.dropRedialWindowMs - sinceDropMs
                guard windowLeft > 0 else {
                    return cancel([.t2]) + endCall(c, .droppedNotReconnected, at: now, hangUp: false)
                }
                c.redialDeadline = now + windowLeft
            }
            actions += dial(c, at: now, startT2: false)
            return actions
        case .callbackWindow:
            let since = max(0, nowUTC - (j.clearedAtUTC ?? j.writtenAtUTC)) * 1000
            let t9Left = configuration.t9Ms - since
            let t10Left = configuration.t10Ms - since
            var actions: [ECallAction] = []
            if configuration.eCallOnly {
                guard t10Left > 0 else { return [.deregisterFromNetwork] }
            } else {
                guard t9Left > 0 else { return [] }
            }
            c.redialDeadline = nil
            state = .callbackWindow(Window(clearedAt: now - since, t9Expired: t9Left <= 0, last: c))
            if t9Left > 0 { actions.append(start(.t9, t9Left)) }
            if configuration.eCallOnly { actions.append(start(.t10, t10Left)) }
            actions.append(.phaseChanged(.callbackWindow))
            return actions
        }
    }

    // MARK: - Timers

    private mutating func start(_ t: ECallTimer, _ ms: Int64) -> ECallAction {
        let id = ECallTimerID(timer: t, generation: nextGeneration)
        nextGeneration += 1
        generations[t] = id.generation
        return .startTimer(id, afterMs: ms)
    }

    private mutating func cancel(_ t: ECallTimer) -> ECallAction? {
        guard generations.removeValue(forKey: t) != nil else { return nil }
        return .cancelTimer(t)
    }

    private mutating func cancel(_ timers: [ECallTimer]) -> [ECallAction] {
        timers.compactMap { cancel($0) }
    }

    /// Timers that belong to a call in progress (T2 spans the whole call).
    private static let callTimers: [ECallTimer] = [.t3, .t5, .t6, .t7, .redial]

    // MARK: - Triggers

    /// The airbag controller reported a crash: an automatic eCall, which nobody can cancel.
    public mutating func crashDetected(at now: ECallInstant, utc: UInt32) -> [ECallAction] {
        switch state {
        case .idle, .callbackWindow:
            return beginCall(.automatic, at: now, utc: utc)
        case .manualPending(let ts, _):
            // A crash while the occupants could still cancel: the call becomes automatic now.
            var actions = cancel([.t1])
            actions += dial(Call(kind: .automatic, number: configuration.emergencyNumber, msdTimestamp: ts, startedAt: now), at: now, startT2: true)
            return actions
        case .dialling, .redialWait, .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice:
            return []
        }
    }

    /// The SOS button was pressed: a manual eCall after T1, or the cancel of one pending.
    public mutating func sosPressed(at now: ECallInstant, utc: UInt32) -> [ECallAction] {
        switch state {
        case .idle, .callbackWindow:
            if configuration.t1Ms <= 0 { return beginCall(.manual, at: now, utc: utc) }
            var actions = leaveCallbackWindow()
            state = .manualPending(msdTimestamp: utc, since: now)
            actions.append(start(.t1, configuration.t1Ms))
            actions.append(.phaseChanged(.manualPending))
            return actions
        case .manualPending:
            // A second press cancels.
            return cancelRequested(at: now)
        case .dialling, .redialWait, .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice:
            return [.reject(.callInProgress)]
        }
    }

    /// A test call to the configured test number, with testCall set in the MSD.
    public mutating func testRequested(at now: ECallInstant, utc: UInt32) -> [ECallAction] {
        switch state {
        case .idle, .callbackWindow:
            return beginCall(.test, at: now, utc: utc)
        case .manualPending, .dialling, .redialWait, .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice:
            return [.reject(.callInProgress)]
        }
    }

    /// The occupants (menu or second SOS press) ask to cancel.
    public mutating func cancelRequested(at now: ECallInstant) -> [ECallAction] {
        switch state {
        case .manualPending:
            state = .idle
            return cancel([.t1]) + [.phaseChanged(.idle)]
        case .dialling(let c), .redialWait(let c), .waitingForSendMSD(let c, _), .transmittingMSD(let c),
             .waitingForALACK(let c), .voice(let c):
            return [.reject(c.kind == .automatic ? .automaticCallCannotBeCancelled : .cancellationWindowOver)]
        case .idle, .callbackWindow:
            return [.reject(.nothingToCancel)]
        }
    }

    private mutating func beginCall(_ kind: ECallKind, at now: ECallInstant, utc: UInt32) -> [ECallAction] {
        var actions = leaveCallbackWindow()
        let number = kind == .test ? configuration.testNumber : configuration.emergencyNumber
        actions += dial(Call(kind: kind, number: number, msdTimestamp: utc, startedAt: now), at: now, startT2: true)
        return actions
    }

    /// A new call ends the callback window of the previous one (T10: "stops at a new call").
    private mutating func leaveCallbackWindow() -> [ECallAction] {
        guard case .callbackWindow = state else { return [] }
        return cancel([.t9, .t10])
    }

    private mutating func dial(_ call: Call, at now: ECallInstant, startT2: Bool) -> [ECallAction] {
        var c = call
        c.attempts += 1
        var actions: [ECallAction] = []
        if startT2 { actions.append(start(.t2, configuration.t2Ms)) }
        state = .dialling(c)
        actions.append(.placeCall(number: c.number, attempt: c.attempts))
        actions.append(.phaseChanged(.dialling))
        return actions
    }

    // MARK: - Call progress

    /// The PSAP answered.
    public mutating func callAnswered(at now: ECallInstant) -> [ECallAction] {
        guard case .dialling(var c) = state else { return [] }
        c.everConnected = true
        var actions: [ECallAction] = []
        if c.msdAcknowledged {
            // Redial after a drop that followed the AL-ACK: pull mode, the PSAP asks if it wants.
            state = .voice(c)
            return [.switchToVoice(msdFailure: nil), .phaseChanged(.voice)]
        }
        state = .waitingForSendMSD(c, initiating: configuration.pushMode)
        if configuration.pushMode {
            actions.append(.sendInitiation)
            actions.append(start(.t3, configuration.t3Ms))
        }
        actions.append(start(.t5, configuration.t5Ms))
        actions.append(.phaseChanged(.waitingForSendMSD))
        return actions
    }

    /// The attempt did not connect (busy, no answer, no network).
    public mutating func callFailed(_ reason: CallFailure, at now: ECallInstant) -> [ECallAction] {
        guard case .dialling(let c) = state else { return [] }
        if let max = configuration.maximumAttempts, c.attempts >= max {
            return endCall(c, .neverConnected, at: now, hangUp: false)
        }
        if let deadline = c.redialDeadline {
            // After a drop: keep trying only inside the 120 s window.
            guard now < deadline else { return endCall(c, .droppedNotReconnected, at: now, hangUp: false) }
            state = .redialWait(c)
            return [start(.redial, min(configuration.dropRedialIntervalMs, deadline - now)), .phaseChanged(.redialWait)]
        }
        state = .redialWait(c)
        return [start(.redial, configuration.redialIntervalMs), .phaseChanged(.redialWait)]
    }

    /// The network became available (the unit attached): a call waiting to redial for want of
    /// coverage dials now instead of at the end of its interval.
    public mutating func networkAvailable(at now: ECallInstant) -> [ECallAction] {
        guard case .redialWait(let c) = state else { return [] }
        if let deadline = c.redialDeadline, now >= deadline { return [] }
        return cancel([.redial]) + dial(c, at: now, startT2: false)
    }

    /// The PSAP asks for the MSD (SEND MSD), first time or again.
    public mutating func sendMSDReceived(at now: ECallInstant) -> [ECallAction] {
        switch state {
        case .waitingForSendMSD(let c, let initiating):
            var actions = cancel([.t5])
            if initiating { actions += cancel([.t3]) + [.stopInitiation] }
            state = .transmittingMSD(c)
            actions.append(.transmitMSD(messageIdentifier: c.messageIdentifier, timestamp: c.msdTimestamp, kind: c.kind))
            actions.append(start(.t7, configuration.t7Ms))
            actions.append(.phaseChanged(.transmittingMSD))
            return actions
        case .voice(var c):
            // A re-send: identifier + 1, the same timestamp, a fresh position.
            c.messageIdentifier = min(255, c.messageIdentifier + 1)
            state = .transmittingMSD(c)
            return [.transmitMSD(messageIdentifier: c.messageIdentifier, timestamp: c.msdTimestamp, kind: c.kind),
                    start(.t7, configuration.t7Ms), .phaseChanged(.transmittingMSD)]
        case .transmittingMSD, .waitingForALACK:
            // Already sending, or sent and waiting: a repeated request changes nothing.
            return []
        case .idle, .manualPending, .dialling, .redialWait, .callbackWindow:
            return []
        }
    }

    /// The modem's lower-layer acknowledgement of the MSD.
    public mutating func llAckReceived(at now: ECallInstant) -> [ECallAction] {
        guard case .transmittingMSD(let c) = state else { return [] }
        var actions = cancel([.t7])
        state = .waitingForALACK(c)
        actions.append(start(.t6, configuration.t6Ms))
        actions.append(.phaseChanged(.waitingForALACK))
        return actions
    }

    /// The PSAP's application-layer acknowledgement; `clearDown` asks the unit to end the call.
    public mutating func alAckReceived(clearDown: Bool, at now: ECallInstant) -> [ECallAction] {
        switch state {
        case .waitingForALACK(var c), .transmittingMSD(var c):
            // An AL-ACK implies the LL-ACK; accept it even if the LL-ACK was missed.
            c.msdAcknowledged = true
            var actions = cancel([.t6, .t7])
            if clearDown {
                if c.isCallback { return actions + [.hangUp] + endCallback(c, at: now) }
                return actions + endCall(c, .clearedByALACK, at: now, hangUp: true)
            }
            state = .voice(c)
            actions += [.switchToVoice(msdFailure: nil), .phaseChanged(.voice)]
            return actions
        case .voice, .idle, .manualPending, .dialling, .redialWait, .waitingForSendMSD, .callbackWindow:
            // A second AL-ACK, or one with no MSD sent: nothing to do.
            return []
        }
    }

    /// The PSAP or the network cleared the call down normally.
    public mutating func callCleared(at now: ECallInstant) -> [ECallAction] {
        switch state {
        case .voice(let c) where c.isCallback, .transmittingMSD(let c) where c.isCallback, .waitingForALACK(let c) where c.isCallback:
            return endCallback(c, at: now)
        case .dialling:
            // Cleared before it was ever answered: a set-up that failed, redialled within
            // EN 16062's rules, not an emergency call ended by the PSAP.
            return callFailed(.rejected, at: now)
        case .waitingForSendMSD(let c, let initiating):
            return (initiating ? [.stopInitiation] : []) + endCall(c, .clearedByRemote, at: now, hangUp: false)
        case .transmittingMSD(let c), .waitingForALACK(let c), .voice(let c):
            return endCall(c, .clearedByRemote, at: now, hangUp: false)
        case .redialWait, .idle, .manualPending, .callbackWindow:
            return []
        }
    }

    /// The connection broke without a clear-down: redial within 120 s of the drop.
    public mutating func callDropped(at now: ECallInstant) -> [ECallAction] {
        switch state {
        case .voice(let c) where c.isCallback, .transmittingMSD(let c) where c.isCallback, .waitingForALACK(let c) where c.isCallback:
            // A dropped callback is not redialled: the PSAP calls again if it needs to.
            return endCallback(c, at: now)
        case .waitingForSendMSD(var c, _), .transmittingMSD(var c), .waitingForALACK(var c), .voice(var c):
            var actions = cancel(Self.callTimers)
            if case .waitingForSendMSD(_, true) = state { actions.append(.stopInitiation) }
            c.redialDeadline = now + configuration.dropRedialWindowMs
            if let max = configuration.maximumAttempts, c.attempts >= max {
                return actions + endCall(c, .droppedNotReconnected, at: now, hangUp: false)
            }
            return actions + dial(c, at: now, startT2: false)
        case .dialling:
            // Broken before it was answered: a failed set-up, redialled within the rules.
            return callFailed(.rejected, at: now)
        case .redialWait, .idle, .manualPending, .callbackWindow:
            return []
        }
    }

    /// The PSAP calls back.
    public mutating func incomingCall(at now: ECallInstant) -> [ECallAction] {
        guard case .callbackWindow(let w) = state else { return [] }
        var c = w.last
        c.isCallback = true
        state = .voice(c)
        return [.answerIncomingCall, .phaseChanged(.voice)]
    }

    /// A timer came back. A timer that is no longer running (late or stale) does nothing.
    public mutating func timerExpired(_ id: ECallTimerID, at now: ECallInstant) -> [ECallAction] {
        guard generations[id.timer] == id.generation else { return [] }
        generations.removeValue(forKey: id.timer)
        switch id.timer {
        case .t1:
            switch state {
            case .manualPending(let ts, _):
                return dial(Call(kind: .manual, number: configuration.emergencyNumber, msdTimestamp: ts, startedAt: now),
                            at: now, startT2: true)
            case .idle, .dialling, .redialWait, .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice, .callbackWindow:
                return []
            }
        case .redial:
            switch state {
            case .redialWait(let c):
                return dial(c, at: now, startT2: false)
            case .idle, .manualPending, .dialling, .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice, .callbackWindow:
                return []
            }
        case .t3:
            switch state {
            case .waitingForSendMSD(let c, true):
                state = .waitingForSendMSD(c, initiating: false)
                return [.stopInitiation]
            case .waitingForSendMSD(_, false), .idle, .manualPending, .dialling, .redialWait, .transmittingMSD, .waitingForALACK,
                 .voice, .callbackWindow:
                return []
            }
        case .t5:
            switch state {
            case .waitingForSendMSD(let c, let initiating):
                let actions = initiating ? cancel([.t3]) + [.stopInitiation] : []
                state = .voice(c)
                return actions + [.switchToVoice(msdFailure: .noSendMSD), .phaseChanged(.voice)]
            case .idle, .manualPending, .dialling, .redialWait, .transmittingMSD, .waitingForALACK, .voice, .callbackWindow:
                return []
            }
        case .t7:
            switch state {
            case .transmittingMSD(let c):
                state = .voice(c)
                return [.switchToVoice(msdFailure: .noLowerLayerAck), .phaseChanged(.voice)]
            case .idle, .manualPending, .dialling, .redialWait, .waitingForSendMSD, .waitingForALACK, .voice, .callbackWindow:
                return []
            }
        case .t6:
            switch state {
            case .waitingForALACK(let c):
                state = .voice(c)
                return [.switchToVoice(msdFailure: .noApplicationAck), .phaseChanged(.voice)]
            case .idle, .manualPending, .dialling, .redialWait, .waitingForSendMSD, .transmittingMSD, .voice, .callbackWindow:
                return []
            }
        case .t2:
            switch state {
            case .dialling(let c), .redialWait(let c), .waitingForSendMSD(let c, _), .transmittingMSD(let c), .waitingForALACK(let c),
                 .voice(let c):
                var actions: [ECallAction] = []
                if case .waitingForSendMSD(_, true) = state { actions.append(.stopInitiation) }
                // Between attempts there is no line to hang up.
                let lineOpen: Bool
                if case .redialWait = state { lineOpen = false } else { lineOpen = true }
                return actions + endCall(c, c.everConnected ? .t2Expired : .neverConnected, at: now, hangUp: lineOpen)
            case .idle, .manualPending, .callbackWindow:
                return []
            }
        case .t9:
            switch state {
            case .callbackWindow(var w):
                if configuration.eCallOnly {
                    w.t9Expired = true
                    state = .callbackWindow(w)
                    return []
                }
                var actions = cancel([.t10])
                state = .idle
                actions.append(.phaseChanged(.idle))
                return actions
            case .voice, .transmittingMSD, .waitingForALACK:
                // During a callback: it is no longer running, which the callback's end reads.
                return []
            case .idle, .manualPending, .dialling, .redialWait, .waitingForSendMSD:
                return []
            }
        case .t10:
            switch state {
            case .callbackWindow:
                var actions = cancel([.t9])
                state = .idle
                actions += [.deregisterFromNetwork, .phaseChanged(.idle)]
                return actions
            case .voice, .transmittingMSD, .waitingForALACK:
                // During a callback: the unit deregisters when the callback ends.
                return []
            case .idle, .manualPending, .dialling, .redialWait, .waitingForSendMSD:
                return []
            }
        }
    }

    // MARK: - Endings

    private mutating func endCall(_ c: Call, _ ending: ECallReport.Ending, at now: ECallInstant, hangUp: Bool) -> [ECallAction] {
        var actions = cancel(Self.callTimers + [.t2])
        if hangUp { actions.append(.hangUp) }
        actions.append(.report(ECallReport(
            kind: c.kind, ending: ending, attempts: c.attempts, msdAcknowledged: c.msdAcknowledged,
            lastMessageIdentifier: c.messageIdentifier, msdTimestamp: c.msdTimestamp,
            startedAt: c.startedAt, endedAt: now
        )))
        var last = c
        last.redialDeadline = nil
        state = .callbackWindow(Window(clearedAt: now, last: last))
        actions.append(start(.t9, configuration.t9Ms))
        if configuration.eCallOnly { actions.append(start(.t10, configuration.t10Ms)) }
        actions.append(.phaseChanged(.callbackWindow))
        return actions
    }

    /// A callback ended: back to the window, whose T9 kept running.
    private mutating func endCallback(_ c: Call, at now: ECallInstant) -> [ECallAction] {
        var actions = cancel(Self.callTimers)
        var last = c
        last.isCallback = false
        let t9Running = generations[.t9] != nil
        if !t9Running && !configuration.eCallOnly {
            // T9 ran out during the callback.
            state = .idle
            actions.append(.phaseChanged(.idle))
            return actions
        }
        if !t9Running && configuration.eCallOnly && generations[.t10] == nil {
            state = .idle
            actions += [.deregisterFromNetwork, .phaseChanged(.idle)]
            return actions
        }
        state = .callbackWindow(Window(clearedAt: now, t9Expired: !t9Running, last: last))
        actions.append(.phaseChanged(.callbackWindow))
        return actions
    }
}
