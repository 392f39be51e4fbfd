import Outbox

/// The reference backend's database: an SQLite file (the embedded default) or a PostgreSQL
/// server (a `postgresql://` URL), behind one face. The SQL is written once, in the common
/// part of both dialects (`?` placeholders, `ON CONFLICT`, `coalesce`); what differs is here:
/// the schema's integer types, the catalogue (tables, columns, the schema's version), how a
/// writing transaction takes its turn, and the durability setting.
public final class Database {
    public typealias Value = SQLiteHandle.Value

    /// One row of a query's answer.
    public struct Row {
        fileprivate enum Storage {
            case sqlite(SQLiteHandle.Row)
            case postgres(PostgresResult, Int32)
        }
        fileprivate let storage: Storage

        public func int(_ i: Int32) -> Int64 {
            switch storage {
            case .sqlite(let r): r.int(i)
            case .postgres(let res, let row): res.int(row, i)
            }
        }

        public func text(_ i: Int32) -> String {
            switch storage {
            case .sqlite(let r): r.text(i)
            case .postgres(let res, let row): res.text(row, i)
            }
        }

        public func isNull(_ i: Int32) -> Bool {
            switch storage {
            case .sqlite(let r): r.isNull(i)
            case .postgres(let res, let row): res.isNull(row, i)
            }
        }
    }

    private enum Engine {
        case sqlite(SQLiteHandle)
        case postgres(PostgresConnection)
    }

    private let engine: Engine
    /// The file's path or the server's URL, as given.
    public let location: String

    /// Whether `location` names a PostgreSQL server rather than a file.
    public static func isServerURL(_ location: String) -> Bool {
        location.hasPrefix("postgresql://") || location.hasPrefix("postgres://")
    }

    /// Whether a server URL carries a password (the command line refuses it: docs/security.md).
    public static func carriesPassword(_ location: String) -> Bool { isServerURL(location) && PostgresConnection.hasPassword(location) }

    /// Opens the file (WAL mode, synchronous=NORMAL: a crash of the process loses nothing
    /// committed) or takes a connection to the server.
    public init(_ location: String) throws(OutboxError) {
        self.location = location
        if Self.isServerURL(location) {
            engine = .postgres(try PostgresPool.shared.take(location))
        } else {
            let handle = try SQLiteHandle(path: location)
            try handle.enableWAL()
            // NORMAL in WAL mode survives a crash of the process (what the tests do to it); a
            // power cut of the backend's host may lose the last transactions. libmosquitto
            // acknowledges a QoS 1 message before handing it over, so a per-message fsync would
            // not close that gap.
            try handle.exec("PRAGMA synchronous=NORMAL")
            engine = .sqlite(handle)
        }
    }

    deinit {
        if case .postgres(let c) = engine { PostgresPool.shared.give(c, url: location) }
    }

    public var isServer: Bool {
        if case .postgres = engine { return true }
        return false
    }

    /// Schema statements (several at once), written in SQLite's words; PostgreSQL's integer
    /// and identity types are put in for it.
    public func exec(_ sql: String) throws(OutboxError) {
        switch engine {
        case .sqlite(let h): try h.exec(sql)
        case .postgres(let c): try c.exec(PostgresConnection.schema(sql))
        }
    }

    public func run(_ sql: String, _ values: [Value] = []) throws(OutboxError) {
        switch engine {
        case .sqlite(let h): try h.run(sql, values)
        case .postgres(let c): _ = try c.execute(sql, values)
        }
    }

    public func query<T>(_ sql: String, _ values: [Value] = [], _ row: (Row) -> T) throws(OutboxError) -> [T] {
        switch engine {
        case .sqlite(let h):
            return try h.query(sql, values) { row(Row(storage: .sqlite($0))) }
        case .postgres(let c):
            let res = try c.execute(sql, values)
            return (0..<res.count).map { row(Row(storage: .postgres(res, $0))) }
        }
    }

    /// Statements done together, all or none, each one's rows given back in order: on
    /// PostgreSQL in one round trip (libpq's pipeline), on SQLite in one transaction. For a
    /// batch of writes that need no answer in between (the broker's messages of one read).
    public func together<T>(_ statements: [(sql: String, values: [Value])], _ row: (Row) -> T) throws(OutboxError) -> [[T]] {
        switch engine {
        case .sqlite(let h):
            return try h.transaction { () throws(OutboxError) in
                try statements.map { (s) throws(OutboxError) in try h.query(s.sql, s.values) { row(Row(storage: .sqlite($0))) } }
            }
        case .postgres(let c):
            return try c.pipeline(statements).map { res in (0..<res.count).map { row(Row(storage: .postgres(res, $0))) } }
        }
    }

    /// Rows the last statement changed.
    public var changes: Int {
        switch engine {
        case .sqlite(let h): h.changes
        case .postgres(let c): c.changes
        }
    }

    /// The advisory lock every writing transaction of the backend takes on PostgreSQL.
    static let writersLock: Int64 = 0x7463_752d_6264  // "tcu-bd"

    /// Runs `body` in one transaction: all of it is stored, or none. Writers take turns (SQLite's
    /// BEGIN IMMEDIATE; an advisory lock on PostgreSQL), so that a read-then-write use case (a
    /// guess counted against a lock-out) is atomic on both.
    public func transaction<T>(_ body: () throws(OutboxError) -> T) throws(OutboxError) -> T {
        switch engine {
        case .sqlite(let h):
            return try h.transaction(body)
        case .postgres(let c):
            try c.begin(lockKey: Self.writersLock)
            do {
                let result = try body()
                try c.end(commit: true)
                return result
            } catch {
                try? c.end(commit: false)
                throw error
            }
        }
    }

    /// Whether the table exists.
    public func hasTable(_ name: String) throws(OutboxError) -> Bool {
        switch engine {
        case .sqlite:
            try !query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [.text(name)]) { $0.int(0) }.isEmpty
        case .postgres:
            try !query("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?",
                       [.text(name)]) { $0.int(0) }.isEmpty
        }
    }

    /// The table's columns.
    public func columns(of table: String) throws(OutboxError) -> [String] {
        switch engine {
        case .sqlite(let h):
            try h.query("SELECT name FROM pragma_table_info(?)", [.text(table)]) { $0.text(0) }
        case .postgres:
            try query("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?",
                      [.text(table)]) { $0.text(0) }
        }
    }

    /// The schema's version (SQLite's `user_version`; a one-row table on PostgreSQL), 0 for a
    /// new database.
    public func schemaVersion() throws(OutboxError) -> Int64 {
        switch engine {
        case .sqlite(let h):
            return try h.query("PRAGMA user_version", []) { $0.int(0) }.first ?? 0
        case .postgres:
            guard try hasTable("schema_version") else { return 0 }
            return try query("SELECT version FROM schema_version", []) { $0.int(0) }.first ?? 0
        }
    }

    public func setSchemaVersion(_ version: Int64) throws(OutboxError) {
        switch engine {
        case .sqlite(let h):
            try h.exec("PRAGMA user_version = \(version)")
        case .postgres(let c):
            try c.exec("CREATE TABLE IF NOT EXISTS schema_version(version BIGINT NOT NULL); DELETE FROM schema_version")
            _ = try c.execute("INSERT INTO schema_version(version) VALUES (?)", [.int(version)])
        }
    }
}
