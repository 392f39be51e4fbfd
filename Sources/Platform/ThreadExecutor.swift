#if canImport(Glibc)
import Glibc
#endif

/// A task executor with a thread of its own, for async code that must not wait behind the
/// cooperative pool's other work: the eCall. `withTaskExecutorPreference(executor) { ... }`
/// runs a task and its child tasks (timers included) there; what they await comes back there.
///
/// The thread may run at a real-time priority (SCHED_FIFO), so that a crash is dialled at once
/// while other processes load every core: it preempts normal threads the moment it has work,
/// and sleeps otherwise. Raising it needs CAP_SYS_NICE or an RLIMIT_RTPRIO at least as high
/// (systemd: `LimitRTPRIO=`; `RestrictRealtime=` must be off); without either it runs at normal
/// priority and `scheduling` says why. Lives as long as the process (a fleet shares one).
public final class ThreadExecutor: TaskExecutor, @unchecked Sendable {
    // `jobs` is read and written under `mutex` only; `work` signals it.
    private var jobs: [UnownedJob] = []
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let work = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private let started = OneShot<Scheduling>()

    /// What the thread runs at: `realtime` with its priority, or why it could not be raised.
    public var scheduling: Scheduling { started.wait(timeoutMs: 86_400_000) ?? .normal }

    public enum Scheduling: Sendable, Equatable, CustomStringConvertible {
        case normal
        case realtime(priority: Int32)
        /// Asked for a real-time priority and refused (errno's words).
        case refused(priority: Int32, reason: String)

        public var description: String {
            switch self {
            case .normal: "normal"
            case .realtime(let p): "SCHED_FIFO \(p)"
            case .refused(let p, let reason): "normal (SCHED_FIFO \(p) refused: \(reason))"
            }
        }
    }

    /// `realtimePriority`: 1 to 99 for SCHED_FIFO, nil for the normal policy. The thread runs
    /// for the rest of the process.
    public init(name: String, realtimePriority: Int32? = nil) {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(work, nil)
        guard DedicatedThread.detached(name: name, { [self] in
            started.give(realtimePriority.map(raiseCallingThread(toRealtimePriority:)) ?? .normal)
            loop()
        }) else { preconditionFailure("cannot start the thread \(name)") }
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        pthread_mutex_lock(mutex)
        jobs.append(job)
        pthread_cond_signal(work)
        pthread_mutex_unlock(mutex)
    }

    private func loop() {
        var batch: [UnownedJob] = []
        while true {
            pthread_mutex_lock(mutex)
            while jobs.isEmpty { pthread_cond_wait(work, mutex) }
            swap(&batch, &jobs)
            pthread_mutex_unlock(mutex)
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
            batch.removeAll(keepingCapacity: true)
        }
    }
}

/// Puts the calling thread under SCHED_FIFO at `priority` (1 to 99).
public func raiseCallingThread(toRealtimePriority priority: Int32) -> ThreadExecutor.Scheduling {
    var parameters = sched_param(sched_priority: priority)
    let rc = pthread_setschedparam(pthread_self(), Int32(SCHED_FIFO), &parameters)
    guard rc == 0 else { return .refused(priority: priority, reason: String(cString: strerror(rc))) }
    return .realtime(priority: priority)
}
