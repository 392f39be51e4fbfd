import Testing
@testable import TelematicsCore

// MARK: - Body controller: every state × every event

/// The body controller's states of the table, and how each is reached from a new car.
enum BodyStart: String, CaseIterable {
    case unlocked, lockedArmed, alarmSounding, doorOpen, driving

    func make() -> BodyController {
        var b = BodyController()
        switch self {
        case .unlocked: break
        case .lockedArmed: _ = b.lockRequested(.keyFob, at: 0)
        case .alarmSounding:
            _ = b.lockRequested(.keyFob, at: 0)
            _ = b.opened(.frontLeft, at: 0)
        case .doorOpen: _ = b.opened(.rearLeft, at: 0)
        case .driving:
            _ = b.ignitionChanged(on: true)
            _ = b.lockRequested(.autoLock, at: 0)
        }
        return b
    }
}

enum BodyEvent: String, CaseIterable {
    case openFrontLeft, openHood, openTrunk, closeRearLeft, lockKeyFob, lockTelematics, unlockTelematics, honk, flash,
         ignitionOn, after31s

    func send(_ b: inout BodyController) -> ECUOutcome {
        switch self {
        case .openFrontLeft: b.opened(.frontLeft, at: 1_000)
        case .openHood: b.opened(.hood, at: 1_000)
        case .openTrunk: b.opened(.trunk, at: 1_000)
        case .closeRearLeft: b.closed(.rearLeft)
        case .lockKeyFob: b.lockRequested(.keyFob, at: 1_000)
        case .lockTelematics: b.lockRequested(.telematics, at: 1_000)
        case .unlockTelematics: b.unlockRequested(.telematics)
        case .honk: b.honkAndFlashRequested(seconds: 10, honk: true, at: 1_000)
        case .flash: b.honkAndFlashRequested(seconds: 0, honk: false, at: 1_000)
        case .ignitionOn: b.ignitionChanged(on: true)
        case .after31s: b.tick(at: 31_000)
        }
    }
}

/// What holds after the event: the outcome, locked, armed, siren sounding, hazard lights on
/// (at 1.5 s, or just after the tick for `after31s`).
struct BodyAfter: Equatable, CustomStringConvertible {
    var outcome: ECUOutcome
    var locked: Bool
    var armed: Bool
    var sounding: Bool
    var hazard: Bool
    var description: String { "\(outcome) locked=\(locked) armed=\(armed) sounding=\(sounding) hazard=\(hazard)" }
}

private func after(_ o: ECUOutcome, locked: Bool = false, armed: Bool = false, sounding: Bool = false, hazard: Bool = false) -> BodyAfter {
    BodyAfter(outcome: o, locked: locked, armed: armed, sounding: sounding, hazard: hazard)
}

/// The whole table (docs/vehicle-sim.md, "Body controller").
let bodyTable: [BodyStart: [BodyEvent: BodyAfter]] = [
    .unlocked: [
        .openFrontLeft: after(.done), .openHood: after(.done), .openTrunk: after(.done), .closeRearLeft: after(.unchanged),
        .lockKeyFob: after(.done, locked: true, armed: true), .lockTelematics: after(.done, locked: true, armed: true),
        .unlockTelematics: after(.unchanged), .honk: after(.done, hazard: true), .flash: after(.done, hazard: true),
        .ignitionOn: after(.done), .after31s: after(.unchanged),
    ],
    .lockedArmed: [
        .openFrontLeft: after(.alarmTriggered(.door), locked: true, armed: true, sounding: true, hazard: true),
        .openHood: after(.alarmTriggered(.hood), locked: true, armed: true, sounding: true, hazard: true),
        .openTrunk: after(.alarmTriggered(.trunk), locked: true, armed: true, sounding: true, hazard: true),
        .closeRearLeft: after(.unchanged, locked: true, armed: true),
        .lockKeyFob: after(.unchanged, locked: true, armed: true), .lockTelematics: after(.done, locked: true, armed: true),
        .unlockTelematics: after(.done), .honk: after(.done, locked: true, armed: true, hazard: true),
        .flash: after(.done, locked: true, armed: true, hazard: true),
        .ignitionOn: after(.done, locked: true), .after31s: after(.unchanged, locked: true, armed: true),
    ],
    .alarmSounding: [
        .openFrontLeft: after(.unchanged, locked: true, armed: true, sounding: true, hazard: true),
        .openHood: after(.done, locked: true, armed: true, sounding: true, hazard: true),
        .openTrunk: after(.done, locked: true, armed: true, sounding: true, hazard: true),
        .closeRearLeft: after(.unchanged, locked: true, armed: true, sounding: true, hazard: true),
        .lockKeyFob: after(.refused("doorOpen"), locked: true, armed: true, sounding: true, hazard: true),
        .lockTelematics: after(.refused("doorOpen"), locked: true, armed: true, sounding: true, hazard: true),
        .unlockTelematics: after(.done), .honk: after(.done, locked: true, armed: true, sounding: true, hazard: true),
        .flash: after(.done, locked: true, armed: true, sounding: true, hazard: true),
        .ignitionOn: after(.done, locked: true), .after31s: after(.done, locked: true, armed: true),
    ],
    .doorOpen: [
        .openFrontLeft: after(.done), .openHood: after(.done), .openTrunk: after(.done), .closeRearLeft: after(.done),
        .lockKeyFob: after(.refused("doorOpen")), .lockTelematics: after(.refused("doorOpen")),
        .unlockTelematics: after(.unchanged), .honk: after(.done, hazard: true), .flash: after(.done, hazard: true),
        .ignitionOn: after(.done), .after31s: after(.unchanged),
    ],
    .driving: [
        .openFrontLeft: after(.done, locked: true), .openHood: after(.done, locked: true), .openTrunk: after(.done, locked: true),
        .closeRearLeft: after(.unchanged, locked: true),
        .lockKeyFob: after(.done, locked: true), .lockTelematics: after(.done, locked: true),
        .unlockTelematics: after(.done), .honk: after(.done, locked: true, hazard: true), .flash: after(.done, locked: true, hazard: true),
        .ignitionOn: after(.unchanged, locked: true), .after31s: after(.unchanged, locked: true),
    ],
]

struct BodyCase: CustomTestStringConvertible, Sendable {
    var start: BodyStart
    var event: BodyEvent
    var testDescription: String { "\(start.rawValue) + \(event.rawValue)" }
    static let all: [BodyCase] = BodyStart.allCases.flatMap { s in BodyEvent.allCases.map { BodyCase(start: s, event: $0) } }
}

@Suite("Body controller")
struct BodyControllerTests {
    @Test("every state × event does what the table says", arguments: BodyCase.all)
    func transition(_ c: BodyCase) throws {
        var b = c.start.make()
        let outcome = c.event.send(&b)
        let t: Int64 = c.event == .after31s ? 31_001 : 1_500
        let got = BodyAfter(outcome: outcome, locked: b.locked, armed: b.alarmArmed, sounding: b.alarmSounding(at: t), hazard: b.hazardOn(at: t))
        let want = try #require(bodyTable[c.start]?[c.event], "the table has no row for \(c.testDescription)")
        #expect(got == want)
    }

    @Test("honk and flash lasts what was asked, 10 s for 0, at most 30 s")
    func honkDuration() {
        var b = BodyController()
        _ = b.honkAndFlashRequested(seconds: 0, honk: true, at: 0)
        #expect(b.honking(at: 9_999) && !b.honking(at: 10_000))
        _ = b.honkAndFlashRequested(seconds: 90, honk: false, at: 0)
        #expect(b.hazardOn(at: 29_999) && !b.hazardOn(at: 30_000) && !b.honking(at: 1))
    }
}

// MARK: - Climate: every state × event

enum ClimaStart: String, CaseIterable {
    case idle, remoteRunning, ignitionOn

    func make() -> ClimateController {
        var c = ClimateController()
        c.outsideTemperature = -5
        c.cabinTemperature = -5
        switch self {
        case .idle: break
        case .remoteRunning: _ = c.remoteStartRequested(target: 22, minutes: 30, windowHeating: true, batteryLow: false, at: 0)
        case .ignitionOn: _ = c.ignitionChanged(on: true, engine: true)
        }
        return c
    }
}

enum ClimaEvent: String, CaseIterable {
    case remoteStart, remoteStartLowBattery, remoteStop, ignitionOn, batteryLow, thirtyMinutes

    func send(_ c: inout ClimateController) -> ECUOutcome {
        switch self {
        case .remoteStart: c.remoteStartRequested(target: 21, minutes: 20, windowHeating: false, batteryLow: false, at: 60_000)
        case .remoteStartLowBattery: c.remoteStartRequested(target: 21, minutes: 20, windowHeating: false, batteryLow: true, at: 60_000)
        case .remoteStop: c.remoteStopRequested()
        case .ignitionOn: c.ignitionChanged(on: true, engine: false)
        case .batteryLow: c.batteryWentLow()
        case .thirtyMinutes: c.tick(dtMs: 100, at: 30 * 60_000)
        }
    }
}

let climaTable: [ClimaStart: [ClimaEvent: (ECUOutcome, running: Bool)]] = [
    .idle: [
        .remoteStart: (.done, true), .remoteStartLowBattery: (.refused("batteryLow"), false), .remoteStop: (.unchanged, false),
        .ignitionOn: (.done, false), .batteryLow: (.unchanged, false), .thirtyMinutes: (.unchanged, false),
    ],
    .remoteRunning: [
        .remoteStart: (.done, true), .remoteStartLowBattery: (.refused("batteryLow"), true), .remoteStop: (.ended("stopped"), false),
        .ignitionOn: (.ended("ignitionOn"), false), .batteryLow: (.ended("batteryLow"), false), .thirtyMinutes: (.ended("duration"), false),
    ],
    .ignitionOn: [
        .remoteStart: (.refused("ignitionOn"), false), .remoteStartLowBattery: (.refused("ignitionOn"), false),
        .remoteStop: (.unchanged, false), .ignitionOn: (.done, false), .batteryLow: (.unchanged, false),
        .thirtyMinutes: (.unchanged, false),
    ],
]

struct ClimaCase: CustomTestStringConvertible, Sendable {
    var start: ClimaStart
    var event: ClimaEvent
    var testDescription: String { "\(start.rawValue) + \(event.rawValue)" }
    static let all: [ClimaCase] = ClimaStart.allCases.flatMap { s in ClimaEvent.allCases.map { ClimaCase(start: s, event: $0) } }
}

@Suite("Climate controller")
struct ClimateControllerTests {
    @Test("every state × event does what the table says", arguments: ClimaCase.all)
    func transition(_ c: ClimaCase) throws {
        var m = c.start.make()
        let outcome = c.event.send(&m)
        let want = try #require(climaTable[c.start]?[c.event])
        #expect(outcome == want.0)
        #expect(m.remoteRunning == want.running)
    }

    @Test("a winter cabin warms toward the target at a plausible rate and leaks to the outside")
    func cabin() {
        var c = ClimaStart.remoteRunning.make()
        #expect(c.mode == .heating)
        for i in 1...6_000 { _ = c.tick(dtMs: 100, at: Int64(i) * 100) }  // 10 minutes
        #expect(c.cabinTemperature > 10 && c.cabinTemperature < 16)
        var parked = ClimateController()
        parked.cabinTemperature = 30
        parked.outsideTemperature = 10
        for i in 1...36_000 { _ = parked.tick(dtMs: 100, at: Int64(i) * 100) }  // an hour parked
        #expect(parked.cabinTemperature > 14 && parked.cabinTemperature < 20)
    }
}

// MARK: - Powertrain, battery, airbag

@Suite("ESP, battery and airbag")
struct PowertrainTests {
    @Test("speed follows the target within the acceleration limits; the odometer integrates it")
    func acceleration() {
        var p = PowertrainModel()
        let start = p.odometerKm
        _ = p.targetSet(100)
        for _ in 0..<10 { _ = p.tick(dtMs: 100, engineRunning: true) }
        // 2.5 m/s² for a second: 9 km/h.
        #expect(abs(p.speedKmh - 9) < 0.01 && p.direction == 1)
        for _ in 0..<1_000 { _ = p.tick(dtMs: 100, engineRunning: true) }
        #expect(p.speedKmh == 100)
        let km = p.odometerKm - start
        // 100 s at 100 km/h less the 11.1 s ramp's half: about 2.62 km.
        #expect(abs(km - (100.0 / 3.6 * (101 - 11.11 / 2)) / 1_000) < 0.01)
        _ = p.tick(dtMs: 100, engineRunning: false)
        #expect(p.speedKmh < 100 && p.targetKmh == 0)
    }

    @Test("reversing needs a standstill first")
    func reverse() {
        var p = PowertrainModel()
        _ = p.targetSet(30)
        _ = p.tick(dtMs: 1_000, engineRunning: true)
        #expect(p.targetSet(5, reverse: true) == .refused("vehicleMoving"))
    }

    @Test("the battery drains with consumers and charges with the engine")
    func battery() {
        var b = BatteryModel()
        b.tick(dtMs: 3_600_000, loadAmps: 6)
        #expect(abs(b.stateOfCharge - 75) < 0.01 && b.voltage > 12.3 && b.voltage < 12.5)
        b.engineRunning = true
        b.tick(dtMs: 600_000, loadAmps: 16)
        #expect(b.stateOfCharge > 75 && b.voltage == 14.2)
    }

    @Test("a medium or worse frontal crash deploys the front airbags; the passenger's only when occupied")
    func airbags() {
        var a = AirbagModel()
        _ = a.seatChanged(.driver, occupied: true, belted: true)
        #expect(a.crashed(.front, severity: 1, deltaV: nil) == .done && !a.warningLamp)
        #expect(a.crashed(.front, severity: 3, deltaV: nil) == .done)
        #expect(a.deployedDriver && !a.deployedPassenger && !a.deployedSide && a.deltaVKmh == 45)
        #expect(a.crashed(.front, severity: 2, deltaV: nil) == .unchanged)
        #expect(a.crashCleared() == .done && !a.crashDetected && a.occupied == [.driver])
    }
}

// MARK: - The vehicle on the bus

@Suite("Simulated vehicle")
struct SimulatedVehicleTests {
    func car() -> SimulatedVehicle {
        var c = SimulatedVehicle.Configuration()
        c.sleepAfterMs = 5_000
        return SimulatedVehicle(database: ProjectFiles.database, configuration: c)
    }

    func frames(_ v: inout SimulatedVehicle, for ms: Int64, from start: Int64 = 0) -> [CANFrame] {
        var out: [CANFrame] = []
        var t = start
        while t < start + ms {
            v.advance(to: t)
            out += v.dueFrames(at: t)
            t += 1
        }
        return out
    }

    @Test("every cyclic message goes at its GenMsgCycleTime, with rolling counters and a right checksum")
    func cycles() throws {
        var v = car()
        #expect(v.unmodelled.isEmpty)
        let sent = frames(&v, for: 1_000)
        for m in ProjectFiles.database.messages where m.sender != "TCU" {
            let n = sent.filter { $0.id == m.id }.count
            #expect(n == 1_000 / (m.cycleTimeMs ?? 1), "\(m.name): \(n) frames in a second")
        }
        let airbag = sent.filter { $0.id == 0x40 }
        #expect(airbag.prefix(17).map { Int($0.data[0] & 0x0F) } == Array(0..<16) + [0])
        #expect(airbag.allSatisfy { $0.data[7] == xorChecksum($0.data, checksumByte: 7) })
    }

    @Test("each frame holds what SignalCodec.encode writes for the models' values; frames due together go lowest identifier first")
    func layoutAndPriority() throws {
        var v = car()
        _ = v.apply(.engine(true))
        _ = v.apply(.drive(to: nil, kmh: 50, reverse: false))
        let first = frames(&v, for: 1, from: 0)
        #expect(first.map(\.id) == first.map(\.id).sorted())
        let later = frames(&v, for: 2_000, from: 1)
        for f in later {
            let m = try #require(ProjectFiles.database.message(id: f.id, isExtended: f.isExtended))
            // Decode and encode again with the library codec: the same bytes.
            var values: [String: Double] = [:]
            for d in SignalCodec.decode(m, data: f.data) { values[m.signals[d.index].name] = d.value }
            #expect(try SignalCodec.encode(m, values: values) == f.data, "\(m.name)")
        }
    }

    @Test("a lock request goes out as Door_Status at once, locked by Telematics")
    func lockEvent() {
        var v = car()
        _ = frames(&v, for: 150)
        let lock = CANFrame(id: 0x5F1, data: [0x11, 0, 0, 0x11])
        #expect(v.receive(lock) == .done)
        let now = v.dueFrames(at: 150)
        let door = now.first { $0.id == 0x583 }
        #expect(door != nil)
        #expect(door.map { $0.data[2] } == 0x21)  // Central_Lock_State 1, Lock_Source 4
    }

    @Test("a wrong checksum, a stale counter and a short frame are ignored and counted")
    func refusals() {
        var v = car()
        #expect(v.receive(CANFrame(id: 0x5F1, data: [0x21, 0, 0, 0x00])) == .refused("wrongChecksum"))
        #expect(v.receive(CANFrame(id: 0x5F1, data: [0x21, 0, 0, 0x21])) == .done)
        #expect(v.receive(CANFrame(id: 0x5F1, data: [0x21, 0, 0, 0x21])) == .refused("staleCounter"))
        #expect(v.receive(CANFrame(id: 0x5F1, data: [0x31])) == .refused("shortFrame"))
        #expect(v.ignoredRequests == 3)
        // The unit's status frame is not a request.
        #expect(v.receive(CANFrame(id: 0x5F0, data: [0, 0, 0, 0])) == nil)
    }

    @Test("no climatisation on a low battery; one that runs ends when the battery runs low")
    func climaBattery() {
        var v = car()
        _ = v.apply(.battery(25))
        #expect(v.apply(.request(.climatisationStart(target: 22, minutes: 30, windowHeating: false))) == .refused("batteryLow"))
        _ = v.apply(.battery(31))
        #expect(v.apply(.request(.climatisationStart(target: 22, minutes: 30, windowHeating: false))) == .done)
        v.advance(to: 30 * 60_000)
        #expect(!v.climate.remoteRunning && v.battery.low)
        #expect(v.takeEvents().contains { $0.text == "remote climatisation: ended (batteryLow)" })
    }

    @Test("the bus sleeps when the car is idle and wakes on a key or a unit request")
    func sleepAndWake() {
        var v = car()
        _ = frames(&v, for: 5_100)
        #expect(!v.awake)
        #expect(frames(&v, for: 1_000, from: 5_100).isEmpty)
        _ = v.receive(CANFrame(id: 0x5F1, data: [0x11, 0, 0, 0x11]))
        #expect(v.awake && v.body.locked)
        #expect(frames(&v, for: 100, from: 6_100).contains { $0.id == 0x583 })
        _ = frames(&v, for: 6_000, from: 6_200)
        #expect(!v.awake)
        _ = v.apply(.unlock(.keyFob))
        #expect(v.awake)
    }

    @Test("a dead node sends nothing; wrong checksums are wrong")
    func faults() {
        var v = car()
        _ = v.apply(.fault(.dead("ACU")))
        _ = v.apply(.fault(.wrongChecksums))
        let sent = frames(&v, for: 500)
        #expect(!sent.contains { $0.id == 0x40 || $0.id == 0x45 })
        _ = v.apply(.clearFaults)
        _ = v.apply(.fault(.wrongChecksums))
        let airbag = frames(&v, for: 100, from: 500).filter { $0.id == 0x40 }
        #expect(!airbag.isEmpty && airbag.allSatisfy { $0.data[7] != xorChecksum($0.data, checksumByte: 7) })
    }

    @Test("a route is driven at its speed, the heading follows it, and the car stops at the end")
    func route() {
        var v = car()
        _ = v.apply(.place(GeoPoint(latitude: 41.0, longitude: 2.0), heading: 0))
        _ = v.apply(.engine(true))
        _ = v.apply(.route([GeoPoint(latitude: 41.0, longitude: 2.01), GeoPoint(latitude: 41.005, longitude: 2.01)], kmh: 50))
        v.advance(to: 30_000)
        #expect(abs(v.heading - 90) < 1 && abs(v.powertrain.speedKmh - 50) < 0.01)
        v.advance(to: 120_000)
        #expect(v.arrivals == 1 && v.route.isEmpty && v.powertrain.speedKmh == 0)
        #expect(Geodesy.distance(v.position, GeoPoint(latitude: 41.005, longitude: 2.01)) < 0.5)
    }
}

// MARK: - Text: commands, scenarios, NMEA

@Suite("Car commands and scenarios")
struct ScenarioTests {
    @Test("commands parse in both forms", arguments: [
        ("door open frontLeft", CarCommand.open(.frontLeft)),
        ("crash --front --severity 3", .crash(.front, severity: 3, deltaV: nil)),
        ("crash side-left rollover severity 4 delta-v 60", .crash([.sideLeft, .rollover], severity: 4, deltaV: 60)),
        ("drive --to 41.5,2.1 --speed 50", .drive(to: GeoPoint(latitude: 41.5, longitude: 2.1), kmh: 50, reverse: false)),
        ("press sos for 2s", .press(.sos, holdMs: 2_000)),
        ("LOCK Telematics", .lock(.telematics)),
        ("close all", .closeAll),
        ("fault dead acu", .fault(.dead("ACU"))),
    ])
    func commands(_ text: String, _ want: CarCommand) throws {
        #expect(try CarCommand.parse(Substring(text)) == want)
    }

    @Test("bad input names the line, the column and what was expected", arguments: [
        ("at 5s: door open frontMiddle", "s.scn:1:18: expected a door (frontLeft, frontRight, rearLeft, rearRight, hood, trunk), found 'frontMiddle'"),
        ("at 5x: lock", "s.scn:1:4: expected a duration (500ms, 12s, 1m30s) after at, found '5x'"),
        ("at 1e300s: lock", "s.scn:1:4: expected a duration (500ms, 12s, 1m30s) after at, found '1e300s'"),
        ("at 5s lock", "s.scn:1:11: expected ':' between the trigger and the command (at 12s: lock)"),
        ("when speed >> 5: stop", "s.scn:1:12: expected a comparison (> < >= <=), found '>>'"),
        ("at 1s: battery 1e999", "s.scn:1:16: expected a state of charge in %, found '1e999'"),
        ("at 1s: drive", "s.scn:1:13: drive needs a destination (to LAT,LON) or a speed (speed KMH)"),
        ("speed 40", "s.scn:1:1: expected name, start, end, sleep-after, or a step (at T:, after T:, when CONDITION:), found 'speed'"),
        ("when unit requests teleport: stop", "s.scn:1:20: expected a request kind (lock, unlock, honk, flash, unlock-trunk, clima-start, clima-stop), found 'teleport'"),
    ])
    func errors(_ text: String, _ message: String) {
        #expect(throws: ParseError.self) { try Scenario.parse(text, source: "s.scn") }
        do {
            _ = try Scenario.parse(text, source: "s.scn")
        } catch {
            #expect(error.description == message)
        }
    }

    @Test("lines run in order: at, after and when")
    func order() throws {
        let s = try Scenario.parse("at 1s: lock\nafter 2s: open hood\nwhen alarm: close hood\nat 0s: unlock\n", source: "s")
        var v = SimulatedVehicle(database: ProjectFiles.database)
        var r = ScenarioRunner(s)
        var fired: [Int64: [Int]] = [:]
        for t in stride(from: Int64(0), through: 5_000, by: 100) {
            v.advance(to: t)
            for step in r.due(at: t, vehicle: v, requests: []) {
                fired[t, default: []].append(step.line)
                v.apply(step.command)
            }
        }
        // The `at 0s` after the others waits for them: lines run in order.
        #expect(fired == [1_000: [1], 3_000: [2], 3_100: [3, 4]])
        #expect(r.finished)
    }

    @Test("routes from GPX and from LAT,LON lines")
    func routes() throws {
        let gpx = "<gpx><trk><trkseg>\n<trkpt lat=\"41.1\" lon=\"2.1\"><ele>3</ele></trkpt>\n<trkpt lon='2.2' lat='41.2'/></trkseg></trk></gpx>"
        #expect(try RouteFile.parse(gpx, source: "r.gpx") == [GeoPoint(latitude: 41.1, longitude: 2.1), GeoPoint(latitude: 41.2, longitude: 2.2)])
        #expect(try RouteFile.parse("# home\n41.1, 2.1\n", source: "r") == [GeoPoint(latitude: 41.1, longitude: 2.1)])
        #expect(throws: ParseError(source: "r", line: 1, "the route has no points")) { try RouteFile.parse("", source: "r") }
    }

    @Test("NMEA: checksums, coordinates and the date as gpsd reads them")
    func nmea() {
        // 2025-11-24 16:00:00 UTC, the recorded drives' date.
        let s = NMEA.epoch(position: GeoPoint(latitude: 41.474_5, longitude: 1.930_5), speedKmh: 50, course: 75, utcMs: 1_764_000_000_000)
        #expect(s[0] == "$GPRMC,160000.00,A,4128.4700,N,00155.8300,E,27.00,75.0,241125,,,A*" + NMEA.checksum("GPRMC,160000.00,A,4128.4700,N,00155.8300,E,27.00,75.0,241125,,,A"))
        #expect(NMEA.sentence("GPGSA,A,3,01,02,03,04,05,06,07,08,09,,,,1.4,0.9,1.2") == "$GPGSA,A,3,01,02,03,04,05,06,07,08,09,,,,1.4,0.9,1.2*3C")
        #expect(NMEA.epoch(position: nil, speedKmh: 0, course: 0, utcMs: 0)[0] == NMEA.sentence("GPRMC,000000.00,V,,,,,,,010170,,,N"))
    }

    @Test("bearings and the trigonometry the core computes itself")
    func geodesy() {
        let a = GeoPoint(latitude: 41, longitude: 2)
        #expect(abs(Geodesy.bearing(a, GeoPoint(latitude: 41, longitude: 2.1)) - 90) < 0.01)
        #expect(abs(Geodesy.bearing(a, GeoPoint(latitude: 40.9, longitude: 2)) - 180) < 0.01)
        #expect(abs(Geodesy.bearing(a, GeoPoint(latitude: 41.1, longitude: 1.9)) - 322.96) < 0.05)
        for x in stride(from: -10.0, through: 10.0, by: 0.37) {
            let s = Geodesy.sine(x), c = Geodesy.sine(x + .pi / 2)
            #expect(abs(s * s + c * c - 1) < 1e-12)
            #expect(abs(Geodesy.arctangent2(s, c) - (x - 2 * .pi * ((x + .pi) / (2 * .pi)).rounded(.down))) < 1e-9)
        }
        let moved = Geodesy.move(a, heading: 45, metres: 1_000)
        #expect(abs(Geodesy.distance(a, moved) - 1_000) < 1 && abs(Geodesy.bearing(a, moved) - 45) < 0.1)
    }
}

@Suite("Outside input never traps")
struct SimInputRobustnessTests {
    /// A fixed generator, so that a failure is repeatable.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test("random and mutated scenario, route and command text is refused or accepted, never a trap")
    func fuzzish() {
        var rng = SplitMix(state: 13)
        let words = ["at", "after", "when", "1e300s", "-5s", "9999999999999999999h", "speed", ">", "1e999", "nan", "-inf", "crash",
                     "severity", "99999999999999999999", "drive", "to", "91,181", "1e308,1e308", ":", "door", "open", "press", "sos",
                     "for", "0ms", "route", "<trkpt lat=\"x\" lon='1e400'>", "battery", "-0", "window", "frontLeft", "--", "ü", "\t"]
        for _ in 0..<3_000 {
            var text = ""
            for _ in 0..<Int.random(in: 1...12, using: &rng) {
                text += words.randomElement(using: &rng)! + (Bool.random(using: &rng) ? " " : "")
                if Int.random(in: 0..<8, using: &rng) == 0 { text += "\n" }
            }
            _ = try? Scenario.parse(text, source: "f")
            _ = try? CarCommand.parse(Substring(text))
            _ = try? RouteFile.parse(text, source: "r")
            _ = try? RouteFile.parse("<gpx>" + text, source: "r")
            _ = parseDuration(Substring(text))
        }
        var bytes: [UInt8] = []
        for _ in 0..<2_000 {
            bytes = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let text = String(decoding: bytes, as: UTF8.self)
            _ = try? Scenario.parse(text, source: "f")
            _ = try? CarCommand.parse(Substring(text))
        }
    }

    @Test("any frame the unit could send is checked, never a trap", arguments: [UInt32(0x5F1), 0x5F2, 0x5F0])
    func frames(_ id: UInt32) {
        var rng = SplitMix(state: UInt64(id))
        var v = SimulatedVehicle(database: ProjectFiles.database)
        for i in 0..<2_000 {
            let data = (0..<Int.random(in: 0...8, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = v.receive(CANFrame(id: id, data: data))
            v.advance(to: Int64(i) * 10)
            _ = v.dueFrames(at: Int64(i) * 10)
        }
    }
}

@Suite("The car's answer delay")
struct AnswerDelayTests {
    @Test("with an answer delay, a request is carried out that much later; the bus stays awake meanwhile")
    func delay() {
        var c = SimulatedVehicle.Configuration()
        c.sleepAfterMs = 100
        var v = SimulatedVehicle(database: ProjectFiles.database, configuration: c)
        _ = v.apply(.answerDelay(2_000))
        #expect(v.receive(CANFrame(id: 0x5F1, data: [0x11, 0, 0, 0x11])) == .unchanged)
        v.advance(to: 1_900)
        #expect(!v.body.locked && v.awake)
        v.advance(to: 2_000)
        #expect(v.body.locked)
    }
}
