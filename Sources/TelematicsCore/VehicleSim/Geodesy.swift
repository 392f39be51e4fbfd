/// Positions and the few trigonometric functions the simulated car needs to drive a route.
/// The core has no libm, so sine, arctangent and the bearing are computed here by series
/// after range reduction (errors below 1e-10 rad, far under a GNSS receiver's noise).

/// A WGS-84 position in degrees.
public struct GeoPoint: Sendable, Equatable, CustomStringConvertible {
    public var latitude: Double
    public var longitude: Double

    public init(latitude: Double, longitude: Double) {
        self.latitude = latitude
        self.longitude = longitude
    }

    /// Parses `LAT,LON` (decimal degrees); nil when either is not a finite number in range.
    public static func parse(_ text: Substring) -> GeoPoint? {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false)
        guard parts.count == 2, let lat = Double(parts[0]), let lon = Double(parts[1]),
              lat.isFinite, lon.isFinite, abs(lat) <= 90, abs(lon) <= 180 else { return nil }
        return GeoPoint(latitude: lat, longitude: lon)
    }

    public var description: String { "\(Geodesy.fixed(latitude, 6)),\(Geodesy.fixed(longitude, 6))" }
}

public enum Geodesy {
    static let earthRadius = 6_371_008.8
    static let radian = Double.pi / 180

    /// Distance in metres (the equirectangular approximation the GNSS filter uses).
    public static func distance(_ a: GeoPoint, _ b: GeoPoint) -> Double {
        approximateDistanceMeters(a.latitude, a.longitude, b.latitude, b.longitude)
    }

    /// Initial bearing from `a` to `b`, degrees clockwise from true north in [0, 360).
    public static func bearing(_ a: GeoPoint, _ b: GeoPoint) -> Double {
        var dLon = b.longitude - a.longitude
        if dLon > 180 { dLon -= 360 } else if dLon < -180 { dLon += 360 }
        let x = dLon * cosine((a.latitude + b.latitude) / 2 * radian)
        let y = b.latitude - a.latitude
        guard x != 0 || y != 0 else { return 0 }
        var deg = arctangent2(x, y) / radian
        if deg < 0 { deg += 360 }
        return deg >= 360 ? 0 : deg
    }

    /// The point `metres` from `a` toward `b` along the straight line (short legs of a route).
    public static func advance(from a: GeoPoint, toward b: GeoPoint, metres: Double) -> GeoPoint {
        let d = distance(a, b)
        guard d > 0, metres < d else { return b }
        let f = metres / d
        return GeoPoint(latitude: a.latitude + (b.latitude - a.latitude) * f, longitude: a.longitude + (b.longitude - a.longitude) * f)
    }

    /// The point `metres` from `a` on a heading (degrees from north).
    public static func move(_ a: GeoPoint, heading: Double, metres: Double) -> GeoPoint {
        let h = heading * radian
        let dLat = metres * sine(h + .pi / 2) / earthRadius / radian
        let dLon = metres * sine(h) / (earthRadius * cosine(a.latitude * radian)) / radian
        var lon = a.longitude + dLon
        if lon > 180 { lon -= 360 } else if lon < -180 { lon += 360 }
        return GeoPoint(latitude: min(90, max(-90, a.latitude + dLat)), longitude: lon)
    }

    /// sin(x) for any finite x.
    public static func sine(_ x: Double) -> Double {
        var r = x.truncatingRemainder(dividingBy: 2 * .pi)
        if r > .pi { r -= 2 * .pi } else if r < -.pi { r += 2 * .pi }
        // sin(pi - r) = sin(r) brings r into [-pi/2, pi/2].
        if r > .pi / 2 { r = .pi - r } else if r < -.pi / 2 { r = -.pi - r }
        let r2 = r * r
        var term = r
        var sum = r
        for n in stride(from: 3, through: 21, by: 2) {
            term *= -r2 / Double((n - 1) * n)
            sum += term
        }
        return sum
    }

    /// atan2(y, x) in radians, as libm defines it (here called with east, north).
    public static func arctangent2(_ y: Double, _ x: Double) -> Double {
        if x > 0 { return arctangent(y / x) }
        if x < 0 { return y >= 0 ? arctangent(y / x) + .pi : arctangent(y / x) - .pi }
        if y > 0 { return .pi / 2 }
        if y < 0 { return -.pi / 2 }
        return 0
    }

    /// atan(x): reduced twice by the half-angle identity, then its series.
    public static func arctangent(_ x: Double) -> Double {
        if x < 0 { return -arctangent(-x) }
        if x > 1 { return .pi / 2 - arctangent(1 / x) }
        // atan(x) = 2 atan(x / (1 + sqrt(1 + x^2))): twice brings x under 0.2.
        var r = x
        var scale = 1.0
        for _ in 0..<2 {
            r = r / (1 + (1 + r * r).squareRoot())
            scale *= 2
        }
        let r2 = r * r
        var term = r
        var sum = r
        for n in stride(from: 3, through: 25, by: 2) {
            term *= -r2
            sum += term / Double(n)
        }
        return sum * scale
    }

    /// `value` with `digits` decimals, rounded half away from zero (for NMEA and logs).
    public static func fixed(_ value: Double, _ digits: Int) -> String {
        guard value.isFinite else { return "nan" }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (abs(value) * scale).rounded()
        guard scaled < 9e15 else { return value < 0 ? "-big" : "big" }
        let n = Int64(scaled)
        let whole = n / Int64(scale)
        var frac = String(n % Int64(scale))
        while frac.count < digits { frac = "0" + frac }
        let sign = value < 0 && n != 0 ? "-" : ""
        return digits == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(frac)"
    }
}

extension GeoPoint {
    /// `{"lat": …, "lon": …}` from outside; nil when either is missing, not finite or out of range.
    public init?(json: JSON?) {
        guard let lat = json?["lat"]?.numberValue, let lon = json?["lon"]?.numberValue,
              lat.isFinite, lon.isFinite, abs(lat) <= 90, abs(lon) <= 180 else { return nil }
        self.init(latitude: lat, longitude: lon)
    }

    public var json: JSON { .object([("lat", .number(latitude)), ("lon", .number(longitude))]) }
}

extension Geodesy {
    /// Distance in metres from `p` to the segment a-b (on the same local flat projection).
    public static func distance(_ p: GeoPoint, toSegment a: GeoPoint, _ b: GeoPoint) -> Double {
        let k = cosine(p.latitude * radian)
        let ax = (a.longitude - p.longitude) * k, ay = a.latitude - p.latitude
        let dx = (b.longitude - a.longitude) * k, dy = b.latitude - a.latitude
        let len2 = dx * dx + dy * dy
        let t = len2 == 0 ? 0 : max(0, min(1, -(ax * dx + ay * dy) / len2))
        let x = ax + t * dx, y = ay + t * dy
        return (x * x + y * y).squareRoot() * radian * earthRadius
    }
}
