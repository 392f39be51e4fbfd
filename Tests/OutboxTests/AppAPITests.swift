import Synchronization
import Testing
import TelematicsCore
@testable import Backend

@Suite("App API: sessions")
struct AppAPISessionTests {
    final class Clock: Sendable {
        let ms = Atomic<Int64>(1_764_000_000_000)
        func advance(minutes: Int64) { ms.add(minutes * 60_000, ordering: .relaxed) }
    }

    func api(_ clock: Clock) throws -> AppAPI {
        let path = backendDatabase()
        let p = try Portal(path: path, rounds: 1_000)
        try p.addUser(email: "ana@example.com", password: "correct horse", spin: "4711", nowMs: clock.ms.load(ordering: .relaxed))
        try p.verifyEmail("ana@example.com")
        return AppAPI(portalPath: path, storePath: path, now: { clock.ms.load(ordering: .relaxed) }, publish: { _ in true })
    }

    func call(_ api: AppAPI, _ method: String, _ path: String, token: String? = nil, body: String = "") -> (Int, JSON?) {
        var headers: [String: String] = [:]
        if let token { headers["authorization"] = "Bearer \(token)" }
        let r = api.handle(AppAPI.Request(method: method, path: path, headers: headers, body: Array(body.utf8)))
        return (r.status, r.body)
    }

    func logIn(_ api: AppAPI, password: String = "correct horse", idle: String = "") -> (Int, JSON?) {
        call(api, "POST", "/v1/login", body: #"{"email":"ana@example.com","password":"\#(password)"\#(idle)}"#)
    }

    @Test("the password is asked again after the idle time the user chose: 5, 10 or 15 minutes without use")
    func idleTimeOut() throws {
        let clock = Clock()
        let api = try api(clock)
        let (status, body) = logIn(api, idle: #","idleMinutes":5"#)
        #expect(status == 200 && body?["idleMinutes"]?.numberValue == 5)
        let token = try #require(body?["token"]?.stringValue)
        // Each use starts the idle time again.
        clock.advance(minutes: 4)
        #expect(call(api, "GET", "/v1/vehicles", token: token).0 == 200)
        clock.advance(minutes: 4)
        #expect(call(api, "GET", "/v1/vehicles", token: token).0 == 200)
        // Five minutes unused: the password again; the session is gone.
        clock.advance(minutes: 5)
        let idle = call(api, "GET", "/v1/vehicles", token: token)
        #expect(idle.0 == 401 && idle.1?["error"]?.stringValue == "idleTimeout")
        #expect(call(api, "GET", "/v1/vehicles", token: token).1?["error"]?.stringValue == "unauthorized")
        // Without a choice only the session's own end (an hour) counts.
        let plain = try #require(logIn(api).1?["token"]?.stringValue)
        clock.advance(minutes: 59)
        #expect(call(api, "GET", "/v1/vehicles", token: plain).0 == 200)
        clock.advance(minutes: 1)
        #expect(call(api, "GET", "/v1/vehicles", token: plain).0 == 401)
    }

    @Test("a live alert stream is checked as every request is, without counting as a use: it ends when the session idles out or the password changes")
    func streamEndsWithTheSession() throws {
        let clock = Clock()
        let api = try api(clock)
        let token = try #require(logIn(api, idle: #","idleMinutes":5"#).1?["token"]?.stringValue)
        let opened = api.handle(AppAPI.Request(method: "GET", path: "/v1/alerts/stream", headers: ["authorization": "Bearer \(token)"]))
        let stream = try #require(opened.alertStream)
        #expect(api.streamAlerts(stream, afterId: 0)?.isEmpty == true)
        clock.advance(minutes: 4)
        #expect(api.streamAlerts(stream, afterId: 0)?.isEmpty == true)
        // Streaming is not using: five minutes after the last request the session has idled out.
        clock.advance(minutes: 1)
        #expect(api.streamAlerts(stream, afterId: 0) == nil)
        #expect(call(api, "GET", "/v1/vehicles", token: token).1?["error"]?.stringValue == "unauthorized")
        // A password changed elsewhere ends another session's stream.
        let second = try #require(logIn(api).1?["token"]?.stringValue)
        let other = try #require(api.handle(AppAPI.Request(method: "GET", path: "/v1/alerts/stream", headers: ["authorization": "Bearer \(second)"])).alertStream)
        clock.advance(minutes: 1)
        try Portal(path: api.portalPath, rounds: 1_000).changePassword(email: "ana@example.com", current: "correct horse", new: "another horse",
                                                                       nowMs: clock.ms.load(ordering: .relaxed))
        #expect(api.streamAlerts(other, afterId: 0) == nil)
    }

    @Test("an idle time other than 5, 10 or 15 minutes is refused before the password is checked", arguments: [
        #","idleMinutes":7"#, #","idleMinutes":0"#, #","idleMinutes":1e300"#, #","idleMinutes":"5""#, #","idleMinutes":-5"#,
    ])
    func badIdle(idle: String) throws {
        let api = try api(Clock())
        // A wrong password too: the request is refused for its form, no log-in try is spent.
        let (status, body) = logIn(api, password: "wrong horse!", idle: idle)
        #expect(status == 400 && body?["message"]?.stringValue == "idleMinutes is 5, 10 or 15")
    }
}
