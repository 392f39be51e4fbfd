import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// Sends the vehicle state to the backend in blocks (`doors`, `climate`, ...) through the outbox
/// at state priority: a changed block at once, then at most once per interval, and all blocks
/// at every heartbeat (see `StatePublisher`). Unsent values of a block are coalesced by the
/// outbox, so a long outage leaves one message per block, not one per change.
///
/// It costs the CAN path nothing: instead of following every change (a moving car's speed
/// changes with every frame), it looks at each block's signature ten times a second.
public final class VehicleStateService: Service, Sendable {
    let bus: VehicleBusService
    let outbox: OutboxService
    let vin: String
    let publisher: Mutex<StatePublisher>
    let now: @Sendable () -> Timestamp
    static let tickMs: Int64 = 100
    private let everything = Atomic<Bool>(false)

    /// New intervals from a reloaded configuration; they apply from the next look.
    public func setIntervals(minimumIntervalMs: Int64, heartbeatMs: Int64) {
        publisher.withLock { $0.minimumIntervalMs = minimumIntervalMs; $0.heartbeatMs = heartbeatMs }
    }

    /// Forgets the blocks waiting for their interval (a factory reset).
    public func forgetPending() { publisher.withLock { $0.forgetPending() } }

    /// Sends every block again at the next look (the backend link came back from "offline").
    public func resendAll() { everything.store(true, ordering: .relaxed) }

    public init(bus: VehicleBusService, outbox: OutboxService, vin: String, minimumIntervalMs: Int64, heartbeatMs: Int64,
                now: @escaping @Sendable () -> Timestamp = { monotonicNow() }) {
        self.bus = bus
        self.outbox = outbox
        self.vin = vin
        self.now = now
        publisher = Mutex(StatePublisher(minimumIntervalMs: minimumIntervalMs, heartbeatMs: heartbeatMs))
    }

    private func send(_ blocks: [String]) {
        for b in blocks {
            let (values, capturedAt) = bus.stateBlock(b)
            guard let capturedAt else { continue }
            let ms = capturedAt.nanoseconds / 1_000_000
            outbox.submit(stateMessage(block: b, values: values, capturedAtMs: ms, vin: vin, id: messageID(unixMs: ms)))
        }
    }

    public func run() async throws {
        var seen: [String: BlockSignature] = [:]
        func look() {
            let signatures = bus.stateSignatures()
            let changed = signatures.filter { $0.value.lastChange != nil && seen[$0.key] != $0.value }.map(\.key)
            seen = signatures
            let all = everything.exchange(false, ordering: .relaxed)
            publisher.withLock { $0.note(blocks: all ? Array(signatures.keys) : changed) }
        }
        while !Task.isShuttingDownGracefully {
            look()
            send(publisher.withLock { $0.due(now: now()) })
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(Self.tickMs)) }
            } catch {
                break
            }
        }
        // Stopping: the latest values go into the outbox before it closes (it stops after us).
        look()
        send(publisher.withLock { $0.flush(now: now()) })
    }
}
