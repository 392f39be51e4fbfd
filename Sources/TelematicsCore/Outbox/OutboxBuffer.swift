/// The messages waiting in memory for the outbox's next commit, bounded whatever the input rate.
///
/// Overview: the vehicle's services `add` messages as they happen; the outbox thread `drain`s
/// them into its store about every 50 ms. When input outruns the commits (a log read at full
/// speed, a flapping signal, a disk that stalls its fsync for seconds), memory stays within
/// `limitBytes`:
/// - a state block replaces its unsent predecessor (`coalesceKey`): state is coalesced first;
/// - beyond the limit, the oldest message of the least important priority present goes
///   (state, then events, then command results); an eCall report or an alarm never, unless
///   nothing else is left;
/// - what goes is counted, and a burst (evictions between two quiet drains) is reported once
///   when it starts and once when it ends, with its count, so that the shell logs it without
///   a line per message.
/// Within a priority the order of arrival is kept; `drain` returns arrival order.
public struct OutboxBuffer: Sendable {
    /// What the shell should say about evictions (then log it): the burst's start, and its end
    /// with how many messages it dropped, by priority.
    public typealias Notice = BurstNotice<OutboxPriority>

    public let limitBytes: Int
    /// Per priority, in arrival order, from `head` on (popping the front is O(1)).
    private var fifos: [Fifo]
    /// Where the queued message of each coalescing key is: its priority's fifo, its position.
    private var coalesced: [String: (priority: Int, position: Int)] = [:]
    private var serial = 0
    public private(set) var bytes = 0
    public private(set) var count = 0
    private var drops = DropBurst<OutboxPriority>()
    /// Every message dropped so far, by priority.
    public var dropped: [OutboxPriority: Int] { drops.total }

    /// What a message costs in memory beyond its payload (the struct, its strings' headers).
    static let overheadBytes = 160

    public init(limitBytes: Int) {
        self.limitBytes = limitBytes
        fifos = OutboxPriority.allCases.map { _ in Fifo() }
    }

    struct Entry: Sendable {
        var serial: Int
        var message: OutboxMessage?  // nil once replaced by a newer state of its block
    }

    struct Fifo: Sendable {
        var entries: [Entry] = []
        var head = 0
        var live = 0
    }

    static func cost(_ m: OutboxMessage) -> Int { m.payload.utf8.count + m.id.utf8.count + overheadBytes }

    /// Queues a message; returns `.burstStarted` when it is the first eviction of a burst.
    public mutating func add(_ m: OutboxMessage) -> Notice? {
        let p = m.priority.rawValue
        if let key = m.coalesceKey, let c = coalesced[key], c.priority == p, let old = fifos[p].entries[c.position].message {
            // The newer state of the same block takes the older one's place in the queue.
            bytes += Self.cost(m) - Self.cost(old)
            fifos[p].entries[c.position].message = m
        } else {
            serial += 1
            fifos[p].entries.append(Entry(serial: serial, message: m))
            fifos[p].live += 1
            if let key = m.coalesceKey { coalesced[key] = (p, fifos[p].entries.count - 1) }
            bytes += Self.cost(m)
            count += 1
        }
        var notice: Notice?
        while bytes > limitBytes, count > 1, let victim = evictionPriority() {
            evictOldest(victim)
            if let n = drops.dropped(victim) { notice = n }
        }
        return notice
    }

    /// The least important priority with a message to drop (the one just added included):
    /// state, events, command results; an alarm or an eCall report only when nothing else is left.
    private func evictionPriority() -> OutboxPriority? {
        OutboxPriority.allCases.reversed().first { fifos[$0.rawValue].live > 0 }
    }

    private mutating func evictOldest(_ p: OutboxPriority) {
        var f = fifos[p.rawValue]
        while f.head < f.entries.count {
            let i = f.head
            f.head += 1
            guard let m = f.entries[i].message else { continue }
            f.entries[i].message = nil
            f.live -= 1
            bytes -= Self.cost(m)
            count -= 1
            if let key = m.coalesceKey, let c = coalesced[key], c.priority == p.rawValue, c.position == i { coalesced[key] = nil }
            break
        }
        // Compact now and then, so that the dropped front does not pile up.
        if f.head > 1024, f.head * 2 > f.entries.count {
            let shift = f.head
            f.entries.removeFirst(shift)
            for (key, c) in coalesced where c.priority == p.rawValue { coalesced[key] = (c.priority, c.position - shift) }
            f.head = 0
        }
        fifos[p.rawValue] = f
    }

    /// Everything queued, in arrival order; the buffer is empty afterwards. The notice ends a
    /// burst: the first drain with no eviction since the one before.
    public mutating func drain() -> (messages: [OutboxMessage], notice: Notice?) {
        let all = queued()
        removeAll()
        return (all, drops.drained())
    }

    /// Puts messages that could not be committed back before what came since, in their order,
    /// within the limit (the oldest least important go first, as always).
    public mutating func putBack(_ older: [OutboxMessage]) -> Notice? {
        let newer = queued()
        removeAll()
        var notice: Notice?
        for m in older + newer {
            if let n = add(m), notice == nil { notice = n }
        }
        return notice
    }

    /// What is queued, in arrival order.
    private func queued() -> [OutboxMessage] {
        var all: [Entry] = []
        all.reserveCapacity(count)
        for f in fifos { all += f.entries[f.head...].filter { $0.message != nil } }
        all.sort { $0.serial < $1.serial }
        return all.compactMap(\.message)
    }

    /// Empties the buffer (a factory reset), counting nothing as dropped.
    public mutating func removeAll() {
        fifos = OutboxPriority.allCases.map { _ in Fifo() }
        coalesced = [:]
        bytes = 0
        count = 0
    }
}
