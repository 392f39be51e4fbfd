import CSQLite
#if canImport(Glibc)
import Glibc
#endif
import TelematicsCore

/// The durable queue of everything the car sends to the backend: SQLite in WAL mode with
/// `synchronous=FULL`, so that a message the producer was told is stored survives a power
/// cut. Appends come in batches, one transaction each (group commit: one fsync for the
/// batch). Use from one thread.
///
/// Order: by priority (eCall reports first), then by arrival; a stream has one priority, so
/// its order is kept. State is coalesced: a new value of a block replaces the unsent one.
/// The store is bounded in bytes: when full, the lowest-priority oldest unsent messages go
/// (never eCall reports or alarms), and what went is counted.
public final class OutboxStore {
    /// The schema this code writes; older files are migrated forward step by step.
    public static let schemaVersion = 2

    public struct Statistics: Sendable, Equatable {
        public var messages: [OutboxPriority: Int] = [:]
        public var bytes: Int64 = 0
        public var evicted: [OutboxPriority: Int64] = [:]
        public var coalesced: Int64 = 0
        public var nextSequence: Int64 = 1
    }

    public let path: String
    public let maximumBytes: Int64
    /// Space kept free on the file system that holds the outbox, for the WAL and the rest of
    /// the system: when less is left, low-priority messages are evicted as if the outbox were
    /// full (a small disk fills before the byte bound is reached).
    public let diskReserveBytes: Int64
    /// Whether the last append found the disk below its reserve (or full).
    public private(set) var isDiskLow = false
    /// Where a damaged database was moved at open, if it was.
    public private(set) var movedAside: String?
    private let db: SQLiteDatabase
    private let directory: String

    /// `diskReserveBytes` nil: a quarter of the file system, at most 2 MiB.
    public init(path: String, maximumBytes: Int64 = 64 << 20, diskReserveBytes: Int64? = nil) throws(OutboxError) {
        self.path = path
        self.maximumBytes = maximumBytes
        let slash = path.lastIndex(of: "/")
        directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        var fs = statvfs()
        let diskSize = statvfs(directory, &fs) == 0 ? Int64(fs.f_blocks) * Int64(fs.f_frsize) : 64 << 20
        self.diskReserveBytes = diskReserveBytes ?? min(diskSize / 4, 2 << 20)
        // The WAL is checkpointed when it reaches 4 MiB (fewer checkpoints: faster group
        // commits), less on a small disk: a sixteenth of it, at least 64 pages.
        let walPages = max(64, min(1024, diskSize / 16 / 4096))
        var database = try SQLiteDatabase(path: path)
        do {
            try Self.prepare(database, walPages: walPages)
        } catch where error.isCorruption {
            // A damaged file is kept for analysis, never deleted; the outbox starts afresh.
            database.close()
            let aside = "\(path).corrupt-\(time(nil))"
            rename(path, aside)
            unlink(path + "-wal")
            unlink(path + "-shm")
            movedAside = aside
            database = try SQLiteDatabase(path: path)
            try Self.prepare(database, walPages: walPages)
        }
        db = database
    }

    private static func prepare(_ db: SQLiteDatabase, walPages: Int64) throws(OutboxError) {
        try db.exec("PRAGMA journal_mode=WAL")
        try db.exec("PRAGMA synchronous=FULL")
        // A bounded WAL: checkpointed at `walPages`, and trimmed back to that size after.
        try db.exec("PRAGMA wal_autocheckpoint=\(walPages)")
        try db.exec("PRAGMA journal_size_limit=\(walPages * 4096)")
        // The outbox appends at one end and reads from the other: 512 KiB of page cache does it
        // as fast as SQLite's default 2 MB (measured by make bench), in a quarter of the memory.
        try db.exec("PRAGMA cache_size=-512")
        let st = try db.statement("PRAGMA user_version")
        _ = try st.step()
        let version = Int(st.int(0))
        db.finishReads()
        guard version <= schemaVersion else {
            throw OutboxError(message: "the outbox was written by a newer version (schema \(version), this one knows \(schemaVersion))", code: SQLITE_ERROR)
        }
        if version < 1 {
            try db.transaction { () throws(OutboxError) in
                try db.exec("""
                    CREATE TABLE messages(
                        position INTEGER PRIMARY KEY AUTOINCREMENT,
                        id TEXT NOT NULL UNIQUE,
                        stream TEXT NOT NULL,
                        priority INTEGER NOT NULL,
                        coalesce_key TEXT,
                        captured_at INTEGER NOT NULL,
                        payload TEXT NOT NULL,
                        size INTEGER NOT NULL,
                        sequence INTEGER
                    );
                    CREATE INDEX messages_order ON messages(priority, position);
                    CREATE INDEX messages_coalesce ON messages(coalesce_key) WHERE coalesce_key IS NOT NULL;
                    CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
                    INSERT INTO counters VALUES ('next_sequence', 1), ('bytes', 0), ('coalesced', 0);
                    PRAGMA user_version = 1;
                    """)
            }
        }
        if version < 2 {
            // Version 2: which messages hold a position (privacy "use my position" keeps them in).
            try db.transaction { () throws(OutboxError) in
                try db.exec("""
                    ALTER TABLE messages ADD COLUMN carries_position INTEGER NOT NULL DEFAULT 0;
                    PRAGMA user_version = 2;
                    """)
            }
        }
    }

    private func counter(_ name: String) throws(OutboxError) -> Int64 {
        let st = try db.statement("SELECT value FROM counters WHERE name = ?")
        st.bind(1, name)
        return try st.step() ? st.int(0) : 0
    }

    private func add(_ name: String, _ delta: Int64) throws(OutboxError) {
        let st = try db.statement("INSERT INTO counters(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value")
        st.bind(1, name)
        st.bind(2, delta)
        try st.run()
    }

    /// Stores a batch in one transaction. When this returns, every message is on disk.
    /// A disk that fills up makes room from the low-priority messages (see `diskReserveBytes`).
    public func append(_ messages: [OutboxMessage]) throws(OutboxError) {
        // Bounded transactions: the WAL grows by one transaction's pages before its checkpoint.
        var rest = messages[...]
        while !rest.isEmpty {
            let chunk = Array(rest.prefix(Self.transactionLimit))
            rest = rest.dropFirst(chunk.count)
            let incoming = chunk.reduce(Int64(0)) { $0 + Self.size(of: $1) }
            do {
                try appendOnce(chunk, incoming: incoming)
            } catch where error.isFull {
                // Full under us after all: empty the WAL into the file, make room from the
                // low-priority messages, and try once more.
                isDiskLow = true
                try? db.exec("PRAGMA wal_checkpoint(TRUNCATE)")
                _ = try? db.transaction { () throws(OutboxError) in _ = try evict(Self.walFactor * incoming + (256 << 10)) }
                try? db.exec("PRAGMA wal_checkpoint(TRUNCATE)")
                try appendOnce(chunk, incoming: incoming)
            }
        }
    }

    /// Messages per transaction at most.
    static let transactionLimit = 500
    /// What a transaction may take on disk per byte of messages (rows, indexes, WAL frames).
    static let walFactor: Int64 = 3

    static func size(of m: OutboxMessage) -> Int64 {
        Int64(m.payload.utf8.count + m.id.utf8.count + m.stream.utf8.count + 64)
    }

    /// Free space for the outbox: the file system's, plus the pages free inside the file.
    private func available() throws(OutboxError) -> Int64 {
        var fs = statvfs()
        guard statvfs(directory, &fs) == 0 else { return .max }
        let st = try db.statement("PRAGMA freelist_count")
        let freePages = try st.step() ? st.int(0) : 0
        let ps = try db.statement("PRAGMA page_size")
        let pageSize = try ps.step() ? ps.int(0) : 4096
        return Int64(fs.f_bavail) * Int64(fs.f_frsize) + freePages * pageSize
    }

    private func appendOnce(_ messages: [OutboxMessage], incoming: Int64) throws(OutboxError) {
        try db.transaction { () throws(OutboxError) in
            let free = try available()
            let deficit = diskReserveBytes + Self.walFactor * incoming - free
            if deficit > 0 {
                isDiskLow = true
                _ = try evict(deficit)
            } else if free >= 2 * diskReserveBytes {
                // Room again only well above the reserve, so that a disk at the edge does not flap.
                isDiskLow = false
            }
            var bytes: Int64 = 0
            let ins = try db.statement("""
                INSERT INTO messages(id, stream, priority, coalesce_key, captured_at, payload, size, carries_position)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING
                """)
            for m in messages {
                if let key = m.coalesceKey {
                    let find = try db.statement("SELECT position, size FROM messages WHERE coalesce_key = ? AND sequence IS NULL")
                    find.bind(1, key)
                    var replaced: [(Int64, Int64)] = []
                    while try find.step() { replaced.append((find.int(0), find.int(1))) }
                    for (position, size) in replaced {
                        let del = try db.statement("DELETE FROM messages WHERE position = ?")
                        del.bind(1, position)
                        try del.run()
                        bytes -= size
                        try add("coalesced", 1)
                    }
                }
                let size = Self.size(of: m)
                ins.again()
                ins.bind(1, m.id)
                ins.bind(2, m.stream)
                ins.bind(3, Int64(m.priority.rawValue))
                ins.bind(4, m.coalesceKey)
                ins.bind(5, m.capturedAtMs)
                ins.bind(6, m.payload)
                ins.bind(7, size)
                ins.bind(8, m.carriesPosition ? 1 : 0)
                try ins.run()
                if db.changes > 0 { bytes += size }
            }
            try add("bytes", bytes)
            let over = try counter("bytes") - maximumBytes
            if over > 0 { _ = try evict(over) }
        }
    }

    /// Drops the lowest-priority, oldest messages not yet sent until `needed` bytes are freed
    /// or nothing evictable is left; returns what it freed. eCall reports and alarms are never
    /// dropped, nor messages already sent (their sequence numbers are known to the backend).
    private func evict(_ needed: Int64) throws(OutboxError) -> Int64 {
        var freed: Int64 = 0
        while freed < needed {
            let pick = try db.statement("""
                SELECT position, size, priority FROM messages
                WHERE priority >= ? AND sequence IS NULL ORDER BY priority DESC, position ASC LIMIT 256
                """)
            pick.bind(1, Int64(OutboxPriority.commandResult.rawValue))
            var victims: [(Int64, Int64, Int64)] = []
            while try pick.step() { victims.append((pick.int(0), pick.int(1), pick.int(2))) }
            for (position, size, priority) in victims {
                guard freed < needed else { break }
                let del = try db.statement("DELETE FROM messages WHERE position = ?")
                del.bind(1, position)
                try del.run()
                freed += size
                try add("evicted_\(priority)", 1)
            }
            if victims.count < 256 { break }
        }
        try add("bytes", -freed)
        return freed
    }

    /// The next messages to send, in order, skipping those in `excluding` (in flight).
    /// A message taken for the first time gets the next sequence number, kept on re-sends.
    public func next(limit: Int, excluding: Set<String> = [], positions: Bool = true) throws(OutboxError) -> [OutboxEntry] {
        try exchange(acknowledging: [], takeUpTo: limit, excluding: excluding, positions: positions)
    }

    /// Removes messages the backend acknowledged.
    public func acknowledge(_ ids: [String]) throws(OutboxError) {
        _ = try exchange(acknowledging: ids, takeUpTo: 0)
    }

    /// Removes what the backend acknowledged and takes the next messages to send (as `next`),
    /// in one transaction: one disk flush for both, and none when nothing changed. With
    /// `positions` false, messages that hold a position stay where they are.
    public func exchange(acknowledging ids: [String], takeUpTo limit: Int, excluding: Set<String> = [],
                         positions: Bool = true) throws(OutboxError) -> [OutboxEntry] {
        guard !ids.isEmpty || limit > 0 else { return [] }
        return try db.transaction { () throws(OutboxError) -> [OutboxEntry] in
            var freed: Int64 = 0
            let del = try db.statement("DELETE FROM messages WHERE id = ? RETURNING size")
            for id in ids {
                del.again()
                del.bind(1, id)
                while try del.step() { freed += del.int(0) }
            }
            if freed != 0 { try add("bytes", -freed) }
            guard limit > 0 else { return [] }
            let st = try db.statement("""
                SELECT position, id, stream, priority, coalesce_key, captured_at, payload, sequence, carries_position
                FROM messages WHERE carries_position = 0 OR ? ORDER BY priority, position LIMIT ?
                """)
            st.bind(1, positions ? 1 : 0)
            st.bind(2, Int64(limit + excluding.count))
            var rows: [(Int64, OutboxMessage, Int64?)] = []
            while try st.step(), rows.count < limit {
                let id = st.text(1)
                if excluding.contains(id) { continue }
                let m = OutboxMessage(
                    id: id, stream: st.text(2), priority: OutboxPriority(rawValue: Int(st.int(3))) ?? .state,
                    coalesceKey: st.isNull(4) ? nil : st.text(4), capturedAtMs: st.int(5), payload: st.text(6),
                    carriesPosition: st.int(8) != 0
                )
                rows.append((st.int(0), m, st.isNull(7) ? nil : st.int(7)))
            }
            let first = try counter("next_sequence")
            var next = first
            var out: [OutboxEntry] = []
            let up = try db.statement("UPDATE messages SET sequence = ? WHERE position = ?")
            for (position, m, seq) in rows {
                if let seq {
                    out.append(OutboxEntry(message: m, sequence: seq))
                    continue
                }
                up.again()
                up.bind(1, next)
                up.bind(2, position)
                try up.run()
                out.append(OutboxEntry(message: m, sequence: next))
                next += 1
            }
            if next != first {
                let set = try db.statement("UPDATE counters SET value = ? WHERE name = 'next_sequence'")
                set.bind(1, next)
                try set.run()
            }
            return out
        }
    }

    /// Deletes every message (a factory reset: nothing personal stays in the car); the
    /// sequence counter goes on, so the backend sees no number twice. Returns how many.
    @discardableResult
    public func deleteAll() throws(OutboxError) -> Int {
        try db.transaction { () throws(OutboxError) -> Int in
            let st = try db.statement("SELECT COUNT(*) FROM messages")
            let n = try st.step() ? Int(st.int(0)) : 0
            try db.exec("DELETE FROM messages")
            let zero = try db.statement("UPDATE counters SET value = 0 WHERE name = 'bytes'")
            try zero.run()
            return n
        }
    }

    /// Deletes the unsent messages that hold a position (the user stopped sharing it); returns
    /// how many.
    @discardableResult
    public func discardUnsentPositions() throws(OutboxError) -> Int {
        try db.transaction { () throws(OutboxError) -> Int in
            let st = try db.statement("SELECT id, size FROM messages WHERE carries_position = 1 AND sequence IS NULL")
            var rows: [(String, Int64)] = []
            while try st.step() { rows.append((st.text(0), st.int(1))) }
            for (id, _) in rows {
                let del = try db.statement("DELETE FROM messages WHERE id = ?")
                del.bind(1, id)
                try del.run()
            }
            try add("bytes", -rows.reduce(0) { $0 + $1.1 })
            return rows.count
        }
    }

    public func statistics() throws(OutboxError) -> Statistics {
        defer { db.finishReads() }
        var s = Statistics()
        let st = try db.statement("SELECT priority, COUNT(*) FROM messages GROUP BY priority")
        while try st.step() {
            if let p = OutboxPriority(rawValue: Int(st.int(0))) { s.messages[p] = Int(st.int(1)) }
        }
        s.bytes = try counter("bytes")
        s.coalesced = try counter("coalesced")
        s.nextSequence = try counter("next_sequence")
        for p in OutboxPriority.allCases {
            let e = try counter("evicted_\(p.rawValue)")
            if e > 0 { s.evicted[p] = e }
        }
        return s
    }

    public func close() { db.close() }
}
