import CGPS
import TelematicsCore

/// A connection to gpsd through libgps, watching its JSON reports. Use from one thread.
public final class GPSDClient {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    private let data: UnsafeMutablePointer<gps_data_t>
    private var open = false
    public let host: String
    public let port: String

    public init(host: String, port: String) {
        self.host = host
        self.port = port
        data = tcu_gps_new()
    }

    deinit {
        close()
        tcu_gps_free(data)
    }

    /// Connects and asks for a stream of reports.
    public func connect() throws(Failure) {
        close()
        var why = [CChar](repeating: 0, count: 256)
        guard tcu_gps_library(&why, why.count) != nil else {
            throw Failure(description: String(decoding: why.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        let rc = tcu_gps_open(data, host, port)
        guard rc == 0 else {
            throw Failure(description: "cannot connect to gpsd at \(host):\(port): \(String(cString: tcu_gps_error(rc)))")
        }
        open = true
        guard tcu_gps_watch(data) >= 0 else {
            close()
            throw Failure(description: "gpsd at \(host):\(port) refused the watch request")
        }
    }

    public func close() {
        if open { tcu_gps_close(data) }
        open = false
    }

    public enum Report: Sendable {
        /// A fix report (TPV), whatever its mode.
        case fix(GNSSFix)
        /// Something else (version, devices, sky view): nothing to do.
        case other
        /// Nothing arrived within the wait.
        case idle
    }

    /// Waits up to `timeoutMs` for a report; throws when the connection is gone.
    public func next(timeoutMs: Int32) throws(Failure) -> Report {
        guard open else { throw Failure(description: "not connected") }
        guard tcu_gps_wait(data, timeoutMs * 1000) == 1 else { return .idle }
        var raw = tcu_gps_fix()
        switch tcu_gps_read(data, &raw) {
        case -1:
            close()
            throw Failure(description: "gpsd at \(host):\(port) closed the connection")
        case 1:
            var fix = GNSSFix(mode: Int(raw.mode), latitude: raw.latitude, longitude: raw.longitude)
            if raw.time.isFinite { fix.time = Timestamp(nanoseconds: Int64(raw.time * 1e9)) }
            fix.altitude = raw.altitude
            fix.speed = raw.speed
            fix.track = raw.track
            fix.eph = raw.eph
            fix.epx = raw.epx
            fix.epy = raw.epy
            fix.satellites = raw.satellites >= 0 ? Int(raw.satellites) : nil
            return .fix(fix)
        default:
            return .other
        }
    }
}
