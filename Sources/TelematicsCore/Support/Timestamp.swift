/// A point in wall-clock time, nanoseconds since the Unix epoch.
///
/// The core never reads a clock: every time enters as an argument (a frame's kernel receive
/// time, a log's recorded time, or the shell's clock), so tests travel in time instead of
/// sleeping.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: Int64

    public init(nanoseconds: Int64) { self.nanoseconds = nanoseconds }

    /// The largest whole second a Timestamp holds (the year 2262).
    public static let maximumSeconds: Int64 = Int64.max / 1_000_000_000 - 1

    public init(seconds: Int64, nanoseconds: Int64 = 0) {
        self.nanoseconds = seconds * 1_000_000_000 + nanoseconds
    }

    public static func milliseconds(_ ms: Int64) -> Timestamp { Timestamp(nanoseconds: ms * 1_000_000) }

    public static let zero = Timestamp(nanoseconds: 0)

    public static func < (a: Timestamp, b: Timestamp) -> Bool { a.nanoseconds < b.nanoseconds }

    public func adding(milliseconds ms: Int64) -> Timestamp {
        Timestamp(nanoseconds: nanoseconds + ms * 1_000_000)
    }

    /// Milliseconds from `earlier` to `self` (negative when `earlier` is later).
    public func milliseconds(since earlier: Timestamp) -> Int64 {
        (nanoseconds - earlier.nanoseconds) / 1_000_000
    }

    /// Seconds as a Double, for JSON output.
    public var seconds: Double { Double(nanoseconds) / 1e9 }

    /// The candump form: `SECONDS.MICROS`, seconds zero-padded to 10 digits, micros to 6.
    public var candumpText: String {
        let micros = nanoseconds / 1000
        let sec = micros / 1_000_000
        let frac = micros % 1_000_000
        return pad(String(sec), 10) + "." + pad(String(frac), 6)
    }

    public var description: String { candumpText }
}

@inline(__always)
func pad(_ s: String, _ width: Int, with c: Character = "0") -> String {
    s.count >= width ? s : String(repeating: c, count: width - s.count) + s
}
