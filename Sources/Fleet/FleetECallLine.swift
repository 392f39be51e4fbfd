import CPlatform
#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization
import TelematicsCore

/// The fleet's eCall, on its own thread as a unit's is: every car's EN 16062 machine, the
/// airbag line that fires the crashes the scenarios schedule, and a simulated network whose
/// PSAP answers, takes the MSD, acknowledges it and clears down. Nothing of it waits for the
/// broker connections, the outbox or the disk: a finished call's report is handed to the
/// fleet's loop (`onReport`), which sends it for a registered car.
public final class FleetECallLine: @unchecked Sendable {
    // The machines and the calls in progress are the line thread's alone.
    private var machines: [ECallStateMachine]
    private var calls: [(dueMs: Int64, slot: Int, stage: Int)] = []
    private let bell: Int32
    private let crashes = Mutex<[(slot: Int, atNs: Int64)]>([])
    private let stopping = Atomic<Bool>(false)
    private let clocks: Clocks
    private let onReport: @Sendable (Int, ECallReport) -> Void
    private let figures = Mutex<(dials: Int, crashToDialUs: [Int64])>((0, []))
    /// The PSAP's answer after the dial, and each of its later steps.
    public var answerAfterMs: Int64 = 500
    public var stepMs: Int64 = 100

    public init(cars: Int, clocks: Clocks = .system, onReport: @escaping @Sendable (Int, ECallReport) -> Void) throws(SystemError) {
        machines = Array(repeating: ECallStateMachine(), count: cars)
        self.clocks = clocks
        self.onReport = onReport
        bell = try syscall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    deinit { close(bell) }

    /// From any thread (the airbag line): car `slot`'s airbag fired now.
    public func crash(slot: Int) {
        let now = clocks.monotonic().nanoseconds
        crashes.withLock { $0.append((slot, now)) }
        ring()
    }

    public func stop() {
        stopping.store(true, ordering: .relaxed)
        ring()
    }

    /// Calls dialled, and each crash's time to its dial (µs).
    public var statistics: (dials: Int, crashToDialUs: [Int64]) { figures.withLock { $0 } }

    private func ring() {
        var one: UInt64 = 1
        _ = write(bell, &one, 8)
    }

    /// Runs the line until `stop`: crashes at once, the PSAP's steps when due.
    public func run() {
        while !stopping.load(ordering: .relaxed) {
            let now = clocks.monotonicMs
            let wait = calls.first.map { max(0, min(1_000, $0.dueMs - now)) } ?? 1_000
            var pfd = pollfd(fd: bell, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, Int32(wait))
            var drained: UInt64 = 0
            _ = read(bell, &drained, 8)
            for c in crashes.withLock({ q in defer { q.removeAll() }; return q }) where machines.indices.contains(c.slot) {
                let at = clocks.monotonicMs
                let step = machines[c.slot].crashDetected(at: at, utc: UInt32(clamping: clocks.wallMs / 1_000))
                // The dial is handed to the line here: the crash-to-dial time is measured to this point.
                if step.line.contains(where: { if case .placeCall = $0 { true } else { false } }) {
                    let us = (clocks.monotonic().nanoseconds - c.atNs) / 1_000
                    figures.withLock { $0.dials += 1; $0.crashToDialUs.append(us) }
                    schedule((at + answerAfterMs, c.slot, 0))
                }
            }
            progress(clocks.monotonicMs)
        }
    }

    private func schedule(_ c: (dueMs: Int64, slot: Int, stage: Int)) {
        let i = calls.firstIndex { $0.dueMs > c.dueMs } ?? calls.endIndex
        calls.insert(c, at: i)
    }

    /// The simulated PSAP: answers, asks for the MSD, the LL-ACK and AL-ACK with clear-down.
    private func progress(_ now: Int64) {
        while let c = calls.first, c.dueMs <= now {
            calls.removeFirst()
            let step: ECallStep
            switch c.stage {
            case 0: step = machines[c.slot].callAnswered(at: now)
            case 1: step = machines[c.slot].sendMSDReceived(at: now)
            case 2: step = machines[c.slot].llAckReceived(at: now)
            case 3: step = machines[c.slot].alAckReceived(clearDown: true, at: now)
            default: step = machines[c.slot].callCleared(at: now)
            }
            if let report = step.report {
                onReport(c.slot, report)
            } else if c.stage < 4 {
                schedule((now + stepMs, c.slot, c.stage + 1))
            }
        }
    }
}
