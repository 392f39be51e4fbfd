/// A fix as gpsd reports it (a TPV report), before any judgement. NaN or nil where the
/// receiver gave nothing.
public struct GNSSFix: Sendable, Equatable {
    /// 0 not seen, 1 no fix, 2 two-dimensional, 3 three-dimensional.
    public var mode: Int
    /// UTC time of the fix, when the receiver gave one.
    public var time: Timestamp?
    public var latitude: Double
    public var longitude: Double
    public var altitude: Double = .nan
    /// Speed over ground, m/s.
    public var speed: Double = .nan
    /// Course over ground, degrees clockwise from true north.
    public var track: Double = .nan
    /// gpsd's horizontal error estimate, and the per-axis ones (metres, 95 %).
    public var eph: Double = .nan
    public var epx: Double = .nan
    public var epy: Double = .nan
    public var satellites: Int?

    public init(mode: Int, time: Timestamp? = nil, latitude: Double, longitude: Double) {
        self.mode = mode
        self.time = time
        self.latitude = latitude
        self.longitude = longitude
    }
}

/// A fix that passed the filter, with what the unit concluded about it.
public struct FilteredFix: Sendable, Equatable {
    public var latitude: Double
    public var longitude: Double
    public var mode: Int
    /// UTC time of the fix (the receiver's), when known.
    public var utc: Timestamp?
    /// When the unit received it (its monotonic clock): the age is measured from here.
    public var receivedAt: Timestamp
    /// Horizontal error at 95 % confidence, metres, when the receiver estimated it.
    public var error95: Double?
    /// Course over ground; nil below the minimum speed (standing still, it is noise).
    public var direction: Double?
    public var speed: Double?
    public var satellites: Int?
    /// 95 % within the trust radius, and not a jump.
    public var trusted: Bool
    /// Physically impossible from the last good fix (and not confirmed by the next one).
    public var jump: Bool
}

/// Turns gpsd's fixes into positions the unit can use: no-fix and incomplete reports are
/// refused, the error estimate decides trust (EN 15722: 95 % within 150 m), the direction is
/// kept only while moving, and impossible jumps are flagged. Time is injected.
public struct GNSSFilter: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// A fix older than this (since it arrived) is stale: no current position.
        public var maximumAgeMs: Int64 = 3_000
        public var trustRadiusMeters: Double = 150
        /// Below this speed (m/s) the course is noise.
        public var minimumSpeedForDirection: Double = 1.5
        /// Faster than this (m/s) between two fixes is impossible for a car: a jump.
        public var maximumPlausibleSpeed: Double = 100
        public init() {}
    }

    public enum Rejection: String, Sendable, Equatable {
        case noFix, missingCoordinates, outOfRange
    }

    public let configuration: Configuration
    public private(set) var current: FilteredFix?
    public private(set) var lastTrusted: FilteredFix?
    /// The last fix that was not a jump, and a jump not yet confirmed.
    private var lastGood: FilteredFix?
    private var pendingJump: FilteredFix?
    public private(set) var accepted = 0
    public private(set) var rejected: [Rejection: Int] = [:]
    public private(set) var jumps = 0
    /// Times a fix was lost after having one (a tunnel).
    public private(set) var fixLosses = 0
    /// Every report taken, accepted or not.
    public var reports: Int { accepted + rejected.values.reduce(0, +) }

    public init(configuration: Configuration = .init()) { self.configuration = configuration }

    /// Takes one report; returns the filtered fix, or why it was refused.
    @discardableResult
    public mutating func accept(_ fix: GNSSFix, receivedAt: Timestamp) -> Result<FilteredFix, RejectionError> {
        guard fix.mode >= 2 else {
            if current != nil, fix.mode == 1 { fixLosses += 1; current = nil }
            return refuse(.noFix)
        }
        guard fix.latitude.isFinite, fix.longitude.isFinite else { return refuse(.missingCoordinates) }
        guard abs(fix.latitude) <= 90, abs(fix.longitude) <= 180 else { return refuse(.outOfRange) }
        // The larger of gpsd's estimates: its per-axis errors come from the satellite geometry
        // it sees, eph from the receiver's own HDOP; trust must not be claimed on the better one.
        let perAxis = fix.epx.isFinite && fix.epy.isFinite ? (fix.epx * fix.epx + fix.epy * fix.epy).squareRoot() : nil
        let horizontal = fix.eph.isFinite ? fix.eph : nil
        let error95: Double? = switch (perAxis, horizontal) {
        case let (a?, b?): max(a, b)
        case let (a?, nil): a
        case let (nil, b?): b
        case (nil, nil): nil
        }
        let speed: Double? = fix.speed.isFinite ? fix.speed : nil
        var f = FilteredFix(
            latitude: fix.latitude, longitude: fix.longitude, mode: fix.mode, utc: fix.time, receivedAt: receivedAt,
            error95: error95, direction: nil, speed: speed, satellites: fix.satellites, trusted: false, jump: false
        )
        if let speed, speed >= configuration.minimumSpeedForDirection, fix.track.isFinite { f.direction = fix.track }
        if let good = lastGood, !plausible(from: good, to: f) {
            // A jump, unless it confirms the previous jump (the car really is there).
            if let pending = pendingJump, plausible(from: pending, to: f) {
                pendingJump = nil
            } else {
                f.jump = true
                pendingJump = f
                jumps += 1
            }
        } else {
            pendingJump = nil
        }
        f.trusted = !f.jump && (error95.map { $0 <= configuration.trustRadiusMeters } ?? false)
        if !f.jump { lastGood = f }
        if f.trusted { lastTrusted = f }
        current = f
        accepted += 1
        return .success(f)
    }

    public struct RejectionError: Error, Sendable, Equatable {
        public var reason: Rejection
    }

    private mutating func refuse(_ r: Rejection) -> Result<FilteredFix, RejectionError> {
        rejected[r, default: 0] += 1
        return .failure(RejectionError(reason: r))
    }

    /// Whether the car could have gone from `a` to `b` in the time between them.
    func plausible(from a: FilteredFix, to b: FilteredFix) -> Bool {
        let seconds: Double
        if let ta = a.utc, let tb = b.utc {
            seconds = Double(tb.nanoseconds - ta.nanoseconds) / 1e9
        } else {
            seconds = Double(b.receivedAt.nanoseconds - a.receivedAt.nanoseconds) / 1e9
        }
        let distance = approximateDistanceMeters(a.latitude, a.longitude, b.latitude, b.longitude)
        // Allow the error estimates on top, and a floor of one second between reports.
        let slack = (a.error95 ?? 0) + (b.error95 ?? 0)
        return distance <= configuration.maximumPlausibleSpeed * max(1, abs(seconds)) + slack
    }

    /// The current fix while it is fresh.
    public func fresh(now: Timestamp) -> FilteredFix? {
        guard let c = current, now.milliseconds(since: c.receivedAt) <= configuration.maximumAgeMs else { return nil }
        return c
    }
}

/// Distance between two positions, metres: the equirectangular approximation on the mean
/// Earth sphere, within 0.1 % up to a few hundred kilometres and the right order beyond,
/// which is what a plausibility check needs (the core has no libm).
public func approximateDistanceMeters(_ lat1: Double, _ lon1: Double, _ lat2: Double, _ lon2: Double) -> Double {
    let r = 6_371_008.8
    let rad = Double.pi / 180
    var dLon = (lon2 - lon1).truncatingRemainder(dividingBy: 360)
    if dLon > 180 { dLon -= 360 } else if dLon < -180 { dLon += 360 }
    let x = dLon * rad * cosine((lat1 + lat2) / 2 * rad)
    let y = (lat2 - lat1) * rad
    return r * (x * x + y * y).squareRoot()
}

/// cos(x) for |x| <= pi/2 (a latitude), by its Taylor series to the 14th power (error < 1e-11).
func cosine(_ x: Double) -> Double {
    let x2 = x * x
    var term = 1.0
    var sum = 1.0
    for n in stride(from: 2, through: 14, by: 2) {
        term *= -x2 / Double((n - 1) * n)
        sum += term
    }
    return sum
}
