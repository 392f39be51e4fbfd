import Crypto
import Outbox
import TelematicsCore

/// The account behaviours the FAQ describes beyond the password check: a sign-up whose address
/// is verified from a mailed link, log-in by e-mail, user name or mobile number, a forgotten
/// password reset by mail, and the customer-service contacts its advice sends people to. The
/// mails wait in the `mails` table (written in the same transaction as what they announce) for
/// the mailer (`tcu-backend serve --smtp`), so that none is lost when the mail server is away.
extension Portal {
    /// The customer-service contacts the FAQ gives ("pour toute question relative à SEAT
    /// CONNECT"), where its advice sends people: no verification mail, no way to log in.
    public static let support: [(String, JSON)] = [
        ("email", .string("seatdigitalsupport@seat.es")), ("phone", .string("00800 4000 20 20")),
        ("hours", .string("Monday to Friday, 9:00 to 17:00")),
    ]
    static let supportLine = "contact customer service: seatdigitalsupport@seat.es, 00800 4000 20 20 (Monday to Friday, 9:00 to 17:00)"

    /// How long a mailed link works (assumptions: the FAQ says only that the verification mail
    /// may take a few minutes to arrive).
    public static let verificationValidityMs: Int64 = 48 * 3_600_000
    public static let resetValidityMs: Int64 = 3_600_000
    /// Reset mails per account and hour, at most (more requests are answered the same way and
    /// send nothing: nobody can fill a mailbox with them).
    static let resetMailsPerHour = 3

    // MARK: - Accounts, passwords and the S-PIN

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

    func check(email: String, secret: String, columns: String) throws(PortalError) -> Bool {
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
    func reserveTry(_ table: String, _ column: String, _ key: String, nowMs: Int64) throws(PortalError) -> Reservation {
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

    func migrateAccounts() throws(OutboxError) {
        let columns = try db.columns(of: "accounts")
        if !columns.contains("user_name") { try db.exec("ALTER TABLE accounts ADD COLUMN user_name TEXT") }
        if !columns.contains("mobile") { try db.exec("ALTER TABLE accounts ADD COLUMN mobile TEXT") }
        try db.exec("""
            CREATE UNIQUE INDEX IF NOT EXISTS accounts_user_name ON accounts(user_name) WHERE user_name IS NOT NULL;
            CREATE UNIQUE INDEX IF NOT EXISTS accounts_mobile ON accounts(mobile) WHERE mobile IS NOT NULL;
            CREATE TABLE IF NOT EXISTS account_tokens(
                hash TEXT PRIMARY KEY, email TEXT NOT NULL, purpose TEXT NOT NULL CHECK(purpose IN ('verify', 'reset')),
                created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS mails(
                id INTEGER PRIMARY KEY AUTOINCREMENT, recipient TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
                created_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL, last_error TEXT);
            """)
    }

    // MARK: - Identifiers

    /// A user name: 3 to 32 of a-z, 0-9, `.`, `_` and `-`, starting with a letter (so that it is
    /// never taken for an address or a number); case does not count.
    static func userNameKey(_ name: String) throws(PortalError) -> String {
        let key = name.lowercased()
        guard (3...32).contains(key.utf8.count), let first = key.unicodeScalars.first, ("a"..."z").contains(first),
              key.unicodeScalars.allSatisfy({ ("a"..."z").contains($0) || ("0"..."9").contains($0) || ".-_".unicodeScalars.contains($0) })
        else {
            throw PortalError("invalidUserName", "a user name is 3 to 32 letters a-z, digits, '.', '_' or '-', starting with a letter")
        }
        return key
    }

    /// A mobile number in international form: `+` and 8 to 15 digits (E.164); spaces, dots,
    /// hyphens and brackets are dropped.
    static func mobileKey(_ number: String) throws(PortalError) -> String {
        guard number.utf8.count <= 40 else { throw PortalError("invalidMobile", "a mobile number is + and 8 to 15 digits") }
        let kept = number.filter { !" .-()".contains($0) }
        let digits = kept.dropFirst()
        guard kept.first == "+", (8...15).contains(digits.count), digits.first != "0",
              digits.unicodeScalars.allSatisfy({ ("0"..."9").contains($0) }) else {
            throw PortalError("invalidMobile", "a mobile number is + and 8 to 15 digits, as in +34 600 111 222")
        }
        return kept
    }

    /// The account a log-in names (an e-mail address, a user name or a mobile number), as its
    /// address; nil when no account has it. A malformed log-in is refused before any lookup.
    public func account(forLogin login: String) throws(PortalError) -> String? {
        if login.contains("@") {
            let key = try Self.accountKey(login)
            return try query("SELECT email FROM accounts WHERE email = ?", [.text(key)]) { $0.text(0) }.first
        }
        if login.hasPrefix("+") {
            let key = try Self.mobileKey(login)
            return try query("SELECT email FROM accounts WHERE mobile = ?", [.text(key)]) { $0.text(0) }.first
        }
        let key = try Self.userNameKey(login)
        return try query("SELECT email FROM accounts WHERE user_name = ?", [.text(key)]) { $0.text(0) }.first
    }

    // MARK: - Sign-up and verification

    /// A new account from an app or the portal: the address, password and S-PIN checked as
    /// `addUser` does, an optional user name and mobile number (each unique), and the
    /// verification mail queued with its link, all in one transaction. Returns the account
    /// as the app sees it.
    public func signUp(email: String, password: String, spin: String, userName: String?, mobile: String?,
                       link: (String) -> String, nowMs: Int64) throws(PortalError) -> JSON {
        let name = try userName.map { (n) throws(PortalError) in try Self.userNameKey(n) }
        let phone = try mobile.map { (m) throws(PortalError) in try Self.mobileKey(m) }
        let key = email.lowercased()
        try addUser(email: email, password: password, spin: spin, userName: name, mobile: phone, nowMs: nowMs) { () throws(OutboxError) in
            let token = try self.issueToken(email: key, purpose: "verify", validityMs: Self.verificationValidityMs, nowMs: nowMs)
            try self.queueMail(Mail(to: key, subject: "Verify your e-mail address", text: """
                Welcome to SEAT CONNECT.

                Open this link to verify your e-mail address and finish creating your account:

                \(link("/verify?token=\(token)"))

                The link works for 48 hours. If you did not create an account, ignore this mail.
                If the link does not work, \(Self.supportLine).
                """), nowMs: nowMs)
        }
        var o: [(String, JSON)] = [("email", .string(key))]
        if let name { o.append(("userName", .string(name))) }
        if let phone { o.append(("mobile", .string(phone))) }
        return .object(o + [("verified", .bool(false))])
    }

    /// The verification link followed: the address is verified, the link used up.
    public func verifyEmail(token: String, nowMs: Int64) throws(PortalError) -> String {
        try transaction { () throws(PortalError) -> String in
            let email = try useToken(token, purpose: "verify", nowMs: nowMs)
            try verifyEmail(email)
            return email
        }
    }

    // MARK: - Password reset

    /// A reset asked for by e-mail, user name or mobile number: the mail with its link goes to
    /// the account's address. Whether the account exists or not, nothing tells (the caller
    /// answers the same); at most `resetMailsPerHour` mails an hour per account.
    public func requestPasswordReset(login: String, link: (String) -> String, nowMs: Int64) throws(PortalError) {
        guard let email = (try? account(forLogin: login)) ?? nil else { return }
        do {
            try db.transaction { () throws(OutboxError) in
                let recent = try db.query("SELECT count(*) FROM account_tokens WHERE email = ? AND purpose = 'reset' AND created_at > ?",
                                          [.text(email), .int(nowMs - 3_600_000)]) { $0.int(0) }.first ?? 0
                guard recent < Self.resetMailsPerHour else { return }
                let token = try issueToken(email: email, purpose: "reset", validityMs: Self.resetValidityMs, nowMs: nowMs)
                try queueMail(Mail(to: email, subject: "Reset your password", text: """
                    Someone, hopefully you, asked to reset the password of your SEAT CONNECT account.

                    Open this link within an hour to choose a new password:

                    \(link("/reset-password?token=\(token)"))

                    Every device signed in to your account will ask for the new password.
                    If you did not ask for this, ignore this mail: your password stays as it is.
                    If you still cannot log in, \(Self.supportLine).
                    """), nowMs: nowMs)
            }
        } catch {
            throw PortalError("storage", "\(error)")
        }
    }

    /// The reset link's token and a new password: the password changes (every session and
    /// token issued before is void), the link is used up. Returns the account's address.
    public func resetPassword(token: String, new: String, nowMs: Int64) throws(PortalError) -> String {
        guard new.count >= 10 else { throw PortalError("weakPassword", "the password needs at least 10 characters") }
        // The link used up, the password changed and the tries cleared together (the hash is
        // computed inside: a reset is rare, and a half-done one would leave the link spent).
        return try transaction { () throws(PortalError) -> String in
            let email = try useToken(token, purpose: "reset", nowMs: nowMs)
            try setPassword(email: email, new, nowMs: nowMs)
            try run("DELETE FROM account_tokens WHERE email = ? AND purpose = 'reset'", [.text(email)])
            try run("DELETE FROM login_attempts WHERE email = ?", [.text(email)])
            return email
        }
    }

    // MARK: - Deleting an account

    /// "Delete my data" (the account's own page): the password typed again, then in one
    /// transaction every row that names the person goes: the account, its mailed links and
    /// queued mails, its tries, the cars it was given access to, the commands it sent; and the
    /// cars it is the primary user of leave the garage with their users, registration and
    /// command key (`forgetCar`), and their data on the server goes as a factory reset deletes
    /// it (the backend's tables are in the same file). Returns those cars. Refused with the
    /// lock-out's refusal like a log-in when the password is wrong.
    @discardableResult
    public func deleteAccount(email: String, password: String, nowMs: Int64) throws(PortalError) -> [String] {
        try logIn(email: email, password: password, nowMs: nowMs)
        let key = email.lowercased()
        do {
            return try db.transaction { () throws(OutboxError) -> [String] in
                let cars = try db.query("SELECT vin FROM garage WHERE email = ? ORDER BY vin", [.text(key)]) { $0.text(0) }
                for vin in cars {
                    try forgetCarRows(vin: vin)
                    try BackendStore.deleteCarData(in: db, vin: vin, nowMs: nowMs)
                }
                for (table, column) in [("accounts", "email"), ("account_tokens", "email"), ("mails", "recipient"), ("login_attempts", "email"),
                                        ("spin_attempts", "email"), ("car_users", "email"), ("commands", "user")] {
                    try db.run("DELETE FROM \(table) WHERE \(column) = ?", [.text(key)])
                }
                return cars
            }
        } catch {
            throw PortalError("storage", "\(error)")
        }
    }

    // MARK: - Tokens

    /// A random token for a mailed link; only its SHA-256 is kept.
    func issueToken(email: String, purpose: String, validityMs: Int64, nowMs: Int64) throws(OutboxError) -> String {
        let token = SymmetricKey(size: .bits256).withUnsafeBytes { hexBytes(Array($0)).lowercased() }
        try db.run("INSERT INTO account_tokens(hash, email, purpose, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                   [.text(Self.tokenHash(token)), .text(email), .text(purpose), .int(nowMs), .int(nowMs + validityMs)])
        return token
    }

    static func tokenHash(_ token: String) -> String {
        hexBytes(Array(SHA256.hash(data: Array(token.utf8))))
    }

    /// The account a token is for, the token deleted; refused when unknown, used or expired.
    func useToken(_ token: String, purpose: String, nowMs: Int64) throws(PortalError) -> String {
        guard token.utf8.count == 64, token.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw PortalError("invalidToken", "the link is not valid: ask for a new one")
        }
        let hash = Self.tokenHash(token)
        let rows = try query("SELECT email, expires_at FROM account_tokens WHERE hash = ? AND purpose = ?", [.text(hash), .text(purpose)]) {
            ($0.text(0), $0.int(1))
        }
        try run("DELETE FROM account_tokens WHERE hash = ?", [.text(hash)])
        guard let (email, expires) = rows.first, expires > nowMs else {
            throw PortalError("invalidToken", "the link was used already or has expired: ask for a new one")
        }
        return email
    }

    // MARK: - Mails

    /// Queues a mail for the mailer (inside the caller's transaction).
    func queueMail(_ mail: Mail, nowMs: Int64) throws(OutboxError) {
        try db.run("INSERT INTO mails(recipient, subject, body, created_at, next_at) VALUES (?, ?, ?, ?, ?)",
                   [.text(mail.to), .text(mail.subject), .text(mail.text), .int(nowMs), .int(nowMs)])
    }

    /// The mails due now, oldest first.
    public func dueMails(nowMs: Int64, limit: Int = 20) throws(PortalError) -> [(id: Int64, mail: Mail)] {
        try query("SELECT id, recipient, subject, body FROM mails WHERE next_at <= ? ORDER BY id LIMIT ?", [.int(nowMs), .int(Int64(limit))]) {
            ($0.int(0), Mail(to: $0.text(1), subject: $0.text(2), text: $0.text(3)))
        }
    }

    /// A mail the server took: it is not kept (the address is the user's data).
    public func mailSent(id: Int64) throws(PortalError) {
        try run("DELETE FROM mails WHERE id = ?", [.int(id)])
    }

    /// A mail the server did not take: tried again after 30 s, doubling to an hour; after three
    /// days it is dropped (the user can ask again). Returns whether it will be tried again.
    @discardableResult
    public func mailFailed(id: Int64, error: String, nowMs: Int64) throws(PortalError) -> Bool {
        let rows = try query("SELECT attempts, created_at FROM mails WHERE id = ?", [.int(id)]) { ($0.int(0), $0.int(1)) }
        guard let (attempts, created) = rows.first else { return false }
        guard nowMs - created < 3 * 86_400_000 else {
            try mailSent(id: id)
            return false
        }
        let wait: Int64 = min(3_600_000, 30_000 << min(attempts, 7))
        try run("UPDATE mails SET attempts = attempts + 1, next_at = ?, last_error = ? WHERE id = ?",
                [.int(nowMs + wait), .text(String(error.prefix(500))), .int(id)])
        return true
    }
}
