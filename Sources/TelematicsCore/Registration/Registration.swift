/// Why a registration (entering the portal's pairing code in the car) did not complete. The
/// car shows the advice of the seed's FAQ with each.
public enum RegistrationFailure: String, Sendable, CaseIterable {
    /// Checked in the car before anything is sent.
    case invalidCode, noConnection, privacyOffline, locked
    /// The car has no backend key to check answers with, or an answer's signature is wrong:
    /// nothing in it is taken.
    case noAnswerKey, answerNotAuthentic
    /// The backend did not answer in time.
    case timeout
    /// A registration is already on its way (typed twice, or from the menu and tcuctl at once).
    case busy
    /// A licence is renewed for a registered car only.
    case notRegistered
    /// The backend's checks.
    case codeUnknown, codeForAnotherVehicle, codeUsed, codeExpired, modelNotSupported, countryNotSupported, licenceInvalid

    public var advice: String {
        switch self {
        case .invalidCode: "The pairing code is 8 digits. Enter it as the portal shows it."
        case .noConnection: "No data connection. Check the car's data connection and try again."
        case .privacyOffline: "The online services are off (privacy: offline). Choose another privacy level first."
        case .locked: "Too many wrong codes. Wait, then try again."
        case .noAnswerKey: "The car has no key to check the server's answers ([backend] answer-key). Have it installed first."
        case .answerNotAuthentic: "An answer that did not come from the server was refused. Try again; if it happens again, contact the dealer."
        case .timeout: "The server did not answer. Check the car's data connection and try again."
        case .busy: "A registration is already on its way. Wait for its answer."
        case .notRegistered: "Register the car first."
        case .codeUnknown, .codeForAnotherVehicle:
            "The code is not valid for this car. Check the code and the VIN in the portal; otherwise remove the car from the garage and add it again for a new code."
        case .codeUsed: "This code was already used. Remove the car from the garage and add it again for a new code."
        case .codeExpired: "The code has expired (it is valid one year). Remove the car from the garage and add it again for a new code."
        case .modelNotSupported: "This model is not compatible with the online services."
        case .countryNotSupported: "The online services are not offered in this car's country."
        case .licenceInvalid: "Check that the car's licence for the online services is valid."
        }
    }

    /// Whether the failure counts as a guess (a wrong code), for the lock.
    public var isWrongCode: Bool { self == .codeUnknown || self == .codeForAnotherVehicle }
}

/// Whether `text` is a pairing code: exactly 8 digits, nothing else.
public func isPairingCode(_ text: String) -> Bool {
    text.utf8.count == 8 && text.utf8.allSatisfy { (48...57).contains($0) }
}

/// Stops guessing: a few wrong codes are free, then registration is locked for a time that
/// doubles with every further wrong code. Used by the car and by the backend.
public struct GuessLimiter: Sendable, Equatable {
    public static let freeTries = 3
    public static let firstLockMs: Int64 = 30_000
    public static let longestLockMs: Int64 = 3_600_000

    public private(set) var failures = 0
    public private(set) var lockedUntilMs: Int64?

    public init(failures: Int = 0, lockedUntilMs: Int64? = nil) {
        self.failures = failures
        self.lockedUntilMs = lockedUntilMs
    }

    /// Milliseconds left of the lock, or nil when a try is allowed.
    public func lockedFor(nowMs: Int64) -> Int64? {
        guard let until = lockedUntilMs, until > nowMs else { return nil }
        return until - nowMs
    }

    public mutating func wrongCode(nowMs: Int64) {
        failures += 1
        guard failures >= Self.freeTries else { return }
        let doublings = min(failures - Self.freeTries, 20)
        lockedUntilMs = nowMs + min(Self.longestLockMs, Self.firstLockMs << Int64(doublings))
    }

    public mutating func succeeded() {
        failures = 0
        lockedUntilMs = nil
    }
}

/// The car's registration with the backend (its enrolment state), kept across restarts.
public struct Registration: Sendable, Equatable {
    public enum Status: String, Sendable { case notStarted, started, completed, inactive }

    public var status: Status = .notStarted
    /// The primary user's account, once registered.
    public var user: String?
    public var role: UserRole?
    public var registeredAtMs: Int64?
    /// The services the backend enabled, and the licence's end (UTC ms).
    public var services: [String] = []
    public var licenceExpiresAtMs: Int64?
    public var limiter = GuessLimiter()
    /// The key the backend signs this car's remote commands with (provisioned at registration),
    /// and the counter of the last command the car accepted. Kept in the file, never shown.
    public var commandKey: [UInt8]?
    public var lastCommandCounter: Int64 = 0

    public init() {}

    /// Whether a remote service may work: the car is registered, the service is in its
    /// licence, the licence has not expired, and a remote function is the primary user's.
    /// (The eCall never asks.)
    public func allows(_ service: String, nowMs: Int64) -> Bool {
        status == .completed && services.contains(service) && (licenceExpiresAtMs.map { $0 > nowMs } ?? false)
            && (!Capabilities.remote.contains(service) || role == .primary)
    }

    public var json: JSON {
        var o: [(String, JSON)] = [("status", .string(status.rawValue))]
        if let user { o.append(("user", .string(user))) }
        if let role { o.append(("role", .string(role.rawValue))) }
        if let registeredAtMs { o.append(("registeredAt", .number(Double(registeredAtMs)))) }
        if !services.isEmpty { o.append(("services", .array(services.map { .string($0) }))) }
        if let licenceExpiresAtMs { o.append(("licenceExpiresAt", .number(Double(licenceExpiresAtMs)))) }
        if limiter.failures > 0 { o.append(("wrongCodes", .number(Double(limiter.failures)))) }
        if let until = limiter.lockedUntilMs { o.append(("lockedUntil", .number(Double(until)))) }
        o.append(("remoteCommands", .bool(commandKey != nil)))
        return .object(o)
    }

    /// What the registration file holds: the public view and the command key and counter.
    public var stored: JSON {
        guard case .object(var o) = json else { return json }
        if let commandKey { o.append(("commandKey", .string(hexBytes(commandKey)))) }
        if lastCommandCounter > 0 { o.append(("lastCommandCounter", .number(Double(lastCommandCounter)))) }
        return .object(o)
    }

    public static func parse(_ text: String, source: String) throws(ParseError) -> Registration {
        let json: JSON
        do { json = try JSON.parse(text) } catch { throw ParseError(source: source, line: error.line, column: error.column, "not JSON: \(error.message)") }
        guard let raw = json["status"]?.stringValue, let status = Status(rawValue: raw) else {
            throw ParseError(source: source, line: 1, "status: expected notStarted, started, completed or inactive")
        }
        var r = Registration()
        r.status = status
        r.user = json["user"]?.stringValue
        r.role = json["role"]?.stringValue.flatMap(UserRole.init(rawValue:))
        r.registeredAtMs = json["registeredAt"]?.integer()
        r.services = json["services"]?.arrayValue?.compactMap(\.stringValue) ?? []
        r.licenceExpiresAtMs = json["licenceExpiresAt"]?.integer()
        r.limiter = GuessLimiter(failures: Int(json["wrongCodes"]?.integer(in: 0...1_000_000) ?? 0),
                                 lockedUntilMs: json["lockedUntil"]?.integer())
        r.commandKey = json["commandKey"]?.stringValue.flatMap { bytes(fromHex: $0) }
        r.lastCommandCounter = json["lastCommandCounter"]?.integer(in: 0...Int64.max) ?? 0
        return r
    }
}

/// What the backend signs in an answer a car acts on (registration, licence): the answer's
/// JSON text without its `signature`, bound to the car and the kind of request, so that an
/// answer for one car or one request cannot stand for another. The car checks the Ed25519
/// signature with the backend's public key it was installed with (`[backend] answer-key`).
public enum AnswerSignature {
    public static func signedText(_ answer: JSON, vin: String, kind: String) -> String {
        let fields = (answer.objectValue ?? []).filter { $0.0 != "signature" }
        return "tcu-answer-v1|\(vin)|\(kind)|" + JSON.object(fields).text
    }
}

/// At most `limit` events per key in a rolling `windowMs` (the app API's action throttle, the
/// backend's limit on the cars' account requests).
public struct RollingLimit: Sendable, Equatable {
    public let limit: Int
    public let windowMs: Int64
    private var times: [String: [Int64]] = [:]

    public init(limit: Int, windowMs: Int64) {
        self.limit = limit
        self.windowMs = windowMs
    }

    /// How long until `key` may go again; nil when it may now. Forgets what left the window.
    public mutating func wait(_ key: String, nowMs: Int64) -> Int64? {
        let recent = (times[key] ?? []).filter { $0 > nowMs - windowMs }
        times[key] = recent.isEmpty ? nil : recent
        return recent.count >= limit ? recent[0] + windowMs - nowMs : nil
    }

    /// Counts one event of `key`.
    public mutating func record(_ key: String, nowMs: Int64) {
        times[key, default: []].append(nowMs)
    }
}
