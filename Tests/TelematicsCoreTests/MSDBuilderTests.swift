import Testing
@testable import TelematicsCore

@Suite("Building the MSD from the car")
struct MSDBuilderTests {
    let vehicle = MSDVehicleData(vin: "ECALLEXAMPLE02020", vehicleType: 0,
                                 propulsion: [true, false, false, false, true, false, false], occupants: 2)
    let now: ECallInstant = 100_000

    /// The standard's example position: 187996428 / 18859320 mas, heading east, the two
    /// earlier fixes 10 and 40 units of 100 mas further east... as deltas N1 (0, +10), N2 (0, +30).
    var exampleFixes: [PositionFix] {
        let lat = 187_996_428.0 / 3_600_000
        let lon = 18_859_320.0 / 3_600_000
        return [
            PositionFix(latitude: lat, longitude: lon, time: now - 500, horizontalError95: 12, track: 90, speed: 13.9),
            PositionFix(latitude: lat, longitude: lon + 1_000.0 / 3_600_000, time: now - 1_500),
            PositionFix(latitude: lat, longitude: lon + 4_000.0 / 3_600_000, time: now - 2_500),
        ]
    }

    @Test("the car's data and three fixes give the standard's example, byte for byte")
    func standardExample() throws {
        let msd = MSDBuilder().build(vehicle: vehicle, kind: .automatic, messageIdentifier: 1,
                                     timestamp: 1_579_992_331, fixes: exampleFixes, now: now)
        #expect(hexBytes(try msd.encode()) == MSDTests.standardExample)
    }

    @Test("no fix: position unknown, not trusted, direction unknown; it still encodes")
    func noFix() throws {
        let msd = MSDBuilder().build(vehicle: vehicle, kind: .manual, messageIdentifier: 1, timestamp: 5, fixes: [], now: now)
        #expect(msd.positionIsUnknown && !msd.positionCanBeTrusted && msd.direction == nil)
        #expect(!msd.automaticActivation && !msd.testCall)
        #expect(try MSD.decode(try msd.encode()) == msd)
    }

    @Test("a stale fix or a large error estimate is sent but not trusted")
    func trust() {
        var fixes = exampleFixes
        fixes[0].time = now - 6_000
        let stale = MSDBuilder().build(vehicle: vehicle, kind: .automatic, messageIdentifier: 1, timestamp: 5, fixes: fixes, now: now)
        #expect(!stale.positionCanBeTrusted && !stale.positionIsUnknown && stale.direction == nil)
        fixes = exampleFixes
        fixes[0].horizontalError95 = 151
        #expect(!MSDBuilder().build(vehicle: vehicle, kind: .automatic, messageIdentifier: 1, timestamp: 5, fixes: fixes, now: now).positionCanBeTrusted)
        fixes[0].horizontalError95 = nil
        #expect(!MSDBuilder().build(vehicle: vehicle, kind: .automatic, messageIdentifier: 1, timestamp: 5, fixes: fixes, now: now).positionCanBeTrusted)
    }

    @Test("standing still, the course is noise: direction unknown")
    func standing() {
        var fixes = exampleFixes
        fixes[0].speed = 0.4
        fixes[0].track = 273
        #expect(MSDBuilder().build(vehicle: vehicle, kind: .test, messageIdentifier: 1, timestamp: 5, fixes: fixes, now: now).direction == nil)
        fixes[0].speed = 5
        fixes[0].track = 359.5
        #expect(MSDBuilder().build(vehicle: vehicle, kind: .test, messageIdentifier: 1, timestamp: 5, fixes: fixes, now: now).direction == 0)
    }

    @Test("a car the crash has just stopped keeps the course it last moved on; standing for more than 15 s, or on a stale fix, unknown")
    func stoppedByTheCrash() {
        let build = { (fixes: [PositionFix]) in
            MSDBuilder().build(vehicle: vehicle, kind: .automatic, messageIdentifier: 1, timestamp: 5, fixes: fixes, now: now).direction
        }
        var fixes = exampleFixes
        fixes[0].speed = 0
        fixes[0].track = 211
        fixes[1].speed = 13.9
        fixes[1].track = 75
        fixes[2].speed = 13.9
        fixes[2].track = 120
        // N1 (1 s before the current fix) moved at 75°: 37.5 in 2° steps, rounded.
        #expect(build(fixes) == 38)
        // N1 standing too: N2's course.
        fixes[1].speed = 0.2
        #expect(build(fixes) == 60)
        // The only moving fix lies more than 15 s before the current one.
        fixes[2].time = now - 500 - 15_001
        #expect(build(fixes) == nil)
        // A stale current fix: nothing is known of the car now.
        fixes = exampleFixes
        fixes[0].speed = 0
        fixes[1].speed = 13.9
        fixes[1].track = 75
        fixes[0].time = now - 6_000
        #expect(build(fixes) == nil)
    }

    @Test("fixes older than 15 s are not N1/N2; a jump beyond the field's range is held at its limit")
    func recentLocations() {
        var fixes = exampleFixes
        fixes[2].time = now - 20_000
        let m = MSDBuilder().build(vehicle: vehicle, kind: .automatic, messageIdentifier: 1, timestamp: 5, fixes: fixes, now: now)
        #expect(m.recentLocationN1 == .init(latitude: 0, longitude: 10))
        #expect(m.recentLocationN2 == .init(latitude: 0, longitude: 0))
        fixes = exampleFixes
        fixes[1].latitude += 1
        let jump = MSDBuilder().build(vehicle: vehicle, kind: .automatic, messageIdentifier: 1, timestamp: 5, fixes: fixes, now: now)
        #expect(jump.recentLocationN1?.latitude == 511)
        #expect(jump.recentLocationN2?.latitude == -512)
    }

    @Test("only the last three positions are kept")
    func ring() {
        var r = RecentPositions()
        for i in 0..<10 { r.record(PositionFix(latitude: Double(i), longitude: 0, time: Int64(i))) }
        #expect(r.count == 3)
        #expect(r.fixesForTrigger().map(\.latitude) == [9, 8, 7])
    }

    @Test("vehicle data from the profile and the seat occupancy")
    func vehicleData() throws {
        let profile = try VehicleProfile.parse(ProjectFiles.profile)
        let d = MSDVehicleData(profile: profile, occupiedSeats: [true, true, false, false, nil])
        #expect(d.vin == "VSSZZZKLZNR012345" && d.vehicleType == 0 && d.propulsion == [true, false, false, false, false, false, false])
        #expect(d.occupants == nil)
        #expect(MSDVehicleData(profile: profile, occupiedSeats: [true, true, false, false, false]).occupants == 2)
    }
}
