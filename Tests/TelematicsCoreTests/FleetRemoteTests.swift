import Testing
@testable import TelematicsCore

@Suite("A fleet car's registration with its pairing code and its remote commands, as a unit's")
struct FleetRemoteTests {
    let key: [UInt8] = Array(repeating: 9, count: 32)
    let start: Int64 = 1_000_000

    static func car(registration: Registration? = Registration(), privacy: PrivacyMode = .shareMyPosition,
                    scenarios: [(FleetPlan.Scenario, atSecond: Int)] = [], fromTrajectory: Bool = false) -> FleetCar {
        let spec = FleetPlan.Car(index: 7, vin: "VSSZZZKLZNR000008", model: "Leon", modelCode: "KL1", buildDate: "2022-01-10",
                                 country: "ES", licence: .active, privacy: privacy, propulsion: .petrol, scenarios: scenarios)
        var behaviour = FleetCar.Behaviour(drivingIntervalMs: 2_000, heartbeatMs: 300_000, tripsPerHour: 0)
        behaviour.tripsFromTrajectory = fromTrajectory
        return FleetCar(spec: spec, behaviour: behaviour, startMs: 1_000_000, home: (60.46, 26.94), registration: registration)
    }

    func accepted(_ requestId: String) -> JSON {
        .object([("requestId", .string(requestId)), ("ok", .bool(true)), ("user", .string("fleet@example.com")), ("role", .string("primary")),
                 ("services", .array(Capabilities.all.map { .string($0) })), ("licenceExpiresAt", .number(Double(start + 86_400_000 * 365))),
                 ("commandKey", .string(hexBytes(key)))])
    }

    func refused(_ requestId: String, _ code: String) -> JSON {
        .object([("requestId", .string(requestId)), ("ok", .bool(false)), ("error", .string(code)), ("message", .string("no"))])
    }

    /// A registered car: the handshake done with an accepted, authentic answer.
    func registeredCar(privacy: PrivacyMode = .shareMyPosition, scenarios: [(FleetPlan.Scenario, atSecond: Int)] = [],
                       fromTrajectory: Bool = false) -> FleetCar {
        var c = Self.car(privacy: privacy, scenarios: scenarios, fromTrajectory: fromTrajectory)
        let (id, _) = c.registrationRequest(code: "12345678", canCheckAnswers: true, nowMs: start)!
        var out: [FleetCar.Output] = []
        c.registrationAnswered(accepted(id), authentic: true, nowMs: start, into: &out)
        return c
    }

    // MARK: - The registration

    enum Step { case request, acceptedAuthentic, acceptedForged, wrongCode, lateAnswer, connectionLost }

    @Test("registration: state × report → the request sent, the registration kept, the status")
    func registrationTable() throws {
        // (steps, requests sent, registration outputs, refusals told, final status, has the command key)
        let table: [([Step], Int, Int, Int, Registration.Status, Bool)] = [
            ([.request], 1, 0, 0, .started, false),
            ([.request, .acceptedAuthentic], 1, 1, 0, .completed, true),
            // A forged answer changes nothing: told, not kept; the code is typed again next time.
            ([.request, .acceptedForged], 1, 0, 1, .started, false),
            ([.request, .acceptedForged, .request, .acceptedAuthentic], 2, 1, 1, .completed, true),
            // A wrong code is kept (it counts against the lock) and told.
            ([.request, .wrongCode], 1, 1, 1, .started, false),
            // An answer to another request (a late one) changes nothing; the request still waits.
            ([.request, .lateAnswer], 1, 0, 0, .started, false),
            ([.request, .lateAnswer, .acceptedAuthentic], 1, 1, 0, .completed, true),
            // One request at a time; the connection's loss lets the next connection ask again.
            ([.request, .request], 1, 0, 0, .started, false),
            ([.request, .connectionLost, .request, .acceptedAuthentic], 2, 1, 0, .completed, true),
            // Registered: nothing more to ask.
            ([.request, .acceptedAuthentic, .request], 1, 1, 0, .completed, true),
        ]
        for (steps, requests, kept, told, status, keyed) in table {
            var c = Self.car()
            var out: [FleetCar.Output] = []
            var sent = 0
            var last = ""
            for s in steps {
                switch s {
                case .request:
                    if c.needsRegistration, let (id, body) = c.registrationRequest(code: "12345678", canCheckAnswers: true, nowMs: start) {
                        sent += 1
                        last = id
                        #expect(body["code"]?.stringValue == "12345678" && body["vin"]?.stringValue == c.spec.vin && body["model"]?.stringValue == "Leon")
                    }
                case .acceptedAuthentic: c.registrationAnswered(accepted(last), authentic: true, nowMs: start, into: &out)
                case .acceptedForged: c.registrationAnswered(accepted(last), authentic: false, nowMs: start, into: &out)
                case .wrongCode: c.registrationAnswered(refused(last, "codeUnknown"), authentic: true, nowMs: start, into: &out)
                case .lateAnswer: c.registrationAnswered(accepted("another"), authentic: true, nowMs: start, into: &out)
                case .connectionLost: c.registrationUnanswered()
                }
            }
            let keptCount = out.filter { if case .registration = $0 { true } else { false } }.count
            let toldCount = out.filter { if case .registrationRefused = $0 { true } else { false } }.count
            #expect(sent == requests, "\(steps): requests")
            #expect(keptCount == kept, "\(steps): kept")
            #expect(toldCount == told, "\(steps): told")
            #expect(c.registration.status == status, "\(steps): status")
            #expect((c.registration.commandKey == key) == keyed, "\(steps): key")
        }
    }

    @Test("no request goes without the backend's key to check the answer, nor while privacy is offline, nor with a malformed code")
    func noRequest() {
        var c = Self.car()
        #expect(c.registrationRequest(code: "12345678", canCheckAnswers: false, nowMs: start) == nil)
        #expect(c.registrationRequest(code: "1234", canCheckAnswers: true, nowMs: start) == nil)
        var offline = Self.car(privacy: .offline)
        #expect(offline.registrationRequest(code: "12345678", canCheckAnswers: true, nowMs: start) == nil)
    }

    @Test("an unregistered car (waiting for its handshake) sends nothing but what needs no registration")
    func unregisteredSendsNothing() {
        var c = Self.car(scenarios: [(.theft, 5), (.button, 6), (.remoteCommand, 7)])
        var out: [FleetCar.Output] = []
        for s in 0...10 { c.advance(to: start + Int64(s) * 1_000, into: &out) }
        #expect(out.isEmpty)
    }

    // MARK: - Commands

    func command(_ action: RemoteCommand.Action, counter: Int64 = 1, vin: String = "VSSZZZKLZNR000008", at now: Int64,
                 expires: Int64? = nil, signedWith k: [UInt8]? = nil, targetTemperature: Double? = nil) -> [UInt8] {
        var c = RemoteCommand(id: "cmd-\(counter)", vin: vin, action: action, counter: counter, issuedAtMs: now - 100,
                              expiresAtMs: expires ?? now + 60_000, user: "fleet@example.com", role: .primary, targetTemperature: targetTemperature)
        c.signature = hexBytes(RemoteCommandTests.mac(k ?? key, Array(c.signedText.utf8)))
        return Array(c.json.text.utf8)
    }

    static func results(_ out: [FleetCar.Output]) -> [String] {
        out.compactMap {
            guard case .message(let m) = $0, m.stream == "results", let j = try? JSON.parse(m.payload) else { return nil }
            return [j["status"]?.stringValue, j["cause"]?.stringValue].compactMap { $0 }.joined(separator: ":")
        }
    }

    @Test("commands: what arrives × the car → its results, as the unit's CommandVerifier and RemoteExecution decide")
    func commandTable() {
        let t = start + 1_000
        // (name, the car, the payload, results at once, results after the execution)
        let parked = registeredCar()
        let table: [(String, FleetCar, [UInt8], [String], [String])] = [
            ("lock, parked", parked, command(.lock, at: t), ["inProgress"], ["successful"]),
            ("honk and flash, parked", parked, command(.honkAndFlash, at: t), ["inProgress"], ["successful"]),
            ("climatisation, parked", parked, command(.climatisationStart, at: t, targetTemperature: 21.5), ["inProgress"], ["successful"]),
            ("wake-up", parked, command(.wakeUp, at: t), ["inProgress"], ["successful"]),
            ("signed with another key", parked, command(.lock, at: t, signedWith: Array(repeating: 1, count: 32)), ["failed:badSignature"], []),
            ("expired", parked, command(.lock, at: t, expires: t - 1), ["failed:expired"], []),
            ("another car's", parked, command(.lock, vin: "VSSZZZKLZNR000009", at: t), [], []),
            ("not registered: no key", Self.car(registration: FleetCar.registration(for: .active, nowMs: start)), command(.lock, at: t),
             ["failed:notProvisioned"], []),
            ("malformed", parked, Array(#"{"id":"x","action":"lock"}"#.utf8), ["failed:malformed: vin"], []),
            ("not JSON", parked, Array("lock!".utf8), [], []),
        ]
        for (name, car, payload, now, later) in table {
            var c = car
            var out: [FleetCar.Output] = []
            c.command(payload, nowMs: t, mac: RemoteCommandTests.mac, into: &out)
            #expect(Self.results(out) == now, "\(name): at once")
            out.removeAll()
            c.advance(to: t + FleetCar.executionMs.upperBound, into: &out)
            #expect(Self.results(out) == later, "\(name): after")
        }
    }

    @Test("a command's counter is kept before it runs; a replay is refused, and so is an older counter")
    func replay() {
        var c = registeredCar()
        var out: [FleetCar.Output] = []
        let t = start + 1_000
        c.command(command(.honkAndFlash, counter: 5, at: t), nowMs: t, mac: RemoteCommandTests.mac, into: &out)
        guard case .registration(let kept) = out.first else { Issue.record("the counter is kept first: \(out)"); return }
        #expect(kept.lastCommandCounter == 5)
        out.removeAll()
        c.command(command(.honkAndFlash, counter: 5, at: t), nowMs: t, mac: RemoteCommandTests.mac, into: &out)
        c.command(command(.honkAndFlash, counter: 4, at: t), nowMs: t, mac: RemoteCommandTests.mac, into: &out)
        #expect(Self.results(out) == ["failed:replayed", "failed:replayed"])
    }

    @Test("the simulated car carries a command out: the lock's events and state, the climate block; a car that drives off meanwhile fails it")
    func execution() throws {
        var c = registeredCar()
        var out: [FleetCar.Output] = []
        let t = start + 1_000
        // Unlock first (a parked car is locked), then lock again.
        c.command(command(.unlock, counter: 1, at: t), nowMs: t, mac: RemoteCommandTests.mac, into: &out)
        c.advance(to: t + FleetCar.executionMs.upperBound, into: &out)
        #expect(!c.locked)
        let events = out.compactMap { o -> String? in
            // (Not the heartbeat's cluster block, due at the car's start.)
            guard case .message(let m) = o, let j = try? JSON.parse(m.payload), j["block"]?.stringValue != "cluster" else { return nil }
            return "\(m.stream):\(j["type"]?.stringValue ?? ""):\(j["value"]?.stringValue ?? j["block"]?.stringValue ?? j["status"]?.stringValue ?? "")"
        }
        #expect(events == ["results:commandResult:inProgress", "events:lockStateChanged:unlocked", "state:state:doors", "results:commandResult:successful"])
        // The climatisation: the unit's climate block.
        out.removeAll()
        c.command(command(.climatisationStart, counter: 2, at: t, targetTemperature: 21.5), nowMs: t, mac: RemoteCommandTests.mac, into: &out)
        c.advance(to: t + FleetCar.executionMs.upperBound, into: &out)
        let climate = out.compactMap { o -> JSON? in
            guard case .message(let m) = o, let j = try? JSON.parse(m.payload), j["block"]?.stringValue == "climate" else { return nil }
            return j["values"]
        }
        #expect(climate.count == 1 && climate.first?["climatisation"]?.stringValue == "Heating"
                && climate.first?["targetTemperature"]?.numberValue == 21.5)
        #expect(c.climatisationOn && Self.results(out) == ["inProgress", "successful"])
        // Honk and flash while parked, but the car drives off before it is done: vehicleMoving.
        out.removeAll()
        var moving = registeredCar(fromTrajectory: true)
        moving.command(command(.honkAndFlash, at: t), nowMs: t, mac: RemoteCommandTests.mac, into: &out)
        moving.advance(to: t + 100, motion: .init(latitude: 60.46, longitude: 26.94, speedKmh: 40), into: &out)
        moving.advance(to: t + FleetCar.executionMs.upperBound, motion: .init(latitude: 60.461, longitude: 26.94, speedKmh: 40), into: &out)
        #expect(moving.isDriving)
        #expect(Self.results(out) == ["inProgress", "failed:vehicleMoving"])
        // A command that finds the car moving is refused at once, nothing runs.
        out.removeAll()
        moving.command(command(.lock, counter: 2, at: t), nowMs: t + 200, mac: RemoteCommandTests.mac, into: &out)
        #expect(Self.results(out) == ["failed:vehicleMoving"])
    }

    @Test("the remote-command scenario: a registered car's owner asks at its second; an unregistered car has no owner to ask")
    func scenario() {
        var c = registeredCar(scenarios: [(.remoteCommand, 3)])
        var out: [FleetCar.Output] = []
        for s in 0...5 { c.advance(to: start + Int64(s) * 1_000, into: &out) }
        let asks = out.compactMap { if case .appCommand(let a, let t) = $0 { (a, t) } else { nil } }
        #expect(asks.count == 1)
        if let (a, t) = asks.first {
            #expect([.lock, .honkAndFlash, .climatisationStart].contains(a))
            #expect((t != nil) == (a == .climatisationStart))
        }
        var stranger = Self.car(scenarios: [(.remoteCommand, 3)])
        out.removeAll()
        for s in 0...5 { stranger.advance(to: start + Int64(s) * 1_000, into: &out) }
        #expect(out.isEmpty)
    }
}
