import Backend
import Crypto
import Mustache
import TelematicsCore

/// The product page's "portail MySEAT", served by tcu-backend beside the app API: sign up,
/// verify the address from the mail, log in, the garage (add a car for its pairing code,
/// remove it, share it), the licence and its renewal, the privacy level, the car's status and
/// parking position, lock, unlock and climatisation with the S-PIN, live alerts, the account's
/// devices and password, and "delete my data".
///
/// A thin view: every form becomes the app API's request (`AppAPI.handle`) with the session
/// the cookie carries, so the portal checks, refuses and stores exactly as the apps' API does,
/// and its refusals (which name the field) are shown on the form. Server-side HTML from
/// Mustache templates (`Templates`), forms that post and redirect, one small script for the
/// live alerts.
///
/// The session is the app API's, in a cookie (`HttpOnly`, `SameSite=Strict`, `Secure` when the
/// public address is https); every form of a signed-in page carries a token derived from it
/// that a page of another site cannot know (`csrf`). Pages are sent with a content security
/// policy that allows this site's style sheet and script only, and may not be framed.
public final class WebPortal: Sendable {
    /// An answer: the status, the headers, the body (HTML, CSS or the script), or the live
    /// alerts the server streams instead.
    public struct Reply: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]
        public var alertStream: AppAPI.AlertStream?

        init(_ status: Int, _ headers: [(String, String)] = [], body: [UInt8] = []) {
            self.status = status
            self.headers = headers
            self.body = body
        }
    }

    public static let cookieName = "tcu_session"

    let api: AppAPI
    let library: MustacheLibrary
    let secureCookie: Bool

    /// `secureCookie`: the portal is reached over https (`--public-url https://...`), so the
    /// browser sends the session cookie over https only.
    public init(api: AppAPI, secureCookie: Bool) {
        self.api = api
        self.secureCookie = secureCookie
        var library = MustacheLibrary()
        for (name, text) in Templates.pages {
            // The templates are the program's own: one that does not parse is a bug caught by
            // the unit tests, which render every page.
            do { try library.register(text, named: name) } catch { preconditionFailure("template \(name): \(error)") }
        }
        self.library = library
    }

    /// Whether a path is the portal's (everything but the app API under /v1).
    public static func serves(path: String) -> Bool { !(path == "/v1" || path.hasPrefix("/v1/")) }

    // MARK: - Routing

    /// One request, as the server read it (its body whole).
    public func handle(_ request: AppAPI.Request) -> Reply {
        // HEAD is GET without the body.
        guard request.method == "HEAD" else { return respond(request) }
        var r = request
        r.method = "GET"
        var reply = respond(r)
        reply.body = []
        return reply
    }

    private func respond(_ r: AppAPI.Request) -> Reply {
        let parts = r.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let session = Self.cookie(r.headers["cookie"] ?? "")
        var form = FormBody(fields: [:])
        if r.method == "POST" {
            do { form = try FormBody(parsing: r.body) } catch {
                return page("Bad request", "message", ["message": "The form could not be read: \(error.description)."], status: 400, session: session)
            }
        } else if r.method != "GET" {
            return Reply(405, [("Allow", "GET, POST")] + Self.pageHeaders, body: Array("the portal's pages are GET and its forms POST\n".utf8))
        }
        // The static parts first: no session needed.
        let (route, args) = Self.route(parts)
        switch (r.method, route) {
        case ("GET", "static/portal.css"): return Reply(200, [("Content-Type", "text/css; charset=utf-8"), ("Cache-Control", "max-age=3600")], body: Array(Templates.css.utf8))
        case ("GET", "static/portal.js"): return Reply(200, [("Content-Type", "text/javascript; charset=utf-8"), ("Cache-Control", "max-age=3600")], body: Array(Templates.script.utf8))
        default: break
        }
        // Every form of a signed-in page carries the token derived from its session.
        if r.method == "POST", let session, !["login", "signup", "forgot", "reset-password"].contains(parts.first ?? "") {
            guard let sent = form["csrf"], CommandVerifier.constantTimeEqual(Array(sent.utf8), Array(Self.csrf(session).utf8)) else {
                return page("Refused", "message", ["message": "This form is not from this portal, or from a page older than your session: open the page again and resend it."],
                            status: 403, session: session)
            }
        }
        switch (r.method, route) {
        case ("GET", ""):
            return redirect(session == nil ? "/login" : "/garage")
        case ("GET", "login"):
            return page("Log in", "login", ["login": ""], session: nil, notice: Self.notices[r.query["why"] ?? ""])
        case ("POST", "login"):
            return logIn(form)
        case ("POST", "logout"):
            return logOut(session)
        case ("GET", "signup"):
            return page("Create an account", "signup", ["form": [String: String]()], session: nil)
        case ("POST", "signup"):
            return signUp(form)
        case ("GET", "verify"):
            let answer = call("GET", "/v1/accounts/verify", query: ["token": r.query["token"] ?? ""])
            guard answer.status == 200 else { return refusal(answer, title: "Verification", session: nil) }
            return message("Address verified", "Your e-mail address \(answer.body?["email"]?.stringValue ?? "") is verified: you can log in.",
                           next: ("/login", "Log in"), session: nil)
        case ("GET", "forgot"):
            return page("Forgotten password", "forgot", [:], session: nil)
        case ("POST", "forgot"):
            let answer = call("POST", "/v1/accounts/password-reset", ["login": form["login"] ?? ""])
            guard answer.status == 202 else { return refusal(answer, title: "Forgotten password", template: "forgot", session: nil) }
            return message("Forgotten password", "If an account has this address, name or number, a mail with a link is on its way: "
                           + "open it within an hour to choose a new password.", session: nil)
        case ("GET", "reset-password"):
            return page("Choose a new password", "reset", ["token": r.query["token"] ?? ""], session: nil)
        case ("POST", "reset-password"):
            let answer = call("POST", "/v1/accounts/password-reset/confirm", ["token": form["token"] ?? "", "newPassword": form["newPassword"] ?? ""])
            guard answer.status == 204 else {
                return refusal(answer, title: "Choose a new password", template: "reset", context: ["token": form["token"] ?? ""], session: nil)
            }
            return message("Password changed", "Your new password is set; every device asks for it again.", next: ("/login", "Log in"), session: nil)
        case ("GET", "support"):
            let answer = call("GET", "/v1/support")
            return page("Customer service", "support", Self.plain(answer.body), session: session)
        default:
            break
        }
        // Everything else is a signed-in person's.
        guard let session else { return redirect("/login?why=signIn") }
        let vin = args.first ?? ""
        switch (r.method, route) {
        case ("GET", "garage"):
            return garage(session, notice: Self.notices[r.query["done"] ?? ""])
        case ("POST", "garage"):
            return addCar(session, form)
        case ("GET", "garage/*"):
            return car(session, vin: vin, notice: Self.notices[r.query["done"] ?? ""])
        case ("POST", "garage/*/actions"):
            return action(session, vin: vin, form)
        case ("GET", "garage/*/requests/*"):
            return request(session, vin: vin, id: args[1])
        case ("POST", "garage/*/licence"):
            let offer = (form["offer"] ?? "").split(separator: "-").map(String.init)
            guard offer.count == 2, let years = Int(offer[1]) else { return carRefused(session, vin: vin, "Choose a package and a term.") }
            let answer = call("POST", "/v1/garage/\(vin)/licence", .object([("package", .string(offer[0])), ("years", .number(Double(years)))]), session: session)
            return answer.status == 200 ? redirect("/garage/\(vin)?done=renewed") : carRefused(session, vin: vin, answer)
        case ("POST", "garage/*/users"):
            let answer = call("POST", "/v1/garage/\(vin)/users", ["email": form["email"] ?? "", "role": form["role"] ?? ""], session: session)
            return answer.status == 201 ? redirect("/garage/\(vin)?done=shared") : carRefused(session, vin: vin, answer)
        case ("POST", "garage/*/remove"):
            let answer = call("DELETE", "/v1/garage/\(vin)", session: session)
            return answer.status == 204 ? redirect("/garage?done=removed") : carRefused(session, vin: vin, answer)
        case ("GET", "alerts/stream"):
            var headers = r.headers
            headers["authorization"] = "Bearer \(session)"
            let answer = api.handle(AppAPI.Request(method: "GET", path: "/v1/alerts/stream", query: r.query, headers: headers))
            guard let stream = answer.alertStream else { return Reply(answer.status, Self.pageHeaders, body: Array((answer.body?.text ?? "").utf8)) }
            var reply = Reply(200)
            reply.alertStream = stream
            return reply
        case ("GET", "account"):
            return account(session, notice: nil)
        case ("POST", "account/password"):
            let answer = call("POST", "/v1/account/password", ["password": form["password"] ?? "", "newPassword": form["newPassword"] ?? ""], session: session)
            guard answer.status == 204 else { return account(session, answer: answer) }
            return signedOut("/login?why=passwordChanged")
        case ("POST", "account/sessions/*/end"):
            let answer = call("DELETE", "/v1/account/sessions/\(args[0])", session: session)
            return answer.status == 204 ? account(session, notice: "That device is signed out.") : account(session, answer: answer)
        case ("POST", "account/delete"):
            guard form["confirm"] == "yes" else { return account(session, error: "Tick the box to confirm: the deletion cannot be undone.") }
            let answer = call("DELETE", "/v1/account", ["password": form["password"] ?? ""], session: session)
            guard answer.status == 204 else { return account(session, answer: answer) }
            return signedOut("/login?why=deleted")
        default:
            return page("Not found", "message", ["message": "There is no page \(r.path.prefix(80)) here."], status: 404, session: session)
        }
    }

    /// The pages with a part that varies (`*`: a VIN, a request's or a session's id).
    static let patterns = ["garage/*", "garage/*/actions", "garage/*/requests/*", "garage/*/licence", "garage/*/users", "garage/*/remove",
                           "account/sessions/*/end"].map { $0.split(separator: "/").map(String.init) }

    /// A path's route (its pattern, or the path itself) and the parts that matched a `*`.
    static func route(_ parts: [String]) -> (String, [String]) {
        for pattern in patterns where pattern.count == parts.count {
            guard zip(pattern, parts).allSatisfy({ $0 == "*" || $0 == $1 }) else { continue }
            return (pattern.joined(separator: "/"), zip(pattern, parts).filter { $0.0 == "*" }.map(\.1))
        }
        return (parts.joined(separator: "/"), [])
    }

    /// The short notices a redirect names (`?done=`, `?why=`): fixed texts, never from the URL.
    static let notices: [String: String] = [
        "signIn": "Log in to see this page.", "idleTimeout": "You were away longer than the time you chose: log in again.",
        "sessionRevoked": "Your password changed: log in again with the new one.", "passwordChanged": "Password changed: log in with the new one.",
        "deleted": "Your account and your data are deleted.", "signedOut": "You are signed out.",
        "renewed": "The licence is renewed.", "shared": "The car is shared.", "removed": "The car is removed from your garage.",
        "added": "The car is in your garage: type its pairing code in the car.",
    ]

    // MARK: - Accounts

    private func logIn(_ form: FormBody) -> Reply {
        var body: [(String, JSON)] = [("login", .string(form["login"] ?? "")), ("password", .string(form["password"] ?? ""))]
        if let idle = form["idleMinutes"], !idle.isEmpty {
            guard let minutes = Int(idle) else { return page("Log in", "login", ["login": form["login"] ?? ""], status: 400, session: nil, error: "idleMinutes is 5, 10 or 15") }
            body.append(("idleMinutes", .number(Double(minutes))))
        }
        let answer = call("POST", "/v1/login", .object(body))
        guard answer.status == 200, let token = answer.body?["token"]?.stringValue else {
            return refusal(answer, title: "Log in", template: "login", context: ["login": form["login"] ?? ""], session: nil)
        }
        var reply = redirect("/garage")
        reply.headers.append(("Set-Cookie", cookie(token, maxAgeS: answer.body?["expiresInS"]?.integer(in: 0...86_400) ?? 3_600)))
        return reply
    }

    private func logOut(_ session: String?) -> Reply {
        if let session {
            // This device's session ends on the server too, not only in the browser.
            let sessions = call("GET", "/v1/account/sessions", session: session).body?["sessions"]?.arrayValue ?? []
            if let id = sessions.first(where: { $0["current"]?.boolValue == true })?["id"]?.stringValue {
                _ = call("DELETE", "/v1/account/sessions/\(id)", session: session)
            }
        }
        return signedOut("/login?why=signedOut")
    }

    private func signUp(_ form: FormBody) -> Reply {
        var body: [(String, JSON)] = [("email", .string(form["email"] ?? "")), ("password", .string(form["password"] ?? "")),
                                      ("spin", .string(form["spin"] ?? ""))]
        for optional in ["userName", "mobile"] {
            if let v = form[optional], !v.isEmpty { body.append((optional, .string(v))) }
        }
        let answer = call("POST", "/v1/accounts", .object(body))
        let kept = ["email": form["email"] ?? "", "userName": form["userName"] ?? "", "mobile": form["mobile"] ?? ""]
        guard answer.status == 201 else { return refusal(answer, title: "Create an account", template: "signup", context: ["form": kept], session: nil) }
        return message("Check your mail", "A mail is on its way to \(answer.body?["email"]?.stringValue ?? ""): open its link to verify the address, then log in. "
                       + "It may take a few minutes; look in the spam folder too.", session: nil)
    }

    private func account(_ session: String, notice: String? = nil, error: String? = nil, answer: AppAPI.Response? = nil) -> Reply {
        if let answer, let signIn = signInAgain(answer) { return signIn }
        let list = call("GET", "/v1/account/sessions", session: session)
        if let signIn = signInAgain(list) { return signIn }
        let csrf = Self.csrf(session)
        let sessions: [[String: Any]] = (list.body?["sessions"]?.arrayValue ?? []).map { s in
            [
                "id": s["id"]?.stringValue ?? "", "current": s["current"]?.boolValue == true, "csrf": csrf,
                "since": Self.date(s["createdAt"]), "lastUsed": Self.date(s["lastUsedAt"]),
                "idle": s["idleMinutes"]?.numberValue.map { "\(Int($0.rounded())) minutes" } ?? "none",
            ]
        }
        return page("Account", "account", ["sessions": sessions], status: answer.map { Self.status($0) } ?? (error == nil ? 200 : 400),
                    session: session, notice: notice, error: error ?? answer.flatMap { Self.message($0) })
    }

    // MARK: - Garage

    private func garage(_ session: String, notice: String?, error: String? = nil, status: Int = 200, form: [String: String] = [:]) -> Reply {
        let garage = call("GET", "/v1/garage", session: session)
        if let signIn = signInAgain(garage) { return signIn }
        var cars: [[String: Any]] = (garage.body?["cars"]?.arrayValue ?? []).map { c in
            var licence = "none yet"
            if let l = c["licence"] { licence = "\(l["package"]?.stringValue ?? "") until \(Self.date(l["licenceExpiresAt"]))" }
            return ["vin": c["vin"]?.stringValue ?? "", "model": c["model"]?.stringValue ?? "", "role": UserRole.primary.rawValue,
                    "enrolment": c["enrolment"]?.stringValue ?? "", "licence": licence]
        }
        // The cars shared with this person.
        let owned = Set(cars.compactMap { $0["vin"] as? String })
        for v in call("GET", "/v1/vehicles", session: session).body?["vehicles"]?.arrayValue ?? [] {
            guard let vin = v["vin"]?.stringValue, !owned.contains(vin) else { continue }
            cars.append(["vin": vin, "model": "", "role": v["role"]?.stringValue ?? "", "enrolment": "", "licence": ""])
        }
        let chosenModel = form["model"] ?? "Leon", chosenCountry = form["country"] ?? "ES"
        var context: [String: Any] = [
            "cars": cars, "hasCars": !cars.isEmpty, "form": form,
            "models": Compatibility.models.keys.sorted().map { ["name": $0, "selected": $0 == chosenModel] as [String: Any] },
            "countries": Compatibility.countries.map { ["code": $0, "name": Self.countryNames[$0] ?? $0, "selected": $0 == chosenCountry] as [String: Any] },
        ]
        context.merge(alerts(session)) { a, _ in a }
        return page("Garage", "garage", context, status: status, session: session, notice: notice, error: error, liveAlerts: true)
    }

    private func addCar(_ session: String, _ form: FormBody) -> Reply {
        let body: JSON = .object([("vin", .string((form["vin"] ?? "").uppercased())), ("model", .string(form["model"] ?? "")),
                                  ("built", .string(form["built"] ?? "")), ("country", .string(form["country"] ?? "")),
                                  ("acceptTerms", .bool(form["acceptTerms"] == "yes"))])
        let answer = call("POST", "/v1/garage", body, session: session)
        guard answer.status == 201, let vin = answer.body?["vin"]?.stringValue else {
            if let signIn = signInAgain(answer) { return signIn }
            let kept = ["vin": form["vin"] ?? "", "model": form["model"] ?? "", "built": form["built"] ?? "", "country": form["country"] ?? ""]
            return garage(session, notice: nil, error: Self.message(answer), status: Self.status(answer), form: kept)
        }
        return redirect("/garage/\(vin)?done=added")
    }

    private func car(_ session: String, vin: String, notice: String?, error: String? = nil, status: Int = 200) -> Reply {
        let garage = call("GET", "/v1/garage", session: session)
        if let signIn = signInAgain(garage) { return signIn }
        let mine = garage.body?["cars"]?.arrayValue?.first { $0["vin"]?.stringValue == vin }
        let role = mine != nil ? UserRole.primary
            : call("GET", "/v1/vehicles", session: session).body?["vehicles"]?.arrayValue?.first { $0["vin"]?.stringValue == vin }?["role"]?.stringValue
                .flatMap(UserRole.init(rawValue:))
        guard let role else {
            return page("Not in your garage", "message", ["message": "\(vin.prefix(17)) is not a car of yours.", "next": ["href": "/garage", "label": "Back to the garage"]],
                        status: 404, session: session)
        }
        let enrolment = mine?["enrolment"]?.stringValue.flatMap(Registration.Status.init(rawValue:)) ?? .completed
        var context: [String: Any] = ["vin": vin, "role": role.rawValue, "primary": role.hasRemoteFunctions, "enrolment": enrolment.rawValue]
        if let mine, mine["codeUsed"]?.boolValue != true, enrolment != .completed {
            context["code"] = mine["pairingCode"]?.stringValue ?? ""
            context["codeExpires"] = Self.date(mine["codeExpiresAt"])
        }
        // The status and the parking position, or why not (a car never registered, a licence run out).
        let registered = enrolment == .completed || enrolment == .inactive
        context["registered"] = registered
        let state = registered ? call("GET", "/v1/vehicles/\(vin)/status", session: session) : AppAPI.Response(200)
        if !registered {
            context["statusError"] = "Not registered yet: the status shows once the pairing code is typed in the car."
        } else if state.status == 200 {
            let blocks = state.body?["blocks"]?.objectValue ?? []
            context["summary"] = Self.summary(blocks).map { ["label": $0.0, "value": $0.1] }
            context["hasBlocks"] = !blocks.isEmpty
            context["blocks"] = blocks.map { name, block -> [String: Any] in
                ["name": name, "capturedAt": Self.date(block["capturedAt"]),
                 "values": Self.flatten(block["values"] ?? .null).map { ["key": $0.0, "value": $0.1] }]
            }
            let parking = call("GET", "/v1/vehicles/\(vin)/parkingposition", session: session)
            if parking.status == 200, let lat = parking.body?["latitude"]?.numberValue, let lon = parking.body?["longitude"]?.numberValue {
                context["parking"] = "\(lat), \(lon) (parked \(Self.date(parking.body?["parkedAt"])))"
            } else if parking.status == 204 {
                context["parking"] = "none: the car is in use"
            }
        } else {
            context["statusError"] = Self.message(state)
        }
        if let mine {
            if let l = mine["licence"] {
                context["licence"] = ["package": l["package"]?.stringValue ?? "", "expires": Self.date(l["licenceExpiresAt"]),
                                      "services": (l["services"]?.arrayValue ?? []).compactMap(\.stringValue).joined(separator: ", ")]
            }
            context["privacy"] = Self.privacyNames[mine["privacy"]?.stringValue ?? ""] ?? "Not known yet: the car has not reported it."
            context["users"] = (call("GET", "/v1/garage/\(vin)/users", session: session).body?["users"]?.arrayValue ?? []).map {
                ["user": $0["user"]?.stringValue ?? "", "role": $0["role"]?.stringValue ?? ""]
            }
            var offers: [[String: Any]] = []
            for package in ["radio", "navi"] {
                for (years, price) in (Portal.packages[package]?.prices ?? [:]).sorted(by: { $0.key < $1.key }) {
                    offers.append(["value": "\(package)-\(years)", "first": offers.isEmpty,
                                   "label": "\(package == "radio" ? "Radio" : "Navi"), \(years) year\(years > 1 ? "s" : ""): \(price) €"])
                }
            }
            context["offers"] = offers
        }
        return page(vin, "car", context, status: status, session: session, notice: notice, error: error)
    }

    private func carRefused(_ session: String, vin: String, _ answer: AppAPI.Response) -> Reply {
        if let signIn = signInAgain(answer) { return signIn }
        return car(session, vin: vin, notice: nil, error: Self.message(answer), status: Self.status(answer))
    }

    private func carRefused(_ session: String, vin: String, _ text: String) -> Reply {
        car(session, vin: vin, notice: nil, error: text, status: 400)
    }

    /// A remote function: the S-PIN verified for a security token when one was typed, then the
    /// action; the page of its request follows.
    private func action(_ session: String, vin: String, _ form: FormBody) -> Reply {
        let name = form["action"] ?? ""
        var body: [(String, JSON)] = []
        if let spin = form["spin"], !spin.isEmpty {
            let verified = call("POST", "/v1/vehicles/\(vin)/spin/verify", ["spin": spin], session: session)
            guard verified.status == 200, let token = verified.body?["securityToken"]?.stringValue else { return carRefused(session, vin: vin, verified) }
            body.append(("securityToken", .string(token)))
        }
        if name == "climatisation-start" {
            guard let raw = form["targetTemperature"], let t = Double(raw), t.isFinite else {
                return carRefused(session, vin: vin, "targetTemperature is a number of degrees, 16 to 30")
            }
            body.append(("targetTemperature", .number(t)))
        }
        let answer = call("POST", "/v1/vehicles/\(vin)/actions/\(name)", .object(body), session: session)
        guard answer.status == 202, let id = answer.body?["requestId"]?.stringValue else { return carRefused(session, vin: vin, answer) }
        return redirect("/garage/\(vin)/requests/\(id)")
    }

    private func request(_ session: String, vin: String, id: String) -> Reply {
        let answer = call("GET", "/v1/vehicles/\(vin)/requests/\(id)", session: session)
        guard answer.status == 200 else { return carRefused(session, vin: vin, answer) }
        let status = answer.body?["status"]?.stringValue ?? ""
        let pending = RemoteCommand.Status(rawValue: status)?.isPending ?? false
        var context: [String: Any] = ["vin": vin, "action": answer.body?["action"]?.stringValue ?? "", "status": status, "pending": pending]
        if let cause = answer.body?["cause"]?.stringValue { context["cause"] = cause }
        return page("Request \(id.prefix(40))", "request", context, session: session, refresh: pending ? "2" : nil)
    }

    // MARK: - Alerts

    /// The newest alerts (up to 20, newest first) and the id the live stream resumes after.
    private func alerts(_ session: String) -> [String: Any] {
        var all: [JSON] = []
        var after: Int64 = 0
        // The history, a page of 500 at a time; the last 20 kept.
        for _ in 0..<1_000 {
            let page = call("GET", "/v1/alerts", query: ["after": "\(after)", "limit": "500"], session: session)
            let list = page.body?["alerts"]?.arrayValue ?? []
            all = Array((all + list).suffix(20))
            guard list.count == 500, let last = page.body?["last"]?.integer(in: 0...BackendStore.largestExactInteger) else { break }
            after = last
        }
        let items: [[String: Any]] = all.reversed().map { a in
            ["id": a["id"]?.integer(in: 0...BackendStore.largestExactInteger).map { "\($0)" } ?? "", "kind": a["kind"]?.stringValue ?? "",
             "vin": a["vin"]?.stringValue ?? "", "at": Self.date(a["at"]), "text": Self.describe(a)]
        }
        let last = all.last?["id"]?.integer(in: 0...BackendStore.largestExactInteger) ?? after
        return ["alerts": items, "lastAlert": "\(last)"]
    }

    /// An alert's own fields, `name: value` joined (the script writes live ones the same way).
    static func describe(_ alert: JSON) -> String {
        (alert.objectValue ?? []).filter { !["id", "vin", "kind", "at", "capturedAt"].contains($0.0) }.map { key, value in
            let text = value.arrayValue.map { $0.map { $0.stringValue ?? $0.text }.joined(separator: ", ") } ?? value.stringValue ?? value.text
            return "\(key): \(text)"
        }.joined(separator: " · ")
    }

    // MARK: - The app API

    /// The app API's answer to a request the portal makes for the person (`session`: the
    /// cookie's session, sent as its bearer token).
    func call(_ method: String, _ path: String, _ body: JSON? = nil, query: [String: String] = [:], session: String? = nil) -> AppAPI.Response {
        var headers = ["content-type": "application/json"]
        if let session { headers["authorization"] = "Bearer \(session)" }
        return api.handle(AppAPI.Request(method: method, path: path, query: query, headers: headers, body: body.map { Array($0.text.utf8) } ?? []))
    }

    func call(_ method: String, _ path: String, _ fields: [String: String], session: String? = nil) -> AppAPI.Response {
        call(method, path, .object(fields.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) }), session: session)
    }

    /// The API's sentence for a refusal (it names the field).
    static func message(_ answer: AppAPI.Response) -> String? {
        guard answer.status >= 400 else { return nil }
        var text = answer.body?["message"]?.stringValue ?? "refused (\(answer.status))"
        if let left = answer.body?["remainingTries"]?.integer(in: 0...100) { text += " (\(left) tries left)" }
        return text
    }

    /// The page's status for a refusal: the API's, except that a refused form is a 4xx page.
    static func status(_ answer: AppAPI.Response) -> Int { answer.status >= 400 ? answer.status : 200 }

    /// A session the API no longer takes (expired, idle, revoked): the cookie goes and the
    /// person logs in again, told why.
    private func signInAgain(_ answer: AppAPI.Response) -> Reply? {
        // (A wrong password typed in a form is a 401 too: that is the form's refusal.)
        let why = answer.body?["error"]?.stringValue ?? ""
        guard answer.status == 401, ["unauthorized", "idleTimeout", "sessionRevoked"].contains(why) else { return nil }
        return signedOut("/login?why=\(Self.notices[why] != nil ? why : "signIn")")
    }

    private func refusal(_ answer: AppAPI.Response, title: String, template: String = "message", context: [String: Any] = [:], session: String?) -> Reply {
        var context = context
        if template == "message" { context["message"] = Self.message(answer) ?? "" }
        return page(title, template, context, status: Self.status(answer), session: session, error: template == "message" ? nil : Self.message(answer))
    }

    // MARK: - Rendering

    /// Headers of every page: no framing, this site's style sheet and script only, no address
    /// (a mailed link's token) in the referrer, no caching of a person's pages.
    static let pageHeaders: [(String, String)] = [
        ("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("Cache-Control", "no-store"),
    ]

    func page(_ title: String, _ template: String, _ context: [String: Any], status: Int = 200, session: String?,
              notice: String? = nil, error: String? = nil, liveAlerts: Bool = false, refresh: String? = nil) -> Reply {
        var context = context
        if let session { context["csrf"] = Self.csrf(session) }
        let content = library.render(context, withTemplate: template) ?? ""
        var layout: [String: Any] = ["title": title, "content": content, "signedIn": session != nil, "liveAlerts": liveAlerts]
        if let session { layout["csrf"] = Self.csrf(session) }
        if let notice { layout["notice"] = notice }
        if let error { layout["error"] = error }
        if let refresh { layout["refresh"] = refresh }
        let html = library.render(layout, withTemplate: "layout") ?? ""
        return Reply(status, [("Content-Type", "text/html; charset=utf-8")] + Self.pageHeaders, body: Array(html.utf8))
    }

    func message(_ title: String, _ text: String, next: (String, String)? = nil, session: String?) -> Reply {
        var context: [String: Any] = ["message": text]
        if let next { context["next"] = ["href": next.0, "label": next.1] }
        return page(title, "message", context, session: session)
    }

    func redirect(_ location: String) -> Reply {
        Reply(303, [("Location", location)] + Self.pageHeaders)
    }

    private func signedOut(_ location: String) -> Reply {
        var reply = redirect(location)
        reply.headers.append(("Set-Cookie", cookie("", maxAgeS: 0)))
        return reply
    }

    private func cookie(_ value: String, maxAgeS: Int64) -> String {
        "\(Self.cookieName)=\(value); Path=/; Max-Age=\(maxAgeS); HttpOnly; SameSite=Strict\(secureCookie ? "; Secure" : "")"
    }

    // MARK: - Pure helpers

    /// The session token in a Cookie header, when it has the form of one (32 hex digits).
    static func cookie(_ header: String) -> String? {
        for part in header.split(separator: ";") {
            let pair = part.split(separator: "=", maxSplits: 1).map { $0.trimmingPrefix(" ") }
            guard pair.count == 2, pair[0] == cookieName else { continue }
            let value = String(pair[1])
            guard value.utf8.count == 32, value.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) || (65...70).contains($0) }) else { return nil }
            return value
        }
        return nil
    }

    /// The token a signed-in page's forms carry: derived from the session (which the page's
    /// origin alone knows, in an HttpOnly cookie), so another site cannot forge a form.
    public static func csrf(_ session: String) -> String {
        String(hexBytes(Array(SHA256.hash(data: Array("tcu-portal-form:\(session)".utf8)))).prefix(32))
    }

    /// A time in milliseconds as the page shows it; "—" when absent or not a time.
    static func date(_ value: JSON?) -> String {
        guard let ms = value?.integer(in: 0...BackendStore.largestExactInteger) else { return "—" }
        return readableDate(unixMs: ms)
    }

    /// A state block's values as `doors.frontLeft.open`-style rows, in the block's order.
    static func flatten(_ value: JSON, prefix: String = "") -> [(String, String)] {
        switch value {
        case .object(let members):
            return members.flatMap { flatten($0.1, prefix: prefix.isEmpty ? $0.0 : prefix + "." + $0.0) }
        case .null:
            return [(prefix, "not available")]
        default:
            return [(prefix, value.stringValue ?? value.text)]
        }
    }

    /// What a person looks at first, from the state blocks: the locks, the doors, windows and
    /// lights that are open or on, the climatisation.
    static func summary(_ blocks: [(String, JSON)]) -> [(String, String)] {
        func values(_ name: String) -> [(String, JSON)] { blocks.first { $0.0 == name }?.1["values"]?.objectValue ?? [] }
        func list(_ names: [String], _ none: String, _ some: String) -> String { names.isEmpty ? none : some + names.joined(separator: ", ") }
        var out: [(String, String)] = []
        if let central = values("locks").first(where: { $0.0 == "central" })?.1.stringValue { out.append(("Locks", central)) }
        let doors = values("doors")
        if !doors.isEmpty {
            out.append(("Doors", list(doors.filter { $0.1["open"]?.boolValue == true }.map(\.0), "all closed", "open: ")))
        }
        let windows = values("windows").filter { $0.0 != "sunroofState" }
        if !windows.isEmpty {
            let open = windows.compactMap { name, v -> String? in
                guard let p = v.numberValue, p > 0 else { return nil }
                return "\(name) (\(p.formatted0) %)"
            }
            out.append(("Windows", list(open, "all closed", "open: ")))
        }
        let lights = values("lights")
        if !lights.isEmpty { out.append(("Lights", list(lights.filter { $0.1.boolValue == true }.map(\.0), "all off", "on: "))) }
        let climate = values("climate")
        if let state = climate.first(where: { $0.0 == "climatisation" })?.1.stringValue {
            var text = state
            if let cabin = climate.first(where: { $0.0 == "cabinTemperature" })?.1.numberValue { text += ", cabin \(cabin.formatted0) °C" }
            if let target = climate.first(where: { $0.0 == "targetTemperature" })?.1.numberValue { text += ", set to \(target.formatted0) °C" }
            out.append(("Climatisation", text))
        }
        return out
    }

    /// A JSON object's members as text, for a template.
    static func plain(_ value: JSON?) -> [String: Any] {
        var out: [String: Any] = [:]
        for (k, v) in value?.objectValue ?? [] { out[k] = v.stringValue ?? v.text }
        return out
    }

    static let privacyNames = ["shareMyPosition": "Share my position", "useMyPosition": "Use my position", "offline": "Offline"]

    /// The 38 countries' names in English, for the form (`Compatibility.countries` holds the codes).
    static let countryNames: [String: String] = [
        "DE": "Germany", "BE": "Belgium", "CZ": "Czech Republic", "DK": "Denmark", "FI": "Finland", "NO": "Norway", "SE": "Sweden",
        "FR": "France", "GB": "United Kingdom", "IE": "Ireland", "AT": "Austria", "CH": "Switzerland", "IT": "Italy", "ES": "Spain",
        "PT": "Portugal", "PL": "Poland", "HU": "Hungary", "GR": "Greece", "CY": "Cyprus", "NL": "Netherlands", "LU": "Luxembourg",
        "BG": "Bulgaria", "RO": "Romania", "HR": "Croatia", "SI": "Slovenia", "MT": "Malta", "SK": "Slovakia", "AD": "Andorra",
        "EE": "Estonia", "LV": "Latvia", "LT": "Lithuania", "RS": "Serbia", "AL": "Albania", "MK": "North Macedonia",
        "BA": "Bosnia and Herzegovina", "UA": "Ukraine", "ME": "Montenegro", "GI": "Gibraltar",
    ]
}

extension Double {
    /// A reading as a page shows it: whole numbers without a point, others to one decimal.
    var formatted0: String {
        guard isFinite, abs(self) < 1e15 else { return "\(self)" }
        let tenths = Int64((abs(self) * 10).rounded())
        let sign = self < 0 && tenths != 0 ? "-" : ""
        return sign + (tenths % 10 == 0 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)")
    }
}
