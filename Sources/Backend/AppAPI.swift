import Crypto
import Platform
import Synchronization
import TelematicsCore

/// The backend's HTTP API for apps, shaped after the real connected-car service (docs/openapi.yaml):
/// log in, list the cars, read a car's status (per-block capture times), parking position
/// ("no content" while the car is in use) and capabilities, verify the S-PIN for a short-lived
/// security token, send actions and follow their requests. Reads count against a daily quota
/// per user and car; actions are throttled per car.
public final class AppAPI: Sendable {
    /// A request as the HTTP server (BackendHTTP) hands it over: whole, its body read.
    public struct Request: Sendable {
        public var method: String
        /// The path, without the query.
        public var path: String
        public var query: [String: String]
        /// Header names in lower case.
        public var headers: [String: String]
        public var body: [UInt8]

        public init(method: String, path: String, query: [String: String] = [:], headers: [String: String] = [:], body: [UInt8] = []) {
            self.method = method
            self.path = path
            self.query = query
            self.headers = headers
            self.body = body
        }

        /// The body as JSON, or nil when there is none or it is not JSON.
        public var json: JSON? { body.isEmpty ? nil : try? JSON.parse(String(decoding: body, as: UTF8.self)) }
    }

    /// An answer: a status, a JSON body (none for 204) and extra headers.
    public struct Response: Sendable {
        public var status: Int
        public var body: JSON?
        public var headers: [(String, String)] = []
        /// Set for the live alerts: the server streams them (Server-Sent Events) instead of a body.
        public var alertStream: AlertStream?

        public init(_ status: Int, _ body: JSON? = nil, headers: [(String, String)] = []) {
            self.status = status
            self.body = body
            self.headers = headers
        }
    }

    /// A live alert stream the server keeps open: whose, and from which alert on.
    public struct AlertStream: Sendable {
        public var token: String
        public var email: String
        public var afterId: Int64
    }

    /// Rung when the MQTT side stored alerts: the live streams look for new ones.
    public let alertBell = Bell()

    /// The largest body a request may carry (the server refuses more with 413 before reading it).
    public static let maximumBody = 65_536

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

    /// PBKDF2 rounds for the portal (`Portal.rounds`; fewer only where the hash's cost is not
    /// what is tested: unit tests, fuzzing).
    let rounds: Int
    /// Where the links in the mails point (`--public-url`): this API's address as a person's
    /// browser reaches it.
    let publicURL: String

    public init(portalPath: String, storePath: String, limits: Limits = Limits(), rounds: Int = Portal.rounds,
                publicURL: String = "http://127.0.0.1:8080", now: @escaping @Sendable () -> Int64,
                publish: @escaping @Sendable (RemoteCommand) -> Bool) {
        self.rounds = rounds
        self.publicURL = publicURL.hasSuffix("/") ? String(publicURL.dropLast()) : publicURL
        self.portalPath = portalPath
        self.storePath = storePath
        self.limits = limits
        self.now = now
        self.publish = publish
        state = Mutex(State(actions: RollingLimit(limit: limits.actionsPerHour, windowMs: 3_600_000)))
    }

    static func error(_ status: Int, _ code: String, _ message: String, _ extra: [(String, JSON)] = []) -> Response {
        Response(status, .object([("error", .string(code)), ("message", .string(message))] + extra))
    }

    static func token() -> String {
        SymmetricKey(size: .bits128).withUnsafeBytes { hexBytes(Array($0)) }
    }

    /// The HTTP status for a portal refusal.
    static func status(of e: PortalError) -> Int {
        switch e.code {
        case "wrongPassword", "emailNotVerified", "sessionRevoked", "idleTimeout": 401
        case "accountExists", "userNameTaken", "mobileTaken", "vehicleInAnotherGarage", "alreadyPrimary": 409
        case "noAccount", "notInGarage": 404
        case "wrongSPIN", "insufficientRights", "spinRequired", "licenceExpired", "missingLicence": 403
        case "locked", "spinLocked": 423
        case "requestPending": 409
        case "unknownRequest", "notRegistered": 404
        default: 400
        }
    }

    static func refusal(_ e: PortalError) -> Response {
        var extra: [(String, JSON)] = []
        if let ms = e.retryAfterMs { extra.append(("retryAfterS", .number(Double((ms + 999) / 1000)))) }
        if let left = e.remainingTries { extra.append(("remainingTries", .number(Double(left)))) }
        return error(status(of: e), e.code, e.message, extra)
    }

    /// Handles one request (called on the connection's thread; each call opens its own
    /// SQLite connections, so requests never share a handle).
    public func handle(_ r: Request) -> Response {
        let parts = r.path.split(separator: "/").map(String.init)
        guard parts.first == "v1" else { return Self.error(404, "notFound", "the API is under /v1") }
        let portal: Portal
        do { portal = try Portal(path: portalPath, rounds: rounds) } catch { return Self.error(500, "storage", "\(error)") }
        if parts == ["v1", "login"] {
            guard r.method == "POST" else { return Self.error(405, "methodNotAllowed", "POST /v1/login") }
            return login(r, portal)
        }
        // Without a session: signing up, the mailed links, a forgotten password, the contacts.
        if parts.count >= 2, parts[1] == "accounts" || parts[1] == "support" {
            return accounts(r, parts: parts, portal: portal)
        }
        // Everything else needs a session: Authorization: Bearer TOKEN.
        let t = now()
        guard let bearer = r.headers["authorization"], bearer.hasPrefix("Bearer ") else {
            return Self.error(401, "unauthorized", "log in first (POST /v1/login) and send Authorization: Bearer TOKEN")
        }
        let session: Grant
        switch check(session: String(bearer.dropFirst(7)), portal: portal, nowMs: t, use: true) {
        case .success(let g): session = g
        case .failure(let refusal): return refusal.response
        }
        let email = session.email
        if parts == ["v1", "account", "password"] {
            guard r.method == "POST" else { return Self.error(405, "methodNotAllowed", "POST /v1/account/password") }
            guard let current = r.json?["password"]?.stringValue, let new = r.json?["newPassword"]?.stringValue else {
                return Self.error(400, "badRequest", "the body is {\"password\": CURRENT, \"newPassword\": NEW}")
            }
            do { try portal.changePassword(email: email, current: current, new: new, nowMs: t) } catch { return Self.refusal(error) }
            // Every session of the account goes at once, this one too: log in again everywhere.
            endSessions(of: email)
            return Response(204)
        }
        if parts == ["v1", "account"] {
            guard r.method == "DELETE" else { return Self.error(405, "methodNotAllowed", "DELETE /v1/account") }
            return deleteAccount(r, portal: portal, email: email, nowMs: t)
        }
        if parts.count >= 3, parts[1] == "account", parts[2] == "sessions" {
            return sessions(r, parts: parts, email: email, token: String(bearer.dropFirst(7)))
        }
        if parts.count >= 2, parts[1] == "alerts" {
            return alerts(r, parts: parts, portal: portal, email: email, token: String(bearer.dropFirst(7)))
        }
        if parts.count >= 2, parts[1] == "garage" {
            return garage(r, parts: parts, portal: portal, email: email, nowMs: t)
        }
        if parts == ["v1", "vehicles"], r.method == "GET" {
            do {
                return Response(200, .object([("vehicles", .array(try portal.vehicles(of: email).map {
                    .object([("vin", .string($0.vin)), ("role", .string($0.role.rawValue))])
                }))]))
            } catch { return Self.refusal(error) }
        }
        guard parts.count >= 4, parts[1] == "vehicles" else { return Self.error(404, "notFound", "no such resource: \(r.path)") }
        let vin = parts[2]
        let role: UserRole
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
            do { return Response(200, try portal.commandStatus(id: rest[1], vin: vin, nowMs: t).json) } catch { return Self.refusal(error) }
        case ("POST", "spin") where rest == ["spin", "verify"]:
            guard let spin = r.json?["spin"]?.stringValue else { return Self.error(400, "badRequest", "the body is {\"spin\": \"1234\"}") }
            do {
                try portal.verifySPIN(email: email, spin: spin, nowMs: t)
            } catch { return Self.refusal(error) }
            let token = Self.token()
            state.withLock { $0.securityTokens[token] = Grant(email: email, vin: vin, expiresAtMs: t + limits.securityTokenMs, issuedAtMs: t) }
            return Response(200, .object([("securityToken", .string(token)),
                                                     ("expiresInS", .number(Double(limits.securityTokenMs / 1000)))]))
        case ("POST", "actions") where rest.count == 2:
            return action(rest[1], r, portal: portal, email: email, vin: vin, nowMs: t)
        default:
            return Self.error(404, "notFound", "no such resource: \(r.method) \(r.path)")
        }
    }

    /// `GET /v1/alerts` (the history: `after` an id, at most `limit`) and `GET /v1/alerts/stream`
    /// (live, Server-Sent Events, resumed after `Last-Event-ID` or `after`).
    private func alerts(_ r: Request, parts: [String], portal: Portal, email: String, token: String) -> Response {
        guard r.method == "GET", parts.count == 2 || (parts.count == 3 && parts[2] == "stream") else {
            return Self.error(404, "notFound", "the alerts are GET /v1/alerts and GET /v1/alerts/stream")
        }
        var after: Int64 = 0
        if let raw = r.headers["last-event-id"] ?? r.query["after"] {
            guard let n = Int64(raw), n >= 0, n <= BackendStore.largestExactInteger else {
                return Self.error(400, "badRequest", "after (or Last-Event-ID) is an alert id, a whole number from 0, not '\(raw.prefix(40))'")
            }
            after = n
        }
        if parts.count == 3 {
            var live = Response(200)
            live.alertStream = AlertStream(token: token, email: email, afterId: after)
            return live
        }
        var limit = 100
        if let raw = r.query["limit"] {
            guard let n = Int(raw), (1...500).contains(n) else { return Self.error(400, "badRequest", "limit is 1 to 500, not '\(raw.prefix(40))'") }
            limit = n
        }
        do {
            let list = try BackendStore(path: storePath).alerts(vins: try portal.alertedCars(of: email), afterId: after, limit: limit)
            return Response(200, .object([("alerts", .array(list.map(\.json))), ("last", .number(Double(list.last?.id ?? after)))]))
        } catch { return Self.error(500, "storage", "\(error)") }
    }

    /// For a live stream: the alerts after `afterId` while the session is still good (nil once
    /// it has ended, expired, idled out or been revoked by a password change).
    public func streamAlerts(_ stream: AlertStream, afterId: Int64) -> [BackendStore.StoredAlert]? {
        // The same check as every request's, except that a stream waiting for alerts is not a
        // use: it ends when the session would refuse the next request (idle included).
        guard let portal = try? Portal(path: portalPath, rounds: rounds),
              case .success = check(session: stream.token, portal: portal, nowMs: now(), use: false),
              let cars = try? portal.alertedCars(of: stream.email), let store = try? BackendStore(path: storePath) else { return nil }
        return try? store.alerts(vins: cars, afterId: afterId, limit: 100)
    }

    /// Why a session token is refused.
    enum SessionRefusal: Error {
        case unknown, idle, revoked
        var response: Response {
            switch self {
            case .unknown: AppAPI.error(401, "unauthorized", "log in first (POST /v1/login) and send Authorization: Bearer TOKEN")
            case .idle: AppAPI.error(401, "idleTimeout", "unused longer than the idle time chosen at log-in: type the password again")
            case .revoked: AppAPI.error(401, "sessionRevoked", "the password changed: log in again with the new one")
            }
        }
    }

    /// The one check of a session token, for requests and live streams alike: it exists and has
    /// not expired; it was not left idle longer than its owner chose (then it ends here); the
    /// password has not changed since it was issued (here or on another device). `use`: the
    /// request counts as a use (the idle time starts again).
    private func check(session token: String, portal: Portal, nowMs t: Int64, use: Bool) -> Result<Grant, SessionRefusal> {
        let found = state.withLock { s -> Result<Grant, SessionRefusal> in
            guard var g = s.sessions[token], g.expiresAtMs > t else { return .failure(.unknown) }
            if let idle = g.idleMs, t - g.lastUsedMs >= idle {
                s.sessions[token] = nil
                return .failure(.idle)
            }
            if use {
                g.lastUsedMs = t
                s.sessions[token] = g
            }
            return .success(g)
        }
        guard case .success(let g) = found else { return found }
        guard g.issuedAtMs > ((try? portal.passwordChangedAt(email: g.email)) ?? .max) else { return .failure(.revoked) }
        return .success(g)
    }

    /// The routes without a session (docs/openapi.yaml): `POST /v1/accounts` (sign up),
    /// `GET /v1/accounts/verify?token=` (the mailed link), `POST /v1/accounts/password-reset`
    /// and `.../confirm`, `GET /v1/support`.
    private func accounts(_ r: Request, parts: [String], portal: Portal) -> Response {
        let t = now()
        let link: (String) -> String = { [publicURL] path in publicURL + path }
        func field(_ name: String) -> String? { r.json?[name]?.stringValue }
        switch (r.method, Array(parts.dropFirst())) {
        case ("GET", ["support"]):
            return Response(200, .object(Portal.support))
        case ("POST", ["accounts"]):
            guard case .object? = r.json, let email = field("email"), let password = field("password"), let spin = field("spin") else {
                return Self.error(400, "badRequest", "the body is {\"email\", \"password\", \"spin\"} and optionally \"userName\" and \"mobile\", all strings")
            }
            for optional in ["userName", "mobile"] where r.json?[optional] != nil && field(optional) == nil {
                return Self.error(400, "badRequest", "\(optional) is a string")
            }
            do {
                let account = try portal.signUp(email: email, password: password, spin: spin, userName: field("userName"),
                                                mobile: field("mobile"), link: link, nowMs: t)
                return Response(201, account)
            } catch { return Self.refusal(error) }
        case ("GET", ["accounts", "verify"]):
            do {
                let email = try portal.verifyEmail(token: r.query["token"] ?? "", nowMs: t)
                return Response(200, .object([("email", .string(email)), ("verified", .bool(true))]))
            } catch { return Self.refusal(error) }
        case ("POST", ["accounts", "password-reset"]):
            guard let login = field("login") ?? field("email") else { return Self.error(400, "badRequest", "the body is {\"login\": an e-mail address, a user name or a mobile number}") }
            do { try portal.requestPasswordReset(login: login, link: link, nowMs: t) } catch { return Self.refusal(error) }
            // The same answer whether or not the account exists.
            return Response(202, .object([("sent", .bool(true))]))
        case ("POST", ["accounts", "password-reset", "confirm"]):
            guard let token = field("token"), let new = field("newPassword") else {
                return Self.error(400, "badRequest", "the body is {\"token\": from the mailed link, \"newPassword\": ...}")
            }
            do {
                // Every session and token from before is void from now (passwordChangedAt): a device
                // still using one is told sessionRevoked.
                _ = try portal.resetPassword(token: token, new: new, nowMs: t)
                return Response(204)
            } catch { return Self.refusal(error) }
        default:
            return Self.error(404, "notFound", "no such resource: \(r.method) \(r.path)")
        }
    }

    /// `DELETE /v1/account` with `{"password"}`: "delete my data". The account and everything
    /// naming it go, its cars' data on the server too, in one transaction
    /// (`Portal.deleteAccount`); every session and security token of it ends.
    private func deleteAccount(_ r: Request, portal: Portal, email: String, nowMs: Int64) -> Response {
        guard let password = r.json?["password"]?.stringValue else {
            return Self.error(400, "badRequest", "the body is {\"password\": the account's password, typed again}")
        }
        do { try portal.deleteAccount(email: email, password: password, nowMs: nowMs) } catch { return Self.refusal(error) }
        endSessions(of: email)
        return Response(204)
    }

    /// Every session and security token of the account ends.
    private func endSessions(of email: String) {
        state.withLock { s in
            s.sessions = s.sessions.filter { $0.value.email != email }
            s.securityTokens = s.securityTokens.filter { $0.value.email != email }
        }
    }

    /// A session's id as the app shows it: a digest of its token, never the token.
    static func sessionID(_ token: String) -> String {
        String(hexBytes(Array(SHA256.hash(data: Array(token.utf8)))).prefix(16))
    }

    /// `GET /v1/account/sessions` (the user's sessions, this one marked) and
    /// `DELETE /v1/account/sessions/{id}` (one signed out).
    private func sessions(_ r: Request, parts: [String], email: String, token: String) -> Response {
        switch (r.method, parts.count) {
        case ("GET", 3):
            let list = state.withLock { s in s.sessions.filter { $0.value.email == email }.sorted { $0.value.issuedAtMs < $1.value.issuedAtMs } }
            return Response(200, .object([("sessions", .array(list.map { key, g in
                var o: [(String, JSON)] = [("id", .string(Self.sessionID(key))), ("createdAt", .number(Double(g.issuedAtMs))),
                                           ("lastUsedAt", .number(Double(g.lastUsedMs))), ("expiresAt", .number(Double(g.expiresAtMs))),
                                           ("current", .bool(key == token))]
                if let idle = g.idleMs { o.append(("idleMinutes", .number(Double(idle / 60_000)))) }
                return .object(o)
            }))]))
        case ("DELETE", 4):
            let removed = state.withLock { s -> Bool in
                guard let key = s.sessions.first(where: { $0.value.email == email && Self.sessionID($0.key) == parts[3] })?.key else { return false }
                s.sessions[key] = nil
                return true
            }
            return removed ? Response(204) : Self.error(404, "unknownSession", "no session \(parts[3].prefix(40)) of \(email)")
        default:
            return Self.error(404, "notFound", "the sessions are GET /v1/account/sessions and DELETE /v1/account/sessions/{id}")
        }
    }

    private func login(_ r: Request, _ portal: Portal) -> Response {
        // An e-mail address, a user name or a mobile number (the FAQ); "email" as before.
        guard let login = r.json?["login"]?.stringValue ?? r.json?["email"]?.stringValue, let password = r.json?["password"]?.stringValue else {
            return Self.error(400, "badRequest", "the body is {\"login\": an e-mail address, a user name or a mobile number, \"password\": ...}")
        }
        let email: String
        do {
            // An unknown user name or number is tried as itself: it costs the same hash and
            // counts against the same lock as a known one, and fails as a wrong password.
            email = try portal.account(forLogin: login) ?? login.lowercased()
        } catch { return Self.refusal(error) }
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
        return Response(200, .object(o))
    }

    /// A read within the user's daily quota for the car; the refusal otherwise.
    private func countRead(email: String, vin: String, nowMs: Int64) -> Response? {
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

    private func read(_ what: String, vin: String, role: UserRole) -> Response {
        let blocks: [(block: String, capturedAtMs: Int64, receivedAtMs: Int64, values: String)]
        do { blocks = try BackendStore(path: storePath).state(vin: vin) } catch { return Self.error(500, "storage", "\(error)") }
        func values(_ name: String) -> JSON? { blocks.first { $0.block == name }.flatMap { try? JSON.parse($0.values) } }
        switch what {
        case "parkingposition":
            guard let p = values("parking") else { return Self.error(404, "noParkingPosition", "the car has not reported a parking position") }
            // While the car is in use there is no parking position: "no content", as the real service says.
            if p == .null { return Response(204) }
            return Response(200, p)
        case "capabilities":
            guard let c = values("capabilities") else { return Self.error(404, "noCapabilities", "the car has not reported its capabilities") }
            return Response(200, .object([("role", .string(role.rawValue)), ("capabilities", c)]))
        default:
            let list = blocks.filter { $0.block != "capabilities" }.map { b -> (String, JSON) in
                (b.block, .object([("capturedAt", .number(Double(b.capturedAtMs))), ("receivedAt", .number(Double(b.receivedAtMs))),
                                   ("values", (try? JSON.parse(b.values)) ?? .null)]))
            }
            return Response(200, .object([("vin", .string(vin)), ("blocks", .object(list))]))
        }
    }

    /// The actions' path names, as the real service spells them.
    static let actions = Dictionary(uniqueKeysWithValues: RemoteCommand.Action.allCases.map { ($0.pathName, $0) })

    private func action(_ name: String, _ r: Request, portal: Portal, email: String, vin: String, nowMs: Int64) -> Response {
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
            try? portal.commandResult(id: command.id, vin: command.vin, status: .failed, cause: "brokerUnreachable", nowMs: nowMs)
            return Self.error(502, "brokerUnreachable", "the command could not be handed to the broker")
        }
        state.withLock { $0.actions.record(vin, nowMs: nowMs) }
        return Response(202, .object([("requestId", .string(command.id)), ("action", .string(action.rawValue)),
                                                 ("status", .string(RemoteCommand.Status.queued.rawValue))]),
                                   headers: [("Location", "/v1/vehicles/\(vin)/requests/\(command.id)")])
    }
}
