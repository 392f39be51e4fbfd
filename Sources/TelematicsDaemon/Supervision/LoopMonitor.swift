import Platform
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

    // One atomic per loop, no lock: the CAN reader beats at every turn, frame by frame.
    private let canReader: Atomic<Int64>
    private let outbox: Atomic<Int64>
    private let eCall: Atomic<Int64>
    private let control: Atomic<Int64>
    /// The loops that must hang (fault injection), one bit each in `Loop.allCases` order.
    private let hangs = Atomic<UInt8>(0)
    private let clock: @Sendable () -> Int64

    /// One per car: its loops beat here and its supervisor reads it. `clock` is in
    /// milliseconds, monotonic (the system's by default).
    public init(clock: @escaping @Sendable () -> Int64 = { monotonicNow().nanoseconds / 1_000_000 }) {
        self.clock = clock
        let now = clock()
        canReader = Atomic(now)
        outbox = Atomic(now)
        eCall = Atomic(now)
        control = Atomic(now)
    }

    private func lastBeat(_ loop: Loop) -> Int64 {
        switch loop {
        case .canReader: canReader.load(ordering: .relaxed)
        case .outbox: outbox.load(ordering: .relaxed)
        case .eCall: eCall.load(ordering: .relaxed)
        case .control: control.load(ordering: .relaxed)
        }
    }

    private static func bit(_ loop: Loop) -> UInt8 { 1 << UInt8(Loop.allCases.firstIndex(of: loop)!) }

    /// The loop is alive and turning.
    public func beat(_ loop: Loop) {
        let now = clock()
        switch loop {
        case .canReader: canReader.store(now, ordering: .relaxed)
        case .outbox: outbox.store(now, ordering: .relaxed)
        case .eCall: eCall.store(now, ordering: .relaxed)
        case .control: control.store(now, ordering: .relaxed)
        }
    }

    /// The loops that have not beaten for more than `silenceMs`.
    public func stalled(silenceMs: Int64) -> [Loop] {
        let now = clock()
        return Loop.allCases.filter { now - lastBeat($0) > silenceMs }
    }

    /// Fault injection: from now on the loop hangs at its next turn.
    public func injectHang(_ loop: Loop) { hangs.bitwiseOr(Self.bit(loop), ordering: .relaxed) }

    /// True when the loop must hang (fault injection).
    public func mustHang(_ loop: Loop) -> Bool { hangs.load(ordering: .relaxed) & Self.bit(loop) != 0 }

    /// A thread loop's turn: beats, or, when a hang was injected, blocks until the stop (a real
    /// hang would not end at all; ending at the stop keeps test runs tidy).
    public func turn(_ loop: Loop, stop: StopSignal) {
        beat(loop)
        guard mustHang(loop) else { return }
        stop.waitForever()
    }

    /// A thread loop's wait of `ms` (a back-off after a failure): it keeps beating, since a loop
    /// that waits on purpose is not stuck. Ends at once at the stop.
    public func pause(_ loop: Loop, ms: Int64, stop: StopSignal) {
        var left = ms
        while left > 0 {
            beat(loop)
            if stop.wait(timeoutMs: min(left, 100)) { return }
            left -= 100
        }
    }
}
