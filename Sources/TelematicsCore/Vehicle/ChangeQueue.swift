/// Vehicle state changes waiting between the CAN reader thread, which pushes them as it decodes
/// frames, and a service that takes them all at once when it gets its turn; bounded whatever
/// the bus's rate.
///
/// Overview: a flapping signal, or a candump log read at full speed, can change a door tens of
/// thousands of times a second, faster than the events can be built and stored. The reader must
/// never wait (a held-up reader lets values expire), so the queue holds at most `capacity`
/// changes:
/// - beyond it, the oldest change of an ordinary quantity goes; a change of a `kept` quantity
///   (the anti-theft alarm) only when nothing else is left;
/// - what goes is counted by quantity, and a burst of drops is told once when it starts and
///   once, with its counts, when it is over (`DropBurst`);
/// - `drain` returns what is left in arrival order.
/// Its memory is about `capacity` changes (a few hundred KB for 4096), never more.
public struct ChangeQueue: Sendable {
    public typealias Notice = BurstNotice<VehicleQuantity>

    public let capacity: Int
    public let kept: Set<VehicleQuantity>
    /// Arrival order from `head` on; a dropped change leaves a hole (nil) until the next drain
    /// or compaction.
    private var entries: [VehicleStateChange?] = []
    private var head = 0
    /// No ordinary change lives before this index (where the next eviction starts looking).
    private var ordinaryCursor = 0
    private var keptCount = 0
    public private(set) var count = 0
    private var drops = DropBurst<VehicleQuantity>()
    /// Every change dropped so far, by quantity.
    public var dropped: [VehicleQuantity: Int] { drops.total }

    public init(capacity: Int, kept: Set<VehicleQuantity> = []) {
        precondition(capacity > 0, "a change queue holds at least one change")
        self.capacity = capacity
        self.kept = kept
    }

    /// Queues changes; returns `.burstStarted` when one of them started a burst of drops.
    public mutating func push(_ changes: [VehicleStateChange]) -> Notice? {
        var notice: Notice?
        for c in changes {
            entries.append(c)
            count += 1
            if kept.contains(c.quantity) { keptCount += 1 }
            if count > capacity, let victim = evictOldest(), let n = drops.dropped(victim) { notice = n }
        }
        return notice
    }

    /// Everything queued, in arrival order; the queue is empty afterwards. The notice ends a
    /// burst: the first drain with no drop since the one before.
    public mutating func drain() -> (changes: [VehicleStateChange], notice: Notice?) {
        var out: [VehicleStateChange] = []
        out.reserveCapacity(count)
        for e in entries[head...] { if let e { out.append(e) } }
        entries.removeAll(keepingCapacity: entries.capacity <= 1024)
        head = 0
        ordinaryCursor = 0
        count = 0
        keptCount = 0
        return (out, drops.drained())
    }

    /// Drops the oldest ordinary change, or the oldest kept one when only those are left.
    private mutating func evictOldest() -> VehicleQuantity? {
        let onlyKept = keptCount == count
        var i = onlyKept ? head : max(head, ordinaryCursor)
        while i < entries.count {
            if let c = entries[i], onlyKept || !kept.contains(c.quantity) { break }
            i += 1
        }
        guard i < entries.count, let victim = entries[i] else { return nil }
        entries[i] = nil
        count -= 1
        if kept.contains(victim.quantity) { keptCount -= 1 } else { ordinaryCursor = i + 1 }
        while head < entries.count, entries[head] == nil { head += 1 }
        // Compact now and then, so that the holes do not pile up while nobody drains.
        if entries.count > 2 * capacity + 64 { compact() }
        return victim.quantity
    }

    private mutating func compact() {
        let live = entries[head...].compactMap { $0 }
        entries = live.map { Optional($0) }
        head = 0
        ordinaryCursor = 0
    }
}
