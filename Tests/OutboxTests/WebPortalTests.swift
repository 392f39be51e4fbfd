import Synchronization
import Testing
import TelematicsCore
@testable import Backend
@testable import WebPortal

@Suite("Web portal: forms")
struct FormBodyTests {
    @Test("a browser's form: + for a space, %XX for a byte, UTF-8 text, empty pairs skipped", arguments: [
        ("", [String: String]()), ("a=1", ["a": "1"]), ("a=1&b=", ["a": "1", "b": ""]), ("a", ["a": ""]),
        ("login=ana+lopez&password=p%C3%A9rez%26co%3D1", ["login": "ana lopez", "password": "pérez&co=1"]),
        ("a=1&&b=2&", ["a": "1", "b": "2"]), ("x=%2B%2b", ["x": "++"]), ("a=b=c", ["a": "b=c"]),
    ])
    func parses(body: String, fields: [String: String]) throws {
        #expect(try FormBody(parsing: Array(body.utf8)).fields == fields)
    }

    @Test("a malformed form is refused whole with what was wrong and where", arguments: [
        ("a=%", "a '%' not followed by two hex digits at byte 2"), ("a=1&b=%G1", "a '%' not followed by two hex digits at byte 6"),
        ("a=%4", "a '%' not followed by two hex digits at byte 2"), ("a=%E9", "text that is not UTF-8 near byte 2"),
        ("a=1&a=2", "the field 'a' is given twice"), ("=1", "a field without a name at byte 0"),
    ])
    func refuses(body: String, why: String) {
        #expect(throws: FormBody.Failure(description: why)) { try FormBody(parsing: Array(body.utf8)) }
    }

    @Test("more fields than any form of the portal has is refused")
    func tooMany() {
        let body = (0...FormBody.maximumFields).map { "f\($0)=1" }.joined(separator: "&")
        #expect(throws: FormBody.Failure(description: "more than \(FormBody.maximumFields) fields")) { try FormBody(parsing: Array(body.utf8)) }
    }

    @Test("what a form encodes, it reads back")
    func roundTrip() throws {
        let form = FormBody(fields: ["email": "ana+1@example.com", "name": "Ana María", "x": "a&b=c%d/é"])
        #expect(try FormBody(parsing: Array(form.encoded.utf8)) == form)
    }

    @Test("the session cookie: found among others, refused when it is not a session token's form", arguments: [
        ("tcu_session=0123456789abcdef0123456789ABCDEF", "0123456789abcdef0123456789ABCDEF"),
        ("theme=dark; tcu_session=0123456789abcdef0123456789abcdef; x=y", "0123456789abcdef0123456789abcdef"),
        ("tcu_session=short", nil), ("tcu_session=0123456789abcdef0123456789abcdeg", nil), ("other=1", nil), ("", nil),
    ])
    func cookie(header: String, token: String?) {
        #expect(WebPortal.cookie(header) == token)
    }
}

@Suite("Web portal: a person's path without a browser")
struct WebPortalTests {
    let vin = "VSSZZZKLZNR012345"
    final class Clock: Sendable { let ms = Atomic<Int64>(1_764_000_000_000) }

    struct Browser {
        let web: WebPortal
        var cookie: String?

        mutating func go(_ method: String, _ path: String, _ form: [String: String] = [:], query: [String: String] = [:]) -> (Int, String, [(String, String)]) {
            var headers: [String: String] = [:]
            if let cookie { headers["cookie"] = "tcu_session=\(cookie)" }
            let body = method == "POST" ? Array(FormBody(fields: form).encoded.utf8) : []
            let reply = web.handle(AppAPI.Request(method: method, path: path, query: query, headers: headers, body: body))
            for (name, value) in reply.headers where name == "Set-Cookie" {
                let v = value.split(separator: ";")[0].split(separator: "=", maxSplits: 1)
                cookie = v.count == 2 && !v[1].isEmpty ? String(v[1]) : nil
            }
            return (reply.status, String(decoding: reply.body, as: UTF8.self), reply.headers)
        }

        var csrf: String { cookie.map(WebPortal.csrf) ?? "" }
    }

    func portal() -> (Browser, String) {
        let path = backendDatabase()
        let clock = Clock()
        let api = AppAPI(portalPath: path, storePath: path, rounds: 1_000, publicURL: "http://portal.test",
                         now: { clock.ms.load(ordering: .relaxed) }, publish: { _ in true })
        return (Browser(web: WebPortal(api: api, secureCookie: false)), path)
    }

    static func location(_ headers: [(String, String)]) -> String? { headers.first { $0.0 == "Location" }?.1 }

    @Test("sign up, the mailed link, log in, add a car and see its pairing code, sign out")
    func path() throws {
        var (browser, path) = portal()
        // Sign up: the mail waits in the queue with its link to the portal's page.
        var (status, page, _) = browser.go("POST", "/signup", ["email": "ana@example.com", "userName": "ana", "password": "correct horse", "spin": "4711"])
        #expect(status == 200 && page.contains("Check your mail"))
        let mail = try #require(try Portal(path: path, rounds: 1_000).dueMails(nowMs: .max).first?.mail)
        let link = try #require(mail.text.split(separator: "\n").first { $0.hasPrefix("http://portal.test/verify?token=") })
        let token = String(link.split(separator: "=").last!)
        // Before the address is verified, no log-in: the page says why.
        (status, page, _) = browser.go("POST", "/login", ["login": "ana", "password": "correct horse"])
        #expect(status == 401 && page.contains("open the link sent to"))
        (status, page, _) = browser.go("GET", "/verify", query: ["token": token])
        #expect(status == 200 && page.contains("ana@example.com is verified"))
        // Logged in by user name: a session cookie, HttpOnly and SameSite=Strict, and the garage.
        var headers: [(String, String)]
        (status, _, headers) = browser.go("POST", "/login", ["login": "ana", "password": "correct horse"])
        #expect(status == 303 && Self.location(headers) == "/garage")
        let setCookie = try #require(headers.first { $0.0 == "Set-Cookie" }?.1)
        #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && !setCookie.contains("Secure"))
        (status, page, _) = browser.go("GET", "/garage")
        #expect(status == 200 && page.contains("No car yet") && page.contains("<option value=\"GI\">Gibraltar</option>"))
        // The sign-out form in the header and the add-car form both carry the session's token.
        #expect(page.components(separatedBy: "name=\"csrf\" value=\"\(browser.csrf)\"").count == 3)
        // A form without the session's token (another site's) is refused and changes nothing.
        (status, _, _) = browser.go("POST", "/garage", ["vin": vin, "model": "Leon", "built": "2021-11", "country": "ES", "acceptTerms": "yes"])
        #expect(status == 403)
        // A refusal names the field and keeps what was typed.
        (status, page, _) = browser.go("POST", "/garage", ["csrf": browser.csrf, "vin": vin, "model": "Leon", "built": "21-11", "country": "ES", "acceptTerms": "yes"])
        #expect(status == 400 && page.contains("the build date &#39;21-11&#39; is not YYYY-MM") && page.contains("value=\"\(vin)\""))
        (status, _, headers) = browser.go("POST", "/garage", ["csrf": browser.csrf, "vin": vin, "model": "Leon", "built": "2021-11", "country": "ES", "acceptTerms": "yes"])
        #expect(status == 303 && Self.location(headers) == "/garage/\(vin)?done=added")
        (status, page, _) = browser.go("GET", "/garage/\(vin)")
        let code = try #require(try Portal(path: path, rounds: 1_000).garage(email: "ana@example.com", nowMs: 0).first?.code)
        #expect(status == 200 && page.contains("<p class=\"code\" id=\"pairing-code\">\(code)</p>"))
        // Not registered yet: the status says so instead of values.
        #expect(page.contains("Not registered yet") && !page.contains("Remote functions"))
        // Signed out: the session ends on the server too, the cookie goes.
        let before = browser.cookie
        (status, _, headers) = browser.go("POST", "/logout", ["csrf": browser.csrf])
        #expect(status == 303 && browser.cookie == nil)
        browser.cookie = before
        (status, _, headers) = browser.go("GET", "/garage")
        #expect(status == 303 && Self.location(headers) == "/login?why=signIn")
    }

    @Test("what a person types is shown back escaped, never as markup")
    func escapes() {
        var (browser, _) = portal()
        let (status, page, _) = browser.go("POST", "/login", ["login": "\"><script>alert(1)</script>", "password": "x"])
        #expect(status == 400 || status == 401)
        #expect(!page.contains("<script>alert(1)") && page.contains("&lt;script&gt;"))
    }

    @Test("a signed-in page without a session goes to the log-in; an unknown path is a 404 page; a malformed form a 400 page")
    func refusals() {
        var (browser, _) = portal()
        var (status, page, headers) = browser.go("GET", "/account")
        #expect(status == 303 && Self.location(headers) == "/login?why=signIn")
        (status, page, _) = browser.go("GET", "/nowhere")
        #expect(status == 303)
        let reply = browser.web.handle(AppAPI.Request(method: "POST", path: "/login", body: Array("login=%ZZ".utf8)))
        page = String(decoding: reply.body, as: UTF8.self)
        #expect(reply.status == 400 && page.contains("a &#39;%&#39; not followed by two hex digits at byte 6"))
        #expect(browser.web.handle(AppAPI.Request(method: "PUT", path: "/login")).status == 405)
        let head = browser.web.handle(AppAPI.Request(method: "HEAD", path: "/login"))
        #expect(head.status == 200 && head.body.isEmpty && head.headers.contains { $0 == ("Content-Type", "text/html; charset=utf-8") })
        #expect(WebPortal.serves(path: "/garage") && WebPortal.serves(path: "/") && !WebPortal.serves(path: "/v1/login") && !WebPortal.serves(path: "/v1"))
    }

    @Test("every page carries a policy that allows this site's own style sheet and script only, and no framing")
    func headers() {
        var (browser, _) = portal()
        let (_, _, headers) = browser.go("GET", "/login")
        let csp = headers.first { $0.0 == "Content-Security-Policy" }?.1 ?? ""
        #expect(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"))
        #expect(headers.contains { $0 == ("Referrer-Policy", "no-referrer") })
    }

    @Test("delete my data: the password again, then no table names the person or their car")
    func deleteMyData() throws {
        var (browser, path) = portal()
        let p = try Portal(path: path, rounds: 1_000)
        try p.addUser(email: "ana@example.com", password: "correct horse", spin: "4711", nowMs: 0)
        try p.verifyEmail("ana@example.com")
        _ = try p.addCar(vin: vin, email: "ana@example.com", model: "Leon", built: "2021-11", country: "ES", acceptedTerms: true, nowMs: 0)
        let store = try BackendStore(path: path)
        _ = try store.receive(topic: "vehicles/\(vin)/state", payload: #"{"id":"s1","seq":1,"block":"doors","capturedAt":5,"values":{}}"#, receivedAtMs: 6)
        let login = browser.go("POST", "/login", ["login": "ana@example.com", "password": "correct horse"])
        #expect(login.0 == 303, "\(login.1)")
        var (status, page, _) = browser.go("POST", "/account/delete", ["csrf": browser.csrf, "password": "correct horse"])
        #expect(status == 400 && page.contains("Tick the box"))
        (status, page, _) = browser.go("POST", "/account/delete", ["csrf": browser.csrf, "password": "wrong horse!", "confirm": "yes"])
        #expect(status == 401 && page.contains("the e-mail address or the password is wrong"))
        var headers: [(String, String)]
        (status, _, headers) = browser.go("POST", "/account/delete", ["csrf": browser.csrf, "password": "correct horse", "confirm": "yes"])
        #expect(status == 303 && Self.location(headers) == "/login?why=deleted" && browser.cookie == nil)
        #expect(try p.account(forLogin: "ana@example.com") == nil)
        #expect(try p.garage(email: "ana@example.com", nowMs: 0).isEmpty)
        #expect(try store.state(vin: vin).isEmpty && store.wasReset(vin: vin))
    }

    @Test("the status's summary: the locks, what is open or on, the climatisation; readings without a needless point")
    func summary() throws {
        let blocks = try #require(JSON.parse("""
            {"locks":{"values":{"central":"Locked","source":"telematics"}},
             "doors":{"values":{"frontLeft":{"open":true,"locked":false},"trunk":{"open":false,"locked":true}}},
             "windows":{"values":{"frontLeft":0,"rearRight":30.5,"sunroofState":"Closed"}},
             "lights":{"values":{"lowBeam":true,"hazard":false}},
             "climate":{"values":{"climatisation":"Heating","cabinTemperature":15,"targetTemperature":22.5}}}
            """).objectValue)
        #expect(WebPortal.summary(blocks).map { "\($0.0): \($0.1)" } == [
            "Locks: Locked", "Doors: open: frontLeft", "Windows: open: rearRight (30.5 %)", "Lights: on: lowBeam",
            "Climatisation: Heating, cabin 15 °C, set to 22.5 °C",
        ])
        #expect(WebPortal.summary([]).isEmpty)
        #expect([0.0, -3.25, -0.5, -0.01, 21.04, 1e300, .nan].map(\.formatted0) == ["0", "-3.3", "-0.5", "0", "21", "1e+300", "nan"])
    }
}
