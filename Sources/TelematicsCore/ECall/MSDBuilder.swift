/// A position fix as the eCall uses it.
public struct PositionFix: Sendable, Equatable {
    /// Degrees, WGS-84.
    public var latitude: Double
    public var longitude: Double
    /// When the receiver took the fix (monotonic milliseconds of the shell).
    public var time: ECallInstant
    /// Horizontal error estimate in metres at 95 % confidence, if the receiver gave one.
    public var horizontalError95: Double?
    /// Course over ground in degrees clockwise from true north, if known.
    public var track: Double?
    /// Speed over ground in m/s, if known.
    public var speed: Double?
    /// The receiver's own time of the fix (UTC milliseconds), if it gave one: the spacing of
    /// the recent positions is measured with it.
    public var fixTimeMs: Int64?

    public init(latitude: Double, longitude: Double, time: ECallInstant, horizontalError95: Double? = nil,
                track: Double? = nil, speed: Double? = nil, fixTimeMs: Int64? = nil) {
        self.latitude = latitude
        self.longitude = longitude
        self.time = time
        self.horizontalError95 = horizontalError95
        self.track = track
        self.speed = speed
        self.fixTimeMs = fixTimeMs
    }

    /// Milliseconds from `earlier` to `self`: by the receiver's clock when both fixes carry
    /// it, by the unit's otherwise.
    public func milliseconds(since earlier: PositionFix) -> Int64 {
        if let a = earlier.fixTimeMs, let b = fixTimeMs { return b - a }
        return time - earlier.time
    }
}

/// The last three fixes, for the eCall only. Privacy (Regulation (EU) 2015/758): at most three
/// positions, in memory, continuously overwritten, and not readable from outside: the only
/// way out is `fixesForTrigger`, which the eCall service calls when a call is triggered.
public struct RecentPositions: Sendable {
    private var fixes: [PositionFix] = []

    public init() {}

    /// Keeps the newest three. With `spacingMs`, the newest is always the latest fix but the
    /// two before it lie at least that far apart, so that N1 and N2 show where the car came
    /// from rather than the last second of it.
    public mutating func record(_ fix: PositionFix, spacingMs: Int64 = 0) {
        // The latest stays only once it lies `spacingMs` after the one before it.
        if fixes.count >= 2, fixes[fixes.count - 1].milliseconds(since: fixes[fixes.count - 2]) < spacingMs {
            fixes[fixes.count - 1] = fix
            return
        }
        fixes.append(fix)
        if fixes.count > 3 { fixes.removeFirst(fixes.count - 3) }
    }

    /// How many fixes are held (at most 3), for status and tests; never the positions.
    public var count: Int { fixes.count }

    /// When the newest fix was taken (for the self-test); never where.
    public var newestTime: ECallInstant? { fixes.last?.time }

    /// The fixes, newest first, handed to the MSD builder at a trigger.
    public func fixesForTrigger() -> [PositionFix] { fixes.reversed() }
}

/// What the car contributes to an MSD.
public struct MSDVehicleData: Sendable, Equatable {
    public var vin: String
    public var vehicleType: Int
    public var propulsion: [Bool]
    /// nil when the seat occupancy is unknown.
    public var occupants: Int?

    public init(vin: String, vehicleType: Int, propulsion: [Bool], occupants: Int?) {
        self.vin = vin
        self.vehicleType = vehicleType
        self.propulsion = propulsion
        self.occupants = occupants
    }

    /// From the vehicle profile and the seat-occupancy quantities (nil when not available).
    public init(profile: VehicleProfile, occupiedSeats: [Bool?]) {
        vin = profile.vin.value
        let categories = ["M1": 0, "M2": 1, "M3": 2, "N1": 3, "N2": 4, "N3": 5, "L1e": 6, "L2e": 7,
                          "L3e": 8, "L4e": 9, "L5e": 10, "L6e": 11, "L7e": 12]
        vehicleType = categories[profile.category] ?? 22
        var flags = [Bool](repeating: false, count: 7)
        for p in profile.propulsion {
            switch p {
            case .petrol: flags[0] = true
            case .diesel: flags[1] = true
            case .cng: flags[2] = true
            case .lpg: flags[3] = true
            case .electric: flags[4] = true
            case .hydrogen: flags[5] = true
            }
        }
        propulsion = flags
        // Unknown when any seat's status is unknown: a guess would mislead the PSAP.
        occupants = occupiedSeats.contains(where: { $0 == nil }) || occupiedSeats.isEmpty
            ? nil : occupiedSeats.filter { $0 == true }.count
    }
}

/// Builds the MSD of an eCall from the car and the last fixes (EN 15722 rules).
public struct MSDBuilder: Sendable {
    /// A fix older than this at the trigger is stale: no trusted position.
    public var maximumFixAgeMs: Int64 = 5_000
    /// positionCanBeTrusted needs 95 % confidence within this many metres.
    public var trustRadiusMeters: Double = 150
    /// Below this speed the course is noise: the direction is taken from an earlier fix (within
    /// the recent span), or sent as unknown.
    public var minimumSpeedForDirection: Double = 1.5
    /// N1 and N2, and the course of a car that has just stopped, must lie within this span of
    /// the current fix.
    public var recentSpanMs: Int64 = 15_000

    public init() {}

    /// The MSD for one transmission. `fixes` newest first (from `RecentPositions`); `now`
    /// is the shell's monotonic time at transmission; `timestamp` is frozen at the first
    /// generation; `messageIdentifier` comes from the state machine.
    public func build(
        vehicle: MSDVehicleData, kind: ECallKind, messageIdentifier: Int, timestamp: UInt32,
        fixes: [PositionFix], now: ECallInstant
    ) -> MSD {
        var msd = MSD(
            messageIdentifier: messageIdentifier, automaticActivation: kind == .automatic, testCall: kind == .test,
            positionCanBeTrusted: false, vehicleType: vehicle.vehicleType, vin: vehicle.vin,
            propulsion: vehicle.propulsion, timestamp: timestamp,
            latitude: MSD.unknownCoordinate, longitude: MSD.unknownCoordinate, direction: nil,
            recentLocationN1: .init(latitude: 0, longitude: 0), recentLocationN2: .init(latitude: 0, longitude: 0),
            numberOfOccupants: vehicle.occupants
        )
        guard let current = fixes.first else { return msd }
        msd.latitude = Self.milliarcseconds(current.latitude, limit: 324_000_000)
        msd.longitude = Self.milliarcseconds(current.longitude, limit: 648_000_000)
        let fresh = now - current.time <= maximumFixAgeMs
        msd.positionCanBeTrusted = fresh && (current.horizontalError95.map { $0 <= trustRadiusMeters } ?? false)
        // The direction of travel: the current fix's course while the car moves. A car the crash
        // has just stopped keeps the course it last moved on (the side of the road it was on):
        // the newest moving fix within the recent span. Standing longer, it is unknown.
        let recent = fixes.prefix(while: { current.milliseconds(since: $0) <= recentSpanMs })
        if fresh, let track = recent.lazy.compactMap(movingCourse).first {
            var t = track.truncatingRemainder(dividingBy: 360)
            if t < 0 { t += 360 }
            msd.direction = Int((t / 2).rounded()) % 180
        }
        // N1: the fix before the current one, N2: the one before that, as deltas; only
        // fixes within 15 s of the current one count.
        var previous = current
        for (i, fix) in fixes.dropFirst().prefix(2).enumerated() {
            guard current.milliseconds(since: fix) <= recentSpanMs else { break }
            let delta = MSD.LocationDelta(
                latitude: Self.delta(fix.latitude - previous.latitude),
                longitude: Self.delta(fix.longitude - previous.longitude)
            )
            if i == 0 { msd.recentLocationN1 = delta } else { msd.recentLocationN2 = delta }
            previous = fix
        }
        return msd
    }

    /// A fix's course over ground, when the car was moving fast enough for it to mean something.
    func movingCourse(_ fix: PositionFix) -> Double? {
        guard let track = fix.track, track.isFinite, let speed = fix.speed, speed >= minimumSpeedForDirection else { return nil }
        return track
    }

    static func milliarcseconds(_ degrees: Double, limit: Int32) -> Int32 {
        let mas = (degrees * 3_600_000).rounded()
        return Int32(max(-Double(limit), min(Double(limit), mas)))
    }

    /// A delta in units of 100 mas, held to the field's range: a jump larger than the
    /// field can carry is sent as its limit rather than failing the whole eCall.
    static func delta(_ degrees: Double) -> Int {
        let units = (degrees * 36_000).rounded()
        return Int(max(-512, min(511, units)))
    }
}
