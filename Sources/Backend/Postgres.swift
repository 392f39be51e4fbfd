import CPostgres
import Outbox
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One connection to a PostgreSQL server through libpq, used by one thread at a time (the
/// pool hands it to one `Database` until that one is done with it). Statements are prepared
/// once per connection and kept; values travel as text with their types named (`bigint`,
/// `text`; a NULL's type is left to the server).
final class PostgresConnection: @unchecked Sendable {
    private var conn: OpaquePointer?
    /// The URL without its password, for messages.
    let location: String
    private let url: String
    /// SQL (with its values' types) → the prepared statement's name.
    private var prepared: [String: String] = [:]
    /// Rows the last statement changed.
    private(set) var changes = 0

    init(url: String) throws(OutboxError) {
        self.url = url
        location = PostgresConnection.redacted(url)
        try connect()
    }

    deinit { if let conn { PQfinish(conn) } }

    private func connect() throws(OutboxError) {
        if let conn { PQfinish(conn) }
        prepared.removeAll()
        conn = PQconnectdb(url)
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            let why = conn.map { Self.message(PQerrorMessage($0)) } ?? "out of memory"
            throw OutboxError(message: "cannot connect to PostgreSQL at \(location): \(why)", code: OutboxError.otherDatabase)
        }
        // What the session needs whatever the server's defaults: no notices on standard error
        // (CREATE TABLE IF NOT EXISTS gives one), UTC, and commits that do not wait for the
        // disk (the same guarantee as SQLite's synchronous=NORMAL in WAL mode: a crash of this
        // process loses nothing committed; a crash of the server's host may lose the last
        // moment's). A message is acknowledged to the broker only after it is committed.
        try exec("SET client_min_messages = warning; SET TIME ZONE 'UTC'; SET synchronous_commit = off")
    }

    /// Whether the connection can be used again by someone else (alive, no transaction open).
    var reusable: Bool { conn.map { PQstatus($0) == CONNECTION_OK && PQtransactionStatus($0) == PQTRANS_IDLE } ?? false }

    /// Statements without values, several at once (the schema).
    func exec(_ sql: String) throws(OutboxError) {
        let res = PQexec(conn, sql)
        defer { PQclear(res) }
        try check(res, sql)
    }

    /// One statement with its values (`?` placeholders, numbered for the server here).
    func execute(_ sql: String, _ values: [SQLiteHandle.Value]) throws(OutboxError) -> PostgresResult {
        do { return try attempt(sql, values) } catch {
            // A connection the server dropped (its restart) is opened again once, outside a
            // transaction only: inside one, what was done is gone with it and the caller must know.
            guard conn.map({ PQstatus($0) == CONNECTION_BAD }) ?? true, !inTransaction else { throw error }
            try connect()
            return try attempt(sql, values)
        }
    }

    private var inTransaction = false

    func begin(lockKey: Int64) throws(OutboxError) {
        // Writers take turns, as SQLite's BEGIN IMMEDIATE makes them: a use case that reads and
        // then writes (a guess counted against a lock-out) sees no other's half-done work.
        if conn.map({ PQstatus($0) == CONNECTION_BAD }) ?? true { try connect() }
        try exec("BEGIN; SELECT pg_advisory_xact_lock(\(lockKey))")
        inTransaction = true
    }

    func end(commit: Bool) throws(OutboxError) {
        inTransaction = false
        if commit { try exec("COMMIT") } else { _ = try? exec("ROLLBACK") }
    }

    private func attempt(_ sql: String, _ values: [SQLiteHandle.Value]) throws(OutboxError) -> PostgresResult {
        let name = try prepare(sql, values)
        let res = Self.withTexts(values) { PQexecPrepared(conn, name, Int32(values.count), $0, nil, nil, 0) }
        do { try check(res, sql) } catch {
            PQclear(res)
            throw error
        }
        let result = PostgresResult(res!)
        changes = Int(String(cString: PQcmdTuples(res))) ?? 0
        return result
    }

    /// The statement's prepared name on this connection, prepared now if it is new.
    private func prepare(_ sql: String, _ values: [SQLiteHandle.Value]) throws(OutboxError) -> String {
        let types: [Oid] = values.map {
            switch $0 {
            case .int: 20  // bigint
            case .text: 25  // text
            case .null: 0  // the server's guess from where it stands
            }
        }
        let key = sql + "\u{0}" + types.map { String($0) }.joined(separator: ",")
        if let known = prepared[key] { return known }
        let name = "s\(prepared.count + 1)"
        let text = Self.numberedPlaceholders(sql)
        let res = types.withUnsafeBufferPointer { PQprepare(conn, name, text, Int32(types.count), $0.baseAddress) }
        defer { PQclear(res) }
        try check(res, sql)
        prepared[key] = name
        return name
    }

    /// The values as libpq takes them (text; NULL as a null pointer), for `body`'s call.
    private static func withTexts<R>(_ values: [SQLiteHandle.Value], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
        var texts: [UnsafeMutablePointer<CChar>?] = values.map {
            switch $0 {
            case .int(let n): strdup(String(n))
            case .text(let t): strdup(t)
            case .null: nil
            }
        }
        defer { for t in texts { free(t) } }
        return texts.withUnsafeMutableBufferPointer { buf in
            buf.withMemoryRebound(to: UnsafePointer<CChar>?.self) { body($0.baseAddress) }
        }
    }

    /// Statements sent together and answered together (libpq's pipeline mode): one round trip
    /// for all of them, and one implicit transaction: all are done, or, when one fails, none.
    /// Outside a transaction only. (Their answers are small; the caller keeps the number of
    /// statements bounded, so that the server's answers never fill the socket while this side
    /// is still sending.)
    func pipeline(_ statements: [(sql: String, values: [SQLiteHandle.Value])]) throws(OutboxError) -> [PostgresResult] {
        if conn.map({ PQstatus($0) == CONNECTION_BAD }) ?? true { try connect() }
        let names = try statements.map { (s) throws(OutboxError) in try prepare(s.sql, s.values) }
        guard PQenterPipelineMode(conn) == 1 else {
            throw OutboxError(message: "cannot enter pipeline mode: \(Self.message(PQerrorMessage(conn)))", code: OutboxError.otherDatabase)
        }
        var sent = 0
        for (name, statement) in zip(names, statements) {
            let ok = Self.withTexts(statement.values) { PQsendQueryPrepared(conn, name, Int32(statement.values.count), $0, nil, nil, 0) }
            guard ok == 1 else { break }
            sent += 1
        }
        let synced = PQpipelineSync(conn) == 1
        // The answers: each statement's result then a NULL; the sync point's last. After a
        // failure the rest come as "aborted" and the server rolls the whole back.
        var results: [PostgresResult] = []
        var failure: OutboxError?
        for statement in statements.prefix(sent) {
            guard let res = PQgetResult(conn) else { break }
            while let extra = PQgetResult(conn) { PQclear(extra) }
            if PQresultStatus(res) == PGRES_PIPELINE_ABORTED {
                PQclear(res)
                continue
            }
            do { try check(res, statement.sql) } catch {
                PQclear(res)
                if failure == nil { failure = error }
                continue
            }
            results.append(PostgresResult(res))
        }
        if synced, let sync = PQgetResult(conn) { PQclear(sync) }
        if PQexitPipelineMode(conn) != 1 {
            // Left mid-way (the connection broke): it is not used again as it is.
            PQfinish(conn)
            conn = nil
            prepared.removeAll()
        }
        if let failure { throw failure }
        guard sent == statements.count, synced, results.count == statements.count else {
            throw OutboxError(message: "the pipeline of \(statements.count) statements was cut off at \(results.count): \(conn.map { Self.message(PQerrorMessage($0)) } ?? "the connection broke")",
                              code: OutboxError.otherDatabase)
        }
        return results
    }

    private func check(_ res: OpaquePointer?, _ sql: String) throws(OutboxError) {
        let status = res.map(PQresultStatus) ?? PGRES_FATAL_ERROR
        guard status != PGRES_COMMAND_OK, status != PGRES_TUPLES_OK else { return }
        var why = res.map { Self.message(PQresultErrorMessage($0)) } ?? ""
        if why.isEmpty { why = conn.map { Self.message(PQerrorMessage($0)) } ?? "no connection" }
        let state = res.flatMap { PQresultErrorField($0, Int32(UInt8(ascii: "C"))) }.map { String(cString: $0) }
        throw OutboxError(message: "\(sql): \(why)\(state.map { " (SQLSTATE \($0))" } ?? "")", code: OutboxError.otherDatabase)
    }

    private static func message(_ p: UnsafeMutablePointer<CChar>?) -> String {
        guard let p else { return "" }
        var s = String(cString: p)
        while s.last == "\n" { s.removeLast() }
        return s
    }

    /// `?` placeholders numbered `$1`, `$2`, ... as the server wants them; a `?` inside a
    /// quoted literal or name stays.
    static func numberedPlaceholders(_ sql: String) -> String {
        var out = ""
        var n = 0
        var quote: Character?
        for c in sql {
            if let q = quote {
                if c == q { quote = nil }
                out.append(c)
            } else if c == "'" || c == "\"" {
                quote = c
                out.append(c)
            } else if c == "?" {
                n += 1
                out += "$\(n)"
            } else {
                out.append(c)
            }
        }
        return out
    }

    /// The schema's SQL as PostgreSQL takes it: SQLite's INTEGER is 64 bits (PostgreSQL's
    /// `integer` is 32: `bigint` here), and its AUTOINCREMENT key is an identity column.
    static func schema(_ sql: String) -> String {
        let identity = sql.replacing("INTEGER PRIMARY KEY AUTOINCREMENT", with: "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        return identity.replacing(" INTEGER", with: " BIGINT")
    }

    /// The URL without a password, if one was written in it.
    static func redacted(_ url: String) -> String {
        guard let scheme = url.firstRange(of: "://") else { return url }
        let rest = url[scheme.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }

    /// Whether the URL carries a password (refused on a command line: docs/security.md).
    static func hasPassword(_ url: String) -> Bool {
        redacted(url) != url || url.contains("password=")
    }
}

/// A statement's rows, read as text (the server's text form of every type).
final class PostgresResult {
    private let res: OpaquePointer

    init(_ res: OpaquePointer) { self.res = res }
    deinit { PQclear(res) }

    var count: Int32 { PQntuples(res) }
    func isNull(_ row: Int32, _ col: Int32) -> Bool { PQgetisnull(res, row, col) != 0 }
    func text(_ row: Int32, _ col: Int32) -> String {
        guard let p = PQgetvalue(res, row, col) else { return "" }
        return String(cString: p)
    }
    func int(_ row: Int32, _ col: Int32) -> Int64 { Int64(text(row, col)) ?? 0 }
}

/// Connections kept open for the next `Database` on the same URL: the app API opens the
/// portal for each request, and a PostgreSQL connection is a server process, not a file.
final class PostgresPool: Sendable {
    static let shared = PostgresPool()
    /// Idle connections kept per URL; more are closed when given back.
    static let idleLimit = 16
    private let idle = Mutex<[String: [PostgresConnection]]>([:])

    func take(_ url: String) throws(OutboxError) -> PostgresConnection {
        let kept = idle.withLock { $0[url]?.popLast() }
        if let kept, kept.reusable { return kept }
        return try PostgresConnection(url: url)
    }

    func give(_ connection: PostgresConnection, url: String) {
        guard connection.reusable else { return }
        idle.withLock {
            if $0[url, default: []].count < Self.idleLimit { $0[url, default: []].append(connection) }
        }
    }
}
