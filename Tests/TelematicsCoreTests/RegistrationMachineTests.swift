import Testing
@testable import TelematicsCore

@Suite("Registration machine: every state by every event")
struct RegistrationMachineTests {
    typealias Machine = RegistrationMachine
    static let ok = Machine.Conditions(canCheckAnswers: true, connects: true)
    static let accepted = RegistrationAnswer.Accepted(user: "ana@example.com", services: ["vehicleStatus"], licenceExpiresAtMs: 9_000,
                                                      commandKey: [1, 2, 3])

    /// The states a test starts from.
    enum Start: String, CaseIterable, Sendable {
        case notStarted, completed, locked, waiting
    }

    static func machine(_ start: Start) -> Machine {
        var r = Registration()
        switch start {
        case .notStarted, .waiting: break
        case .completed: r.status = .completed; r.user = "ana@example.com"; r.role = .primary; r.lastCommandCounter = 7
        case .locked: for _ in 0..<GuessLimiter.freeTries { r.limiter.wrongCode(nowMs: 1_000) }
        }
        var m = Machine(r)
        if start == .waiting { _ = m.codeEntered("12345678", requestId: "r1", conditions: ok, nowMs: 1_000) }
        return m
    }

    /// The events, each sent at 1 000 ms (the lock from three wrong codes lasts 30 s).
    enum Event: String, CaseIterable, Sendable {
        case goodCode, shortCode, noKey, offline, noConnection, noAnswer, forged, accepted, wrongCode, codeUsed, lateAnswer
        case renew, renewed, renewalRefused
    }

    static func send(_ e: Event, to m: inout Machine) -> Machine.Action {
        switch e {
        case .goodCode: m.codeEntered("12345678", requestId: "r2", conditions: ok, nowMs: 1_000)
        case .shortCode: m.codeEntered("1234", requestId: "r2", conditions: ok, nowMs: 1_000)
        case .noKey: m.codeEntered("12345678", requestId: "r2", conditions: .init(canCheckAnswers: false, connects: true), nowMs: 1_000)
        case .offline: m.codeEntered("12345678", requestId: "r2", conditions: .init(canCheckAnswers: true, connects: false), nowMs: 1_000)
        case .noConnection: m.noConnection(requestId: "r1")
        case .noAnswer: m.noAnswer(requestId: "r1")
        case .forged: m.answerNotAuthentic(requestId: "r1")
        case .accepted: m.answered(requestId: "r1", .accepted(accepted), nowMs: 1_000)
        case .wrongCode: m.answered(requestId: "r1", .refused(.codeUnknown, retryAfterMs: nil, message: "no such code"), nowMs: 1_000)
        case .codeUsed: m.answered(requestId: "r1", .refused(.codeUsed, retryAfterMs: nil, message: nil), nowMs: 1_000)
        case .lateAnswer: m.answered(requestId: "r0", .accepted(accepted), nowMs: 1_000)
        case .renew: m.renewalRequested(requestId: "r2", conditions: ok)
        // A renewal's answer to the request on its way (a registration's, in these tables).
        case .renewed: m.renewalAnswered(requestId: "r1", .accepted(expiresAtMs: 99, services: nil, priceEUR: 85))
        case .renewalRefused: m.renewalAnswered(requestId: "r1", .refused(code: "invalidTerm", message: nil))
        }
    }

    /// What each (state, event) gives: the action's kind (with the failure), and the
    /// registration's status after it.
    static let table: [Start: [Event: (String, Registration.Status)]] = [
        .notStarted: [
            .goodCode: ("send r2", .started), .shortCode: ("refuse invalidCode", .notStarted), .noKey: ("refuse noAnswerKey", .notStarted),
            .offline: ("refuse privacyOffline", .notStarted), .noConnection: ("nothing", .notStarted), .noAnswer: ("nothing", .notStarted),
            .forged: ("nothing", .notStarted), .accepted: ("nothing", .notStarted), .wrongCode: ("nothing", .notStarted),
            .codeUsed: ("nothing", .notStarted), .lateAnswer: ("nothing", .notStarted),
            .renew: ("refuse notRegistered", .notStarted), .renewed: ("nothing", .notStarted), .renewalRefused: ("nothing", .notStarted),
        ],
        .completed: [
            // Registering again (another owner's code after a sale is a reset first; a second code is the backend's to refuse).
            .goodCode: ("send r2", .completed), .shortCode: ("refuse invalidCode", .completed), .noKey: ("refuse noAnswerKey", .completed),
            .offline: ("refuse privacyOffline", .completed), .noConnection: ("nothing", .completed), .noAnswer: ("nothing", .completed),
            .forged: ("nothing", .completed), .accepted: ("nothing", .completed), .wrongCode: ("nothing", .completed),
            .codeUsed: ("nothing", .completed), .lateAnswer: ("nothing", .completed),
            .renew: ("send r2", .completed), .renewed: ("nothing", .completed), .renewalRefused: ("nothing", .completed),
        ],
        .locked: [
            .goodCode: ("refuse locked", .notStarted), .shortCode: ("refuse invalidCode", .notStarted), .noKey: ("refuse noAnswerKey", .notStarted),
            .offline: ("refuse privacyOffline", .notStarted), .noConnection: ("nothing", .notStarted), .noAnswer: ("nothing", .notStarted),
            .forged: ("nothing", .notStarted), .accepted: ("nothing", .notStarted), .wrongCode: ("nothing", .notStarted),
            .codeUsed: ("nothing", .notStarted), .lateAnswer: ("nothing", .notStarted),
            .renew: ("refuse notRegistered", .notStarted), .renewed: ("nothing", .notStarted), .renewalRefused: ("nothing", .notStarted),
        ],
        .waiting: [
            .goodCode: ("refuse busy", .started), .shortCode: ("refuse busy", .started), .noKey: ("refuse busy", .started),
            .offline: ("refuse busy", .started), .noConnection: ("refuse noConnection", .started), .noAnswer: ("refuse timeout", .started),
            .forged: ("refuse answerNotAuthentic", .started), .accepted: ("grant", .completed), .wrongCode: ("store, refuse codeUnknown", .started),
            .codeUsed: ("store, refuse codeUsed", .started), .lateAnswer: ("nothing", .started),
            // A renewal's answer is not the answer to a registration on its way.
            .renew: ("refuse busy", .started), .renewed: ("nothing", .started), .renewalRefused: ("nothing", .started),
        ],
    ]

    static func describe(_ a: Machine.Action) -> String {
        switch a {
        case .sendRequest(let id): "send \(id)"
        case .refuse(let r): "refuse \(r.code)"
        case .storeAndRefuse(_, let r): "store, refuse \(r.code)"
        case .storeAndGrant(_, nil): "grant"
        case .storeAndGrant(_, let price?): "grant at \(Int(price))"
        case .doNothing: "nothing"
        }
    }

    @Test("each state by each event: the action and the status after it", arguments: Start.allCases, Event.allCases)
    func transition(start: Start, event: Event) throws {
        var m = Self.machine(start)
        let action = Self.send(event, to: &m)
        let (expected, status) = try #require(Self.table[start]?[event])
        #expect(Self.describe(action) == expected)
        #expect(m.registration.status == status)
    }

    @Test("an accepted answer completes the registration: user, role, licence, key, counter from zero, no lock; the next code may go")
    func acceptance() {
        var m = Self.machine(.waiting)
        guard case .storeAndGrant(let r, nil) = m.answered(requestId: "r1", .accepted(Self.accepted), nowMs: 2_000) else {
            Issue.record("not granted")
            return
        }
        #expect(r.user == "ana@example.com" && r.role == .primary && r.services == ["vehicleStatus"] && r.licenceExpiresAtMs == 9_000)
        #expect(r.commandKey == [1, 2, 3] && r.lastCommandCounter == 0 && r.registeredAtMs == 2_000 && r.limiter == GuessLimiter())
        #expect(m.codeEntered("12345678", requestId: "r3", conditions: Self.ok, nowMs: 2_000) == .sendRequest(requestId: "r3"))
    }

    @Test("wrong codes count: the third locks for 30 s and says so; the backend's own lock wins when it gives one")
    func wrongCodes() {
        var m = Machine()
        for (i, expected) in [nil, nil, Int64(30_000)].enumerated() {
            let id = "w\(i)"
            #expect(m.codeEntered("12345678", requestId: id, conditions: Self.ok, nowMs: 1_000) == .sendRequest(requestId: id))
            guard case .storeAndRefuse(_, let r) = m.answered(requestId: id, .refused(.codeForAnotherVehicle, retryAfterMs: nil, message: nil), nowMs: 1_000) else {
                Issue.record("not refused")
                return
            }
            #expect(r.retryAfterS == expected.map { $0 / 1000 })
        }
        #expect(m.codeEntered("12345678", requestId: "w3", conditions: Self.ok, nowMs: 30_999) == .refuse(.init(.locked, retryAfterMs: 1)))
        #expect(Machine.Refusal(.locked, retryAfterMs: 1).retryAfterS == 1)
        #expect(m.codeEntered("12345678", requestId: "w3", conditions: Self.ok, nowMs: 31_000) == .sendRequest(requestId: "w3"))
        guard case .storeAndRefuse(_, let r) = m.answered(requestId: "w3", .refused(.codeUsed, retryAfterMs: 600_000, message: "used"), nowMs: 31_000) else {
            Issue.record("not refused")
            return
        }
        #expect(r == .init(.codeUsed, retryAfterMs: 600_000, detail: "used"))
    }

    @Test("the backend's answer read from its JSON: numbers out of range are not taken, an unknown reason is an unknown code")
    func answers() throws {
        let ok = try JSON.parse(#"{"ok":true,"user":"ana@example.com","role":"secondary","services":["a",1],"licenceExpiresAt":1e300,"commandKey":"0A0b"}"#)
        #expect(RegistrationAnswer(json: ok) == .accepted(.init(user: "ana@example.com", role: .secondary, services: ["a"],
                                                                 licenceExpiresAtMs: nil, commandKey: [10, 11])))
        let odd = try JSON.parse(#"{"ok":true,"role":"owner"}"#)
        #expect(RegistrationAnswer(json: odd) == .accepted(.init(user: nil, role: .primary, services: [], licenceExpiresAtMs: nil, commandKey: nil)))
        let no = try JSON.parse(#"{"ok":false,"error":"somethingNew","retryAfterS":-5,"message":"m"}"#)
        #expect(RegistrationAnswer(json: no) == .refused(.codeUnknown, retryAfterMs: nil, message: "m"))
        let locked = try JSON.parse(#"{"ok":false,"error":"codeExpired","retryAfterS":30}"#)
        #expect(RegistrationAnswer(json: locked) == .refused(.codeExpired, retryAfterMs: 30_000, message: nil))
    }

    @Test("a command's counter only grows; a reset forgets everything, a request on its way too")
    func outsideRequests() {
        var m = Self.machine(.completed)
        #expect(m.commandCounterUsed(5).lastCommandCounter == 7)
        #expect(m.commandCounterUsed(9).lastCommandCounter == 9)
        var w = Self.machine(.waiting)
        w.reset()
        #expect(w.registration == Registration())
        #expect(w.answered(requestId: "r1", .accepted(Self.accepted), nowMs: 1) == .doNothing)
        #expect(w.codeEntered("12345678", requestId: "r2", conditions: Self.ok, nowMs: 1) == .sendRequest(requestId: "r2"))
    }

    @Test("the control socket's reply: the wire form, its refusal read back by tcuctl, the lines the menu and tcuctl show")
    func replies() throws {
        let locked = RegistrationReply.refused(.init(.locked, retryAfterMs: 29_001))
        #expect(locked.json.text == #"{"ok":false,"error":"locked","advice":"Too many wrong codes. Wait, then try again.","retryAfterS":30}"#)
        let back = try #require(RegistrationReply.refusal(in: locked.json))
        #expect(back == .init(.locked, retryAfterMs: 30_000))
        #expect(back.text == "locked: Too many wrong codes. Wait, then try again. (try again in 30 s)")
        #expect(back.menuLines("Registration failed") == ["Registration failed (locked).", "Too many wrong codes. Wait, then try again.", "Try again in 30 s."])
        var r = Registration()
        r.status = .completed
        #expect(RegistrationReply.refusal(in: RegistrationReply.done(r, priceEUR: 85).json) == nil)
        #expect(RegistrationReply.done(r, priceEUR: 85).json["priceEUR"]?.numberValue == 85)
        #expect(RegistrationReply.refusal(in: try JSON.parse(#"{"error":"x","retryAfterS":1e300}"#)) == .init(code: "x", advice: ""))
        #expect(RegistrationReply.Refusal(code: "x", advice: "").text == "x")
        #expect(RegistrationReply.accountCreated(user: "a@b.c", next: "Open the link.").json.text == #"{"ok":true,"user":"a@b.c","advice":"Open the link."}"#)
    }

    @Test("a renewal: only a registered car asks; the answer moves the licence's end (and services), the backend's refusal keeps its code; a registration's answer is not a renewal's")
    func renewal() throws {
        var m = Self.machine(.completed)
        #expect(m.renewalRequested(requestId: "n1", conditions: .init(canCheckAnswers: true, connects: false)) == .refuse(.init(.privacyOffline)))
        #expect(m.renewalRequested(requestId: "n1", conditions: Self.ok) == .sendRequest(requestId: "n1"))
        #expect(m.answered(requestId: "n1", .accepted(Self.accepted), nowMs: 5) == .doNothing)
        guard case .storeAndGrant(let r, let price) = m.renewalAnswered(requestId: "n1", .accepted(expiresAtMs: 99, services: ["a"], priceEUR: 225)) else {
            Issue.record("not granted")
            return
        }
        #expect(r.licenceExpiresAtMs == 99 && r.services == ["a"] && r.user == "ana@example.com" && price == 225)
        #expect(m.renewalRequested(requestId: "n2", conditions: Self.ok) == .sendRequest(requestId: "n2"))
        #expect(m.renewalAnswered(requestId: "n2", .refused(code: "unknownPackage", message: "no such package"))
                == .refuse(.init(code: "unknownPackage", advice: "no such package")))
        #expect(m.registration.licenceExpiresAtMs == 99)
        let json = try JSON.parse(#"{"ok":true,"licenceExpiresAt":1e300}"#)
        #expect(RenewalAnswer(json: json) == .refused(code: "refused", message: nil))
        #expect(RenewalAnswer(json: try JSON.parse(#"{"ok":true,"licenceExpiresAt":7,"priceEUR":50}"#)) == .accepted(expiresAtMs: 7, services: nil, priceEUR: 50))
    }
}
