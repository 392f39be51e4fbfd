import Logging
import ServiceLifecycle
import Synchronization
import TelematicsCore

/// The changes of some quantities, handed from the CAN reader thread to one service's task in
/// batches, through a bounded `ChangeQueue`: the reader never waits, the service takes
/// everything that is waiting at each turn, and a flood beyond the capacity drops the oldest
/// ordinary changes (never a `kept` one while others are left), counted by quantity and logged
/// once when the burst starts and once when it ends.
///
/// Iterate it (`for await batch in feed.cancelOnGracefulShutdown()`) in one task: it ends with
/// the daemon's graceful shutdown (or the task's cancellation).
public final class ChangeFeed: AsyncSequence, Sendable {
    public typealias Element = [VehicleStateChange]
    let quantities: Set<VehicleQuantity>
    /// What the log calls the consumer ("vehicle events").
    let name: String
    private let queue: Mutex<ChangeQueue>
    private let bell: AsyncStream<Void>
    private let ring: AsyncStream<Void>.Continuation
    private let logger: Logger

    init(quantities: Set<VehicleQuantity>, capacity: Int, kept: Set<VehicleQuantity>, name: String, logger: Logger) {
        self.quantities = quantities
        self.name = name
        self.logger = logger
        queue = Mutex(ChangeQueue(capacity: capacity, kept: kept))
        (bell, ring) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// On the reader thread: queue the changes this feed wants, ring, return at once.
    func push(_ changes: [VehicleStateChange]) {
        let mine = changes.filter { quantities.contains($0.quantity) }
        guard !mine.isEmpty else { return }
        let notice = queue.withLock { $0.push(mine) }
        if let notice { tell(notice) }
        ring.yield()
    }

    /// Every change dropped so far, by quantity.
    var dropped: [VehicleQuantity: Int] { queue.withLock { $0.dropped } }

    private func tell(_ notice: ChangeQueue.Notice) {
        switch notice {
        case .burstStarted:
            logger.warning("the \(name) cannot keep up with the bus: dropping the oldest changes", metadata: [
                "bus.queueCapacity": "\(queue.withLock { $0.capacity })",
            ])
        case .burstEnded(let dropped):
            let list = dropped.sorted { $0.key.key < $1.key.key }.map { "\($0.key.key) \($0.value)" }.joined(separator: ", ")
            logger.warning("the \(name) caught up with the bus; changes dropped meanwhile", metadata: ["bus.dropped": "\(list)"])
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let feed: ChangeFeed
        var bell: AsyncStream<Void>.Iterator

        /// Everything waiting, in arrival order; waits for the reader's ring when nothing is.
        public mutating func next() async -> [VehicleStateChange]? {
            while true {
                let (changes, notice) = feed.queue.withLock { $0.drain() }
                if let notice { feed.tell(notice) }
                if !changes.isEmpty { return changes }
                guard await bell.next() != nil else { return nil }
            }
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(feed: self, bell: bell.makeAsyncIterator()) }
}
