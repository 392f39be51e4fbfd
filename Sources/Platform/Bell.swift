import Synchronization

/// Tells one async waiter that something it watches has changed, from any thread (the CAN
/// reader's watchers), so that it looks again instead of polling; the wait has a deadline.
///
/// Take `rung` before looking at the watched state, then `wait(after:)` with it: a ring that
/// came in between returns the wait at once, so none is missed. One waiter at a time.
public final class Bell: Sendable {
    private struct State {
        var rung: UInt64 = 0
        var waiter: (id: UInt64, continuation: CheckedContinuation<Void, Never>)?
        var nextID: UInt64 = 0
        /// A wait whose time ran out (or whose task was cancelled) before it began waiting.
        var releasedEarly: UInt64?
    }
    private let state = Mutex(State())

    public init() {}

    /// Wakes the waiter, if any, and counts the ring for one about to wait.
    public func ring() {
        let waiter = state.withLock { s in
            s.rung &+= 1
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.continuation.resume()
    }

    /// The rings so far.
    public var rung: UInt64 { state.withLock { $0.rung } }

    /// Returns at the first ring after `seen` (at once when one came already), or when
    /// `timeoutMs` have passed, or when the task is cancelled.
    public func wait(after seen: UInt64, timeoutMs: Int64) async {
        let id = state.withLock { s in
            s.nextID &+= 1
            return s.nextID
        }
        let timer = Task {
            do { try await Task.sleep(for: .milliseconds(max(0, timeoutMs))) } catch {}
            self.release(id)
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let already = state.withLock { s -> Bool in
                    if s.rung != seen || s.releasedEarly == id { return true }
                    s.waiter = (id, c)
                    return false
                }
                if already { c.resume() }
            }
        } onCancel: {
            self.release(id)
        }
        timer.cancel()
    }

    /// Ends wait `id` if it is still waiting (its time is up, or its task was cancelled).
    private func release(_ id: UInt64) {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let w = s.waiter, w.id == id else {
                s.releasedEarly = id
                return nil
            }
            s.waiter = nil
            return w.continuation
        }
        waiter?.resume()
    }
}
