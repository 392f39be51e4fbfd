import CSQLite
#if canImport(Glibc)
import Glibc
#endif

/// The Outbox module's one error type, and the reference backend's storage error: what
/// failed, the database's message, and SQLite's result code (`otherDatabase` for another
/// database's error, PostgreSQL's, whose message carries its own code).
public struct OutboxError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var code: Int32
    public var description: String { code == Self.otherDatabase ? message : "\(message) (SQLite \(code))" }
    public static let otherDatabase: Int32 = -1

    public init(message: String, code: Int32) {
        self.message = message
        self.code = code
    }

    /// The database file is damaged or is not a database at all.
    public var isCorruption: Bool { code == SQLITE_CORRUPT || code == SQLITE_NOTADB }
    /// The disk is full (or the database hit its size limit).
    public var isFull: Bool { code == SQLITE_FULL }
}

/// A thin handle on one SQLite connection; used from one thread (the outbox's).
final class SQLiteDatabase {
    private(set) var handle: OpaquePointer?
    private var statements: [String: OpaquePointer] = [:]

    init(path: String) throws(OutboxError) {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(db)
            throw OutboxError(message: "cannot open \(path): \(msg)", code: rc)
        }
        handle = db
        sqlite3_busy_timeout(db, 1000)
    }

    deinit { close() }

    func close() {
        for (_, s) in statements { sqlite3_finalize(s) }
        statements.removeAll()
        if let handle { sqlite3_close_v2(handle) }
        handle = nil
    }

    func error(_ what: String, _ rc: Int32) -> OutboxError {
        let msg = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "closed"
        return OutboxError(message: "\(what): \(msg)", code: rc)
    }

    func exec(_ sql: String) throws(OutboxError) {
        let rc = sqlite3_exec(handle, sql, nil, nil, nil)
        guard rc == SQLITE_OK else { throw error(sql, rc) }
    }

    /// A cached prepared statement, reset and cleared for a new use.
    func statement(_ sql: String) throws(OutboxError) -> Statement {
        if let s = statements[sql] {
            sqlite3_reset(s)
            sqlite3_clear_bindings(s)
            return Statement(db: self, stmt: s, sql: sql)
        }
        var s: OpaquePointer?
        let rc = sqlite3_prepare_v2(handle, sql, -1, &s, nil)
        guard rc == SQLITE_OK, let s else { throw error("prepare \(sql)", rc) }
        statements[sql] = s
        return Statement(db: self, stmt: s, sql: sql)
    }

    /// Runs `body` in one transaction (BEGIN IMMEDIATE ... COMMIT), rolling back on error.
    public func transaction<T>(_ body: () throws(OutboxError) -> T) throws(OutboxError) -> T {
        try exec("BEGIN IMMEDIATE")
        do {
            let result = try body()
            // Before the commit: the automatic checkpoint runs in it and needs no statement active.
            finishReads()
            try exec("COMMIT")
            return result
        } catch {
            finishReads()
            _ = sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
            throw error
        }
    }

    /// Resets every cached statement. While a statement is left on a row, the WAL cannot be
    /// checkpointed, and it grows without end. Call after every read outside `transaction`.
    func finishReads() {
        for (_, s) in statements { sqlite3_reset(s) }
    }

    var changes: Int { Int(sqlite3_changes(handle)) }
}

struct Statement {
    let db: SQLiteDatabase
    let stmt: OpaquePointer
    let sql: String

    func bind(_ i: Int32, _ v: Int64) { sqlite3_bind_int64(stmt, i, v) }
    func bind(_ i: Int32, _ v: String?) {
        guard let v else { sqlite3_bind_null(stmt, i); return }
        var copy = v
        copy.withUTF8 { buf in
            buf.withMemoryRebound(to: CChar.self) { _ = csq_bind_text(stmt, i, $0.baseAddress, Int32($0.count)) }
        }
    }

    /// Steps once: true while a row is available.
    func step() throws(OutboxError) -> Bool {
        let rc = sqlite3_step(stmt)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        throw db.error(sql, rc)
    }

    func run() throws(OutboxError) { while try step() {} }

    /// Ready for another run with new values (a statement used many times in a loop, found in
    /// the cache once).
    func again() {
        sqlite3_reset(stmt)
        sqlite3_clear_bindings(stmt)
    }

    func int(_ col: Int32) -> Int64 { sqlite3_column_int64(stmt, col) }
    func isNull(_ col: Int32) -> Bool { sqlite3_column_type(stmt, col) == SQLITE_NULL }
    func text(_ col: Int32) -> String {
        guard let p = sqlite3_column_text(stmt, col) else { return "" }
        let n = Int(sqlite3_column_bytes(stmt, col))
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }
}

/// A small public face of the SQLite handle, for the reference backend's own database.
public final class SQLiteHandle {
    public enum Value { case int(Int64), text(String), null }

    public struct Row {
        let statement: Statement
        public func int(_ i: Int32) -> Int64 { statement.int(i) }
        public func text(_ i: Int32) -> String { statement.text(i) }
        public func isNull(_ i: Int32) -> Bool { statement.isNull(i) }
    }

    private let db: SQLiteDatabase

    /// The database file's path.
    public let path: String

    public init(path: String) throws(OutboxError) {
        self.path = path
        db = try SQLiteDatabase(path: path)
    }

    public func exec(_ sql: String) throws(OutboxError) { try db.exec(sql) }

    /// Puts the file in WAL mode (it stays so). Switching needs the file to itself, and SQLite
    /// answers "locked" at once, without its busy handler, while another process switches it
    /// too (two processes opening a new file together): the switch is made holding flock(2) on
    /// `PATH-init.lock`, which the other process waits for, and then finds the file in WAL mode.
    /// (The lock file stays beside the database: it is empty.)
    public func enableWAL() throws(OutboxError) {
        func isWAL() throws(OutboxError) -> Bool { try query("PRAGMA journal_mode", [], { $0.text(0) }).first?.lowercased() == "wal" }
        if try isWAL() { return }
        let fd = open(path + "-init.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw OutboxError(message: "cannot open \(path)-init.lock (errno \(errno))", code: SQLITE_CANTOPEN) }
        defer { close(fd) }  // (and the lock with it)
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else { throw OutboxError(message: "cannot lock \(path)-init.lock (errno \(errno))", code: SQLITE_BUSY) }
        }
        if try isWAL() { return }
        try exec("PRAGMA journal_mode=WAL")
    }

    public var changes: Int { db.changes }

    /// Runs `body` in one transaction: all of it is stored, or none.
    public func transaction<T>(_ body: () throws(OutboxError) -> T) throws(OutboxError) -> T { try db.transaction(body) }

    private func prepared(_ sql: String, _ values: [Value]) throws(OutboxError) -> Statement {
        let st = try db.statement(sql)
        for (i, v) in values.enumerated() {
            switch v {
            case .int(let n): st.bind(Int32(i + 1), n)
            case .text(let t): st.bind(Int32(i + 1), t)
            case .null: st.bind(Int32(i + 1), nil as String?)
            }
        }
        return st
    }

    public func run(_ sql: String, _ values: [Value] = []) throws(OutboxError) {
        try prepared(sql, values).run()
    }

    public func query<T>(_ sql: String, _ values: [Value] = [], _ row: (Row) -> T) throws(OutboxError) -> [T] {
        let st = try prepared(sql, values)
        var out: [T] = []
        while try st.step() { out.append(row(Row(statement: st))) }
        return out
    }
}
