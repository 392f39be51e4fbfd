import ECallLink
import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// The eCall, on its own path: triggers come straight from the CAN reader thread (crash,
/// SOS) or from tcuctl; the state machine decides; the link to the network is its own TCP
/// connection. Nothing here waits on the disk, the backend link, an account, a licence or
/// the privacy mode.
public final class ECallService: Service, Sendable {
    enum Input: Sendable {
        case crash(utc: UInt32)
        case sos(utc: UInt32)
        case test(utc: UInt32)
        case cancel(reply: Reply)
        case link(ECallLinkEvent)
        case timer(ECallTimerID)
        /// Ignition on (true) or off.
        case ignition(Bool)
        /// Time to run (or re-run) the self-test.
        case selfTest(generation: Int)
        /// Every few seconds: keeps the journal's time fresh during a long call, so that a
        /// restart measures the 120 s redial window from (about) the moment the daemon died.
        case tick
        /// The daemon is asked to stop: at once when no call is in progress, otherwise when it ends.
        case stop
        /// Stop now (a second SIGTERM, or the grace time is over): the journal keeps the call.
        case stopNow
        /// The watchdog asks whether the loop still turns.
        case probe
    }

    static let journalRefreshSeconds: Int64 = 5

    /// A second termination signal: a stop that waits for the eCall in progress to end stops
    /// now instead (the journal keeps the call for the next start).
    public func stopNow() { input.yield(.stopNow) }

    /// Asks the event loop to show it turns (it beats its `LoopMonitor` when it takes this).
    public func probe() { input.yield(.probe) }

    /// A control request's answer, filled by the service loop.
    typealias Reply = OneShot<ECallRejection?>

    /// What `tcuctl status` shows of the eCall.
    struct Status: Sendable {
        var phase = ECallPhase.idle
        var kind: ECallKind?
        var lastReport: ECallReport?
        var lastMSD: String?
        var triggers = 0
        var selfTest: ECallSelfTest?
        /// The call and MSD identifier that went with the set-up (NG-eCall's INVITE): the
        /// machine's transmission of that same MSD is not built or sent again.
        var msdWithSetup: (call: Int, messageIdentifier: Int)?
    }

    /// The self-test waits this long after ignition-on, so the airbag controller's first
    /// frames have arrived, and repeats this often while a check fails.
    static let selfTestSettleMs: Int64 = 2_000
    static let selfTestRetryMs: Int64 = 5_000

    private let machineConfig: ECallConfiguration
    private let bus: VehicleBusService
    private let link: any ECallTransport
    private let logger: Logger
    private let inputs: AsyncStream<Input>
    private let input: AsyncStream<Input>.Continuation
    private let status = Mutex(Status())
    private let monotonic: @Sendable () -> ECallInstant
    private let utcNow: @Sendable () -> UInt32
    /// The last three fixes (filled by the GNSS service); only read at a trigger.
    public let positions = Mutex(RecentPositions())
    /// Whether a GNSS service feeds `positions` (the self-test's GNSS check).
    let gnssFitted: Bool
    /// How long a stop waits for the call in progress to end.
    let shutdownGraceMs: Int64
    /// N1 and N2 lie at least this far apart.
    static let recentSpacingMs: Int64 = 3_000
    /// The self-test's GNSS check passes with a fix at most this old.
    static let gnssFreshMs: Int64 = 3_000

    /// A fix from the GNSS service: the only way positions come in (they never go out but
    /// into an MSD).
    public func record(_ fix: PositionFix) {
        positions.withLock { $0.record(fix, spacingMs: Self.recentSpacingMs) }
    }
    /// The phase, for the unit's status frame on CAN.
    public let phase = Atomic<UInt8>(0)
    /// True while a self-test check fails: the eCall lamp shows red.
    public let warning = Atomic<Bool>(false)

    private let journal: ECallJournalStore?
    /// The crash and SOS latches, shared with the watcher on the CAN reader thread.
    private let latch: TriggerLatch
    /// Where a finished call's report goes (the outbox); handed over, never awaited.
    private let onReport: @Sendable (ECallReport) -> Void
    /// The car's loop watch (the watchdog's): the loop beats when probed.
    private let monitor: LoopMonitor
    /// The thread the loop runs on (nil: the cooperative pool).
    private let executor: ThreadExecutor?

    public init(
        configuration: ECallConfiguration, linkEndpoint: TCPEndpoint, bus: VehicleBusService, profile: VehicleProfile,
        logger: Logger, monotonic: @escaping @Sendable () -> ECallInstant, utcNow: @escaping @Sendable () -> UInt32,
        journalPath: String? = nil, transport: ((@escaping @Sendable (ECallLinkEvent) -> Void) -> any ECallTransport)? = nil,
        gnssFitted: Bool = false, shutdownGraceMs: Int64 = 60_000, monitor: LoopMonitor = LoopMonitor(),
        executor: ThreadExecutor? = nil, onReport: @escaping @Sendable (ECallReport) -> Void = { _ in }
    ) {
        self.executor = executor
        self.monitor = monitor
        self.onReport = onReport
        self.shutdownGraceMs = shutdownGraceMs
        self.gnssFitted = gnssFitted
        journal = journalPath.map { ECallJournalStore(path: $0, logger: logger) }
        machineConfig = configuration
        self.bus = bus
        self.logger = logger
        self.monotonic = monotonic
        self.utcNow = utcNow
        (inputs, input) = AsyncStream<Input>.makeStream(bufferingPolicy: .unbounded)
        let continuation = input
        // Watched here, before any service runs: a crash in the first frames is not missed.
        // The watcher runs on the CAN reader thread and only hands the trigger over.
        let latch = TriggerLatch()
        let utc = utcNow
        let input = continuation
        bus.watch([.crashDetected, .sosButton, .ignitionOn]) { changes in
            // Latched, so that a flag that stays set (or comes back after the bus went quiet)
            // triggers once per event.
            for c in changes {
                let on = c.new?.flag
                switch c.quantity {
                case .crashDetected:
                    let fire = latch.state.withLock { l -> Bool in
                        if on == false { l.crash = false }
                        guard on == true, !l.crash else { return false }
                        l.crash = true
                        return true
                    }
                    if fire { input.yield(.crash(utc: utc())) }
                case .sosButton:
                    let fire = latch.state.withLock { l -> Bool in
                        if on == false { l.sos = false }
                        guard on == true, !l.sos else { return false }
                        l.sos = true
                        return true
                    }
                    if fire { input.yield(.sos(utc: utc())) }
                case .ignitionOn:
                    if let on, c.old?.flag != on { input.yield(.ignition(on)) }
                default:
                    break
                }
            }
        }
        self.latch = latch
        let deliver: @Sendable (ECallLinkEvent) -> Void = { continuation.yield(.link($0)) }
        link = transport?(deliver) ?? ECallLinkClient(endpoint: linkEndpoint, vin: profile.vin.value, deliver: deliver)
        self.profile = profile
    }

    private let profile: VehicleProfile

    // MARK: - Requests from tcuctl

    public func requestTest() { input.yield(.test(utc: utcNow())) }

    /// Why a cancel was refused.
    public enum CancelRefusal: Error, Equatable, CustomStringConvertible {
        /// The machine's verdict (a call that is not a manual one still pending, ...).
        case rejected(ECallRejection)
        /// The eCall's loop did not answer in time.
        case noAnswer
        public var description: String {
            switch self {
            case .rejected(let r): r.rawValue
            case .noAnswer: "the eCall service did not answer"
            }
        }
    }

    /// Cancels a pending manual call; the machine's verdict.
    public func requestCancel(timeoutMs: Int64 = 1000) -> Result<Void, CancelRefusal> {
        let reply = Reply()
        input.yield(.cancel(reply: reply))
        guard let verdict = reply.wait(timeoutMs: timeoutMs) else { return .failure(.noAnswer) }
        return verdict.map { .failure(.rejected($0)) } ?? .success(())
    }

    public var linkIsAttached: Bool { link.isAttached }

    /// The machine's phase as the service last saw it.
    public var phaseNow: ECallPhase { status.withLock { $0.phase } }

    /// What the eCall is doing, for the status (`tcuctl ecall status`, the menu).
    public func report() -> ECallStatusReport {
        let s = status.withLock { $0 }
        return ECallStatusReport(phase: s.phase, kind: s.kind, linkAttached: link.isAttached, triggers: s.triggers,
                                 recentPositions: positions.withLock { $0.count },
                                 scheduling: executor?.scheduling.description ?? "cooperative pool",
                                 lastMSD: s.lastMSD, selfTest: s.selfTest, lastCall: s.lastReport)
    }

    // MARK: - The loop

    public func run() async throws {
        guard let executor else { return await serve() }
        // The loop, its timers and what it awaits run on the eCall's own thread.
        await withTaskExecutorPreference(executor) { await self.serve() }
    }

    private func serve() async {
        // A journal left by a crash of the daemon: resume the call, or keep the callback window.
        var resumed: ECallJournal?
        if let journal, let j = journal.load() {
            if j.isExpired(nowUTC: Int64(utcNow())) {
                journal.perform(.delete)
                logger.notice("eCall journal older than 13 h deleted", metadata: ["ecall.journal": "\(journal.path)"])
            } else {
                resumed = j
            }
        }
        journal?.start()
        link.start()
        // A crash flag still set on the bus after a restart is the call being resumed.
        if resumed?.kind == .automatic { latch.state.withLock { $0.crash = true } }
        let input = self.input
        // A discarding group: each timer is a child task, and a finished child must not stay in
        // the group until someone awaits it (a plain TaskGroup kept every timer ever started:
        // memory that grew with each ignition cycle and journal refresh).
        await withDiscardingTaskGroup { group in
            var machine = ECallStateMachine(configuration: machineConfig)
            // The call the link events belong to: the last one dialled, or the PSAP's callback.
            var call = 0
            var dialled = 0
            var selfTestGeneration = 0
            var startedUTC = Int64(self.utcNow())
            var clearedUTC: Int64?
            var written: ECallJournal?
            self.after(Self.journalRefreshSeconds * 1000, .tick, group: &group)
            if let j = resumed {
                startedUTC = j.startedAtUTC
                clearedUTC = j.clearedAtUTC
                written = j
                self.logger.warning("resuming the eCall after a restart", metadata: [
                    "ecall.stage": "\(j.stage.rawValue)", "ecall.kind": "\(j.kind.rawValue)", "ecall.attempts": "\(j.attempts)",
                ])
                let step = machine.resume(from: j, at: self.monotonic(), nowUTC: Int64(self.utcNow()))
                self.carryOut(step, machine: &machine, call: &call, dialled: &dialled, now: self.monotonic(), group: &group)
                self.status.withLock { $0.phase = machine.phase; $0.kind = machine.activeKind }
            }
            var stopping = false
            var hurried = false
            await withGracefulShutdownHandler {
                events: for await event in self.inputs {
                    let now = self.monotonic()
                    var step = ECallStep.doNothing
                    switch event {
                    case .stop:
                        guard machine.phase.isCallInProgress, !hurried else { break events }
                        // A stop must not hang up on a person in need: the call goes on for up
                        // to the grace time, the bus and the link with it (they stop after us).
                        stopping = true
                        self.logger.notice("stopping once the eCall in progress ends", metadata: [
                            "ecall.state": "\(machine.phase)", "ecall.graceMs": "\(self.shutdownGraceMs)",
                        ])
                        self.after(self.shutdownGraceMs, .stopNow, group: &group)
                    case .stopNow where !stopping:
                        // A second signal that overtook the stop it follows: the stop ends at once.
                        hurried = true
                    case .stopNow:
                        self.logger.warning("stopping during the eCall: the journal lets the next start resume it",
                                            metadata: ["ecall.state": "\(machine.phase)"])
                        break events
                    case .crash(let utc):
                        self.logger.critical("crash detected: automatic eCall", metadata: ["ecall.trigger": "crash"])
                        self.status.withLock { $0.triggers += 1 }
                        step = machine.crashDetected(at: now, utc: utc)
                    case .sos(let utc):
                        self.logger.warning("SOS button pressed", metadata: ["ecall.trigger": "sos"])
                        self.status.withLock { $0.triggers += 1 }
                        step = machine.sosPressed(at: now, utc: utc)
                    case .test(let utc):
                        self.logger.notice("eCall test requested", metadata: ["ecall.trigger": "test"])
                        step = machine.testRequested(at: now, utc: utc)
                    case .cancel(let reply):
                        step = machine.cancelRequested(at: now)
                        reply.give(step.rejection)
                    case .timer(let id):
                        step = machine.timerExpired(id, at: now)
                    case .link(let l):
                        step = self.linkEvent(l, machine: &machine, call: &call, now: now)
                        // A failing self-test is re-checked as soon as the network is back.
                        if case .attached = l, let t = self.status.withLock({ $0.selfTest }), !t.failures.isEmpty {
                            _ = self.runSelfTest()
                        }
                    case .ignition(let on):
                        // A new ignition cycle starts a new self-test; ignition off ends it.
                        selfTestGeneration += 1
                        if on {
                            self.after(Self.selfTestSettleMs, .selfTest(generation: selfTestGeneration), group: &group)
                        } else {
                            self.warning.store(false, ordering: .relaxed)
                        }
                    case .probe:
                        if self.monitor.mustHang(.eCall) {
                            // Fault injection: stuck in an await, as a loop waiting on something
                            // that never comes would be, until the daemon stops.
                            try? await gracefulShutdown()
                        }
                        self.monitor.beat(.eCall)
                    case .tick:
                        self.after(Self.journalRefreshSeconds * 1000, .tick, group: &group)
                    case .selfTest(let generation):
                        guard generation == selfTestGeneration else { break }
                        let result = self.runSelfTest()
                        if !result.failures.isEmpty {
                            self.after(Self.selfTestRetryMs, .selfTest(generation: generation), group: &group)
                        }
                    }
                    self.carryOut(step, machine: &machine, call: &call, dialled: &dialled, now: now, group: &group)
                    self.status.withLock { $0.phase = machine.phase; $0.kind = machine.activeKind }
                    // The journal follows the machine, after the step is carried out (the call never waits for it).
                    if let journal = self.journal {
                        let nowUTC = Int64(self.utcNow())
                        switch event {
                        case .crash, .sos, .test: if written == nil || written?.stage == .callbackWindow { startedUTC = nowUTC }
                        default: break
                        }
                        // The clear-down time holds through a callback; a new call forgets it.
                        let stage = machine.journal(nowUTC: nowUTC, startedAtUTC: startedUTC, clearedAtUTC: nowUTC)?.stage
                        clearedUTC = stage == .callbackWindow ? (clearedUTC ?? nowUTC) : nil
                        if let n = machine.journal(nowUTC: nowUTC, startedAtUTC: startedUTC, clearedAtUTC: clearedUTC) {
                            let changed = written.map { $0.ignoringWriteTime != n.ignoringWriteTime } ?? true
                            let stale = n.stage == .inCall && nowUTC - (written?.writtenAtUTC ?? 0) >= Self.journalRefreshSeconds
                            if changed || stale {
                                written = n
                                journal.submit(.write(n))
                            }
                        } else if written != nil {
                            written = nil
                            journal.submit(.delete)
                        }
                    }
                    if stopping, !machine.phase.isCallInProgress {
                        self.logger.notice("the eCall ended; stopping")
                        break events
                    }
                }
            } onGracefulShutdown: {
                input.yield(.stop)
            }
            group.cancelAll()
        }
        journal?.shutdown()
        link.shutdown()
    }

    private func linkEvent(_ e: ECallLinkEvent, machine: inout ECallStateMachine, call: inout Int, now: ECallInstant) -> ECallStep {
        switch e {
        case .attached:
            logger.info("eCall link attached to the network")
            return machine.networkAvailable(at: now)
        case .detached(let reason):
            logger.warning("eCall link lost", metadata: ["ecall.reason": "\(reason)"])
            return machine.networkLost(at: now)
        case .malformed(let text):
            logger.error("malformed message on the eCall link", metadata: ["ecall.message": "\(text)"])
            return .doNothing
        case .notice(let text):
            logger.notice("eCall transport", metadata: ["ecall.transport": "\(text)"])
            return .doNothing
        case .received(let m):
            let before = call
            let step = machine.networkMessage(m, current: &call, at: now)
            if case .setup(let c, let outcome) = m, c == before {
                logger.info("eCall setup", metadata: ["ecall.call": "\(c)", "ecall.outcome": "\(outcome.rawValue)"])
            }
            if case .incoming(let c) = m, step != .doNothing { logger.notice("the PSAP calls back", metadata: ["ecall.call": "\(c)"]) }
            return step
        }
    }

    /// Carries out what the machine decided, then what follows from it (a dial that fails at
    /// once for want of network is the machine's next event, carried out in turn).
    private func carryOut(_ step: ECallStep, machine: inout ECallStateMachine, call: inout Int, dialled: inout Int, now: ECallInstant,
                          group: inout DiscardingTaskGroup) {
        var next: ECallStep? = step
        while let s = next {
            next = nil
            // A stopped timer that still fires is stale: the machine ignores it.
            for t in s.startTimers { after(t.afterMs, .timer(t.id), group: &group) }
            for a in s.line {
                if let followUp = perform(a, machine: &machine, call: &call, dialled: &dialled, now: now) { next = followUp }
            }
            if let r = s.report {
                status.withLock { $0.lastReport = r }
                onReport(r)
                logger.notice("eCall ended", metadata: [
                    "ecall.kind": "\(r.kind.rawValue)", "ecall.ending": "\(r.ending.rawValue)", "ecall.attempts": "\(r.attempts)",
                    "ecall.msdAcknowledged": "\(r.msdAcknowledged)",
                ])
            }
            if let p = s.phase {
                phase.store(Self.canState(p), ordering: .relaxed)
                logger.info("eCall phase", metadata: ["ecall.state": "\(p.rawValue)"])
            }
            if let r = s.rejection {
                logger.notice("eCall request refused", metadata: ["ecall.rejection": "\(r.rawValue)"])
            }
        }
    }

    /// Does one thing on the line; returns the machine's step when it failed at once.
    private func perform(_ a: ECallLineAction, machine: inout ECallStateMachine, call: inout Int, dialled: inout Int,
                         now: ECallInstant) -> ECallStep? {
        switch a {
        case .placeCall(let d):
            // Call numbers never repeat, so a late message for an earlier attempt is ignored.
            dialled = max(dialled, call) + 1
            call = dialled
            logger.notice("placing the eCall", metadata: ["ecall.number": "\(d.number)", "ecall.attempt": "\(d.attempt)", "ecall.call": "\(call)"])
            // NG-eCall's INVITE carries the MSD: built now, with the call's frozen timestamp
            // (none after the PSAP acknowledged it: it asks again if it wants).
            var msd: [UInt8] = []
            if link.carriesMSDInSetup, !d.msdAcknowledged {
                do {
                    msd = try buildMSD(messageIdentifier: d.messageIdentifier, timestamp: d.msdTimestamp, kind: d.kind, now: now).encode()
                } catch {
                    logger.critical("the MSD could not be encoded", metadata: ["error": "\(error)"])
                }
            }
            switch link.dial(call: call, number: d.number, kind: d.kind, msd: msd) {
            case .noNetwork:
                logger.warning("no network for the eCall attempt", metadata: ["ecall.attempt": "\(d.attempt)"])
                return machine.callFailed(.noNetwork, at: now)
            case .placed:
                break
            case .placedWithMSD:
                let sent = (call: call, messageIdentifier: d.messageIdentifier)
                status.withLock { $0.lastMSD = hexBytes(msd); $0.msdWithSetup = sent }
                logger.notice("MSD sent with the call's set-up", metadata: [
                    "ecall.messageIdentifier": "\(d.messageIdentifier)", "ecall.msd": "\(hexBytes(msd))",
                ])
            }
        case .sendInitiation:
            link.send(.initiation(call: call))
        case .stopInitiation:
            break
        case .transmitMSD(let id, let timestamp, let kind):
            if let s = status.withLock({ $0.msdWithSetup }), s.call == call, s.messageIdentifier == id { break }
            let msd = buildMSD(messageIdentifier: id, timestamp: timestamp, kind: kind, now: now)
            do {
                let bytes = try msd.encode()
                link.send(.msd(call: call, messageIdentifier: id, bytes: bytes))
                status.withLock { $0.lastMSD = hexBytes(bytes) }
                logger.notice("MSD sent", metadata: ["ecall.messageIdentifier": "\(id)", "ecall.msd": "\(hexBytes(bytes))"])
            } catch {
                logger.critical("the MSD could not be encoded", metadata: ["error": "\(error)"])
            }
        case .switchToVoice(let failure):
            logger.notice("eCall voice", metadata: ["ecall.msdFailure": "\(failure?.rawValue ?? "none")"])
        case .hangUp:
            link.send(.hangUp(call: call))
        case .answerIncomingCall:
            link.send(.answer(call: call))
        case .deregisterFromNetwork:
            link.send(.deregister)
        }
        return nil
    }

    /// Feeds `event` back into the loop after `ms`.
    private func after(_ ms: Int64, _ event: Input, group: inout DiscardingTaskGroup) {
        let input = self.input
        group.addTask {
            do { try await Task.sleep(for: .milliseconds(ms)) } catch { return }
            input.yield(event)
        }
    }

    private func runSelfTest() -> ECallSelfTest {
        let now = monotonic()
        let gnssFix = gnssFitted ? positions.withLock { $0.newestTime.map { now - $0 <= Self.gnssFreshMs } ?? false } : nil
        let result = ECallSelfTest(linkAttached: link.isAttached, crashSignalFresh: bus.value(.crashDetected) != nil, gnssFix: gnssFix)
        let before = status.withLock { s in defer { s.selfTest = result }; return s.selfTest }
        let failing = !result.failures.isEmpty
        warning.store(failing, ordering: .relaxed)
        if failing {
            logger.warning("eCall self-test failed", metadata: ["ecall.selfTest.failed": "\(result.failures.map(\.rawValue).joined(separator: ","))"])
        } else if before != result {
            logger.notice("eCall self-test passed", metadata: ["ecall.selfTest": "\(result.json.text)"])
        }
        return result
    }

    private func buildMSD(messageIdentifier: Int, timestamp: UInt32, kind: ECallKind, now: ECallInstant) -> MSD {
        let seats: [VehicleQuantity] = [.occupiedDriver, .occupiedPassenger, .occupiedRearLeft, .occupiedRearCenter, .occupiedRearRight]
        let data = MSDVehicleData(profile: profile, occupiedSeats: seats.map { bus.value($0)?.flag })
        return MSDBuilder().build(vehicle: data, kind: kind, messageIdentifier: messageIdentifier, timestamp: timestamp,
                                  fixes: positions.withLock { $0.fixesForTrigger() }, now: now)
    }

    /// TCU_eCall_State values of the DBC.
    static func canState(_ p: ECallPhase) -> UInt8 {
        switch p {
        case .idle: 0
        case .manualPending, .dialling, .redialWait: 2
        case .waitingForSendMSD, .transmittingMSD, .waitingForALACK: 3
        case .voice: 4
        case .callbackWindow: 5
        }
    }
}

/// Whether the crash flag and the SOS button have already triggered (set until they clear).
final class TriggerLatch: Sendable {
    let state = Mutex((crash: false, sos: false))
}

/// The eCall's status as the control socket shows it; `json` is its wire form.
public struct ECallStatusReport: Sendable {
    public var phase: ECallPhase
    public var kind: ECallKind?
    public var linkAttached: Bool
    public var triggers: Int
    public var recentPositions: Int
    /// Where the loop runs: its own thread's policy, or the shared pool.
    public var scheduling: String
    public var lastMSD: String?
    public var selfTest: ECallSelfTest?
    public var lastCall: ECallReport?

    /// A self-test check fails: the warning lamp is on.
    public var warning: Bool? { selfTest.map { !$0.failures.isEmpty } }

    public var json: JSON {
        var o: [(String, JSON)] = [
            ("phase", .string(phase.rawValue)), ("linkAttached", .bool(linkAttached)), ("triggers", .number(Double(triggers))),
            ("recentPositions", .number(Double(recentPositions))), ("scheduling", .string(scheduling)),
        ]
        if let kind { o.append(("kind", .string(kind.rawValue))) }
        if let lastMSD { o.append(("lastMSD", .string(lastMSD))) }
        if let selfTest, let warning {
            o.append(("selfTest", selfTest.json))
            o.append(("warning", .bool(warning)))
        }
        if let r = lastCall {
            o.append(("lastCall", .object([
                ("kind", .string(r.kind.rawValue)), ("ending", .string(r.ending.rawValue)),
                ("attempts", .number(Double(r.attempts))), ("msdAcknowledged", .bool(r.msdAcknowledged)),
                ("lastMessageIdentifier", .number(Double(r.lastMessageIdentifier))),
                ("durationMs", .number(Double(r.endedAt - r.startedAt))),
            ])))
        }
        return .object(o)
    }
}
