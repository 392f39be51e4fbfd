import Synchronization
import TelematicsCore
import VehicleBus

/// Whether the daemon's main loops are turning. Each loop beats at least every few hundred
/// milliseconds while it is healthy (an idle loop still wakes to beat); the systemd watchdog
/// is fed only while every loop has beaten recently.
///
/// For tests and benches, `[control] fault-injection = true` lets the control socket make a
/// loop hang (`tcuctl` has no command for it): the loop then stops beating and blocks, as a
/// loop stuck in a driver or a lock would.
public final class LoopMonitor: Sendable {
    /// The loops, in the order they are reported.
    public enum Loop: String, Sendable, CaseIterable {
        case canReader = "can-reader"
        case outbox
        case eCall = "ecall"
        case control
    }

    /// The daemon's loops report here.
    public static let shared = LoopMonitor(clock: { monotonicNow().nanoseconds / 1_000_000 })

    private struct Loops {
        var beats: [Int64]
        var hangs: [Bool]
    }
    private let loops: Mutex<Loops>
    private let clock: @Sendable () -> Int64

    /// `clock` is in milliseconds, monotonic.
    public init(clock: @escaping @Sendable () -> Int64) {
        self.clock = clock
        let now = clock()
        loops = Mutex(Loops(beats: Loop.allCases.map { _ in now }, hangs: Loop.allCases.map { _ in false }))
    }

    private func index(_ loop: Loop) -> Int { Loop.allCases.firstIndex(of: loop)! }

    /// The loop is alive and turning.
    public func beat(_ loop: Loop) {
        let now = clock(), i = index(loop)
        loops.withLock { $0.beats[i] = now }
    }

    /// The loops that have not beaten for more than `silenceMs`.
    public func stalled(silenceMs: Int64) -> [Loop] {
        let now = clock()
        let beats = loops.withLock { $0.beats }
        return Loop.allCases.filter { now - beats[index($0)] > silenceMs }
    }

    /// Fault injection: from now on the loop hangs at its next turn.
    public func injectHang(_ loop: Loop) {
        let i = index(loop)
        loops.withLock { $0.hangs[i] = true }
    }

    /// True when the loop must hang (fault injection).
    public func mustHang(_ loop: Loop) -> Bool {
        let i = index(loop)
        return loops.withLock { $0.hangs[i] }
    }

    /// A thread loop's turn: beats, or, when a hang was injected, blocks until `stopping` says so
    /// (a real hang would not end at all; ending at the stop keeps test runs tidy).
    public func turn(_ loop: Loop, stopping: () -> Bool) {
        let now = clock(), i = index(loop)
        guard loops.withLock({ l in l.beats[i] = now; return l.hangs[i] }) else { return }
        while !stopping() { sleepMs(50) }
    }

    /// A thread loop's wait of `ms` (a back-off after a failure): it keeps beating, since a loop
    /// that waits on purpose is not stuck. Ends early when `stopping` says so.
    public func pause(_ loop: Loop, ms: Int64, stopping: () -> Bool) {
        var left = ms
        while left > 0, !stopping() {
            beat(loop)
            sleepMs(min(left, 100))
            left -= 100
        }
    }
}
