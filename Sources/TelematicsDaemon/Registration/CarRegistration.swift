#if canImport(Glibc)
import Glibc
#endif
import CarCrypto
import Logging
import Platform
import Synchronization
import TelematicsCore
import VehicleBus

/// The car's side of the registration: the user types the portal's 8-digit pairing code
/// (Settings → Online services → Registration, or `tcuctl register`); the code goes to the
/// backend as an interactive request, and the answer decides the car's enrolment. The decisions
/// are the core's `RegistrationMachine`'s; this shell sends, checks signatures, stores and tells.
/// The state (and the wrong-code lock) is kept in a file across restarts.
public final class CarRegistration: Sendable {
    private let machine: Mutex<RegistrationMachine>
    let path: String
    let timeoutMs: Int64
    let logger: Logger
    let outbox: OutboxService
    let privacy: PrivacySetting
    let profile: VehicleProfile
    let clocks: Clocks
    /// The backend's Ed25519 public key: the answers the car acts on must be signed with it.
    let answerKey: [UInt8]?

    public init(path: String, timeoutMs: Int64, outbox: OutboxService, privacy: PrivacySetting, profile: VehicleProfile,
                logger: Logger, answerKey: [UInt8]?, clocks: Clocks = .system) {
        self.answerKey = answerKey
        self.path = path
        self.timeoutMs = timeoutMs
        self.outbox = outbox
        self.privacy = privacy
        self.profile = profile
        self.logger = logger
        self.clocks = clocks
        var r = Registration()
        if let text = try? readTextFile(path) {
            do {
                r = try Registration.parse(text, source: path)
            } catch {
                logger.error("the registration file is damaged; moved aside, the car is not registered", metadata: ["error": "\(error)"])
                rename(path, path + ".bad")
            }
        }
        machine = Mutex(RegistrationMachine(r))
    }

    public var current: Registration { machine.withLock { $0.registration } }

    /// Told after the car registered or its licence was renewed: what the registration or the
    /// licence held back may go to the backend from now on (the whole state, at once).
    private let granted = Mutex<[@Sendable () -> Void]>([])
    public func onGranted(_ body: @escaping @Sendable () -> Void) { granted.withLock { $0.append(body) } }
    private func tellGranted() { for g in granted.withLock({ $0 }) { g() } }

    /// Renews the licence from the car (the menu's Licences screen): an interactive request like
    /// the registration; the answer's end and services are kept.
    public func renew(package: String, years: Int) -> RegistrationReply {
        let requestId = messageID(unixMs: clocks.wallMs)
        let conditions = RegistrationMachine.Conditions(canCheckAnswers: answerKey != nil, connects: privacy.current.connects)
        let first = machine.withLock { $0.renewalRequested(requestId: requestId, conditions: conditions) }
        guard case .sendRequest = first else { return carryOut(first) }
        let body = JSON.object([("requestId", .string(requestId)), ("vin", .string(profile.vin.value)), ("action", .string("renew")),
                                ("package", .string(package)), ("years", .number(Double(years)))])
        return carryOut(exchange(kind: "licence", body: body, requestId: requestId) { m, a in
            m.renewalAnswered(requestId: requestId, RenewalAnswer(json: a))
        })
    }

    // MARK: - The in-car activation assistant

    /// Creates the user's account from the car (the assistant's first step). The backend sends
    /// a verification link to the address; the password and S-PIN travel once, over the
    /// backend link, and are neither kept in the car nor logged.
    public func createAccount(email: String, password: String, spin: String) -> RegistrationReply {
        let reply: JSON
        switch accountRequest([("action", .string("createAccount")), ("email", .string(email)), ("password", .string(password)), ("spin", .string(spin))]) {
        case .success(let a): reply = a
        case .failure(let refusal): return .refused(refusal)
        }
        logger.notice("account created from the car; its e-mail address waits for verification")
        return .accountCreated(user: reply["user"]?.stringValue ?? email, next: "Open the link sent to \(email), then log in to add the car.")
    }

    /// The assistant's next steps at once: log in, add this car to the account's garage with the
    /// terms of use and the privacy policy accepted, and register it with the code that gives.
    public func addCarAndRegister(email: String, password: String, acceptedTerms: Bool) -> RegistrationReply {
        guard acceptedTerms else {
            return .refused(.init(code: "termsNotAccepted", advice: "The online services need the terms of use and the privacy policy accepted."))
        }
        let answer = accountRequest([
            ("action", .string("addCar")), ("email", .string(email)), ("password", .string(password)), ("acceptTerms", .bool(true)),
            ("model", .string(profile.model)), ("buildDate", .string(profile.buildDate)), ("country", .string(profile.country)),
        ])
        let code: String
        switch answer {
        case .success(let a):
            guard let c = a["pairingCode"]?.stringValue else { return .refused(.init(code: "refused", advice: "The server gave no pairing code.")) }
            code = c
        case .failure(let refusal): return .refused(refusal)
        }
        logger.notice("the car is in the user's garage; registering it")
        return register(code: code)
    }

    /// An account request to the backend, with the failures the car shows.
    private func accountRequest(_ fields: [(String, JSON)]) -> Result<JSON, RegistrationReply.Refusal> {
        guard privacy.current.connects else { return .failure(.init(.privacyOffline)) }
        let requestId = messageID(unixMs: clocks.wallMs)
        let body = JSON.object([("requestId", .string(requestId)), ("vin", .string(profile.vin.value))] + fields)
        switch outbox.interact(suffix: "account", body: body, requestId: requestId, timeoutMs: timeoutMs) {
        case .noConnection: return .failure(.init(.noConnection))
        case .timeout: return .failure(.init(.timeout))
        case .answer(let a):
            guard a["ok"]?.boolValue == true else {
                return .failure(.init(code: a["error"]?.stringValue ?? "refused", advice: a["message"]?.stringValue ?? "The server refused.",
                                      retryAfterS: a["retryAfterS"]?.integer(in: 0...86_400 * 366)))
            }
            return .success(a)
        }
    }

    /// Records a remote command's counter as used, durably, before the command runs: a
    /// replay is refused even after a restart.
    public func useCommandCounter(_ counter: Int64) {
        store(machine.withLock { $0.commandCounterUsed(counter) })
    }

    /// Forgets the registration (a factory reset): the file is deleted.
    public func reset() {
        machine.withLock { $0.reset() }
        unlink(path)
        syncFolder(of: path)
    }

    private func store(_ r: Registration) {
        if !writeFileDurably(path, r.stored.text + "\n") {
            logger.error("cannot store the registration", metadata: ["registration.file": "\(path)"])
        }
    }

    /// Whether an answer of `kind` carries the backend's signature (a forged or unsigned one
    /// changes nothing in the car).
    func authentic(_ answer: JSON, kind: String) -> Bool {
        CarCrypto.isAuthentic(answer, vin: profile.vin.value, kind: kind, key: answerKey)
    }

    private func failure(_ f: RegistrationFailure, retryAfterMs: Int64? = nil, detail: String? = nil) -> RegistrationReply {
        .refused(.init(f, retryAfterMs: retryAfterMs, detail: detail))
    }

    /// Registers the car with `code`; blocks up to the timeout. The reply names the failure
    /// and the advice to show.
    public func register(code: String) -> RegistrationReply {
        let now = clocks.wallMs
        let requestId = messageID(unixMs: now)
        let conditions = RegistrationMachine.Conditions(canCheckAnswers: answerKey != nil, connects: privacy.current.connects)
        let first = machine.withLock { $0.codeEntered(code, requestId: requestId, conditions: conditions, nowMs: now) }
        guard case .sendRequest = first else { return carryOut(first) }
        let body = JSON.object([
            ("requestId", .string(requestId)), ("vin", .string(profile.vin.value)), ("code", .string(code)),
            ("model", .string(profile.model)), ("buildDate", .string(profile.buildDate)), ("country", .string(profile.country)),
            ("privacy", .string(privacy.current.rawValue)),
            // The trial's services follow the equipment (Navi with navigation).
            ("navigation", .bool(profile.equipment["navigation"] == "true")),
        ])
        logger.notice("registration requested", metadata: ["registration.requestId": "\(requestId)"])
        return carryOut(exchange(kind: "registration", body: body, requestId: requestId) { m, a in
            m.answered(requestId: requestId, RegistrationAnswer(json: a), nowMs: now)
        })
    }

    /// Sends an interactive request of `kind` (`vehicles/{vin}/{kind}/request`) and feeds the
    /// machine what came of it: no connection, no answer in time, a forged answer, or the
    /// backend's signed answer (`answered`).
    private func exchange(kind: String, body: JSON, requestId: String,
                          answered: (inout RegistrationMachine, JSON) -> RegistrationMachine.Action) -> RegistrationMachine.Action {
        switch outbox.interact(suffix: kind, body: body, requestId: requestId, timeoutMs: timeoutMs) {
        case .noConnection:
            return machine.withLock { $0.noConnection(requestId: requestId) }
        case .timeout:
            logger.warning("no answer from the backend", metadata: ["request.kind": "\(kind)", "request.timeoutMs": "\(timeoutMs)"])
            return machine.withLock { $0.noAnswer(requestId: requestId) }
        case .answer(let a):
            guard authentic(a, kind: kind) else {
                logger.warning("an answer without the backend's signature was refused", metadata: ["request.kind": "\(kind)"])
                return machine.withLock { $0.answerNotAuthentic(requestId: requestId) }
            }
            return machine.withLock { answered(&$0, a) }
        }
    }

    /// Does what the machine said, and the reply for the user.
    private func carryOut(_ action: RegistrationMachine.Action) -> RegistrationReply {
        switch action {
        case .sendRequest, .doNothing:
            // (A request is sent by `register` itself; a report about another request is not this one's.)
            return failure(.busy)
        case .refuse(let r):
            return .refused(r)
        case .storeAndRefuse(let registration, let r):
            store(registration)
            logger.warning("registration refused", metadata: ["registration.error": "\(r.code)"])
            return .refused(r)
        case .storeAndGrant(let registration, let price):
            store(registration)
            if price == nil {
                logger.notice("registered", metadata: ["registration.role": "\(registration.role?.rawValue ?? "")"])
            } else {
                logger.notice("licence renewed", metadata: ["licence.expiresAt": "\(registration.licenceExpiresAtMs ?? 0)"])
            }
            tellGranted()
            return .done(registration, priceEUR: price)
        }
    }
}
