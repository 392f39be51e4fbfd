/// NMEA 0183 sentences for the simulated car's receiver (RMC, GGA, GSA once a second), as a
/// u-blox receiver on the head unit would give them to gpsd.
public enum NMEA {
    /// The `*hh` checksum: XOR of the bytes between `$` and `*`.
    public static func checksum(_ body: String) -> String {
        let x = body.utf8.reduce(UInt8(0), ^)
        let digits = Array("0123456789ABCDEF")
        return String([digits[Int(x >> 4)], digits[Int(x & 15)]])
    }

    public static func sentence(_ body: String) -> String { "$" + body + "*" + checksum(body) }

    /// One second's sentences. With no fix (a tunnel) RMC says V, GGA quality 0, GSA mode 1.
    public static func epoch(position p: GeoPoint?, speedKmh: Double, course: Double, utcMs: Int64) -> [String] {
        let (date, time) = civil(utcMs: utcMs)
        guard let p else {
            return [sentence("GPRMC,\(time),V,,,,,,,\(date),,,N"), sentence("GPGGA,\(time),,,,,0,00,,,,,,,"),
                    sentence("GPGSA,A,1,,,,,,,,,,,,,,,")]
        }
        let (lat, ns) = angle(p.latitude, degreeDigits: 2, positive: "N", negative: "S")
        let (lon, ew) = angle(p.longitude, degreeDigits: 3, positive: "E", negative: "W")
        let knots = Geodesy.fixed(max(0, speedKmh) / 1.852, 2)
        let cog = Geodesy.fixed(course, 1)
        return [
            sentence("GPRMC,\(time),A,\(lat),\(ns),\(lon),\(ew),\(knots),\(cog),\(date),,,A"),
            sentence("GPGGA,\(time),\(lat),\(ns),\(lon),\(ew),1,09,0.9,120.0,M,49.6,M,,"),
            sentence("GPGSA,A,3,01,02,03,04,05,06,07,08,09,,,,1.4,0.9,1.2"),
        ]
    }

    /// `ddmm.mmmm` (or `dddmm.mmmm`) and the hemisphere letter.
    static func angle(_ value: Double, degreeDigits: Int, positive: String, negative: String) -> (String, String) {
        let a = abs(value)
        var degrees = Int(a.rounded(.down))
        var minutes = (a - Double(degrees)) * 60
        if (minutes * 10_000).rounded() >= 600_000 { degrees += 1; minutes = 0 }
        var d = String(degrees)
        while d.count < degreeDigits { d = "0" + d }
        var m = Geodesy.fixed(minutes, 4)
        if minutes < 10 { m = "0" + m }
        return (d + m, value < 0 ? negative : positive)
    }

    /// `ddmmyy` and `hhmmss.ss` of a UTC time in milliseconds since 1970.
    public static func civil(utcMs: Int64) -> (date: String, time: String) {
        let ms = max(0, utcMs)
        let days = ms / 86_400_000
        let rem = ms % 86_400_000
        let (year, month, day) = civilDate(days: days)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let time = two(rem / 3_600_000) + two(rem / 60_000 % 60) + two(rem / 1_000 % 60) + "." + two(rem % 1_000 / 10)
        return (two(day) + two(month) + two(year % 100), time)
    }
}

extension SimulatedVehicle {
    /// Where the receiver puts the car now: nil in a tunnel; with drift, a slow wander of
    /// about 2 m around the position (a parked car's multipath), deterministic in time.
    public var receiverPosition: GeoPoint? {
        guard !gnssTunnel else { return nil }
        guard gnssDrift else { return position }
        let t = Double(now) / 1_000
        let north = 1.5 * Geodesy.sine(t / 7.3) + 0.5 * Geodesy.sine(t / 2.9 + 1)
        let east = 1.5 * Geodesy.sine(t / 11.1 + 2) + 0.5 * Geodesy.sine(t / 3.7)
        let p = Geodesy.move(position, heading: 0, metres: north)
        return Geodesy.move(p, heading: 90, metres: east)
    }

    /// The receiver's sentences for this second (`utcMs`: the wall clock of the shell).
    public func nmeaEpoch(utcMs: Int64) -> [String] {
        NMEA.epoch(position: receiverPosition, speedKmh: powertrain.speedKmh, course: heading, utcMs: utcMs)
    }

    /// The whole state as `tcu-car status --json` shows it (values rounded for reading).
    public var statusJSON: JSON {
        func r(_ x: Double, _ d: Int = 1) -> JSON {
            var s = 1.0
            for _ in 0..<d { s *= 10 }
            return .number((x * s).rounded() / s)
        }
        let b = body
        return .object([
            ("timeMs", .number(Double(now))),
            ("bus", .object([("awake", .bool(awake)), ("ignoredRequests", .number(Double(ignoredRequests))),
                             ("faults", .array(faults.map { .string($0.description) }.sorted { $0.stringValue! < $1.stringValue! }))])),
            ("ignition", .object([("keyPresent", .bool(ignition.keyPresent)), ("on", .bool(ignition.ignitionOn)),
                                  ("engineRunning", .bool(ignition.engineRunning))])),
            ("doors", .object(Opening.allCases.map { ($0.rawValue, .string(b.open.contains($0) ? "open" : "closed")) })),
            ("locks", .object([("central", .string(b.locked ? "locked" : "unlocked")), ("source", .string(b.lockSource.description))])),
            ("alarm", .object([("armed", .bool(b.alarmArmed)), ("sounding", .bool(b.alarmSounding(at: now))),
                               ("source", .string(b.alarmSource.description))])),
            ("windows", .object(WindowPosition.allCases.map { ($0.rawValue, r(b.window($0), 0)) } + [("sunroof", r(b.sunroof, 0))])),
            ("lights", .object([("switch", .number(Double(b.lightSwitch.rawValue))), ("hazard", .bool(b.hazardOn(at: now))),
                                ("honk", .bool(b.honking(at: now)))])),
            ("climate", .object([
                ("state", .string(["off", "heating", "cooling", "ventilation", "windowHeating"][climate.mode.rawValue])),
                ("remote", .bool(climate.remoteRunning)), ("remainingMin", .number(Double(climate.remainingMinutes(at: now)))),
                ("target", r(climate.targetTemperature)), ("cabin", r(climate.cabinTemperature)),
                ("outside", r(climate.outsideTemperature)), ("fan", .number(Double(climate.fanLevel))), ("ac", .bool(climate.acOn)),
                ("windowHeating", .bool(climate.windowHeatingFront)),
            ])),
            ("driving", .object([("speedKmh", r(powertrain.speedKmh)), ("targetKmh", r(powertrain.targetKmh)),
                                 ("direction", .number(Double(powertrain.direction))), ("odometerKm", r(powertrain.odometerKm, 2))])),
            ("position", .object([("latitude", r(position.latitude, 6)), ("longitude", r(position.longitude, 6)),
                                  ("heading", r(heading)), ("routeWaypoints", .number(Double(route.count))),
                                  ("routeRemainingM", r(routeRemainingMetres, 0)), ("arrivals", .number(Double(arrivals))),
                                  ("gnss", .string(gnssTunnel ? "noFix" : (gnssDrift ? "drift" : "fix")))])),
            ("cluster", .object([("fuelPercent", r(cluster.fuelPercent)), ("rangeKm", r(cluster.rangeKm, 0)),
                                 ("inspectionDays", r(cluster.inspectionDays, 0)), ("inspectionKm", r(cluster.inspectionKm, 0)),
                                 ("oilDays", r(cluster.oilDays, 0)), ("oilKm", r(cluster.oilKm, 0))])),
            ("airbag", .object([("crash", .bool(airbag.crashDetected)), ("severity", .number(Double(airbag.severity))),
                                ("directions", .string(Self.describe(airbag.directions))), ("deltaVKmh", r(airbag.deltaVKmh)),
                                ("deployed", .bool(airbag.warningLamp)),
                                ("occupied", .array(Seat.allCases.filter { airbag.occupied.contains($0) }.map { .string($0.rawValue) })),
                                ("belted", .array(Seat.allCases.filter { airbag.belted.contains($0) }.map { .string($0.rawValue) }))])),
            ("buttons", .array(RoofButton.allCases.filter { roof.pressed($0, at: now) }.map { .string($0.rawValue) })),
            ("battery", .object([("voltage", r(battery.voltage, 2)), ("soc", r(battery.stateOfCharge)), ("low", .bool(battery.low))])),
        ])
    }
}
