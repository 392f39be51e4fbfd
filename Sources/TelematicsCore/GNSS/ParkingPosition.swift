/// Where the car was parked: the last trusted fix when the ignition went off. While the car is
/// in use there is none (the real service answers "no content").
public struct ParkingPosition: Sendable, Equatable {
    public var latitude: Double
    public var longitude: Double
    /// When the receiver took the fix (UTC); the parking time when the receiver gave none.
    public var fixTime: Timestamp
    /// When the ignition went off (UTC).
    public var parkedAt: Timestamp

    public init(latitude: Double, longitude: Double, fixTime: Timestamp, parkedAt: Timestamp) {
        self.latitude = latitude
        self.longitude = longitude
        self.fixTime = fixTime
        self.parkedAt = parkedAt
    }

    /// As stored and sent: degrees, and UTC milliseconds.
    public var json: JSON {
        .object([
            ("latitude", .number(latitude)), ("longitude", .number(longitude)),
            ("fixTime", .number(Double(fixTime.nanoseconds / 1_000_000))),
            ("parkedAt", .number(Double(parkedAt.nanoseconds / 1_000_000))),
        ])
    }

    /// Reads the stored form back; the error names what is wrong.
    public static func parse(_ text: String, source: String) throws(ParseError) -> ParkingPosition {
        let json: JSON
        do { json = try JSON.parse(text) } catch {
            throw ParseError(source: source, line: error.line, column: error.column, "not JSON: \(error.message)")
        }
        func number(_ key: String) throws(ParseError) -> Double {
            guard let v = json[key]?.numberValue, v.isFinite else {
                throw ParseError(source: source, line: 1, "\(key): expected a number")
            }
            return v
        }
        let lat = try number("latitude"), lon = try number("longitude")
        guard abs(lat) <= 90, abs(lon) <= 180 else {
            throw ParseError(source: source, line: 1, "the position \(lat), \(lon) is outside the globe")
        }
        return ParkingPosition(latitude: lat, longitude: lon, fixTime: .milliseconds(Int64(try number("fixTime"))),
                               parkedAt: .milliseconds(Int64(try number("parkedAt"))))
    }
}

/// Follows the ignition to keep the parking position.
public struct ParkingTracker: Sendable {
    public private(set) var position: ParkingPosition?

    public init(restored: ParkingPosition? = nil) { position = restored }

    /// The ignition changed at wall time `at`. Off: the last trusted fix becomes the parking
    /// position (none when there never was one). On: the car is in use, there is none.
    /// Returns whether the position changed.
    @discardableResult
    public mutating func ignition(on: Bool, at: Timestamp, lastTrusted: FilteredFix?) -> Bool {
        let before = position
        if on {
            position = nil
        } else if let fix = lastTrusted {
            position = ParkingPosition(latitude: fix.latitude, longitude: fix.longitude, fixTime: fix.utc ?? at, parkedAt: at)
        } else {
            position = nil
        }
        return position != before
    }
}
