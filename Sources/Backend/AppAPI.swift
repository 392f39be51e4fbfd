import Crypto
import Synchronization
import TelematicsCore

/// The backend's HTTP API for apps, shaped after the real connected-car service (docs/openapi.yaml):
/// log in, list the cars, read a car's status (per-block capture times), parking position
/// ("no content" while the car is in use) and capabilities, verify the S-PIN for a short-lived
/// security token, send actions and follow their requests. Reads count against a daily quota
/// per user and car; actions are throttled per car.
public final class AppAPI: Sendable {
    public struct Limits: Sendable {
        /// Reads a user may make per car and UTC day.
        public var dailyReadQuota = 1_000
        /// Actions a car takes per rolling hour.
        public var actionsPerHour = 20
        /// How long a session (log-in) and a security token (S-PIN) last.
        public var sessionMs: Int64 = 3_600_000
        public var securityTokenMs: Int64 = 300_000
        /// How long a command stays valid on its way to the car.
        public var commandTTLMs: Int64 = 60_000

        public init() {}
    }

    private struct Grant {
        var email: String; var vin: String?; var expiresAtMs: Int64; var issuedAtMs: Int64
        /// The user's choice at log-in (the FAQ: the password asked again after 5, 10 or 15
        /// minutes without use), and the last use; nil: only the session's own end.
        var idleMs: Int64? = nil
        var lastUsedMs: Int64 = 0
    }
    /// The idle times a user may choose, in minutes.
    public static let idleChoices = [5, 10, 15]
    private struct State {
        var sessions: [String: Grant] = [:]
        var securityTokens: [String: Grant] = [:]
        /// (email, vin, UTC day) → reads.
        var reads: [String: Int] = [:]
        /// Each car's actions in the last hour.
        var actions: RollingLimit
    }

    let portalPath: String
    let storePath: String
    let limits: Limits
    let now: @Sendable () -> Int64
    /// Publishes a signed command to the car; false when the broker did not take it.
    let publish: @Sendable (RemoteCommand) -> Bool
    private let state: Mutex<State>

    public init(portalPath: String, storePath: String, limits: Limits = Limits(), now: @escaping @Sendable () -> Int64,
                publish: @escaping @Sendable (RemoteCommand) -> Bool) {
        self.portalPath = portalPath
        self.storePath = storePath
        self.limits = limits
        self.now = now
        self.publish = publish
        state = Mutex(State(actions: RollingLimit(limit: limits.actionsPerHour, windowMs: 3_600_000)))
    }

    static func error(_ status: Int, _ code: String, _ message: String, _ extra: [(String, JSON)] = []) -> HTTPServer.Response {
        HTTPServer.Response(status, .object([("error", .string(code)), ("message", .string(message))] + extra))
    }

    static func token() -> String {
        SymmetricKey(size: .bits128).withUnsafeBytes { hexBytes(Array($0)) }
    }

    /// The HTTP status for a portal refusal.
    static func status(of e: PortalError) -> Int {
        switch e.code {
        case "wrongPassword", "emailNotVerified", "sessionRevoked", "idleTimeout": 401
        case "wrongSPIN", "insufficientRights", "spinRequired", "licenceExpired", "missingLicence": 403
        case "locked", "spinLocked": 423
        case "requestPending": 409
        case "unknownRequest", "notRegistered": 404
        default: 400
        }
    }

    static func refusal(_ e: PortalError) -> HTTPServer.Response {
        var extra: [(String, JSON)] = []
        if let ms = e.retryAfterMs { extra.append(("retryAfterS", .number(Double((ms + 999) / 1000)))) }
        if let left = e.remainingTries { extra.append(("remainingTries", .number(Double(left)))) }
        return error(status(of: e), e.code, e.message, extra)
    }

    /// Handles one request (called on the connection's thread; each call opens its own
    /// SQLite connections, so requests never share a handle).
    public func handle(_ r: HTTPServer.Request) -> HTTPServer.Response {
        let parts = r.path.split(separator: "/").map(String.init)
        guard parts.first == "v1" else { return Self.error(404, "notFound", "the API is under /v1") }
        let portal: Portal
        do { portal = try Portal(path: portalPath) } catch { return Self.error(500, "storage", "\(error)") }
        if parts == ["v1", "login"] {
            guard r.method == "POST" else { return Self.error(405, "methodNotAllowed", "POST /v1/login") }
            return login(r, portal)
        }
        // Everything else needs a session: Authorization: Bearer TOKEN.
        let t = now()
        guard let bearer = r.headers["authorization"], bearer.hasPrefix("Bearer ") else {
            return Self.error(401, "unauthorized", "log in first (POST /v1/login) and send Authorization: Bearer TOKEN")
        }
        // The session, if it is still there; one left idle longer than its owner chose ends here.
        enum Use { case none, idle, ok(Grant) }
        let use = state.withLock { s -> Use in
            let key = String(bearer.dropFirst(7))
            guard var g = s.sessions[key], g.expiresAtMs > t else { return .none }
            if let idle = g.idleMs, t - g.lastUsedMs >= idle {
                s.sessions[key] = nil
                return .idle
            }
            g.lastUsedMs = t
            s.sessions[key] = g
            return .ok(g)
        }
        let session: Grant
        switch use {
        case .none: return Self.error(401, "unauthorized", "log in first (POST /v1/login) and send Authorization: Bearer TOKEN")
        case .idle: return Self.error(401, "idleTimeout", "unused longer than the idle time chosen at log-in: type the password again")
        case .ok(let g): session = g
        }
        let email = session.email
        // A password changed since this log-in (here or on another device) voids the session.
        guard session.issuedAtMs > ((try? portal.passwordChangedAt(email: email)) ?? .max) else {
            return Self.error(401, "sessionRevoked", "the password changed: log in again with the new one")
        }
        if parts == ["v1", "account", "password"] {
            guard r.method == "POST" else { return Self.error(405, "methodNotAllowed", "POST /v1/account/password") }
            guard let current = r.json?["password"]?.stringValue, let new = r.json?["newPassword"]?.stringValue else {
                return Self.error(400, "badRequest", "the body is {\"password\": CURRENT, \"newPassword\": NEW}")
            }
            do { try portal.changePassword(email: email, current: current, new: new, nowMs: t) } catch { return Self.refusal(error) }
            // Every session of the account goes at once, this one too: log in again everywhere.
            state.withLock { s in
                s.sessions = s.sessions.filter { $0.value.email != email }
                s.securityTokens = s.securityTokens.filter { $0.value.email != email }
            }
            return HTTPServer.Response(204)
        }
        if parts == ["v1", "vehicles"], r.method == "GET" {
            do {
                return HTTPServer.Response(200, .object([("vehicles", .array(try portal.vehicles(of: email).map {
                    .object([("vin", .string($0.vin)), ("role", .string($0.role))])
                }))]))
            } catch { return Self.refusal(error) }
        }
        guard parts.count >= 4, parts[1] == "vehicles" else { return Self.error(404, "notFound", "no such resource: \(r.path)") }
        let vin = parts[2]
        let role: String
        do {
            guard let rr = try portal.role(of: email, vin: vin) else { return Self.error(403, "insufficientRights", "\(email) is not a user of \(vin)") }
            role = rr
        } catch { return Self.refusal(error) }
        let rest = Array(parts.dropFirst(3))
        switch (r.method, rest.first) {
        case ("GET", "status"), ("GET", "parkingposition"), ("GET", "capabilities"):
            // The status and the parking position are licensed services; the capabilities say
            // why a service is off, so they are always there.
            let service = ["status": "vehicleStatus", "parkingposition": "parkingPosition"][rest[0]]
            if let service {
                do { try portal.requireLicence(vin: vin, service: service, nowMs: t) } catch { return Self.refusal(error) }
            }
            if let refusal = countRead(email: email, vin: vin, nowMs: t) { return refusal }
            return read(rest[0], vin: vin, role: role)
        case ("GET", "requests") where rest.count == 2:
            do { return HTTPServer.Response(200, try portal.commandStatus(id: rest[1], vin: vin, nowMs: t).json) } catch { return Self.refusal(error) }
        case ("POST", "spin") where rest == ["spin", "verify"]:
            guard let spin = r.json?["spin"]?.stringValue else { return Self.error(400, "badRequest", "the body is {\"spin\": \"1234\"}") }
            do {
                try portal.verifySPIN(email: email, spin: spin, nowMs: t)
            } catch { return Self.refusal(error) }
            let token = Self.token()
            state.withLock { $0.securityTokens[token] = Grant(email: email, vin: vin, expiresAtMs: t + limits.securityTokenMs, issuedAtMs: t) }
            return HTTPServer.Response(200, .object([("securityToken", .string(token)),
                                                     ("expiresInS", .number(Double(limits.securityTokenMs / 1000)))]))
        case ("POST", "actions") where rest.count == 2:
            return action(rest[1], r, portal: portal, email: email, vin: vin, nowMs: t)
        default:
            return Self.error(404, "notFound", "no such resource: \(r.method) \(r.path)")
        }
    }

    private func login(_ r: HTTPServer.Request, _ portal: Portal) -> HTTPServer.Response {
        guard let email = r.json?["email"]?.stringValue, let password = r.json?["password"]?.stringValue else {
            return Self.error(400, "badRequest", "the body is {\"email\": ..., \"password\": ...}")
        }
        var idleMinutes: Int?
        if let v = r.json?["idleMinutes"] {
            guard let m = v.integer(in: 1...60).map(Int.init), Self.idleChoices.contains(m) else {
                return Self.error(400, "badRequest", "idleMinutes is 5, 10 or 15")
            }
            idleMinutes = m
        }
        do { try portal.logIn(email: email, password: password, nowMs: now()) } catch { return Self.refusal(error) }
        let token = Self.token()
        let t = now()
        let grant = Grant(email: email.lowercased(), vin: nil, expiresAtMs: t + limits.sessionMs, issuedAtMs: t,
                          idleMs: idleMinutes.map { Int64($0) * 60_000 }, lastUsedMs: t)
        state.withLock { $0.sessions[token] = grant }
        var o: [(String, JSON)] = [("token", .string(token)), ("expiresInS", .number(Double(limits.sessionMs / 1000)))]
        if let idleMinutes { o.append(("idleMinutes", .number(Double(idleMinutes)))) }
        return HTTPServer.Response(200, .object(o))
    }

    /// A read within the user's daily quota for the car; the refusal otherwise.
    private func countRead(email: String, vin: String, nowMs: Int64) -> HTTPServer.Response? {
        let day = nowMs / 86_400_000
        let key = "\(email)|\(vin)|\(day)"
        let used = state.withLock { s -> Int in
            s.reads[key, default: 0] += 1
            return s.reads[key]!
        }
        guard used <= limits.dailyReadQuota else {
            let left = (day + 1) * 86_400_000 - nowMs
            return Self.error(429, "quotaExceeded", "\(limits.dailyReadQuota) reads a day for this car", [("retryAfterS", .number(Double((left + 999) / 1000)))])
        }
        return nil
    }

    private func read(_ what: String, vin: String, role: String) -> HTTPServer.Response {
        let blocks: [(block: String, capturedAtMs: Int64, receivedAtMs: Int64, values: String)]
        do { blocks = try BackendStore(path: storePath).state(vin: vin) } catch { return Self.error(500, "storage", "\(error)") }
        func values(_ name: String) -> JSON? { blocks.first { $0.block == name }.flatMap { try? JSON.parse($0.values) } }
        switch what {
        case "parkingposition":
            guard let p = values("parking") else { return Self.error(404, "noParkingPosition", "the car has not reported a parking position") }
            // While the car is in use there is no parking position: "no content", as the real service says.
            if p == .null { return HTTPServer.Response(204) }
            return HTTPServer.Response(200, p)
        case "capabilities":
            guard let c = values("capabilities") else { return Self.error(404, "noCapabilities", "the car has not reported its capabilities") }
            return HTTPServer.Response(200, .object([("role", .string(role)), ("capabilities", c)]))
        default:
            let list = blocks.filter { $0.block != "capabilities" }.map { b -> (String, JSON) in
                (b.block, .object([("capturedAt", .number(Double(b.capturedAtMs))), ("receivedAt", .number(Double(b.receivedAtMs))),
                                   ("values", (try? JSON.parse(b.values)) ?? .null)]))
            }
            return HTTPServer.Response(200, .object([("vin", .string(vin)), ("blocks", .object(list))]))
        }
    }

    /// The actions' path names, as the real service spells them.
    static let actions: [String: RemoteCommand.Action] = [
        "lock": .lock, "unlock": .unlock, "honkandflash": .honkAndFlash, "flash": .flash,
        "climatisation-start": .climatisationStart, "climatisation-stop": .climatisationStop, "wakeup": .wakeUp,
    ]

    private func action(_ name: String, _ r: HTTPServer.Request, portal: Portal, email: String, vin: String, nowMs: Int64) -> HTTPServer.Response {
        guard let action = Self.actions[name] else {
            return Self.error(404, "notFound", "the actions are \(Self.actions.keys.sorted().joined(separator: ", "))")
        }
        var proof = Portal.SPINProof.none
        if let token = r.json?["securityToken"]?.stringValue ?? r.headers["x-security-token"] {
            let grant = state.withLock { $0.securityTokens[token] }
            guard let grant, grant.email == email, grant.vin == vin, grant.expiresAtMs > nowMs,
                  grant.issuedAtMs > ((try? portal.passwordChangedAt(email: email)) ?? .max) else {
                return Self.error(403, "invalidSecurityToken", "the security token is unknown, expired or for another car: verify the S-PIN again")
            }
            proof = .securityToken
        }
        // At most `actionsPerHour` actions per car in a rolling hour.
        let throttled = state.withLock { $0.actions.wait(vin, nowMs: nowMs) }
        if let wait = throttled {
            return Self.error(429, "throttled", "at most \(limits.actionsPerHour) actions an hour for this car", [("retryAfterS", .number(Double((wait + 999) / 1000)))])
        }
        let command: RemoteCommand
        do {
            command = try portal.issueCommand(vin: vin, user: email, spin: proof, action: action,
                                              targetTemperature: r.json?["targetTemperature"]?.numberValue, ttlMs: limits.commandTTLMs, nowMs: nowMs)
        } catch { return Self.refusal(error) }
        guard publish(command) else {
            try? portal.commandResult(id: command.id, vin: command.vin, status: "failed", cause: "brokerUnreachable", nowMs: nowMs)
            return Self.error(502, "brokerUnreachable", "the command could not be handed to the broker")
        }
        state.withLock { $0.actions.record(vin, nowMs: nowMs) }
        return HTTPServer.Response(202, .object([("requestId", .string(command.id)), ("action", .string(action.rawValue)),
                                                 ("status", .string("queued"))]),
                                   headers: [("Location", "/v1/vehicles/\(vin)/requests/\(command.id)")])
    }
}
