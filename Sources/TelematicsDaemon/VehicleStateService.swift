import Logging
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// Sends the vehicle state to the backend in blocks (`doors`, `climate`, ...) through the outbox
/// at state priority: a changed block at once, then at most once per interval, and all blocks
/// at every heartbeat (see `StatePublisher`). Unsent values of a block are coalesced by the
/// outbox, so a long outage leaves one message per block, not one per change.
public final class VehicleStateService: Service, Sendable {
    let changes: AsyncStream<BusEvent>
    let bus: VehicleBusService
    let outbox: OutboxService
    let vin: String
    let publisher: Mutex<StatePublisher>
    let now: @Sendable () -> Timestamp

    /// Subscribe at construction: before the bus runs, so the first readings are seen.
    public init(bus: VehicleBusService, outbox: OutboxService, vin: String, minimumIntervalMs: Int64, heartbeatMs: Int64,
                now: @escaping @Sendable () -> Timestamp = { monotonicNow() }) {
        changes = bus.subscribe(to: StateBlock.quantities)
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
            outbox.submit(stateMessage(block: b, values: values, capturedAtMs: capturedAt.nanoseconds / 1_000_000, vin: vin, id: randomMessageID()))
        }
    }

    public func run() async throws {
        let due = { @Sendable [self] in self.publisher.withLock { $0.due(now: self.now()) } }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { [self] in
                for await event in changes.cancelOnGracefulShutdown() {
                    guard case .changed(let list) = event else { continue }
                    publisher.withLock { $0.note(list) }
                    send(due())
                }
            }
            // Blocks held back by the interval, and the heartbeat.
            group.addTask { [self] in
                while !Task.isCancelled {
                    let wait = publisher.withLock { p in p.nextDue().map { max(10, $0.milliseconds(since: now())) } } ?? 1_000
                    do { try await Task.sleep(for: .milliseconds(min(wait, 1_000))) } catch { return }
                    send(due())
                }
            }
            await group.next()
            group.cancelAll()
        }
        // Stopping: the latest values go into the outbox before it closes (it stops after us).
        send(publisher.withLock { $0.flush(now: now()) })
    }
}
