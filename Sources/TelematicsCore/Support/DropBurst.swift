/// What a bounded buffer tells its shell about what it had to drop: once when a burst of drops
/// starts and once, with the counts, when it is over. So a flood is logged in two lines, not
/// one per message, and nothing is dropped silently.
public enum BurstNotice<Key: Hashable & Sendable>: Equatable, Sendable {
    /// The first drop since the buffer last drained without dropping.
    case burstStarted
    /// The first drain with no drop since the one before: the burst's drops, by key.
    case burstEnded(dropped: [Key: Int])
}

/// The bookkeeping behind `BurstNotice`, shared by the bounded buffers (OutboxBuffer,
/// ChangeQueue): call `dropped` for each drop and `drained` at each drain.
public struct DropBurst<Key: Hashable & Sendable>: Sendable {
    /// Every drop so far, by key.
    public private(set) var total: [Key: Int] = [:]
    private var burst: [Key: Int]?
    private var droppedSinceDrain = false

    public init() {}

    /// Counts one drop; `.burstStarted` when it is the first of a burst.
    public mutating func dropped(_ key: Key) -> BurstNotice<Key>? {
        var notice: BurstNotice<Key>?
        if burst == nil {
            burst = [:]
            notice = .burstStarted
        }
        burst![key, default: 0] += 1
        total[key, default: 0] += 1
        droppedSinceDrain = true
        return notice
    }

    /// At a drain: `.burstEnded` when a burst was going on and nothing was dropped since the
    /// drain before.
    public mutating func drained() -> BurstNotice<Key>? {
        defer { droppedSinceDrain = false }
        guard let b = burst, !droppedSinceDrain else { return nil }
        burst = nil
        return .burstEnded(dropped: b)
    }
}
