import Synchronization

/// Tells async waiters that something they watch has changed, from any thread (the CAN
/// reader's watchers, the backend's MQTT thread), so that they look again instead of polling;
/// each wait has a deadline.
///
/// Take `rung` before looking at the watched state, then `wait(after:)` with it: a ring that
/// came in between returns the wait at once, so none is missed. A ring wakes every waiter.
public final class Bell: Sendable {
    private struct State {
        var rung: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var nextID: UInt64 = 0
        /// The waits in progress, and those among them whose time ran out (or whose task was
        /// cancelled) before they began waiting.
        var active: Set<UInt64> = []
        var releasedEarly: Set<UInt64> = []
    }
    private let state = Mutex(State())

    public init() {}

    /// Wakes the waiter, if any, and counts the ring for one about to wait.
    public func ring() {
        let waiters = state.withLock { s in
            s.rung &+= 1
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume() }
    }

    /// The rings so far.
    public var rung: UInt64 { state.withLock { $0.rung } }

    /// Returns at the first ring after `seen` (at once when one came already), or when
    /// `timeoutMs` have passed, or when the task is cancelled.
    public func wait(after seen: UInt64, timeoutMs: Int64) async {
        let id = state.withLock { s in
            s.nextID &+= 1
            s.active.insert(s.nextID)
            return s.nextID
        }
        let timer = Task {
            do { try await Task.sleep(for: .milliseconds(max(0, timeoutMs))) } catch {}
            self.release(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let already = state.withLock { s -> Bool in
                    if s.rung != seen || s.releasedEarly.contains(id) { return true }
                    s.waiters[id] = c
                    return false
                }
                if already { c.resume() }
            }
        } onCancel: {
            self.release(id)
        }
        timer.cancel()
        state.withLock { s in
            s.active.remove(id)
            s.releasedEarly.remove(id)
        }
    }

    /// Ends wait `id` if it is still waiting (its time is up, or its task was cancelled).
    private func release(_ id: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let c = s.waiters.removeValue(forKey: id) else {
                // Not waiting yet: the wait returns as soon as it begins. (A wait already over
                // is not remembered.)
                if s.active.contains(id) { s.releasedEarly.insert(id) }
                return nil
            }
            return c
        }
        waiter?.resume()
    }
}
