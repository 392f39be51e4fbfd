import Testing
@testable import TelematicsCore

@Suite("GNSS filter and parking position")
struct GNSSFilterTests {
    static let lat = 41.4745, lon = 1.9305

    func fix(_ seconds: Int64, lat: Double = lat, lon: Double = lon, mode: Int = 3, eph: Double = 17, speed: Double = 0,
             track: Double = 90) -> GNSSFix {
        var f = GNSSFix(mode: mode, time: Timestamp(seconds: 1_764_000_000 + seconds), latitude: lat, longitude: lon)
        f.eph = eph
        f.speed = speed
        f.track = track
        return f
    }

    func at(_ seconds: Int64) -> Timestamp { Timestamp(seconds: 1_000 + seconds) }

    @Test("no-fix, incomplete and impossible reports are refused with the reason")
    func refusals() {
        var g = GNSSFilter()
        #expect(g.accept(fix(0, mode: 1), receivedAt: at(0)) == .failure(.init(reason: .noFix)))
        #expect(g.accept(fix(0, lat: .nan), receivedAt: at(0)) == .failure(.init(reason: .missingCoordinates)))
        #expect(g.accept(fix(0, lat: 91), receivedAt: at(0)) == .failure(.init(reason: .outOfRange)))
        #expect(g.current == nil && g.reports == 3 && g.accepted == 0)
    }

    @Test("trust follows the 95 % error against the 150 m radius; no estimate is no trust")
    func trust() throws {
        var g = GNSSFilter()
        #expect(try g.accept(fix(0, eph: 17), receivedAt: at(0)).get().trusted)
        #expect(try !g.accept(fix(1, eph: 228), receivedAt: at(1)).get().trusted)
        #expect(try !g.accept(fix(2, eph: .nan), receivedAt: at(2)).get().trusted)
        var perAxis = fix(3, eph: .nan)
        perAxis.epx = 100
        perAxis.epy = 100
        // Per-axis 100 m each: 141 m horizontally, inside the radius.
        #expect(try g.accept(perAxis, receivedAt: at(3)).get().trusted)
        #expect(g.lastTrusted?.utc == Timestamp(seconds: 1_764_000_003))
        // Both estimates: the larger decides.
        var both = fix(4, eph: 228)
        both.epx = 10
        both.epy = 10
        #expect(try g.accept(both, receivedAt: at(4)).get().error95 == 228)
    }

    @Test("a fix is current while it is fresh, measured from when it arrived")
    func staleness() {
        var g = GNSSFilter()
        g.accept(fix(0), receivedAt: at(0))
        #expect(g.fresh(now: at(3)) != nil)
        #expect(g.fresh(now: at(4)) == nil)
    }

    @Test("the direction is kept only above the minimum speed")
    func direction() throws {
        var g = GNSSFilter()
        #expect(try g.accept(fix(0, speed: 0.3, track: 211), receivedAt: at(0)).get().direction == nil)
        #expect(try g.accept(fix(1, speed: 13.9, track: 75), receivedAt: at(1)).get().direction == 75)
    }

    @Test("an impossible jump is flagged and not trusted; coming back is not a jump; a confirmed move is accepted")
    func jumps() throws {
        var g = GNSSFilter()
        g.accept(fix(0), receivedAt: at(0))
        g.accept(fix(1, lon: Self.lon + 0.0002), receivedAt: at(1))  // 17 m in a second
        let far = try g.accept(fix(2, lat: Self.lat + 0.45), receivedAt: at(2)).get()  // 50 km in a second
        #expect(far.jump && !far.trusted && g.jumps == 1)
        #expect(g.lastTrusted?.latitude == Self.lat)
        let back = try g.accept(fix(3, lon: Self.lon + 0.0004), receivedAt: at(3)).get()
        #expect(!back.jump && back.trusted && g.jumps == 1)
        // A real relocation (after a long time without fixes the receiver is elsewhere): the
        // first fix there is a jump, the second one confirms it.
        var h = GNSSFilter()
        h.accept(fix(0), receivedAt: at(0))
        #expect(try h.accept(fix(1, lat: Self.lat + 1), receivedAt: at(1)).get().jump)
        #expect(try !h.accept(fix(2, lat: Self.lat + 1.0001), receivedAt: at(2)).get().jump)
        #expect(h.jumps == 1)
    }

    @Test("a lost fix after having one counts as a loss")
    func losses() {
        var g = GNSSFilter()
        g.accept(fix(0, mode: 1), receivedAt: at(0))
        #expect(g.fixLosses == 0)
        g.accept(fix(1), receivedAt: at(1))
        g.accept(fix(2, mode: 1), receivedAt: at(2))
        g.accept(fix(3, mode: 1), receivedAt: at(3))
        #expect(g.fixLosses == 1 && g.current == nil && g.lastTrusted != nil)
    }

    @Test("distances: one degree of latitude is 111.2 km; longitude shrinks with the cosine of the latitude")
    func distance() {
        #expect(abs(approximateDistanceMeters(0, 0, 1, 0) - 111_195) < 10)
        #expect(abs(approximateDistanceMeters(60, 0, 60, 1) - 55_597) < 10)
        #expect(abs(approximateDistanceMeters(0, 179.9, 0, -179.9) - 22_239) < 10)
    }

    @Test("ignition off takes the last trusted fix as the parking position; ignition on clears it")
    func parking() throws {
        var g = GNSSFilter()
        g.accept(fix(0), receivedAt: at(0))
        g.accept(fix(1, eph: 500), receivedAt: at(1))
        var p = ParkingTracker()
        let off = Timestamp(seconds: 1_764_000_010)
        let parked = p.ignition(on: false, at: off, lastTrusted: g.lastTrusted)
        #expect(parked)
        #expect(p.position == ParkingPosition(latitude: Self.lat, longitude: Self.lon, fixTime: Timestamp(seconds: 1_764_000_000), parkedAt: off))
        let driving = p.ignition(on: true, at: off.adding(milliseconds: 60_000), lastTrusted: g.lastTrusted)
        #expect(driving && p.position == nil)
        // Never a trusted fix: no parking position.
        let none = p.ignition(on: false, at: off, lastTrusted: nil)
        #expect(!none && p.position == nil)
    }

    @Test("the parking position is stored as JSON and read back; a damaged file names the problem")
    func parkingFile() throws {
        let p = ParkingPosition(latitude: 41.5, longitude: 1.9, fixTime: .milliseconds(1_764_000_000_000), parkedAt: .milliseconds(1_764_000_005_000))
        #expect(try ParkingPosition.parse(p.json.text, source: "parking.json") == p)
        #expect(throws: ParseError.self) { try ParkingPosition.parse("{\"latitude\":99,\"longitude\":0,\"fixTime\":0,\"parkedAt\":0}", source: "p") }
        do {
            _ = try ParkingPosition.parse("{\"latitude\":1}", source: "parking.json")
            Issue.record("accepted")
        } catch {
            #expect(error.description.contains("parking.json") && error.description.contains("longitude"))
        }
    }

    @Test("the eCall's recent positions: the newest always the latest fix, the two before it spaced apart")
    func recentSpacing() {
        var r = RecentPositions()
        for t in stride(from: Int64(0), through: 7_000, by: 1_000) {
            r.record(PositionFix(latitude: Double(t), longitude: 0, time: t), spacingMs: 3_000)
        }
        #expect(r.fixesForTrigger().map(\.time) == [7_000, 6_000, 3_000])
        #expect(r.newestTime == 7_000)
    }
}
