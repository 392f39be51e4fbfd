import Testing
import TelematicsCore

@Suite("Which car messages become alerts")
struct AlertRulesTests {
    typealias K = AlertRules.Kind

    static func rules(locked: Bool?, open: [String] = []) -> AlertRules {
        var r = AlertRules()
        for q in open { _ = r.carMessage(stream: "events", body: event("opened", quantity: q)) }
        if let locked { _ = r.carMessage(stream: "events", body: lock(locked)) }
        return r
    }

    static func event(_ type: String, quantity: String = "", value: JSON = .bool(true)) -> JSON {
        .object([("id", .string("m")), ("type", .string(type)), ("quantity", .string(quantity)), ("value", value), ("capturedAt", .number(7))])
    }

    static func lock(_ locked: Bool) -> JSON {
        event("lockStateChanged", quantity: "locks.central", value: .string(locked ? "Locked" : "Unlocked"))
    }

    // Columns: the lock not known yet, unlocked with everything shut, locked, unlocked with the
    // front left door open. Rows: a message; each cell the kinds of the alerts it gives.
    static let states: [AlertRules] = [
        rules(locked: nil), rules(locked: false), rules(locked: true), rules(locked: false, open: ["doors.frontLeft.open"]),
    ]
    static let table: [(String, JSON, [[K]])] = [
        ("alarms", event("alarmTriggered", quantity: "alarm.triggered"), [[.theftAlarm], [.theftAlarm], [.theftAlarm], [.theftAlarm]]),
        ("events", lock(true), [[.locked], [.locked], [], [.locked, .openedWhileLocked]]),
        ("events", lock(false), [[.unlocked], [], [.unlocked], []]),
        ("events", event("lockStateChanged", quantity: "locks.central", value: .string("Superlocked")), [[], [], [], []]),
        ("events", event("opened", quantity: "doors.rearRight.open"), [[], [], [], []]),
        ("events", event("ignitionOn", quantity: "ignition.on"), [[], [], [], []]),
        ("results", .object([("type", .string("commandResult")), ("commandId", .string("c1")), ("status", .string("successful"))]),
         [[.commandResult], [.commandResult], [.commandResult], [.commandResult]]),
        ("results", .object([("type", .string("commandResult")), ("status", .string("successful"))]), [[], [], [], []]),
        ("results", .object([("type", .string("commandResult")), ("commandId", .string("c1")), ("status", .string("inProgress"))]),
         [[], [], [], []]),
        ("ecall", .object([("type", .string("eCallReport")), ("kind", .string("automatic")), ("ending", .string("psapCleared"))]),
         [[.eCallPlaced], [.eCallPlaced], [.eCallPlaced], [.eCallPlaced]]),
        ("state", .object([("type", .string("alarmTriggered"))]), [[], [], [], []]),
        ("events", .string("not an object"), [[], [], [], []]),
    ]

    @Test("every message against every state")
    func everyMessageAgainstEveryState() {
        for (stream, body, expected) in Self.table {
            for (state, want) in zip(Self.states, expected) {
                var r = state
                #expect(r.carMessage(stream: stream, body: body).map(\.kind) == want, "\(stream) \(body.text) with \(state.json.text)")
            }
        }
    }

    @Test("a message the rules are not concerned with neither alerts nor changes their state, in every state")
    func unconcernedMessagesChangeNothing() {
        let streams = ["alarms", "events", "results", "ecall", "state", "requests", "connection"]
        let types = ["alarmTriggered", "lockStateChanged", "opened", "closed", "commandResult", "eCallReport", "state", "ignitionOn",
                     "heartbeat", "deleteMyData"]
        var concerned = 0
        for stream in streams {
            for type in types {
                let bodies: [JSON] = [Self.event(type, quantity: "doors.frontLeft.open", value: .string("Locked")),
                                      .object([("type", .string(type)), ("commandId", .string("c")), ("status", .string("failed"))])]
                if AlertRules.concerns(stream: stream, type: type) { concerned += 1; continue }
                for state in Self.states {
                    for body in bodies {
                        var r = state
                        #expect(r.carMessage(stream: stream, body: body).isEmpty && r == state, "\(stream) \(type)")
                    }
                }
            }
            #expect(!AlertRules.concerns(stream: stream, type: nil))
        }
        // Each case of the rules, and no more.
        #expect(concerned == 6)
    }

    @Test("locked with openings left open names them, sorted; closing one first leaves it out")
    func openedWhileLockedNamesTheOpenings() {
        var r = Self.rules(locked: false, open: ["trunk.open", "doors.frontLeft.open", "doors.rearLeft.open"])
        _ = r.carMessage(stream: "events", body: Self.event("closed", quantity: "doors.rearLeft.open", value: .bool(false)))
        let alerts = r.carMessage(stream: "events", body: Self.lock(true))
        #expect(alerts.last == AlertRules.Alert(.openedWhileLocked, [("capturedAt", .number(7)),
                                                                    ("open", .array([.string("doors.frontLeft.open"), .string("trunk.open")]))]))
    }

    @Test("a command's alert says which command, which action and how it ended")
    func commandAlert() {
        var r = AlertRules()
        let result = JSON.object([("type", .string("commandResult")), ("commandId", .string("c1")), ("action", .string("lock")),
                                  ("status", .string("failed")), ("cause", .string("doorOpen")), ("capturedAt", .number(9))])
        #expect(r.carMessage(stream: "results", body: result) == [AlertRules.Alert(.commandResult, [
            ("commandId", .string("c1")), ("action", .string("lock")), ("status", .string("failed")), ("cause", .string("doorOpen")),
            ("capturedAt", .number(9)),
        ])])
    }

    @Test("an eCall alert carries what the call was and never a position")
    func eCallAlertHasNoPosition() {
        var r = AlertRules()
        let report = JSON.object([("type", .string("eCallReport")), ("kind", .string("manual")), ("ending", .string("psapCleared")),
                                  ("msdAcknowledged", .bool(true)), ("latitude", .number(48.1)), ("longitude", .number(11.5))])
        let alert = r.carMessage(stream: "ecall", body: report)
        #expect(alert == [AlertRules.Alert(.eCallPlaced, [("eCallKind", .string("manual")), ("ending", .string("psapCleared")),
                                                          ("msdAcknowledged", .bool(true))])])
    }

    @Test("the licence's end is announced once, 30 days before; a renewal's new end again")
    func licenceNotice() {
        let day: Int64 = 86_400_000
        var r = AlertRules()
        let end = 100 * day
        #expect(r.licenceCheck(expiresAtMs: end, nowMs: end - 31 * day).isEmpty)
        #expect(r.licenceCheck(expiresAtMs: end, nowMs: end - 30 * day).map(\.kind) == [.licenceExpiring])
        #expect(r.licenceCheck(expiresAtMs: end, nowMs: end - 29 * day).isEmpty)
        #expect(r.licenceCheck(expiresAtMs: end, nowMs: end + 1).isEmpty)
        let renewed = end + 365 * day
        #expect(r.licenceCheck(expiresAtMs: renewed, nowMs: renewed - 2 * day)
                == [AlertRules.Alert(.licenceExpiring, [("expiresAt", .number(Double(renewed))), ("daysLeft", .number(2))])])
    }

    @Test("the state kept between runs of the backend comes back the same")
    func stateRoundTrips() {
        var r = Self.rules(locked: true, open: ["hood.open"])
        _ = r.licenceCheck(expiresAtMs: 10 * 86_400_000, nowMs: 86_400_000)
        #expect(AlertRules(json: r.json) == r)
        #expect(AlertRules(json: .string("garbage")) == AlertRules())
    }
}
