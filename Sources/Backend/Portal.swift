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
    /// Model → first build month (YYYY-MM) that has the connectivity unit. The product page
    /// gives Leon from May 2020 and Arona, Ateca, Ibiza and Tarraco from September 2020; it
    /// names the Mii electric with no date: September 2019, when its production began, is the
    /// project's assumption (docs/protocol.md).
    public static let models: [String: String] = [
        "Mii electric": "2019-09", "Leon": "2020-05",
        "Arona": "2020-09", "Ateca": "2020-09", "Ibiza": "2020-09", "Tarraco": "2020-09",
    ]

    /// The 38 countries the product page lists, in its order: Allemagne, Belgique, République
    /// tchèque, Danemark, Finlande, Norvège, Suède, France, Grande-Bretagne, Irlande, Autriche,
    /// Suisse, Italie, Espagne, Portugal, Pologne, Hongrie, Grèce, Chypre, Pays-Bas, Luxembourg,
    /// Bulgarie, Roumanie, Croatie, Slovénie, Malte, Slovaquie, Andorre, Estonie, Lettonie,
    /// Lituanie, Serbie, Albanie, Macédoine (du Nord), Bosnie-Herzégovine, Ukraine, Monténégro
    /// and Gibraltar (ISO 3166-1 alpha-2; Grande-Bretagne is the United Kingdom's code, GB).
    public static let countries: [String] = [
        "DE", "BE", "CZ", "DK", "FI", "NO", "SE", "FR", "GB", "IE", "AT", "CH", "IT", "ES", "PT", "PL", "HU", "GR", "CY",
        "NL", "LU", "BG", "RO", "HR", "SI", "MT", "SK", "AD", "EE", "LV", "LT", "RS", "AL", "MK", "BA", "UA", "ME", "GI",
    ]

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
    let db: SQLiteHandle
    /// PBKDF2-HMAC-SHA256 rounds for new passwords and S-PINs (OWASP 2023: 600 000); each
    /// account keeps the rounds it was hashed with, so the figure can grow.
    public static let rounds = 600_000
    let rounds: Int
    /// A pairing code is valid this long.
    public static let codeValidityMs: Int64 = 365 * 24 * 3_600_000

    /// `rounds`: fewer only in tests, where the hash's cost is not what is tested.
    public init(path: String, rounds: Int = Portal.rounds) throws(OutboxError) {
        self.rounds = rounds
        db = try SQLiteHandle(path: path)
        try db.enableWAL()
        try db.exec("PRAGMA synchronous=NORMAL")
        // A file at this schema's version needs nothing (every request of the app API opens
        // the portal: no write lock for it).
        // (A newer program's file is left as it is.)
        guard (try db.query("PRAGMA user_version", [], { $0.int(0) }).first ?? 0) < Self.schemaVersion else { return }
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
                    id TEXT PRIMARY KEY, vin TEXT NOT NULL, action TEXT NOT NULL, user TEXT NOT NULL, status TEXT NOT NULL,
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
                INSERT OR IGNORE INTO licences(vin, package, expires_at, trial_started_at)
                    SELECT vin, licence_package, licence_expires_at, code_used_at FROM garage
                    WHERE licence_expires_at IS NOT NULL AND code_used_at IS NOT NULL;
                """)
            // When the password last changed: every session and token from before is void (the
            // FAQ: the new password must be typed again on every device). Added to older files once.
            let columns = try db.query("PRAGMA table_info(accounts)") { $0.text(1) }
            if !columns.contains("password_changed_at") {
                try db.exec("ALTER TABLE accounts ADD COLUMN password_changed_at INTEGER NOT NULL DEFAULT 0")
            }
            try migrateAccounts()
            try db.exec("PRAGMA user_version = \(Self.schemaVersion)")
        }
    }

    /// The portal schema's version (`PRAGMA user_version`): 1 added the password's change time,
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

    /// Creates an account: the password (at least 10 characters) and the 4-digit S-PIN are
    /// stored as salted PBKDF2 hashes, never as they are. The e-mail must be verified before
    /// a car can be added.
    /// A user name and a mobile number (already checked: `signUp`) are optional, each unique;
    /// `alongside` runs in the same transaction as the insert (the verification mail).
    public func addUser(email: String, password: String, spin: String, userName: String? = nil, mobile: String? = nil, nowMs: Int64,
                        alongside: () throws(OutboxError) -> Void = {}) throws(PortalError) {
        let at = email.firstIndex(of: "@")
        guard let at, at != email.startIndex, email[email.index(after: at)...].contains("."), !email.contains(" ") else {
            throw PortalError("invalidEmail", "'\(email)' is not an e-mail address")
        }
        guard password.count >= 10 else { throw PortalError("weakPassword", "the password needs at least 10 characters") }
        guard spin.count == 4, spin.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw PortalError("invalidSPIN", "the S-PIN is 4 digits")
        }
        let key = try Self.accountKey(email)
        let salt = Self.salt(), spinSalt = Self.salt()
        // The slow hashes first, outside the transaction.
        let hash = Self.hash(password, salt: salt, rounds: rounds), spinHash = Self.hash(spin, salt: spinSalt, rounds: rounds)
        var taken: PortalError?
        do {
            try db.transaction { () throws(OutboxError) in
                if try !db.query("SELECT 1 FROM accounts WHERE email = ?", [.text(key)], { _ in true }).isEmpty {
                    taken = PortalError("accountExists", "there already is an account for \(key)")
                } else if let userName, try !db.query("SELECT 1 FROM accounts WHERE user_name = ?", [.text(userName)], { _ in true }).isEmpty {
                    taken = PortalError("userNameTaken", "the user name \(userName) is taken: choose another")
                } else if let mobile, try !db.query("SELECT 1 FROM accounts WHERE mobile = ?", [.text(mobile)], { _ in true }).isEmpty {
                    taken = PortalError("mobileTaken", "the mobile number \(mobile) belongs to another account")
                }
                guard taken == nil else { return }
                try db.run("""
                    INSERT INTO accounts(email, salt, hash, spin_salt, spin_hash, rounds, created_at, user_name, mobile)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, [.text(key), .text(hexBytes(salt)), .text(hash), .text(hexBytes(spinSalt)), .text(spinHash), .int(Int64(rounds)),
                          .int(nowMs), userName.map { .text($0) } ?? .null, mobile.map { .text($0) } ?? .null])
                try alongside()
            }
        } catch {
            throw PortalError("storage", "\(error)")
        }
        if let taken { throw taken }
    }

    public func verifyEmail(_ email: String) throws(PortalError) {
        try run("UPDATE accounts SET verified = 1 WHERE email = ?", [.text(email.lowercased())])
        guard db.changes == 1 else { throw PortalError("noAccount", "there is no account for \(email)") }
    }

    /// Changes the password: the current one must be right (wrong ones count like a log-in's),
    /// the new one at least 10 characters. Every session and security token issued before is
    /// void from now on (`passwordChangedAt`): the new password is typed again on every device.
    public func changePassword(email: String, current: String, new: String, nowMs: Int64) throws(PortalError) {
        try logIn(email: email, password: current, nowMs: nowMs)
        guard new.count >= 10 else { throw PortalError("weakPassword", "the password needs at least 10 characters") }
        try setPassword(email: email, new, nowMs: nowMs)
    }

    /// A new password hash; every session and token issued before is void from `nowMs`.
    func setPassword(email: String, _ new: String, nowMs: Int64) throws(PortalError) {
        let salt = Self.salt()
        try run("UPDATE accounts SET salt = ?, hash = ?, rounds = ?, password_changed_at = ? WHERE email = ?",
                [.text(hexBytes(salt)), .text(Self.hash(new, salt: salt, rounds: rounds)), .int(Int64(rounds)), .int(nowMs),
                 .text(email.lowercased())])
    }

    /// When the account's password last changed (UTC ms; 0: never). A session or a token issued
    /// at or before it is void.
    public func passwordChangedAt(email: String) throws(PortalError) -> Int64 {
        try query("SELECT password_changed_at FROM accounts WHERE email = ?", [.text(email.lowercased())]) { $0.int(0) }.first ?? 0
    }

    /// Whether the password is the account's.
    public func checkPassword(email: String, password: String) throws(PortalError) -> Bool {
        try check(email: email, secret: password, columns: "salt, hash")
    }

    /// Logs in (the in-car activation assistant, an app): the password must be right and the
    /// e-mail verified. Wrong passwords are limited like wrong pairing codes (three free, then
    /// a lock from 30 s doubling to an hour), per account.
    public func logIn(email: String, password: String, nowMs: Int64) throws(PortalError) {
        let key = try Self.accountKey(email)
        if case .locked(let left) = try reserveTry("login_attempts", "email", key, nowMs: nowMs) {
            throw PortalError("locked", "too many wrong passwords; try again in \((left + 999) / 1000) s", retryAfterMs: left)
        }
        guard try checkPassword(email: key, password: password) else {
            throw PortalError("wrongPassword", "the e-mail address or the password is wrong")
        }
        try run("DELETE FROM login_attempts WHERE email = ?", [.text(key)])
        let verified = try query("SELECT verified FROM accounts WHERE email = ?", [.text(key)]) { $0.int(0) }
        guard verified.first == 1 else {
            throw PortalError("emailNotVerified", "open the link sent to \(email) to verify the address first (it may take a few minutes; "
                              + "look in the spam folder too); if no mail comes, \(Self.supportLine)")
        }
    }

    public func checkSPIN(email: String, spin: String) throws(PortalError) -> Bool {
        try check(email: email, secret: spin, columns: "spin_salt, spin_hash")
    }

    private func check(email: String, secret: String, columns: String) throws(PortalError) -> Bool {
        let rows = try query("SELECT \(columns), rounds FROM accounts WHERE email = ?", [.text(email.lowercased())]) {
            ($0.text(0), $0.text(1), Int($0.int(2)))
        }
        guard let (salt, stored, rounds) = rows.first, let saltBytes = bytes(fromHex: salt) else {
            // An unknown account costs the same hash as a known one: the time tells nothing.
            _ = Self.hash(secret, salt: Self.dummySalt, rounds: self.rounds)
            return false
        }
        return Self.hash(secret, salt: saltBytes, rounds: rounds) == stored
    }

    static let dummySalt: [UInt8] = Array(repeating: 0x5A, count: 16)

    /// The account key of an address from outside: lowercased, at most 254 bytes (RFC 5321's
    /// limit), so that guesses with huge made-up addresses store nothing huge.
    static func accountKey(_ email: String) throws(PortalError) -> String {
        guard email.utf8.count <= 254 else { throw PortalError("invalidEmail", "an e-mail address has at most 254 characters") }
        return email.lowercased()
    }

    enum Reservation: Equatable { case locked(Int64), reserved(GuessLimiter) }

    /// One try at a guessed secret, reserved atomically before the (slow) check: refused while
    /// the lock runs, otherwise counted as wrong in the same transaction, so that concurrent
    /// guesses cannot all pass the limit (the check and the save were once separate steps). A
    /// right secret then clears the count.
    private func reserveTry(_ table: String, _ column: String, _ key: String, nowMs: Int64) throws(PortalError) -> Reservation {
        do {
            return try db.transaction { () throws(OutboxError) -> Reservation in
                var limiter = try db.query("SELECT failures, locked_until FROM \(table) WHERE \(column) = ?", [.text(key)]) {
                    GuessLimiter(failures: Int($0.int(0)), lockedUntilMs: $0.isNull(1) ? nil : $0.int(1))
                }.first ?? GuessLimiter()
                if let left = limiter.lockedFor(nowMs: nowMs) { return .locked(left) }
                limiter.wrongCode(nowMs: nowMs)
                try db.run("""
                    INSERT INTO \(table)(\(column), failures, locked_until) VALUES (?, ?, ?)
                    ON CONFLICT(\(column)) DO UPDATE SET failures = excluded.failures, locked_until = excluded.locked_until
                    """, [.text(key), .int(Int64(limiter.failures)), limiter.lockedUntilMs.map { .int($0) } ?? .null])
                return .reserved(limiter)
            }
        } catch {
            throw PortalError("storage", "\(error)")
        }
    }

    public struct Car: Sendable, Equatable {
        public var vin: String
        public var email: String
        public var model: String
        public var built: String
        public var country: String
        public var code: String
        public var codeExpiresAtMs: Int64
        public var codeUsed: Bool
        /// notStarted, started (the car sent the code, the enrolment did not complete),
        /// completed, inactive (completed, but the licence has expired).
        public var enrolment: String = "notStarted"

        public var json: JSON {
            .object([
                ("vin", .string(vin)), ("user", .string(email)), ("role", .string("primary")), ("model", .string(model)),
                ("built", .string(built)), ("country", .string(country)), ("pairingCode", .string(code)),
                ("codeExpiresAt", .number(Double(codeExpiresAtMs))), ("codeUsed", .bool(codeUsed)), ("enrolment", .string(enrolment)),
            ])
        }
    }

    /// Adds a car to the user's garage: the VIN is checked (a SEAT's, not in another garage),
    /// the model, build date and country against the compatible list, and the terms and the
    /// privacy policy must be accepted. Returns the car with its new 8-digit pairing code,
    /// valid one year.
    public func addCar(vin text: String, email: String, model: String, built: String, country: String, acceptedTerms: Bool,
                       nowMs: Int64) throws(PortalError) -> Car {
        let vin: VIN
        do { vin = try VIN(text) } catch { throw PortalError("invalidVIN", error.description) }
        guard vin.wmi == "VSS" else { throw PortalError("invalidVIN", "\(vin) is not a SEAT (its maker code is \(vin.wmi), SEAT's is VSS)") }
        let account = try query("SELECT verified FROM accounts WHERE email = ?", [.text(email.lowercased())]) { $0.int(0) }
        guard let verified = account.first else { throw PortalError("noAccount", "there is no account for \(email)") }
        guard verified == 1 else { throw PortalError("emailNotVerified", "verify the e-mail address \(email) first") }
        if let e = Compatibility.check(model: model, built: built, country: country) { throw e }
        guard acceptedTerms else { throw PortalError("termsNotAccepted", "the terms of use and the privacy policy must be accepted") }
        let owner = try query("SELECT email FROM garage WHERE vin = ?", [.text(vin.value)]) { $0.text(0) }
        if let owner = owner.first {
            throw PortalError("vehicleInAnotherGarage", owner == email.lowercased()
                ? "\(vin) is already in this garage" : "\(vin) is in another user's garage")
        }
        var code: String
        repeat {
            var g = SystemRandomNumberGenerator()
            code = String(UInt64.random(in: 0..<100_000_000, using: &g))
            code = String(repeating: "0", count: 8 - code.count) + code
        } while try !query("SELECT 1 FROM garage WHERE code = ?", [.text(code)], { _ in true }).isEmpty
        let car = Car(vin: vin.value, email: email.lowercased(), model: model, built: built, country: country, code: code,
                      codeExpiresAtMs: nowMs + Self.codeValidityMs, codeUsed: false)
        try run("""
            INSERT INTO garage(vin, email, model, built, country, code, code_expires_at, added_at, terms_accepted_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, [.text(car.vin), .text(car.email), .text(model), .text(built), .text(country), .text(code),
                  .int(car.codeExpiresAtMs), .int(nowMs), .int(nowMs)])
        return car
    }

    /// Removes a car from the user's garage; its pairing code is void from then on.
    public func removeCar(vin: String, email: String) throws(PortalError) {
        try run("DELETE FROM garage WHERE vin = ? AND email = ?", [.text(vin), .text(email.lowercased())])
        guard db.changes == 1 else { throw PortalError("notInGarage", "\(vin) is not in the garage of \(email)") }
        try run("DELETE FROM car_users WHERE vin = ?", [.text(vin)])
    }

    /// The car leaves its garage and its registration is undone (a factory reset in the car:
    /// the next owner registers it anew).
    public func forgetCar(vin: String) throws(PortalError) {
        do { try db.transaction { () throws(OutboxError) in try forgetCarRows(vin: vin) } } catch { throw PortalError("storage", "\(error)") }
    }

    /// The tables whose rows tie a car to people (`forgetCar`).
    static let personalCarTables = ["garage", "car_users", "registration_attempts", "commands", "command_keys"]

    /// `forgetCar`'s deletions, inside the caller's transaction.
    func forgetCarRows(vin: String) throws(OutboxError) {
        // Every row that ties the car to a person: its garage entry, its users, the commands
        // they sent (with their addresses), the registration tries, its command key (a new
        // registration gives a new one, so no command signed before can work again). The
        // licence stays: it belongs to the vehicle and outlives an owner (the product page).
        for table in Self.personalCarTables {
            try db.run("DELETE FROM \(table) WHERE vin = ?", [.text(vin)])
        }
    }

    /// The cars in the user's garage (the user is their primary user), with their enrolment.
    public func garage(email: String, nowMs: Int64) throws(PortalError) -> [Car] {
        try query("""
            SELECT g.vin, g.email, g.model, g.built, g.country, g.code, g.code_expires_at, g.code_used_at, g.enrolment, l.expires_at
            FROM garage g LEFT JOIN licences l ON l.vin = g.vin WHERE g.email = ? ORDER BY g.vin
            """, [.text(email.lowercased())]) { r in
            var enrolment = r.text(8)
            if enrolment == "completed", !r.isNull(9), r.int(9) <= nowMs { enrolment = "inactive" }
            return Car(vin: r.text(0), email: r.text(1), model: r.text(2), built: r.text(3), country: r.text(4), code: r.text(5),
                       codeExpiresAtMs: r.int(6), codeUsed: !r.isNull(7), enrolment: enrolment)
        }
    }

    /// A user of a car and their role: the primary user (the garage's owner, who registered
    /// it), and the secondary users and guests the primary user added.
    public struct CarUser: Sendable, Equatable {
        public var email: String
        public var role: String
        public var json: JSON { .object([("user", .string(email)), ("role", .string(role))]) }
    }

    /// The primary user adds another account to a registered car as a secondary user (sees the
    /// car, no remote functions) or a guest (for a time, status only). Only the primary user
    /// gets remote functions.
    public func share(vin: String, owner: String, with email: String, role: String, nowMs: Int64) throws(PortalError) {
        guard role == "secondary" || role == "guest" else {
            throw PortalError("invalidRole", "a car is shared with a secondary user or a guest, not '\(role)'")
        }
        let rows = try query("SELECT email, enrolment FROM garage WHERE vin = ?", [.text(vin)]) { ($0.text(0), $0.text(1)) }
        guard let (primary, enrolment) = rows.first, primary == owner.lowercased() else {
            throw PortalError("insufficientRights", "only the primary user of \(vin) can share it")
        }
        guard enrolment == "completed" else { throw PortalError("notRegistered", "\(vin) is not registered yet") }
        let account = try query("SELECT verified FROM accounts WHERE email = ?", [.text(email.lowercased())]) { $0.int(0) }
        guard let verified = account.first else { throw PortalError("noAccount", "there is no account for \(email)") }
        guard verified == 1 else { throw PortalError("emailNotVerified", "\(email) has not verified the e-mail address") }
        guard email.lowercased() != primary else { throw PortalError("alreadyPrimary", "\(email) is the primary user") }
        try run("INSERT INTO car_users(vin, email, role, added_at) VALUES (?, ?, ?, ?) ON CONFLICT(vin, email) DO UPDATE SET role = excluded.role",
                [.text(vin), .text(email.lowercased()), .text(role), .int(nowMs)])
    }

    /// Everyone who may use the car, the primary user first.
    public func users(vin: String) throws(PortalError) -> [CarUser] {
        let primary = try query("SELECT email FROM garage WHERE vin = ? AND enrolment = 'completed'", [.text(vin)]) { $0.text(0) }
        guard let p = primary.first else { return [] }
        return [CarUser(email: p, role: "primary")]
            + (try query("SELECT email, role FROM car_users WHERE vin = ? ORDER BY role, email", [.text(vin)]) { CarUser(email: $0.text(0), role: $0.text(1)) })
    }

    /// The cars an account may use, with its role for each.
    public func vehicles(of email: String) throws(PortalError) -> [(vin: String, role: String)] {
        let key = email.lowercased()
        let own = try query("SELECT vin FROM garage WHERE email = ? ORDER BY vin", [.text(key)]) { ($0.text(0), "primary") }
        let shared = try query("SELECT vin, role FROM car_users WHERE email = ? ORDER BY vin", [.text(key)]) { ($0.text(0), $0.text(1)) }
        return (own + shared).map { (vin: $0.0, role: $0.1) }
    }

    /// The role of an account for a car, or nil when it has none.
    public func role(of email: String, vin: String) throws(PortalError) -> String? {
        try users(vin: vin).first { $0.email == email.lowercased() }?.role
    }

    /// What a successful registration gives the car.
    public struct Enrolment: Sendable, Equatable {
        public var user: String
        public var role: String
        public var services: [String]
        public var licenceExpiresAtMs: Int64
        /// The key the backend signs this car's remote commands with, given to the car once.
        public var commandKey: [UInt8] = []
    }

    /// The services of the trial licence every new registration starts (the seed's "Radio"
    /// package: Safety & Service and Remote Access).
    public static let trialServices = ["emergencyCall", "breakdownCall", "serviceScheduling", "vehicleStatus",
                                       "parkingPosition", "remoteLockUnlock", "remoteClimatisation", "honkAndFlash", "alerts"]

    /// Checks a pairing code the car sent: it exists, is this car's, unused, unexpired; the car
    /// is compatible; its privacy lets data out; and guessing is locked (3 wrong codes free, then
    /// 30 s doubling). Success makes the account holder the primary user, starts the 12-month
    /// trial licence and uses up the code. Failures carry the code the car shows
    /// (`RegistrationFailure`) and, when locked, the seconds left.
    public func register(vin: String, code: String, model: String, built: String, country: String, privacy: String?,
                         navigation: Bool = false, nowMs: Int64) throws(PortalError) -> Enrolment {
        // The try is reserved (counted as wrong) before the code is looked up, atomically, so
        // that concurrent guesses cannot pass the lock; this car's own code clears the count.
        if case .locked(let left) = try reserveTry("registration_attempts", "vin", vin, nowMs: nowMs) {
            throw PortalError("locked", "too many wrong codes for \(vin); try again in \((left + 999) / 1000) s", retryAfterMs: left)
        }
        guard isPairingCode(code) else { throw PortalError("codeUnknown", "a pairing code is 8 digits") }
        let rows = try query("SELECT vin, email, code_expires_at, code_used_at FROM garage WHERE code = ?", [.text(code)]) {
            ($0.text(0), $0.text(1), $0.int(2), $0.isNull(3) ? nil : $0.int(3))
        }
        guard let (codeVIN, email, expires, used) = rows.first else { throw PortalError("codeUnknown", "no car has this pairing code") }
        // Another car's code answers exactly as an unknown one: the answer must not tell a
        // guesser that a code exists (issue 14, finding 14).
        guard codeVIN == vin else { throw PortalError("codeUnknown", "no car has this pairing code") }
        try run("DELETE FROM registration_attempts WHERE vin = ?", [.text(vin)])
        guard used == nil else { throw PortalError("codeUsed", "this pairing code was already used") }
        guard expires > nowMs else { throw PortalError("codeExpired", "this pairing code expired") }
        // The right code for this car: from here on a failure leaves the enrolment "started".
        func refuse(_ e: PortalError) throws(PortalError) -> Never {
            try run("UPDATE garage SET enrolment = 'started' WHERE vin = ?", [.text(vin)])
            throw e
        }
        if let e = Compatibility.check(model: model, built: built, country: country) { try refuse(e) }
        guard privacy != "offline" else { try refuse(PortalError("privacyOffline", "the car's privacy level lets no data out")) }
        // A car registered before keeps its licence (one trial per car); an expired one must be
        // renewed first.
        let existing = try query("SELECT package, expires_at FROM licences WHERE vin = ?", [.text(vin)]) { ($0.text(0), $0.int(1)) }
        let package: String, end: Int64
        if let (p, e) = existing.first {
            guard e > nowMs else { try refuse(PortalError("licenceInvalid", "the licence of \(vin) expired; renew it in the portal first")) }
            (package, end) = (p, e)
        } else {
            (package, end) = Compatibility.trial(country: country, navigation: navigation, startMs: nowMs)
            try run("INSERT INTO licences(vin, package, expires_at, trial_started_at) VALUES (?, ?, ?, ?)",
                    [.text(vin), .text(package), .int(end), .int(nowMs)])
        }
        try run("UPDATE garage SET code_used_at = ?, role = 'primary', enrolment = 'completed' WHERE vin = ?", [.int(nowMs), .text(vin)])
        try run("DELETE FROM registration_attempts WHERE vin = ?", [.text(vin)])
        // A new key for the remote commands at every registration: a former owner's is void.
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        try run("INSERT INTO command_keys(vin, key, counter) VALUES (?, ?, 0) ON CONFLICT(vin) DO UPDATE SET key = excluded.key",
                [.text(vin), .text(hexBytes(key))])
        return Enrolment(user: email, role: "primary", services: Self.services(of: package),
                         licenceExpiresAtMs: end, commandKey: key)
    }

    /// The seed's packages: "Radio" (Safety & Service and Remote Access) and "Navi" (those, online
    /// infotainment and apps); price in euros by years.
    public static let packages: [String: (services: [String], prices: [Int: Int])] = [
        "radio": (trialServices, [1: 50, 2: 85]),
        "navi": (trialServices + naviServices, [1: 135, 2: 225]),
    ]
    /// What Navi adds to Radio: online infotainment and the apps.
    static let naviServices = ["onlineNavigation", "infotainmentApps"]

    /// A licence's services: a package's, or a trial's (`trial`: the Radio set; `trial-navi`:
    /// the Navi set, for a car with navigation).
    public static func services(of package: String) -> [String] {
        if let p = packages[package] { return p.services }
        return package == "trial-navi" ? trialServices + naviServices : trialServices
    }

    public struct Licence: Sendable, Equatable {
        public var package: String
        public var expiresAtMs: Int64
        public var services: [String]
        /// What the last renewal cost, in euros.
        public var priceEUR: Int?

        public var json: JSON {
            var o: [(String, JSON)] = [("package", .string(package)), ("licenceExpiresAt", .number(Double(expiresAtMs))),
                                       ("services", .array(services.map { .string($0) }))]
            if let priceEUR { o.append(("priceEUR", .number(Double(priceEUR)))) }
            return .object(o)
        }
    }

    /// A car's licence (it has one from its first registration on).
    public func licence(vin: String) throws(PortalError) -> Licence {
        let rows = try query("SELECT package, expires_at FROM licences WHERE vin = ?", [.text(vin)]) { ($0.text(0), $0.int(1)) }
        guard let (package, expires) = rows.first else {
            throw PortalError("notRegistered", "\(vin) has never been registered: it has no licence")
        }
        return Licence(package: package, expiresAtMs: expires, services: Self.services(of: package))
    }

    /// Whether the car is in someone's garage.
    public func isInGarage(vin: String) throws(PortalError) -> Bool {
        try !query("SELECT 1 FROM garage WHERE vin = ?", [.text(vin)]) { $0.int(0) }.isEmpty
    }

    /// Every car in a garage with its licence's end (for the licence notices).
    public func licenceEnds() throws(PortalError) -> [(vin: String, expiresAtMs: Int64)] {
        try query("SELECT l.vin, l.expires_at FROM licences l JOIN garage g ON g.vin = l.vin ORDER BY l.vin", []) { ($0.text(0), $0.int(1)) }
    }

    /// The cars whose alerts the user receives: those the user is the primary or a secondary
    /// user of (guests get none: an assumption, the product page does not say).
    public func alertedCars(of email: String) throws(PortalError) -> [String] {
        try vehicles(of: email).filter { $0.role == "primary" || $0.role == "secondary" }.map(\.vin)
    }

    /// Refuses unless the car's licence covers `service` now: when the trial or the licence has
    /// run out, the services stop until it is renewed (the product page). The eCall asks nothing.
    public func requireLicence(vin: String, service: String, nowMs: Int64) throws(PortalError) {
        let l = try licence(vin: vin)
        guard l.services.contains(service) else {
            throw PortalError("missingLicence", "the \(l.package) licence of \(vin) does not include \(service)")
        }
        guard l.expiresAtMs > nowMs else {
            throw PortalError("licenceExpired", "the licence of \(vin) has expired: renew it to use \(service) again")
        }
    }

    /// Renews (or upgrades) a registered car's licence by 1 or 2 years, from its end or from now
    /// when it has expired.
    public func renew(vin: String, package: String, years: Int, nowMs: Int64) throws(PortalError) -> Licence {
        guard let p = Self.packages[package] else { throw PortalError("unknownPackage", "the packages are radio and navi, not '\(package)'") }
        guard let price = p.prices[years] else { throw PortalError("invalidTerm", "a licence is renewed for 1 or 2 years, not \(years)") }
        let current = try licence(vin: vin)
        // Whole calendar years from the end (or from now, when it has run out): never a day short.
        let end = addingCalendarMonths(12 * years, to: max(current.expiresAtMs, nowMs))
        try run("UPDATE licences SET package = ?, expires_at = ? WHERE vin = ?", [.text(package), .int(end), .text(vin)])
        return Licence(package: package, expiresAtMs: end, services: p.services, priceEUR: price)
    }

    // MARK: - Remote commands

    /// Checks the user's S-PIN: a wrong one answers with the tries left; after three the
    /// S-PIN is locked from 30 s, doubling up to an hour.
    public func verifySPIN(email: String, spin: String, nowMs: Int64) throws(PortalError) {
        let key = try Self.accountKey(email)
        let limiter: GuessLimiter
        switch try reserveTry("spin_attempts", "email", key, nowMs: nowMs) {
        case .locked(let left):
            throw PortalError("spinLocked", "the S-PIN is locked after wrong tries; try again in \((left + 999) / 1000) s", retryAfterMs: left)
        case .reserved(let l): limiter = l
        }
        guard try checkSPIN(email: key, spin: spin) else {
            let left = max(0, GuessLimiter.freeTries - limiter.failures)
            if let wait = limiter.lockedFor(nowMs: nowMs) {
                throw PortalError("spinLocked", "wrong S-PIN; it is locked for \((wait + 999) / 1000) s", retryAfterMs: wait)
            }
            var e = PortalError("wrongSPIN", "wrong S-PIN; \(left) \(left == 1 ? "try" : "tries") left")
            e.remainingTries = left
            throw e
        }
        try run("DELETE FROM spin_attempts WHERE email = ?", [.text(key)])
    }

    /// The actions that need the S-PIN: the product page asks it for locking and unlocking
    /// "and to control the climatisation remotely" (starting and stopping it both are).
    public static let spinActions: Set<RemoteCommand.Action> = [.lock, .unlock, .climatisationStart, .climatisationStop]

    /// A remote command for the car, signed with its key: the user must be one of the car's
    /// users (the car itself refuses remote functions to anyone but the primary user, and the
    /// backend says so first), with the S-PIN where the action needs it, and with no command
    /// of the same type still pending. Recorded as `queued`.
    /// How a request shows the user's S-PIN: not at all, the S-PIN itself (checked here, after
    /// the user's rights), or an app's short-lived security token (checked when it was issued).
    public enum SPINProof: Sendable, Equatable {
        case none, spin(String), securityToken
    }

    public func issueCommand(vin: String, user: String, spin: SPINProof, action: RemoteCommand.Action, targetTemperature: Double?,
                             ttlMs: Int64, nowMs: Int64) throws(PortalError) -> RemoteCommand {
        guard let role = try role(of: user, vin: vin) else {
            throw PortalError("insufficientRights", "\(user) is not a user of \(vin)")
        }
        guard role == "primary" else { throw PortalError("insufficientRights", "only the primary user has remote functions (\(user) is \(role))") }
        // The request's own values first: a malformed request costs no S-PIN try.
        if action == .climatisationStart, !RemoteCommand.isValidTargetTemperature(targetTemperature ?? 0) {
            throw PortalError("invalidTemperature", "the target temperature is 16 to 30 °C in 0.5 steps")
        }
        try requireLicence(vin: vin, service: action.service, nowMs: nowMs)
        if Self.spinActions.contains(action) {
            switch spin {
            case .none: throw PortalError("spinRequired", "\(action.rawValue) needs the S-PIN")
            case .spin(let pin): try verifySPIN(email: user, spin: pin, nowMs: nowMs)
            case .securityToken: break
            }
        }
        let pending = try query("SELECT id FROM commands WHERE vin = ? AND action = ? AND status IN ('queued', 'inProgress') AND expires_at > ?",
                                [.text(vin), .text(action.rawValue), .int(nowMs)]) { $0.text(0) }
        if let other = pending.first { throw PortalError("requestPending", "a \(action.rawValue) request is still pending (\(other))") }
        let keys = try query("SELECT key, counter FROM command_keys WHERE vin = ?", [.text(vin)]) { ($0.text(0), $0.int(1)) }
        guard let (hex, counter) = keys.first, let key = bytes(fromHex: hex), !key.isEmpty else {
            throw PortalError("notRegistered", "\(vin) has no command key: register it first")
        }
        try run("UPDATE command_keys SET counter = ? WHERE vin = ?", [.int(counter + 1), .text(vin)])
        var c = RemoteCommand(id: messageID(unixMs: nowMs), vin: vin, action: action, counter: counter + 1, issuedAtMs: nowMs,
                              expiresAtMs: nowMs + ttlMs, user: user.lowercased(), role: role,
                              targetTemperature: action == .climatisationStart ? targetTemperature : nil)
        c.signature = Self.sign(c, key: key)
        try run("INSERT INTO commands(id, vin, action, user, status, expires_at, created_at, updated_at, body) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                [.text(c.id), .text(vin), .text(action.rawValue), .text(c.user), .int(c.expiresAtMs), .int(nowMs), .int(nowMs), .text(c.json.text)])
        return c
    }

    /// HMAC-SHA256 of the command's signed text with the car's key, in hex.
    /// The backend's Ed25519 key for the answers cars act on (registration, licence): made on
    /// first use and kept in the database; cars are installed with its public half
    /// (`tcu-backend keys`, `[backend] answer-key`).
    public func answerKey() throws(PortalError) -> Curve25519.Signing.PrivateKey {
        func stored() throws(PortalError) -> Curve25519.Signing.PrivateKey? {
            let rows = try query("SELECT value FROM backend_keys WHERE name = 'answers'", [], { $0.text(0) })
            return rows.first.flatMap { bytes(fromHex: $0) }.flatMap { try? Curve25519.Signing.PrivateKey(rawRepresentation: $0) }
        }
        if let key = try stored() { return key }
        let key = Curve25519.Signing.PrivateKey()
        try run("INSERT OR IGNORE INTO backend_keys(name, value) VALUES ('answers', ?)", [.text(hexBytes(Array(key.rawRepresentation)))])
        // Another process may have made one first: the stored key is the one.
        guard let kept = try stored() else { throw PortalError("storage", "cannot keep the answer key") }
        return kept
    }

    /// An answer for a car, signed: the signature covers `AnswerSignature.signedText` of the
    /// answer without its signature (docs/protocol.md, "Signed answers").
    public func signedAnswer(_ answer: JSON, vin: String, kind: String) throws(PortalError) -> JSON {
        let key = try answerKey()
        guard let signature = try? key.signature(for: Array(AnswerSignature.signedText(answer, vin: vin, kind: kind).utf8)) else {
            throw PortalError("storage", "cannot sign the answer")
        }
        return .object((answer.objectValue ?? []) + [("signature", .string(hexBytes(Array(signature))))])
    }

    public static func sign(_ c: RemoteCommand, key: [UInt8]) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(c.signedText.utf8), using: SymmetricKey(data: key))
        return hexBytes(Array(mac))
    }

    /// A result from the car (`inProgress`, `successful`, `failed`); a later status never goes back.
    /// A car's result moves its command on; only the car the command was for can (the VIN of
    /// the topic it came on), so another car's result for it changes nothing.
    public func commandResult(id: String, vin: String, status: String, cause: String?, nowMs: Int64) throws(PortalError) {
        try run("""
            UPDATE commands SET status = ?, cause = ?, updated_at = ? WHERE id = ? AND vin = ?
            AND (status IN ('queued') OR (status = 'inProgress' AND ? IN ('successful', 'failed')))
            """, [.text(status), cause.map { .text($0) } ?? .null, .int(nowMs), .text(id), .text(vin), .text(status)])
    }

    public struct CommandStatus: Sendable, Equatable {
        public var id: String
        public var action: String
        /// queued, inProgress, successful, failed, timedOut (no final result before its expiry).
        public var status: String
        public var cause: String?
        public var json: JSON {
            var o: [(String, JSON)] = [("id", .string(id)), ("action", .string(action)), ("status", .string(status))]
            if let cause { o.append(("cause", .string(cause))) }
            return .object(o)
        }
    }

    /// A command's status; with `vin`, only a command for that car (an app asks through the car's
    /// path, and one car's user must not read another car's requests).
    public func commandStatus(id: String, vin: String? = nil, nowMs: Int64) throws(PortalError) -> CommandStatus {
        let rows = try query("SELECT action, status, cause, expires_at FROM commands WHERE id = ? AND (? IS NULL OR vin = ?)",
                             [.text(id), vin.map { .text($0) } ?? .null, vin.map { .text($0) } ?? .null]) {
            ($0.text(0), $0.text(1), $0.isNull(2) ? nil : $0.text(2), $0.int(3))
        }
        guard let (action, status, cause, expires) = rows.first else { throw PortalError("unknownRequest", "no request \(id)") }
        // A command the car never finished before it expired has timed out.
        let final = ["successful", "failed"].contains(status) || expires > nowMs ? status : "timedOut"
        return CommandStatus(id: id, action: action, status: final, cause: cause)
    }

    func run(_ sql: String, _ values: [SQLiteHandle.Value]) throws(PortalError) {
        do { try db.run(sql, values) } catch { throw PortalError("storage", "\(error)") }
    }

    func query<T>(_ sql: String, _ values: [SQLiteHandle.Value], _ row: (SQLiteHandle.Row) -> T) throws(PortalError) -> [T] {
        do { return try db.query(sql, values, row) } catch { throw PortalError("storage", "\(error)") }
    }
}
