import Testing
@testable import TelematicsCore

@Suite("A fleet: its file, its mix, its VINs and shards, and the car as a value")
struct FleetTests {
    static let file = """
        [fleet]
        cars = 1000
        first-serial = 5001
        seed = 3
        shards = 4
        [models]
        leon = 40
        ibiza = 35.5
        mii-electric = 24.5
        [countries]
        ES = 50
        FR = 50
        [licences]
        active = 80
        expired = 10
        unregistered = 10
        [privacy]
        shareMyPosition = 70
        useMyPosition = 20
        offline = 10
        [scenarios]
        crash = 1
        theft = 2.5
        window-seconds = 30
        """

    @Test("the mix is exact: each share of the fleet is its share of the cars, whatever the seed")
    func exactMix() throws {
        for seed in [1, 3, 99] {
            let plan = try FleetPlan.parse(Self.file.replacingSeed(seed))
            var models: [String: Int] = [:], licences: [FleetPlan.Licence: Int] = [:], privacy: [PrivacyMode: Int] = [:]
            var crashes = 0, thefts = 0
            for i in 0..<plan.cars {
                let c = plan.car(i)
                models[c.model, default: 0] += 1
                licences[c.licence, default: 0] += 1
                privacy[c.privacy, default: 0] += 1
                crashes += c.scenarios.filter { $0.0 == .crash }.count
                thefts += c.scenarios.filter { $0.0 == .theft }.count
                #expect(c.scenarios.allSatisfy { (0..<30).contains($0.atSecond) })
            }
            #expect(models == ["Leon": 400, "Ibiza": 355, "Mii electric": 245], "seed \(seed)")
            #expect(licences == [.active: 800, .expired: 100, .unregistered: 100])
            #expect(privacy == [.shareMyPosition: 700, .useMyPosition: 200, .offline: 100])
            #expect(crashes == 10 && thefts == 25)
        }
    }

    @Test("every VIN is valid, unique, carries the model's code and the serial of its index")
    func vins() throws {
        let plan = try FleetPlan.parse(Self.file)
        var seen = Set<String>()
        for i in 0..<plan.cars {
            let c = plan.car(i)
            let vin = try VIN(c.vin)
            #expect(vin.wmi == "VSS")
            #expect(c.vin.hasSuffix(String(5001 + i)))
            #expect(c.vin.dropFirst(6).prefix(2) == ConnectedModels.details[c.model]!.vinCode)
            // Built when the model had the unit.
            #expect(String(c.buildDate.prefix(7)) >= ConnectedModels.firstBuildMonth[c.model]!)
            seen.insert(c.vin)
        }
        #expect(seen.count == plan.cars)
        // The same file makes the same cars.
        #expect(try FleetPlan.parse(Self.file).car(417) == plan.car(417))
    }

    @Test("shards split the fleet evenly, or take the serial ranges the file names")
    func shards() throws {
        let even = try FleetPlan.parse(Self.file)
        #expect(even.shards.map(\.cars) == [0..<250, 250..<500, 500..<750, 750..<1000])
        // A count the shards do not divide: sizes differ by one, every car in one shard, none empty
        // (85 cars in 20 shards trapped once: the fuzzer's find, Fuzz/corpus/fleet).
        for (cars, n) in [(85, 20), (10, 3), (7, 7), (999_999, 10_000)] {
            let shards = try FleetPlan.parse("[fleet]\ncars = \(cars)\nshards = \(n)\n").shards
            #expect(shards.count == n && shards.first?.cars.lowerBound == 0 && shards.last?.cars.upperBound == cars)
            #expect(zip(shards, shards.dropFirst()).allSatisfy { $0.cars.upperBound == $1.cars.lowerBound })
            let sizes = shards.map(\.cars.count)
            #expect(sizes.min()! >= 1 && sizes.max()! - sizes.min()! <= 1, "\(cars) in \(n): \(sizes)")
        }
        let named = try FleetPlan.parse("[fleet]\ncars = 10\nfirst-serial = 100\nshard-ranges = 100-103, 104-109\n")
        #expect(named.shards.map(\.cars) == [0..<4, 4..<10])
        #expect(named.shard(1)?.cars == 4..<10)
        #expect(named.shard(2) == nil)
    }

    /// Files that are wrong, and the message each gets (with its line).
    static let refused: [(String, String)] = [
        ("[fleet]\ncars = 10\n[models]\ngolf = 100\n", "4: models.golf: unknown model; the connected services support arona, ateca, ibiza, leon, mii-electric, tarraco"),
        ("[fleet]\ncars = 10\n[models]\nleon = 60\nibiza = 30\n", "4: [models]: the shares add up to 90 %, not 100 %"),
        ("[fleet]\ncars = 10\n[privacy]\nshareMyPosition = 100.5\n", "4: privacy.shareMyPosition: a share is at most 100 %, found '100.5'"),
        ("[fleet]\ncars = 10\n[licences]\nactive = lots\n", "4: licences.active: expected a percentage from 0 to 100 with at most 3 decimals, found 'lots'"),
        ("[fleet]\ncars = 10\n[licences]\nactive = 33.3333\nexpired = 66.6667\n", "4: licences.active: expected a percentage from 0 to 100 with at most 3 decimals"),
        ("[fleet]\ncars = 10\n[countries]\nUS = 100\n", "4: countries.US: the connected services are not offered there"),
        ("[fleet]\ncars = 10\nfirst-serial = 999995\n", "3: fleet.first-serial: 10 cars from serial 999995 need serials up to 1000004"),
        ("[fleet]\ncars = 0\n", "2: fleet.cars: 0 is outside 1...1000000"),
        ("[fleet]\ncars = 1e300\n", "2: fleet.cars: expected an integer, found '1e300'"),
        ("[fleet]\ncars = 10\nshard-ranges = 1-6, 5-10\n", "3: fleet.shard-ranges: shard 1: serials 5-10 overlap shard 0's 1-6: a VIN would run twice"),
        ("[fleet]\ncars = 10\nshard-ranges = 1-6, 7-11\n", "3: fleet.shard-ranges: shard 1: serials 7-11 lie outside the fleet's 1-10"),
        ("[fleet]\ncars = 10\nshard-ranges = 1-6, x\n", "3: fleet.shard-ranges: shard 1: expected a serial range FIRST-LAST, found 'x'"),
        ("[fleet]\ncars = 10\nshards = 2\nshard-ranges = 1-10\n", "fleet.shards: set either shards or shard-ranges, not both"),
        ("[fleet]\ncars = 3\nshards = 4\n", "3: fleet.shards: 4 shards for 3 cars: a shard would have none"),
        ("[fleet]\ncars = 10\nwmi = VSQ\n", "3: fleet.wmi: expected a world manufacturer identifier of 3 VIN characters"),
        ("[fleet]\ncars = 10\n[weather]\nrain = 1\n", "4: unknown section [weather]"),
        ("[models]\nleon = 100\n", "fleet.cars is required but not set"),
    ]

    @Test("a wrong file is refused before any car starts, with what is wrong and where")
    func refusals() {
        for (text, message) in Self.refused {
            do {
                _ = try FleetPlan.parse(text, source: "fleet.conf")
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.description.contains(message), "\(error.description) ≠ \(message)")
            }
        }
    }

    // MARK: - The car

    static func car(licence: FleetPlan.Licence = .active, privacy: PrivacyMode = .shareMyPosition,
                    scenarios: [(FleetPlan.Scenario, atSecond: Int)] = [], tripsPerHour: Int = 60) -> FleetCar {
        let spec = FleetPlan.Car(index: 7, vin: "VSSZZZKLZNR000008", model: "Leon", modelCode: "KL1", buildDate: "2022-01-10",
                                 country: "ES", licence: licence, privacy: privacy, propulsion: .petrol, scenarios: scenarios)
        return FleetCar(spec: spec, behaviour: .init(drivingIntervalMs: 2_000, heartbeatMs: 300_000, tripsPerHour: tripsPerHour),
                        startMs: 1_000_000, home: (60.46, 26.94))
    }

    /// What the car sends over `seconds` (advanced each second), by stream and type.
    static func run(_ car: inout FleetCar, seconds: Int, from start: Int64 = 1_000_000) -> [OutboxMessage] {
        var out: [FleetCar.Output] = []
        for s in 0...seconds { car.advance(to: start + Int64(s) * 1_000, into: &out) }
        return out.compactMap { if case .message(let m) = $0 { m } else { nil } }
    }

    static func kinds(_ ms: [OutboxMessage]) -> [String] {
        ms.map { m in
            let j = try! JSON.parse(m.payload)
            return "\(m.stream):\(j["type"]!.stringValue!)\(j["block"].flatMap(\.stringValue).map { ":" + $0 } ?? "")"
        }
    }

    @Test("a trip: unlock, door, ignition, the driving state each interval; then park, position, lock")
    func trip() throws {
        var c = Self.car()
        // At 60 trips an hour, half of the cars are on the road at the start; this one is (its draws say so) or leaves within the minute.
        let ms = Self.run(&c, seconds: 3_600)
        let k = Self.kinds(ms)
        let start = try #require(k.firstIndex(of: "events:lockStateChanged"))
        #expect(Array(k[start..<(start + 5)]) == ["events:lockStateChanged", "events:opened", "events:closed", "state:state:doors", "events:ignitionOn"])
        #expect(k.contains("state:state:driving"))
        let end = try #require(k.firstIndex(of: "events:ignitionOff"))
        #expect(Array(k[end..<(end + 5)]) == ["events:ignitionOff", "state:state:parking", "state:state:cluster", "events:lockStateChanged", "state:state:doors"])
        // Every message names the car, and no id is used twice.
        #expect(ms.allSatisfy { (try? JSON.parse($0.payload))?["vin"]?.stringValue == "VSSZZZKLZNR000008" })
        #expect(Set(ms.map(\.id)).count == ms.count)
        // The parking block says where the car is.
        let parking = try #require(ms.first { $0.coalesceKey == "state.parking" })
        #expect(parking.carriesPosition)
        #expect(try JSON.parse(parking.payload)["values"]?["latitude"]?.numberValue != nil)
    }

    /// What leaves the car by its licence and privacy (BackendConsent and the privacy level).
    static let consent: [(FleetPlan.Licence, PrivacyMode, expectStreams: Set<String>, parkingPosition: Bool?)] = [
        (.active, .shareMyPosition, ["events", "state", "alarms"], true),
        (.active, .useMyPosition, ["events", "state", "alarms"], false),
        (.active, .offline, [], nil),
        // An expired licence: nothing the licence covers (vehicle status, alerts, parking).
        (.expired, .shareMyPosition, [], nil),
        (.unregistered, .shareMyPosition, [], nil),
    ]

    @Test("licence × privacy: what the car sends, as the unit's BackendConsent and privacy level decide")
    func consentTable() {
        for (licence, privacy, streams, position) in Self.consent {
            var c = Self.car(licence: licence, privacy: privacy, scenarios: [(.theft, 10)])
            let ms = Self.run(&c, seconds: 3_600)
            #expect(Set(ms.map(\.stream)) == streams, "\(licence) \(privacy)")
            let parking = ms.first { $0.coalesceKey == "state.parking" }
            #expect(parking.map { $0.carriesPosition } == position, "\(licence) \(privacy)")
            if let parking, !parking.carriesPosition { #expect(parking.payload.contains("\"values\":null")) }
        }
    }

    @Test("a finished eCall's report goes only for a registered car, and not while privacy is offline")
    func eCallReport() throws {
        var machine = ECallStateMachine()
        let dial = machine.crashDetected(at: 5_000, utc: 1_700_000_000)
        #expect(dial.line.contains { if case .placeCall(let d) = $0 { d.kind == .automatic && d.number == "112" } else { false } })
        _ = machine.callAnswered(at: 5_500)
        _ = machine.sendMSDReceived(at: 5_600)
        _ = machine.llAckReceived(at: 5_700)
        let end = machine.alAckReceived(clearDown: true, at: 5_800)
        let report = try #require(end.report ?? machine.callCleared(at: 5_900).report)
        for (licence, privacy, reported) in [(FleetPlan.Licence.active, PrivacyMode.shareMyPosition, true),
                                             (.expired, .useMyPosition, true), (.unregistered, .shareMyPosition, false),
                                             (.active, .offline, false)] {
            var c = Self.car(licence: licence, privacy: privacy)
            var out: [FleetCar.Output] = []
            c.eCallEnded(report, nowMs: 2_000_000, into: &out)
            let reports = out.compactMap { if case .message(let m) = $0, m.stream == "ecall" { m } else { nil } }
            #expect(reports.count == (reported ? 1 : 0), "\(licence) \(privacy)")
        }
    }

    @Test("trips from a trajectory: a motion begins the trip, its speed is the driving state's, its absence parks the car where the last motion was")
    func trajectory() throws {
        let spec = FleetPlan.Car(index: 1, vin: "VSSZZZKLZNR000002", model: "Leon", modelCode: "KL1", buildDate: "2022-01-10",
                                 country: "ES", licence: .active, privacy: .shareMyPosition, propulsion: .petrol, scenarios: [])
        var behaviour = FleetCar.Behaviour(drivingIntervalMs: 1_000, heartbeatMs: 3_600_000, tripsPerHour: 60)
        behaviour.tripsFromTrajectory = true
        var c = FleetCar(spec: spec, behaviour: behaviour, startMs: 0, home: (60.46, 26.94))
        var out: [FleetCar.Output] = []
        // No motion: parked, whatever the trips per hour say.
        for t in stride(from: Int64(0), through: 5_000, by: 100) { c.advance(to: t, motion: nil, into: &out) }
        #expect(!c.isDriving)
        let path = [(60.5001, 26.9001, 36.0), (60.5002, 26.9002, 54.0), (60.5003, 26.9003, 18.0)]
        for (i, p) in path.enumerated() {
            c.advance(to: 6_000 + Int64(i) * 1_000, motion: .init(latitude: p.0, longitude: p.1, speedKmh: p.2), into: &out)
        }
        #expect(c.isDriving)
        c.advance(to: 9_000, motion: nil, into: &out)
        #expect(!c.isDriving)
        let ms = out.compactMap { if case .message(let m) = $0 { m } else { nil } }
        let speeds = ms.filter { $0.coalesceKey == "state.driving" }.compactMap { try? JSON.parse($0.payload)["values"]?["speed"]?.numberValue }
        // (The first report falls at the car's own moment within the interval.)
        let moving = speeds.filter { $0 > 0 }
        #expect(moving.count >= 2 && Set(moving).isSubset(of: [36, 54, 18]) && moving.last == 18)
        let parking = try #require(ms.first { $0.coalesceKey == "state.parking" })
        let values = try JSON.parse(parking.payload)["values"]
        #expect(values?["latitude"]?.numberValue == 60.5003 && values?["longitude"]?.numberValue == 26.9003)
    }

    @Test("a car with no trips sends its heartbeat, and its scenarios at their second")
    func parkedCar() {
        var c = Self.car(scenarios: [(.theft, 20), (.button, 40)], tripsPerHour: 0)
        let k = Self.kinds(Self.run(&c, seconds: 600))
        #expect(k == ["state:state:cluster", "alarms:alarmTriggered", "services:serviceRequest", "state:state:cluster", "state:state:cluster"])
    }
}

private extension String {
    func replacingSeed(_ seed: Int) -> String {
        split(separator: "\n", omittingEmptySubsequences: false).map { $0.hasPrefix("seed = ") ? "seed = \(seed)" : String($0) }.joined(separator: "\n")
    }
}
