/// The car's registration requests as a machine: the decisions `CarRegistration` (the shell)
/// used to make itself.
///
/// Overview: the user types the portal's pairing code (the menu, `tcuctl register`, or the
/// activation assistant with the code the backend gave). The machine checks the code and the
/// car's conditions (a key to check the backend's signature with, a privacy level that
/// connects, no wrong-code lock) and asks the shell to send one request; the car's enrolment is
/// `started` from then on. The shell reports what came of it: no connection, no answer in time,
/// an answer whose signature is wrong, or the backend's answer, accepted or refused. Acceptance
/// completes the registration (the user, the role, the licence, the command key; the counter
/// starts again); a refusal for a wrong code counts against the lock. One request at a time: a
/// code typed while one is on its way is refused, and a report about another request (a late
/// one) changes nothing. The machine never reads a clock, stores or sends: its actions say what
/// to do.
public struct RegistrationMachine: Sendable, Equatable {
    private enum State: Sendable, Equatable {
        /// No request on its way: a code may be typed.
        case idle
        /// The request `requestId` (a registration, or a renewal) is on its way; its report comes next.
        case waiting(requestId: String, renewal: Bool)
    }

    /// What the car knows of its registration (kept by the shell in its file).
    public private(set) var registration: Registration
    private var state: State = .idle

    public init(_ registration: Registration = Registration()) {
        self.registration = registration
    }

    /// Why not: the code the user and tcuctl see, the advice, when to try again.
    public typealias Refusal = RegistrationReply.Refusal

    public enum Action: Sendable, Equatable {
        /// Send the request with this id (a registration: the shell adds the car's profile and
        /// its privacy level; a renewal: the package and the term) and report what came of it.
        case sendRequest(requestId: String)
        /// Tell the user why not; nothing changed.
        case refuse(Refusal)
        /// Keep the registration (a wrong code counted) and tell the user why not.
        case storeAndRefuse(Registration, Refusal)
        /// Keep the registration and let what it (or the licence) held back go to the backend:
        /// registered, or the licence renewed (at this price, when the backend said).
        case storeAndGrant(Registration, priceEUR: Double? = nil)
        /// A report about a request that is not the one on its way.
        case doNothing
    }

    /// The car's conditions when a code is typed.
    public struct Conditions: Sendable, Equatable {
        /// The backend's public key is installed: its answers can be checked.
        public var canCheckAnswers: Bool
        /// The privacy level lets the car reach the backend (not offline).
        public var connects: Bool

        public init(canCheckAnswers: Bool, connects: Bool) {
            self.canCheckAnswers = canCheckAnswers
            self.connects = connects
        }
    }

    /// The user typed `code`; `requestId` names the request if it goes.
    public mutating func codeEntered(_ code: String, requestId: String, conditions: Conditions, nowMs: Int64) -> Action {
        switch state {
        case .waiting:
            return .refuse(Refusal(.busy))
        case .idle:
            guard isPairingCode(code) else { return .refuse(Refusal(.invalidCode)) }
            guard conditions.canCheckAnswers else { return .refuse(Refusal(.noAnswerKey)) }
            guard conditions.connects else { return .refuse(Refusal(.privacyOffline)) }
            if let left = registration.limiter.lockedFor(nowMs: nowMs) { return .refuse(Refusal(.locked, retryAfterMs: left)) }
            if registration.status == .notStarted { registration.status = .started }
            state = .waiting(requestId: requestId, renewal: false)
            return .sendRequest(requestId: requestId)
        }
    }

    /// The user asked to renew the licence (the menu's Licences screen); `requestId` names the
    /// request if it goes. Only a registered car renews; one request at a time.
    public mutating func renewalRequested(requestId: String, conditions: Conditions) -> Action {
        switch state {
        case .waiting:
            return .refuse(Refusal(.busy))
        case .idle:
            guard registration.status == .completed else { return .refuse(Refusal(.notRegistered)) }
            guard conditions.canCheckAnswers else { return .refuse(Refusal(.noAnswerKey)) }
            guard conditions.connects else { return .refuse(Refusal(.privacyOffline)) }
            state = .waiting(requestId: requestId, renewal: true)
            return .sendRequest(requestId: requestId)
        }
    }

    /// The backend's (authentic) answer to a renewal.
    public mutating func renewalAnswered(requestId: String, _ answer: RenewalAnswer) -> Action {
        guard finish(requestId, renewal: true) else { return .doNothing }
        switch answer {
        case .accepted(let expiresAtMs, let services, let priceEUR):
            registration.licenceExpiresAtMs = expiresAtMs
            if let services { registration.services = services }
            return .storeAndGrant(registration, priceEUR: priceEUR)
        case .refused(let code, let message):
            return .refuse(Refusal(code: code, advice: message ?? "The server refused the renewal."))
        }
    }

    /// The request could not leave: the car has no connection to the backend.
    public mutating func noConnection(requestId: String) -> Action {
        guard finish(requestId) else { return .doNothing }
        return .refuse(Refusal(.noConnection))
    }

    /// No answer came in time.
    public mutating func noAnswer(requestId: String) -> Action {
        guard finish(requestId) else { return .doNothing }
        return .refuse(Refusal(.timeout))
    }

    /// An answer came whose signature is not the backend's: nothing in it is taken.
    public mutating func answerNotAuthentic(requestId: String) -> Action {
        guard finish(requestId) else { return .doNothing }
        return .refuse(Refusal(.answerNotAuthentic))
    }

    /// The backend's (authentic) answer.
    public mutating func answered(requestId: String, _ answer: RegistrationAnswer, nowMs: Int64) -> Action {
        guard finish(requestId, renewal: false) else { return .doNothing }
        switch answer {
        case .accepted(let a):
            registration.status = .completed
            registration.user = a.user
            registration.role = a.role
            registration.registeredAtMs = nowMs
            registration.services = a.services
            registration.licenceExpiresAtMs = a.licenceExpiresAtMs
            registration.commandKey = a.commandKey
            registration.lastCommandCounter = 0
            registration.limiter.succeeded()
            return .storeAndGrant(registration)
        case .refused(let failure, let retryAfterMs, let message):
            if failure.isWrongCode { registration.limiter.wrongCode(nowMs: nowMs) }
            return .storeAndRefuse(registration, Refusal(failure, retryAfterMs: retryAfterMs ?? registration.limiter.lockedFor(nowMs: nowMs),
                                                         detail: message))
        }
    }

    /// The request on its way ends with this report; false when the report is not about it
    /// (another request, or an answer of the other kind: `renewal`, when the report says).
    private mutating func finish(_ requestId: String, renewal: Bool? = nil) -> Bool {
        guard case .waiting(let waiting, let isRenewal) = state, waiting == requestId, renewal.map({ $0 == isRenewal }) ?? true else {
            return false
        }
        state = .idle
        return true
    }

    // MARK: - What changes the registration outside a request

    /// A remote command's counter, used before the command runs (a replay is refused even
    /// after a restart): the registration to keep.
    public mutating func commandCounterUsed(_ counter: Int64) -> Registration {
        registration.lastCommandCounter = max(registration.lastCommandCounter, counter)
        return registration
    }

    /// A factory reset: not registered, no lock, no request on its way.
    public mutating func reset() {
        registration = Registration()
        state = .idle
    }
}

/// The backend's answer to a registration request, read from its JSON (signature checked by
/// the shell first): accepted with what the car keeps, or refused with the reason.
public enum RegistrationAnswer: Sendable, Equatable {
    public struct Accepted: Sendable, Equatable {
        public var user: String?
        public var role: UserRole
        public var services: [String]
        /// nil when missing or out of range: no expiry is known, and the licence checks say so.
        public var licenceExpiresAtMs: Int64?
        public var commandKey: [UInt8]?

        public init(user: String?, role: UserRole = .primary, services: [String], licenceExpiresAtMs: Int64?, commandKey: [UInt8]?) {
            self.user = user
            self.role = role
            self.services = services
            self.licenceExpiresAtMs = licenceExpiresAtMs
            self.commandKey = commandKey
        }
    }

    case accepted(Accepted)
    /// The reason (an unknown one is taken as an unknown code), the backend's own lock, its sentence.
    case refused(RegistrationFailure, retryAfterMs: Int64?, message: String?)

    /// The latest time an answer may name (the year 9999, in ms): later is out of range.
    public static let latestTimeMs: Int64 = 253_402_300_799_000

    public init(json a: JSON) {
        if a["ok"]?.boolValue == true {
            self = .accepted(Accepted(
                user: a["user"]?.stringValue, role: a["role"]?.stringValue.flatMap(UserRole.init(rawValue:)) ?? .primary,
                services: a["services"]?.arrayValue?.compactMap(\.stringValue) ?? [],
                licenceExpiresAtMs: a["licenceExpiresAt"]?.integer(in: 0...Self.latestTimeMs),
                commandKey: a["commandKey"]?.stringValue.flatMap { bytes(fromHex: $0) }))
        } else {
            // The backend's lock, in seconds, at most a year (a larger figure is not a lock).
            self = .refused(a["error"]?.stringValue.flatMap(RegistrationFailure.init(rawValue:)) ?? .codeUnknown,
                            retryAfterMs: a["retryAfterS"]?.integer(in: 0...86_400 * 366).map { $0 * 1000 },
                            message: a["message"]?.stringValue)
        }
    }
}

/// The backend's (authentic) answer to a licence renewal: the licence's new end, its services
/// and the price; or the backend's refusal. An end out of range is not taken (a refusal).
public enum RenewalAnswer: Sendable, Equatable {
    case accepted(expiresAtMs: Int64, services: [String]?, priceEUR: Double?)
    case refused(code: String, message: String?)

    public init(json a: JSON) {
        if a["ok"]?.boolValue == true, let end = a["licenceExpiresAt"]?.integer(in: 0...RegistrationAnswer.latestTimeMs) {
            self = .accepted(expiresAtMs: end, services: a["services"]?.arrayValue?.compactMap(\.stringValue), priceEUR: a["priceEUR"]?.numberValue)
        } else {
            self = .refused(code: a["error"]?.stringValue ?? "refused", message: a["message"]?.stringValue)
        }
    }
}
