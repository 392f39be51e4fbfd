import CSQLite
import TelematicsCore

/// A fleet's outbox: one SQLite file for all its cars, a stream per car, as durable as a
/// unit's (WAL, `synchronous=FULL`, group commit: a loop turn's appends and acknowledgements in
/// one transaction, one flush). Each car has its own sequence numbers (1, 2, 3 ... with no gap:
/// a fleet never coalesces or evicts what it numbered); a row leaves when the broker
/// acknowledged it. Use from one thread (the fleet's loop).
///
/// Cars are slots 0..<n of this process (the shard's cars in order); the file remembers each
/// slot's VIN, so that a file written for another fleet or shard is refused, not mixed, and
/// each car's registration with the backend (its command key and counter: schema 2), in the
/// same transaction as the messages of the turn that changed it.
public final class FleetOutboxStore {
    public static let schemaVersion = 2

    public let path: String
    /// Bytes of payload held at most; past it, new messages are refused (counted, never numbered).
    public let maximumBytes: Int64
    public private(set) var bytes: Int64 = 0
    public private(set) var refused: Int64 = 0
    /// Per slot: the last sequence number given (0: none yet).
    public private(set) var lastSequence: [Int64]
    /// Per slot: the registration kept (Registration's stored JSON), when the car registered
    /// with the backend itself (a pairing code); as the file held it when opened.
    public private(set) var registrations: [Int: String] = [:]
    private let db: SQLiteDatabase
    private var touched: Set<Int> = []

    /// Opens (or creates) the file for these cars' VINs, in slot order.
    public init(path: String, vins: [String], maximumBytes: Int64 = 1 << 30) throws(OutboxError) {
        self.path = path
        self.maximumBytes = maximumBytes
        let db = try SQLiteDatabase(path: path)
        self.db = db
        lastSequence = Array(repeating: 0, count: vins.count)
        try db.exec("PRAGMA journal_mode=WAL")
        try db.exec("PRAGMA synchronous=FULL")
        try db.exec("PRAGMA wal_autocheckpoint=4096")
        try db.exec("PRAGMA cache_size=-8192")
        let v = try db.statement("PRAGMA user_version")
        _ = try v.step()
        let version = v.int(0)
        db.finishReads()
        guard version <= Self.schemaVersion else {
            throw OutboxError(message: "the fleet outbox was written by a newer version (schema \(version), this one knows \(Self.schemaVersion))", code: SQLITE_ERROR)
        }
        if version < 1 {
            try db.transaction { () throws(OutboxError) in
                try db.exec("""
                    CREATE TABLE cars(slot INTEGER PRIMARY KEY, vin TEXT NOT NULL UNIQUE, last_seq INTEGER NOT NULL);
                    CREATE TABLE messages(
                        slot INTEGER NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, stream TEXT NOT NULL,
                        priority INTEGER NOT NULL, captured_at INTEGER NOT NULL, payload TEXT NOT NULL,
                        PRIMARY KEY(slot, seq)
                    ) WITHOUT ROWID;
                    PRAGMA user_version = 1;
                    """)
            }
        }
        if version < 2 {
            // 2: the cars' registrations (a version-1 file has none: its cars kept their plan's).
            try db.transaction { () throws(OutboxError) in
                try db.exec("ALTER TABLE cars ADD COLUMN registration TEXT; PRAGMA user_version = 2;")
            }
        }
        var last = lastSequence, size: Int64 = 0
        try db.transaction { () throws(OutboxError) in
            let read = try db.statement("SELECT slot, vin, last_seq, registration FROM cars")
            var known: [Int: (String, Int64)] = [:]
            while try read.step() {
                known[Int(read.int(0))] = (read.text(1), read.int(2))
                if !read.isNull(3) { registrations[Int(read.int(0))] = read.text(3) }
            }
            for (slot, (vin, _)) in known where slot >= vins.count || vins[slot] != vin {
                let now = slot < vins.count ? "\(vins[slot])" : "no car"
                throw OutboxError(message: "\(path) was written for another fleet or shard: its car \(slot) is \(vin), this shard's is \(now)", code: SQLITE_MISMATCH)
            }
            let add = try db.statement("INSERT INTO cars(slot, vin, last_seq) VALUES (?, ?, 0)")
            for (slot, vin) in vins.enumerated() {
                if let k = known[slot] {
                    last[slot] = k.1
                } else {
                    add.again()
                    add.bind(1, Int64(slot))
                    add.bind(2, vin)
                    try add.run()
                }
            }
            let sum = try db.statement("SELECT coalesce(sum(length(payload)), 0) FROM messages")
            size = try sum.step() ? sum.int(0) : 0
        }
        lastSequence = last
        bytes = size
    }

    /// Per slot, the lowest sequence number still stored (nil: nothing waits): where a restarted
    /// fleet sends from.
    public func waiting() throws(OutboxError) -> [Int: (first: Int64, count: Int)] {
        defer { db.finishReads() }
        let st = try db.statement("SELECT slot, min(seq), count(*) FROM messages GROUP BY slot")
        var out: [Int: (first: Int64, count: Int)] = [:]
        while try st.step() { out[Int(st.int(0))] = (st.int(1), Int(st.int(2))) }
        return out
    }

    /// One loop turn: stores the new messages (each numbered in its car's stream), deletes
    /// what the broker acknowledged and keeps the cars' changed registrations, in one
    /// transaction. Returns the slots that got messages.
    @discardableResult
    public func commit(appending new: [(slot: Int, message: OutboxMessage)], acknowledged: [(slot: Int, seq: Int64)],
                       registrations changed: [Int: String] = [:]) throws(OutboxError) -> Set<Int> {
        guard !new.isEmpty || !acknowledged.isEmpty || !changed.isEmpty else { return [] }
        let before = lastSequence, bytesBefore = bytes, refusedBefore = refused
        touched.removeAll(keepingCapacity: true)
        do {
            try db.transaction { () throws(OutboxError) in
                if !acknowledged.isEmpty {
                    let del = try db.statement("DELETE FROM messages WHERE slot = ? AND seq = ? RETURNING length(payload)")
                    for a in acknowledged {
                        del.again()
                        del.bind(1, Int64(a.slot))
                        del.bind(2, a.seq)
                        while try del.step() { bytes -= del.int(0) }
                    }
                }
                if !changed.isEmpty {
                    let keep = try db.statement("UPDATE cars SET registration = ? WHERE slot = ?")
                    for (slot, text) in changed {
                        keep.again()
                        keep.bind(1, text)
                        keep.bind(2, Int64(slot))
                        try keep.run()
                    }
                }
                guard !new.isEmpty else { return }
                let ins = try db.statement("INSERT INTO messages(slot, seq, id, stream, priority, captured_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?)")
                for (slot, m) in new {
                    let size = Int64(m.payload.utf8.count)
                    // Full: a state message is refused before it is numbered (no gap); an eCall
                    // report or an alarm is kept anyway.
                    if bytes + size > maximumBytes, m.priority.rawValue >= OutboxPriority.commandResult.rawValue {
                        refused += 1
                        continue
                    }
                    lastSequence[slot] += 1
                    ins.again()
                    ins.bind(1, Int64(slot))
                    ins.bind(2, lastSequence[slot])
                    ins.bind(3, m.id)
                    ins.bind(4, m.stream)
                    ins.bind(5, Int64(m.priority.rawValue))
                    ins.bind(6, m.capturedAtMs)
                    ins.bind(7, m.payload)
                    try ins.run()
                    bytes += size
                    touched.insert(slot)
                }
                let up = try db.statement("UPDATE cars SET last_seq = ? WHERE slot = ?")
                for slot in touched {
                    up.again()
                    up.bind(1, lastSequence[slot])
                    up.bind(2, Int64(slot))
                    try up.run()
                }
            }
        } catch {
            // Nothing of the turn was stored: the numbers given in it are given again.
            lastSequence = before
            bytes = bytesBefore
            refused = refusedBefore
            throw error
        }
        return touched
    }

    /// A stored message of a car, with its sequence number.
    public struct Entry: Sendable {
        public var seq: Int64
        public var id: String
        public var stream: String
        public var payload: String
    }

    /// The car's next messages after `afterSeq`, in order.
    public func take(slot: Int, after afterSeq: Int64, limit: Int) throws(OutboxError) -> [Entry] {
        guard limit > 0 else { return [] }
        defer { db.finishReads() }
        let st = try db.statement("SELECT seq, id, stream, payload FROM messages WHERE slot = ? AND seq > ? ORDER BY seq LIMIT ?")
        st.bind(1, Int64(slot))
        st.bind(2, afterSeq)
        st.bind(3, Int64(limit))
        var out: [Entry] = []
        while try st.step() { out.append(Entry(seq: st.int(0), id: st.text(1), stream: st.text(2), payload: st.text(3))) }
        return out
    }

    public func close() { db.close() }
}
