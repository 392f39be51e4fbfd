import Crypto
import CryptoExtras
import Outbox
import TelematicsCore

/// The garage: a user's cars, added by VIN for their pairing code (the compatibility checks),
/// removed, shared with roles; the registration a car asks for with its code.
extension Portal {
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
        public var enrolment: Registration.Status = .notStarted

        public var json: JSON {
            .object([
                ("vin", .string(vin)), ("user", .string(email)), ("role", .string(UserRole.primary.rawValue)), ("model", .string(model)),
                ("built", .string(built)), ("country", .string(country)), ("pairingCode", .string(code)),
                ("codeExpiresAt", .number(Double(codeExpiresAtMs))), ("codeUsed", .bool(codeUsed)), ("enrolment", .string(enrolment.rawValue)),
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
        let removed: Bool
        do {
            removed = try db.transaction { () throws(OutboxError) -> Bool in
                try db.run("DELETE FROM garage WHERE vin = ? AND email = ?", [.text(vin), .text(email.lowercased())])
                guard db.changes == 1 else { return false }
                try db.run("DELETE FROM car_users WHERE vin = ?", [.text(vin)])
                return true
            }
        } catch { throw PortalError("storage", "\(error)") }
        guard removed else { throw PortalError("notInGarage", "\(vin) is not in the garage of \(email)") }
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
            var enrolment = Registration.Status(rawValue: r.text(8)) ?? .notStarted
            if enrolment == .completed, !r.isNull(9), r.int(9) <= nowMs { enrolment = .inactive }
            return Car(vin: r.text(0), email: r.text(1), model: r.text(2), built: r.text(3), country: r.text(4), code: r.text(5),
                       codeExpiresAtMs: r.int(6), codeUsed: !r.isNull(7), enrolment: enrolment)
        }
    }

    /// A user of a car and their role: the primary user (the garage's owner, who registered
    /// it), and the secondary users and guests the primary user added.
    public struct CarUser: Sendable, Equatable {
        public var email: String
        public var role: UserRole
        public var json: JSON { .object([("user", .string(email)), ("role", .string(role.rawValue))]) }
    }

    /// The primary user adds another account to a registered car as a secondary user (sees the
    /// car, no remote functions) or a guest (for a time, status only). Only the primary user
    /// gets remote functions.
    public func share(vin: String, owner: String, with email: String, role: UserRole, nowMs: Int64) throws(PortalError) {
        guard role != .primary else { throw Self.invalidRole(role.rawValue) }
        let rows = try query("SELECT email, enrolment FROM garage WHERE vin = ?", [.text(vin)]) { ($0.text(0), $0.text(1)) }
        guard let (primary, enrolment) = rows.first, primary == owner.lowercased() else {
            throw PortalError("insufficientRights", "only the primary user of \(vin) can share it")
        }
        guard enrolment == Registration.Status.completed.rawValue else { throw PortalError("notRegistered", "\(vin) is not registered yet") }
        let account = try query("SELECT verified FROM accounts WHERE email = ?", [.text(email.lowercased())]) { $0.int(0) }
        guard let verified = account.first else { throw PortalError("noAccount", "there is no account for \(email)") }
        guard verified == 1 else { throw PortalError("emailNotVerified", "\(email) has not verified the e-mail address") }
        guard email.lowercased() != primary else { throw PortalError("alreadyPrimary", "\(email) is the primary user") }
        try run("INSERT INTO car_users(vin, email, role, added_at) VALUES (?, ?, ?, ?) ON CONFLICT(vin, email) DO UPDATE SET role = excluded.role",
                [.text(vin), .text(email.lowercased()), .text(role.rawValue), .int(nowMs)])
    }

    /// Everyone who may use the car, the primary user first.
    public func users(vin: String) throws(PortalError) -> [CarUser] {
        let primary = try query("SELECT email FROM garage WHERE vin = ? AND enrolment = 'completed'", [.text(vin)]) { $0.text(0) }
        guard let p = primary.first else { return [] }
        return [CarUser(email: p, role: .primary)]
            + (try query("SELECT email, role FROM car_users WHERE vin = ? ORDER BY role, email", [.text(vin)]) {
                CarUser(email: $0.text(0), role: UserRole(rawValue: $0.text(1)) ?? .guest)
            })
    }

    /// The role a car is shared with, from its name; refused for any but secondary and guest.
    public static func sharedRole(_ name: String) throws(PortalError) -> UserRole {
        guard let role = UserRole(rawValue: name), role != .primary else { throw invalidRole(name) }
        return role
    }

    static func invalidRole(_ name: String) -> PortalError {
        PortalError("invalidRole", "a car is shared with a secondary user or a guest, not '\(name.prefix(40))'")
    }

    /// The cars an account may use, with its role for each.
    public func vehicles(of email: String) throws(PortalError) -> [(vin: String, role: UserRole)] {
        let key = email.lowercased()
        let own = try query("SELECT vin FROM garage WHERE email = ? ORDER BY vin", [.text(key)]) { ($0.text(0), UserRole.primary) }
        let shared = try query("SELECT vin, role FROM car_users WHERE email = ? ORDER BY vin", [.text(key)]) { ($0.text(0), UserRole(rawValue: $0.text(1)) ?? .guest) }
        return (own + shared).map { (vin: $0.0, role: $0.1) }
    }

    /// The role of an account for a car, or nil when it has none.
    public func role(of email: String, vin: String) throws(PortalError) -> UserRole? {
        try users(vin: vin).first { $0.email == email.lowercased() }?.role
    }

    /// What a successful registration gives the car.
    public struct Enrolment: Sendable, Equatable {
        public var user: String
        public var role: UserRole
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
        }
        // A new key for the remote commands at every registration: a former owner's is void.
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        // The registration's writes in one transaction: the trial, the code used up, the tries
        // cleared and the key are there together or not at all.
        do {
            try db.transaction { () throws(OutboxError) in
                if existing.isEmpty {
                    try db.run("INSERT INTO licences(vin, package, expires_at, trial_started_at) VALUES (?, ?, ?, ?)",
                               [.text(vin), .text(package), .int(end), .int(nowMs)])
                }
                try db.run("UPDATE garage SET code_used_at = ?, role = 'primary', enrolment = 'completed' WHERE vin = ?", [.int(nowMs), .text(vin)])
                try db.run("DELETE FROM registration_attempts WHERE vin = ?", [.text(vin)])
                try db.run("INSERT INTO command_keys(vin, key, counter) VALUES (?, ?, 0) ON CONFLICT(vin) DO UPDATE SET key = excluded.key",
                           [.text(vin), .text(hexBytes(key))])
            }
        } catch { throw PortalError("storage", "\(error)") }
        return Enrolment(user: email, role: .primary, services: Self.services(of: package),
                         licenceExpiresAtMs: end, commandKey: key)
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
        try vehicles(of: email).filter { $0.role.receivesAlerts }.map(\.vin)
    }
}
