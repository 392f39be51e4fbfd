/// The vehicle state as the backend receives it: quantities grouped in blocks by the first
/// part of their key (`doors`, `climate`, ...). A block goes whole, so the backend always holds
/// a consistent picture of it with one capture time.
public enum StateBlock {
    /// Blocks that are events or the eCall's, never state: the crash signals and the buttons.
    static let excluded: Set<String> = ["crash", "buttons"]

    /// The block a quantity belongs to, or nil when it is not published as state.
    public static func name(of q: VehicleQuantity) -> String? {
        let head = q.key.split(separator: ".", maxSplits: 1).first.map(String.init) ?? q.key
        return excluded.contains(head) ? nil : head
    }

    /// Every published block, in report order.
    public static let published: [String] = {
        var out: [String] = []
        for q in VehicleQuantity.all { if let b = name(of: q), !out.contains(b) { out.append(b) } }
        return out
    }()

    /// Every quantity published as state.
    public static let quantities: Set<VehicleQuantity> = Set(VehicleQuantity.all.filter { name(of: $0) != nil })
}

/// What identifies a block's content without reading its values: the newest change and how
/// many of its values are available. It changes exactly when a value or an availability does.
public struct BlockSignature: Sendable, Equatable {
    public var lastChange: Timestamp?
    public var available: Int
}

extension VehicleStateTracker {
    /// One block's values, nested by the rest of their keys (`doors.frontLeft.open` →
    /// `{"frontLeft":{"open":true}}`), a value that is not available as null; and the newest
    /// capture time among them (nil when none was ever seen).
    public func block(_ name: String) -> (values: JSON, capturedAt: Timestamp?) {
        var tree = JSONTree()
        var newest: Timestamp?
        for qi in blockIndices[name] ?? [] {
            let r = readings[qi]
            let leaf: JSON = r.flatMap { $0.isAvailable ? $0.value.json : nil } ?? .null
            if let r, r.isAvailable { newest = max(newest ?? r.capturedAt, r.capturedAt) }
            tree.insert(path: quantities[qi].key.split(separator: ".").dropFirst().map(String.init), leaf)
        }
        return (tree.json, newest)
    }

    /// The signatures of every block: compared with the last ones, they tell which blocks
    /// changed, at no cost per frame.
    public func blockSignatures() -> [String: BlockSignature] {
        var out: [String: BlockSignature] = [:]
        for (name, indices) in blockIndices {
            var sig = BlockSignature(lastChange: nil, available: 0)
            for qi in indices {
                guard let r = readings[qi] else { continue }
                sig.lastChange = max(sig.lastChange ?? r.changedAt, r.changedAt)
                if r.isAvailable { sig.available += 1 }
            }
            out[name] = sig
        }
        return out
    }
}

/// When to send which state block: a block whose values changed goes at once, then at most once
/// per `minimumIntervalMs` while it keeps changing (a moving car's speed must not flood the
/// outbox; the outbox also keeps only the newest unsent value of a block). Every
/// `heartbeatMs` all blocks seen so far go again, so that the backend knows the state is current.
/// Time is injected (a monotonic clock in the daemon).
public struct StatePublisher: Sendable {
    public var minimumIntervalMs: Int64
    public var heartbeatMs: Int64
    private var dirty: Set<String> = []
    private var lastSent: [String: Timestamp] = [:]
    private var heartbeatFrom: Timestamp?

    public init(minimumIntervalMs: Int64 = 1_000, heartbeatMs: Int64 = 900_000) {
        self.minimumIntervalMs = minimumIntervalMs
        self.heartbeatMs = heartbeatMs
    }

    /// Notes changed quantities (a value, or its availability).
    public mutating func note(_ changes: [VehicleStateChange]) {
        note(blocks: changes.compactMap { StateBlock.name(of: $0.quantity) })
    }

    /// Notes changed blocks.
    public mutating func note(blocks: some Sequence<String>) {
        for b in blocks where StateBlock.published.contains(b) { dirty.insert(b) }
    }

    /// Forgets the changes still waiting for their interval (a factory reset: what was
    /// captured before it must not reach the backend after its deletion).
    public mutating func forgetPending() { dirty.removeAll() }

    /// The blocks to send now, in report order.
    public mutating func due(now: Timestamp) -> [String] {
        let from = heartbeatFrom ?? now
        heartbeatFrom = from
        let heartbeat = now.milliseconds(since: from) >= heartbeatMs
        if heartbeat { heartbeatFrom = now }
        var out: [String] = []
        for b in StateBlock.published {
            let last = lastSent[b]
            let changedAndAllowed = dirty.contains(b) && (last.map { now.milliseconds(since: $0) >= minimumIntervalMs } ?? true)
            if changedAndAllowed || (heartbeat && last != nil) {
                out.append(b)
                lastSent[b] = now
                dirty.remove(b)
            }
        }
        return out
    }

    /// Every changed block regardless of the interval (at shutdown: the latest state is not lost).
    public mutating func flush(now: Timestamp) -> [String] {
        let out = StateBlock.published.filter { dirty.contains($0) }
        for b in out { lastSent[b] = now }
        dirty.removeAll()
        return out
    }

    /// When `due` will next have something to send (nil: only a change can make it).
    public func nextDue() -> Timestamp? {
        var next = heartbeatFrom.map { $0.adding(milliseconds: heartbeatMs) }
        for b in dirty {
            let t = lastSent[b].map { $0.adding(milliseconds: minimumIntervalMs) } ?? .zero
            next = min(next ?? t, t)
        }
        return next
    }
}

/// The outbox message of one state block.
public func stateMessage(block: String, values: JSON, capturedAtMs: Int64, vin: String, id: String) -> OutboxMessage {
    let body = JSON.object([
        ("id", .string(id)), ("vin", .string(vin)), ("type", .string("state")), ("block", .string(block)),
        ("capturedAt", .number(Double(capturedAtMs))), ("values", values),
    ])
    return OutboxMessage(id: id, stream: "state", priority: .state, coalesceKey: "state." + block, capturedAtMs: capturedAtMs, payload: body.text)
}
