import Crypto
import CryptoExtras
import Outbox
import TelematicsCore

/// Why the portal refused something: a stable code for scripts and apps, and the sentence a
/// person reads.
public struct PortalError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: String
    public var message: String
    /// For "locked": how long until a try is allowed again.
    public var retryAfterMs: Int64?
    /// For "wrongSPIN": how many tries are left before the S-PIN locks.
    public var remainingTries: Int?
    public var description: String { message }

    public init(_ code: String, _ message: String, retryAfterMs: Int64? = nil) {
        self.code = code
        self.message = message
        self.retryAfterMs = retryAfterMs
    }
}

/// Which cars the connected services support (the seed's list; the real one is the
/// manufacturer's). Pure rules, checked when a car is added to a garage.
public enum Compatibility {
    /// Model → first build month (YYYY-MM) that has the connectivity unit (ConnectedModels).
    public static let models = ConnectedModels.firstBuildMonth

    /// The 38 countries the product page lists (ConnectedModels).
    public static let countries = ConnectedModels.countries

    /// The free trial a first registration starts. The product page: it "may vary by country
    /// and equipment level, but always lasts at least 12 months". It gives no figures beyond
    /// that minimum, so every country here gets 12 calendar months (`trialMonths` holds the
    /// exceptions a market would add; none is known: an assumption, docs/protocol.md). The
    /// services follow the equipment: a car with navigation gets the Navi set (`trial-navi`:
    /// online infotainment and apps too), one without it the Radio set (`trial`).
    public static let trialMonths: [String: Int] = [:]
    public static let minimumTrialMonths = 12

    public static func trial(country: String, navigation: Bool, startMs: Int64) -> (package: String, endMs: Int64) {
        let months = max(minimumTrialMonths, trialMonths[country] ?? minimumTrialMonths)
        return (navigation ? "trial-navi" : "trial", addingCalendarMonths(months, to: startMs))
    }

    /// nil when supported; otherwise why not.
    public static func check(model: String, built: String, country: String) -> PortalError? {
        guard built.count >= 7, built.utf8.prefix(7).enumerated().allSatisfy({ i, c in i == 4 ? c == UInt8(ascii: "-") : (48...57).contains(c) }) else {
            return PortalError("invalidBuildDate", "the build date '\(built)' is not YYYY-MM or YYYY-MM-DD")
        }
        guard let from = models[model] else {
            return PortalError("modelNotSupported", "the \(model) is not compatible with the connected services")
        }
        guard String(built.prefix(7)) >= from else {
            return PortalError("modelNotSupported", "a \(model) built in \(built.prefix(7)) is not compatible (from \(from))")
        }
        guard countries.contains(country) else {
            return PortalError("countryNotSupported", "the connected services are not offered in \(country)")
        }
        return nil
    }
}

/// The portal side of the reference backend: accounts ("SEAT ID") and garages, and the
/// pairing code a car is registered with. Kept in the backend's SQLite file.
public final class Portal {
    let db: Database
    /// PBKDF2-HMAC-SHA256 rounds for new passwords and S-PINs (OWASP 2023: 600 000); each
    /// account keeps the rounds it was hashed with, so the figure can grow.
    public static let rounds = 600_000
    let rounds: Int
    /// A pairing code is valid this long.
    public static let codeValidityMs: Int64 = 365 * 24 * 3_600_000

    /// `rounds`: fewer only in tests, where the hash's cost is not what is tested.
    public init(path: String, rounds: Int = Portal.rounds) throws(OutboxError) {
        self.rounds = rounds
        db = try Database(path)
        // A file at this schema's version needs nothing (every request of the app API opens
        // the portal: no write lock for it).
        // (A newer program's file is left as it is.)
        guard try db.schemaVersion() < Self.schemaVersion else { return }
        // The schema and its migrations in one immediate transaction: two processes opening a
        // new file at once (tcu-backend serve and a portal command) once both found a column
        // missing and the second ALTER failed; now the second waits and finds it there.
        try db.transaction { () throws(OutboxError) in
            try db.exec("""
                CREATE TABLE IF NOT EXISTS accounts(
                    email TEXT PRIMARY KEY, salt TEXT NOT NULL, hash TEXT NOT NULL, spin_salt TEXT NOT NULL, spin_hash TEXT NOT NULL,
                    rounds INTEGER NOT NULL, verified INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL);
                CREATE TABLE IF NOT EXISTS garage(
                    vin TEXT PRIMARY KEY, email TEXT NOT NULL, model TEXT NOT NULL, built TEXT NOT NULL, country TEXT NOT NULL,
                    code TEXT NOT NULL, code_expires_at INTEGER NOT NULL, code_used_at INTEGER, added_at INTEGER NOT NULL,
                    terms_accepted_at INTEGER NOT NULL, role TEXT, enrolment TEXT NOT NULL DEFAULT 'notStarted',
                    licence_expires_at INTEGER, licence_package TEXT);
                CREATE TABLE IF NOT EXISTS registration_attempts(vin TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until INTEGER);
                CREATE TABLE IF NOT EXISTS login_attempts(email TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until INTEGER);
                CREATE TABLE IF NOT EXISTS spin_attempts(email TEXT PRIMARY KEY, failures INTEGER NOT NULL, locked_until INTEGER);
                CREATE TABLE IF NOT EXISTS command_keys(vin TEXT PRIMARY KEY, key TEXT NOT NULL, counter INTEGER NOT NULL DEFAULT 0);
                CREATE TABLE IF NOT EXISTS backend_keys(name TEXT PRIMARY KEY, value TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS commands(
                    id TEXT PRIMARY KEY, vin TEXT NOT NULL, action TEXT NOT NULL, "user" TEXT NOT NULL, status TEXT NOT NULL,
                    cause TEXT, expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, body TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS car_users(
                    vin TEXT NOT NULL, email TEXT NOT NULL, role TEXT NOT NULL CHECK(role IN ('secondary', 'guest')),
                    added_at INTEGER NOT NULL, PRIMARY KEY(vin, email));
                """)
            // The licence belongs to the car, not to a garage entry: removing the car from a garage
            // and adding it again neither ends it nor starts a second trial. (Before, it was kept
            // in the garage row; such licences move here once.)
            try db.exec("""
                CREATE TABLE IF NOT EXISTS licences(
                    vin TEXT PRIMARY KEY, package TEXT NOT NULL, expires_at INTEGER NOT NULL, trial_started_at INTEGER NOT NULL);
                INSERT INTO licences(vin, package, expires_at, trial_started_at)
                    SELECT vin, licence_package, licence_expires_at, code_used_at FROM garage
                    WHERE licence_expires_at IS NOT NULL AND code_used_at IS NOT NULL
                    ON CONFLICT DO NOTHING;
                """)
            // When the password last changed: every session and token from before is void (the
            // FAQ: the new password must be typed again on every device). Added to older files once.
            if try !db.columns(of: "accounts").contains("password_changed_at") {
                try db.exec("ALTER TABLE accounts ADD COLUMN password_changed_at INTEGER NOT NULL DEFAULT 0")
            }
            try migrateAccounts()
            try db.setSchemaVersion(Self.schemaVersion)
        }
    }

    /// The portal schema's version (`Database.schemaVersion`): 1 added the password's change time,
    /// 2 user names, mobile numbers, mailed links and the mail queue. A file at an older
    /// version is brought up to it when opened; the steps are idempotent.
    static let schemaVersion: Int64 = 2

    static func hash(_ secret: String, salt: [UInt8], rounds: Int) -> String {
        // Errors only for out-of-range parameters, which these are not.
        let key = try! KDF.Insecure.PBKDF2.deriveKey(from: Array(secret.utf8), salt: salt, using: .sha256, outputByteCount: 32,
                                                     unsafeUncheckedRounds: rounds)
        return key.withUnsafeBytes { hexBytes(Array($0)) }
    }

    static func salt() -> [UInt8] {
        var g = SystemRandomNumberGenerator()
        return (0..<2).flatMap { _ -> [UInt8] in
            let w = g.next()
            return (0..<8).map { UInt8(truncatingIfNeeded: w >> (8 * UInt64($0))) }
        }
    }

    /// `body` in one immediate transaction: committed when it returns, rolled back when it
    /// throws (its refusal is thrown again), so that a use case's rows are written together.
    func transaction<T>(_ body: () throws(PortalError) -> T) throws(PortalError) -> T {
        var refusal: PortalError?
        do {
            return try db.transaction { () throws(OutboxError) -> T in
                do throws(PortalError) { return try body() } catch {
                    refusal = error
                    throw OutboxError(message: "rolled back: \(error.code)", code: 0)
                }
            }
        } catch {
            throw refusal ?? PortalError("storage", "\(error)")
        }
    }

    func run(_ sql: String, _ values: [Database.Value]) throws(PortalError) {
        do { try db.run(sql, values) } catch { throw PortalError("storage", "\(error)") }
    }

    func query<T>(_ sql: String, _ values: [Database.Value], _ row: (Database.Row) -> T) throws(PortalError) -> [T] {
        do { return try db.query(sql, values, row) } catch { throw PortalError("storage", "\(error)") }
    }
}
