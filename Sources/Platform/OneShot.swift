#if canImport(Glibc)
import Glibc
#endif

/// A reply that one side gives once and another waits for, with a deadline: a blocking caller
/// (the control socket's thread) asking a service (an actor, a thread) for an answer. No
/// polling: the waiter sleeps on a condition variable until the answer is given or the time is
/// up. The first `give` wins; later ones are ignored.
public final class OneShot<Value: Sendable>: @unchecked Sendable {
    // The value is read and written under `mutex` only; `ready` signals it.
    // (pthread objects must not move: they live in memory of their own.)
    private var value: Value?
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let ready = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // Deadlines on the monotonic clock: a wall clock set back by GPS must not stretch a wait.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(ready, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(ready)
        pthread_mutex_destroy(mutex)
        ready.deallocate()
        mutex.deallocate()
    }

    /// Gives the answer and wakes the waiter; false when it had been given already.
    @discardableResult
    public func give(_ v: Value) -> Bool {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        guard value == nil else { return false }
        value = v
        pthread_cond_broadcast(ready)
        return true
    }

    /// The answer, waiting up to `timeoutMs` for it; nil when the time ran out first.
    public func wait(timeoutMs: Int64) -> Value? {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let ms = max(0, min(timeoutMs, 86_400_000))
        var deadline = timespec(tv_sec: now.tv_sec + Int(ms / 1000), tv_nsec: now.tv_nsec + Int(ms % 1000) * 1_000_000)
        if deadline.tv_nsec >= 1_000_000_000 {
            deadline.tv_sec += 1
            deadline.tv_nsec -= 1_000_000_000
        }
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while value == nil {
            if pthread_cond_timedwait(ready, mutex, &deadline) == ETIMEDOUT { break }
        }
        return value
    }

    /// The answer if it was given, without waiting.
    public var current: Value? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return value
    }
}
