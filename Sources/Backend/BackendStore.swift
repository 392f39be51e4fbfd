import Outbox
import TelematicsCore

/// The reference backend's vehicle side: every message from every car, stored once (delivery is
/// at least once; duplicates are removed by id and counted), with the sequence numbers to find
/// what is missing.
public final class BackendStore {
    /// The largest integer a JSON number carries exactly (2^53): bigger sequence numbers and
    /// times are refused, not rounded.
    public static let largestExactInteger: Int64 = 1 << 53
    private let db: Database

    /// `path`: the SQLite file, or a PostgreSQL server's `postgresql://` URL (Database).
    public init(path: String) throws(OutboxError) {
        db = try Database(path)
        // In a transaction: two processes opening a new PostgreSQL database at once would both
        // create the tables otherwise (SQLite's file lock makes the second wait anyway).
        try db.transaction { () throws(OutboxError) in try db.exec("""
            CREATE TABLE IF NOT EXISTS messages(
                id TEXT PRIMARY KEY, vin TEXT NOT NULL, seq INTEGER, stream TEXT NOT NULL,
                type TEXT, payload TEXT NOT NULL, received_at INTEGER NOT NULL);
            CREATE INDEX IF NOT EXISTS messages_vin_seq ON messages(vin, seq);
            CREATE TABLE IF NOT EXISTS duplicates(vin TEXT PRIMARY KEY, count INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS connection(vin TEXT PRIMARY KEY, payload TEXT NOT NULL, at INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS resets(vin TEXT PRIMARY KEY, seq INTEGER NOT NULL, at INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS state(
                vin TEXT NOT NULL, block TEXT NOT NULL, seq INTEGER, captured_at INTEGER NOT NULL,
                values_json TEXT NOT NULL, received_at INTEGER NOT NULL, PRIMARY KEY(vin, block));
            CREATE TABLE IF NOT EXISTS alerts(
                id INTEGER PRIMARY KEY AUTOINCREMENT, vin TEXT NOT NULL, kind TEXT NOT NULL, at INTEGER NOT NULL, body TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS alerts_vin ON alerts(vin, id);
            CREATE TABLE IF NOT EXISTS alert_rules(vin TEXT PRIMARY KEY, state TEXT NOT NULL);
            """) }
    }

    public enum Receipt: Equatable, Sendable {
        case stored, duplicate
        /// The car asked for its data to be deleted (a factory reset), and it was.
        case dataDeleted(requestId: String)
        /// Not a message of the protocol; nothing was stored.
        case rejected(String)
    }

    /// Stores a message from `vehicles/{vin}/{stream}` once.
    @discardableResult
    public func receive(topic: String, payload: String, receivedAtMs: Int64) throws(OutboxError) -> Receipt {
        try receive([(topic, payload)], receivedAtMs: receivedAtMs)[0]
    }

    /// Stores the messages of one read from the broker, each once, together: all of them or,
    /// when the database fails, none. One receipt per message, in order. On a server the batch
    /// is one round trip (a statement per message, pipelined); a car's data deletion among
    /// them makes it one transaction of the statements below instead.
    public func receive(_ batch: [(topic: String, payload: String)], receivedAtMs: Int64) throws(OutboxError) -> [Receipt] {
        let parsed = batch.map { Self.parse(topic: $0.topic, payload: $0.payload) }
        var receipts: [Receipt?] = parsed.map { if case .refused(let rejected) = $0 { rejected } else { nil } }
        let messages = parsed.enumerated().compactMap { i, p -> (Int, Message)? in if case .message(let m) = p { (i, m) } else { nil } }
        guard !messages.isEmpty else { return receipts.map { $0! } }
        if db.isServer, !messages.contains(where: { $0.1.deletesData }) {
            let stored = try db.together(messages.map { Self.oneStatement($0.1, receivedAtMs: receivedAtMs) }) { $0.int(0) }
            for ((i, m), rows) in zip(messages, stored) { receipts[i] = m.stream == "connection" || rows.first == 1 ? .stored : .duplicate }
        } else {
            try db.transaction { () throws(OutboxError) in
                for (i, m) in messages { receipts[i] = try store(m, receivedAtMs: receivedAtMs) }
            }
        }
        return receipts.map { $0! }
    }

    /// A message of the protocol, checked: what storing it needs.
    struct Message {
        var vin: String
        var stream: String
        var payload: String
        /// Absent for the connection stream (its payload is the link's, stored as it is).
        var id = ""
        var seq: Int64?
        var type: String?
        /// A state block: its name, values and capture time.
        var state: (block: String, values: JSON, captured: Int64)?
        var deletesData: Bool { stream == "requests" && type == "deleteMyData" }
    }

    enum Parsed {
        case message(Message)
        case refused(Receipt)
    }

    /// The message checked (its topic's form, its JSON, its id; numbers from outside checked
    /// before they are converted), or the refusal that names what is wrong.
    static func parse(topic: String, payload: String) -> Parsed {
        let parts = topic.split(separator: "/", maxSplits: 2)
        guard parts.count == 3, parts[0] == "vehicles" else { return .refused(.rejected("topic \(topic): expected vehicles/{vin}/{stream}")) }
        var m = Message(vin: String(parts[1]), stream: String(parts[2]), payload: payload)
        if m.stream == "connection" { return .message(m) }
        let json: JSON
        do { json = try JSON.parse(payload) } catch { return .refused(.rejected("topic \(topic): the payload is not JSON: \(error)")) }
        guard let id = json["id"]?.stringValue, !id.isEmpty else { return .refused(.rejected("topic \(topic): the message has no \"id\" string")) }
        m.id = id
        m.type = json["type"]?.stringValue
        // A message with a bad number is refused whole, with the field named.
        if let raw = json["seq"] {
            guard let s = raw.integer(in: 0...Self.largestExactInteger) else {
                return .refused(.rejected("topic \(topic): \"seq\" must be a whole number from 0 to 2^53, found \(raw.text)"))
            }
            m.seq = s
        }
        var captured: Int64?
        if let raw = json["capturedAt"] {
            guard let c = raw.integer(in: 0...Self.largestExactInteger) else {
                return .refused(.rejected("topic \(topic): \"capturedAt\" must be milliseconds since 1970 (a whole number from 0 to 2^53), found \(raw.text)"))
            }
            captured = c
        }
        if m.stream == "state", let block = json["block"]?.stringValue, let values = json["values"], let captured {
            m.state = (block, values, captured)
        }
        return .message(m)
    }

    /// Stores one message inside the caller's transaction.
    private func store(_ m: Message, receivedAtMs: Int64) throws(OutboxError) -> Receipt {
        if m.stream == "connection" {
            try db.run(Self.connectionSQL, [.text(m.vin), .text(m.payload), .int(receivedAtMs)])
            return .stored
        }
        if m.deletesData {
            // Everything of this car goes (what it sent, its state, its last connection); only
            // the sequence number of this request stays, so that what comes next is not taken
            // for lost (it names no one).
            try deleteRows(vin: m.vin, seq: m.seq ?? 0, atMs: receivedAtMs)
            return .dataDeleted(requestId: m.id)
        }
        try db.run("INSERT INTO messages(id, vin, seq, stream, type, payload, received_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING",
                   [.text(m.id), .text(m.vin), m.seq.map { .int($0) } ?? .null, .text(m.stream), m.type.map { .text($0) } ?? .null,
                    .text(m.payload), .int(receivedAtMs)])
        if db.changes == 0 {
            try db.run("INSERT INTO duplicates(vin, count) VALUES (?, 1) ON CONFLICT(vin) DO UPDATE SET count = duplicates.count + 1", [.text(m.vin)])
            return .duplicate
        }
        if let (block, values, captured) = m.state {
            // The newest capture wins; a heartbeat (same capture, later seq) refreshes the time received.
            try db.run("""
                INSERT INTO state(vin, block, seq, captured_at, values_json, received_at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(vin, block) DO UPDATE SET seq = excluded.seq, captured_at = excluded.captured_at,
                    values_json = excluded.values_json, received_at = excluded.received_at
                WHERE excluded.captured_at > state.captured_at
                   OR (excluded.captured_at = state.captured_at AND coalesce(excluded.seq, 0) >= coalesce(state.seq, 0))
                """, [.text(m.vin), .text(block), m.seq.map { .int($0) } ?? .null, .int(captured), .text(values.text), .int(receivedAtMs)])
        }
        return .stored
    }

    private static let connectionSQL =
        "INSERT INTO connection(vin, payload, at) VALUES (?, ?, ?) ON CONFLICT(vin) DO UPDATE SET payload = excluded.payload, at = excluded.at"

    /// On a server, a message is stored in one statement (its row, or a duplicate counted; and
    /// the newest state block): atomic by itself and pipelined with the others of its batch,
    /// where `store` takes up to four round trips (the ingest's rate on a server is its round
    /// trips: docs/benchmarks.md). The same rules as `store`'s, which the file keeps (SQLite
    /// has no writing `WITH`); the store's suites run on both. Its one row: 1 when stored.
    private static func oneStatement(_ m: Message, receivedAtMs: Int64) -> (sql: String, values: [Database.Value]) {
        if m.stream == "connection" { return (connectionSQL, [.text(m.vin), .text(m.payload), .int(receivedAtMs)]) }
        let seqValue: Database.Value = m.seq.map { .int($0) } ?? .null
        return ("""
            WITH m AS (
                INSERT INTO messages(id, vin, seq, stream, type, payload, received_at) VALUES (?, ?, ?::bigint, ?, ?::text, ?, ?)
                ON CONFLICT(id) DO NOTHING RETURNING 1),
            d AS (
                INSERT INTO duplicates(vin, count) SELECT ?, 1 WHERE NOT EXISTS (SELECT 1 FROM m)
                ON CONFLICT(vin) DO UPDATE SET count = duplicates.count + 1),
            s AS (
                INSERT INTO state(vin, block, seq, captured_at, values_json, received_at)
                SELECT ?, ?::text, ?::bigint, ?::bigint, ?::text, ? WHERE ?::bigint = 1 AND EXISTS (SELECT 1 FROM m)
                ON CONFLICT(vin, block) DO UPDATE SET seq = excluded.seq, captured_at = excluded.captured_at,
                    values_json = excluded.values_json, received_at = excluded.received_at
                WHERE excluded.captured_at > state.captured_at
                   OR (excluded.captured_at = state.captured_at AND coalesce(excluded.seq, 0) >= coalesce(state.seq, 0)))
            SELECT count(*) FROM m
            """, [.text(m.id), .text(m.vin), seqValue, .text(m.stream), m.type.map { .text($0) } ?? .null, .text(m.payload), .int(receivedAtMs),
                  .text(m.vin),
                  .text(m.vin), m.state.map { .text($0.block) } ?? .null, seqValue, m.state.map { .int($0.captured) } ?? .null,
                  m.state.map { .text($0.values.text) } ?? .null, .int(receivedAtMs), .int(m.state == nil ? 0 : 1)])
    }

    /// Everything of a car (what it sent, its state, its last connection, its alerts), inside
    /// the caller's transaction; the reset's sequence number stays, so that what comes next is
    /// not taken for lost (it names no one).
    private func deleteRows(vin: String, seq: Int64, atMs: Int64) throws(OutboxError) {
        try Self.deleteRows(in: db, vin: vin, seq: seq, atMs: atMs)
    }

    private static func deleteRows(in db: Database, vin: String, seq: Int64, atMs: Int64) throws(OutboxError) {
        for table in ["messages", "state", "duplicates", "connection", "alerts", "alert_rules"] { try db.run("DELETE FROM \(table) WHERE vin = ?", [.text(vin)]) }
        try db.run("INSERT INTO resets(vin, seq, at) VALUES (?, ?, ?) ON CONFLICT(vin) DO UPDATE SET seq = CASE WHEN excluded.seq > resets.seq THEN excluded.seq ELSE resets.seq END, at = excluded.at",
                   [.text(vin), .int(seq), .int(atMs)])
    }

    /// A car's data deleted from the portal (its primary user deleted the account), as a
    /// factory reset deletes it, from the highest sequence number received: inside the
    /// caller's transaction on `db`, the backend's database (the portal's file is the same).
    public static func deleteCarData(in db: Database, vin: String, nowMs: Int64) throws(OutboxError) {
        // A database the vehicle store never opened (a portal's alone) holds no car data.
        guard try db.hasTable("resets") else { return }
        let seq = try db.query("SELECT coalesce(max(seq), 0) FROM messages WHERE vin = ?", [.text(vin)]) { $0.int(0) }.first ?? 0
        try deleteRows(in: db, vin: vin, seq: seq, atMs: nowMs)
    }

    /// Messages of a car in sequence order.
    public func messages(vin: String) throws(OutboxError) -> [(seq: Int64?, stream: String, payload: String)] {
        try db.query("SELECT seq, stream, payload FROM messages WHERE vin = ? ORDER BY seq NULLS FIRST", [.text(vin)]) { row in
            (row.isNull(0) ? nil : row.int(0), row.text(1), row.text(2))
        }
    }

    /// Missing sequence numbers between 1 (or the car's last data deletion) and the highest
    /// seen, as ranges.
    public func gaps(vin: String) throws(OutboxError) -> [ClosedRange<Int64>] {
        let from = try db.query("SELECT seq FROM resets WHERE vin = ?", [.text(vin)]) { $0.int(0) }.first ?? 0
        let seqs = try db.query("SELECT seq FROM messages WHERE vin = ? AND seq > ? ORDER BY seq", [.text(vin), .int(from)]) { $0.int(0) }
        var out: [ClosedRange<Int64>] = []
        var expected: Int64 = from + 1
        for s in seqs {
            if s > expected { out.append(expected...(s - 1)) }
            expected = max(expected, s + 1)
        }
        return out
    }

    /// Every car's figures at once (a fleet's check): messages stored, highest sequence number,
    /// duplicates removed, and whether numbers are missing (from 1, or its last data deletion,
    /// to the highest).
    public struct CarSummary: Sendable, Equatable {
        public var vin: String
        public var messages: Int64
        public var highestSequence: Int64
        public var missing: Int64
        public var duplicates: Int64
    }

    public func summary() throws(OutboxError) -> [CarSummary] {
        try db.query("""
            SELECT m.vin, count(*), max(m.seq), max(m.seq) - coalesce(r.seq, 0) - count(*), coalesce(d.count, 0)
            FROM messages m LEFT JOIN resets r ON r.vin = m.vin LEFT JOIN duplicates d ON d.vin = m.vin
            WHERE m.seq IS NOT NULL AND m.seq > coalesce(r.seq, 0) GROUP BY m.vin, r.seq, d.count ORDER BY m.vin
            """) { row in
            CarSummary(vin: row.text(0), messages: row.int(1), highestSequence: row.int(2), missing: row.int(3), duplicates: row.int(4))
        }
    }

    public func duplicates(vin: String) throws(OutboxError) -> Int64 {
        try db.query("SELECT count FROM duplicates WHERE vin = ?", [.text(vin)]) { $0.int(0) }.first ?? 0
    }

    /// The newest value of every state block of a car: block, capture time, time received
    /// (a heartbeat refreshes it), and the values as JSON text.
    public func state(vin: String) throws(OutboxError) -> [(block: String, capturedAtMs: Int64, receivedAtMs: Int64, values: String)] {
        try db.query("SELECT block, captured_at, received_at, values_json FROM state WHERE vin = ? ORDER BY block", [.text(vin)]) { row in
            (row.text(0), row.int(1), row.int(2), row.text(3))
        }
    }

    /// Whether the car's data was ever deleted at its request (a factory reset).
    public func wasReset(vin: String) throws(OutboxError) -> Bool {
        try !resetCars(among: [vin]).isEmpty
    }

    /// Those of the cars whose data was deleted (one round trip on a server).
    public func resetCars(among vins: Set<String>) throws(OutboxError) -> Set<String> {
        let vins = Array(vins)
        let found = try db.together(vins.map { ("SELECT 1 FROM resets WHERE vin = ?", [.text($0)]) }) { $0.int(0) }
        return Set(zip(vins, found).compactMap { $0.1.isEmpty ? nil : $0.0 })
    }

    public func connection(vin: String) throws(OutboxError) -> String? {
        try db.query("SELECT payload FROM connection WHERE vin = ?", [.text(vin)]) { $0.text(0) }.first
    }

    // MARK: - Alerts

    /// One stored alert: its id (increasing: an app resumes after the last it saw), the car,
    /// the kind, when the backend raised it, and what the app shows.
    public struct StoredAlert: Sendable {
        public var id: Int64
        public var vin: String
        public var kind: String
        public var atMs: Int64
        public var fields: JSON

        public var json: JSON {
            .object([("id", .number(Double(id))), ("vin", .string(vin)), ("kind", .string(kind)), ("at", .number(Double(atMs)))]
                    + (fields.objectValue ?? []))
        }
    }

    /// Runs the car's alert rules (AlertRules, its state kept here) over what it decides, and
    /// stores the alerts it gives, in one transaction. Returns how many.
    @discardableResult
    public func raiseAlerts(vin: String, nowMs: Int64, _ decide: (inout AlertRules) -> [AlertRules.Alert]) throws(OutboxError) -> Int {
        func rules() throws(OutboxError) -> AlertRules {
            let saved = try db.query("SELECT state FROM alert_rules WHERE vin = ?", [.text(vin)]) { $0.text(0) }.first
            return saved.flatMap { try? JSON.parse($0) }.map(AlertRules.init(json:)) ?? AlertRules()
        }
        // Most messages neither raise an alert nor change the rules' state (a driving block):
        // a look without a transaction settles those, without taking the writers' turn.
        var look = try rules()
        let unchanged = look
        if decide(&look).isEmpty && look == unchanged { return 0 }
        return try db.transaction { () throws(OutboxError) -> Int in
            var rules = try rules()
            let before = rules
            let alerts = decide(&rules)
            if rules != before {
                try db.run("INSERT INTO alert_rules(vin, state) VALUES (?, ?) ON CONFLICT(vin) DO UPDATE SET state = excluded.state",
                           [.text(vin), .text(rules.json.text)])
            }
            for a in alerts {
                try db.run("INSERT INTO alerts(vin, kind, at, body) VALUES (?, ?, ?, ?)",
                           [.text(vin), .text(a.kind.rawValue), .int(nowMs), .text(JSON.object(a.fields).text)])
            }
            return alerts.count
        }
    }

    /// The alerts of these cars after `afterId`, oldest first, at most `limit`.
    public func alerts(vins: [String], afterId: Int64, limit: Int) throws(OutboxError) -> [StoredAlert] {
        guard !vins.isEmpty else { return [] }
        let marks = Array(repeating: "?", count: vins.count).joined(separator: ", ")
        return try db.query("SELECT id, vin, kind, at, body FROM alerts WHERE vin IN (\(marks)) AND id > ? ORDER BY id LIMIT ?",
                            vins.map { .text($0) } + [.int(afterId), .int(Int64(limit))]) { row in
            StoredAlert(id: row.int(0), vin: row.text(1), kind: row.text(2), atMs: row.int(3), fields: (try? JSON.parse(row.text(4))) ?? .object([]))
        }
    }
}
