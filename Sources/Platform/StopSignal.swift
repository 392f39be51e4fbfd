import Synchronization

/// A stop, asked for once and seen by a thread's loop: `isSet` at each turn, and `wait` for a
/// back-off or an idle tick that ends at once when the stop comes. The one way a loop on a
/// `DedicatedThread` is told to end.
public final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    private let shot = OneShot<Bool>()

    public init() {}

    /// Asks for the stop (from any thread; again is harmless).
    public func set() {
        flag.store(true, ordering: .releasing)
        shot.give(true)
    }

    public var isSet: Bool { flag.load(ordering: .acquiring) }

    /// Waits up to `timeoutMs`, or until the stop; true when stopped.
    @discardableResult
    public func wait(timeoutMs: Int64) -> Bool { shot.wait(timeoutMs: timeoutMs) != nil }

    /// Waits for the stop, however long it takes.
    public func waitForever() {
        while !wait(timeoutMs: 86_400_000) {}
    }
}
