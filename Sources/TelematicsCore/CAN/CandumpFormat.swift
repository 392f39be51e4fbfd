/// The text forms can-utils uses for frames: `123#DEADBEEF` (cansend, lib.c `parse_canframe`)
/// and the `candump -l` log line `(1436509052.249713) vcan0 123#DEADBEEF`.
///
/// Both directions are byte-compatible with can-utils: a log written here replays with
/// `canplayer`, and a log from `candump -l` reads here.
public enum CandumpFormat {
    /// Parses `ID#DATA`, `ID#R[len]`, `ID##FLAGSDATA`; a `.` between bytes is allowed.
    public static func parseFrame(_ text: Substring, line: Int = 1, column: Int = 1) throws(ParseError) -> CANFrame {
        try withBytes(text) { (buf) throws(ParseError) in try parseFrame(bytes: buf, line: line, column: column) }
    }

    /// The same, on UTF-8 bytes (the log reader's hot path: no string is built).
    public static func parseFrame(bytes: UnsafeBufferPointer<UInt8>, line: Int = 1, column: Int = 1) throws(ParseError) -> CANFrame {
        func fail(_ at: Int, _ msg: String) -> ParseError {
            ParseError(line: line, column: column + at, msg)
        }
        guard let hash = bytes.firstIndex(of: UInt8(ascii: "#")) else {
            throw fail(0, "expected '#' between identifier and data in '\(String(decoding: bytes, as: UTF8.self))'")
        }
        let idLen = hash
        guard idLen == 3 || idLen == 8 else {
            throw fail(0, "identifier must be 3 hex digits (11-bit) or 8 (29-bit), found \(idLen) characters")
        }
        var id: UInt32 = 0
        for i in 0..<idLen {
            guard let n = hexValue(bytes[i]) else { throw fail(i, "'\(Character(UnicodeScalar(bytes[i])))' is not a hex digit in the identifier") }
            id = id << 4 | UInt32(n)
        }
        var frame = CANFrame(id: 0, data: [])
        if idLen == 3 {
            guard id <= 0x7FF else { throw fail(0, "11-bit identifier \(hex(id)) is above 0x7FF") }
            frame.id = id
            frame.isExtended = false
        } else if id & 0x2000_0000 != 0 {
            // CAN_ERR_FLAG: an error frame; the low 29 bits are the error class.
            frame.isError = true
            frame.isExtended = false
            frame.id = id & 0x1FFF_FFFF
        } else {
            guard id <= 0x1FFF_FFFF else { throw fail(0, "29-bit identifier \(hex(id)) is above 0x1FFFFFFF") }
            frame.id = id
            frame.isExtended = true
        }
        var i = hash + 1
        var maxLen = 8
        if i < bytes.count, bytes[i] == UInt8(ascii: "#") {
            // CAN FD: one flags nibble (BRS = 1, ESI = 2), then up to 64 bytes.
            i += 1
            guard i < bytes.count, let flags = hexValue(bytes[i]) else {
                throw fail(i, "CAN FD frame needs a flags nibble after '##'")
            }
            frame.isFD = true
            frame.bitRateSwitch = flags & 1 != 0
            frame.errorStateIndicator = flags & 2 != 0
            maxLen = 64
            i += 1
        } else if i < bytes.count, bytes[i] == UInt8(ascii: "R") || bytes[i] == UInt8(ascii: "r") {
            frame.isRemote = true
            i += 1
            if i < bytes.count {
                guard let n = hexValue(bytes[i]), n <= 8 else { throw fail(i, "remote frame length must be a digit 0-8") }
                frame.remoteLength = Int(n)
                i += 1
            }
            guard i == bytes.count else { throw fail(i, "unexpected text after remote frame") }
            return frame
        }
        var data: [UInt8] = []
        data.reserveCapacity(maxLen)
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: ".") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "_") && !frame.isFD {
                // len8_dlc suffix for 8-byte classic frames (`_9`..`_F`): accepted, not kept.
                guard data.count == 8, i + 2 == bytes.count, let d = hexValue(bytes[i + 1]), d > 8 else {
                    throw fail(i, "'_' may only carry a DLC 9-F after 8 data bytes")
                }
                break
            }
            guard i + 1 < bytes.count else { throw fail(i, "odd number of hex digits in data") }
            guard let hi = hexValue(bytes[i]) else { throw fail(i, "'\(Character(UnicodeScalar(bytes[i])))' is not a hex digit in the data") }
            guard let lo = hexValue(bytes[i + 1]) else { throw fail(i + 1, "'\(Character(UnicodeScalar(bytes[i + 1])))' is not a hex digit in the data") }
            data.append(hi << 4 | lo)
            guard data.count <= maxLen else {
                throw fail(i, frame.isFD ? "CAN FD data longer than 64 bytes" : "classic CAN data longer than 8 bytes (use ## for CAN FD)")
            }
            i += 2
        }
        if frame.isFD, !CANFrame.fdLengths.contains(data.count) {
            throw fail(hash, "CAN FD data length \(data.count) is not a valid FD length (0-8, 12, 16, 20, 24, 32, 48, 64)")
        }
        frame.data = data
        return frame
    }

    /// Formats a frame the way `candump -l` and `cansend` write it.
    public static func formatFrame(_ f: CANFrame) -> String {
        var s: String
        if f.isError {
            s = pad(hexDigits(f.id | 0x2000_0000), 8)
        } else if f.isExtended {
            s = pad(hexDigits(f.id), 8)
        } else {
            s = pad(hexDigits(f.id), 3)
        }
        if f.isRemote {
            s += "#R"
            if f.remoteLength > 0 { s += String(f.remoteLength) }
            return s
        }
        if f.isFD {
            let flags = (f.bitRateSwitch ? 1 : 0) | (f.errorStateIndicator ? 2 : 0)
            s += "##" + hexDigits(UInt32(flags))
        } else {
            s += "#"
        }
        s += hexBytes(f.data)
        return s
    }

    /// Parses one `candump -l` line: `(SECONDS.FRACTION) IFACE FRAME [T|R]`.
    public static func parseLogLine(_ text: Substring, line: Int) throws(ParseError) -> CANFrame {
        try withBytes(text) { (buf) throws(ParseError) in try parseLogLine(bytes: buf, line: line) }
    }

    /// The same, on UTF-8 bytes.
    public static func parseLogLine(bytes: UnsafeBufferPointer<UInt8>, line: Int) throws(ParseError) -> CANFrame {
        var i = 0
        let n = bytes.count
        while i < n, bytes[i] == UInt8(ascii: " ") { i += 1 }
        guard i < n, bytes[i] == UInt8(ascii: "(") else {
            throw ParseError(line: line, column: i + 1, "expected '(' starting the timestamp")
        }
        i += 1
        var seconds: Int64 = 0
        var digits = 0
        while i < n, let d = decimalValue(bytes[i]) {
            seconds = seconds &* 10 &+ Int64(d); i += 1; digits += 1
            // Nanoseconds since 1970 fit an Int64 until 2262: ten digits of seconds and a little more.
            guard digits <= 12, seconds <= Timestamp.maximumSeconds else {
                throw ParseError(line: line, column: i, "timestamp seconds out of range (at most \(Timestamp.maximumSeconds))")
            }
        }
        guard digits > 0, i < n, bytes[i] == UInt8(ascii: ".") else {
            throw ParseError(line: line, column: i + 1, "timestamp must be SECONDS.FRACTION")
        }
        i += 1
        var nanos: Int64 = 0
        var fracDigits = 0
        while i < n, let d = decimalValue(bytes[i]) {
            if fracDigits < 9 { nanos = nanos * 10 + Int64(d) }
            fracDigits += 1; i += 1
        }
        guard fracDigits > 0 else { throw ParseError(line: line, column: i + 1, "timestamp has no fraction digits") }
        for _ in fracDigits..<max(fracDigits, 9) { nanos *= 10 }
        guard i < n, bytes[i] == UInt8(ascii: ")") else {
            throw ParseError(line: line, column: i + 1, "expected ')' closing the timestamp")
        }
        i += 1
        // Up to three space-separated fields: interface, frame, and an optional T/R marker
        // (found without an array: this runs for every frame of a replayed log).
        var j = i
        func nextField() -> Range<Int>? {
            while j < n, bytes[j] == UInt8(ascii: " ") { j += 1 }
            guard j < n else { return nil }
            let start = j
            while j < n, bytes[j] != UInt8(ascii: " ") { j += 1 }
            return start..<j
        }
        guard let interface = nextField(), let f = nextField() else {
            throw ParseError(line: line, column: i + 1, "expected an interface name and a frame after the timestamp")
        }
        if let extra = nextField() {
            let marker = extra.count == 1 && (bytes[extra.lowerBound] == UInt8(ascii: "T") || bytes[extra.lowerBound] == UInt8(ascii: "R"))
            guard marker, nextField() == nil else {
                let rest = String(decoding: UnsafeBufferPointer(rebasing: bytes[extra.lowerBound..<n]), as: UTF8.self)
                throw ParseError(line: line, column: i + 1, "unexpected text after the frame: '\(rest)'")
            }
        }
        var frame = try parseFrame(bytes: UnsafeBufferPointer(rebasing: bytes[f]), line: line, column: f.lowerBound + 1)
        frame.interface = String(decoding: UnsafeBufferPointer(rebasing: bytes[interface]), as: UTF8.self)
        frame.timestamp = Timestamp(seconds: seconds, nanoseconds: nanos)
        return frame
    }

    /// Formats a frame as one `candump -l` line (without the newline).
    public static func formatLogLine(_ f: CANFrame) -> String {
        "(" + f.timestamp.candumpText + ") " + f.interface + " " + formatFrame(f)
    }
}

/// Runs a byte parser on a substring's UTF-8, keeping the typed error.
func withBytes<R>(_ text: Substring, _ body: (UnsafeBufferPointer<UInt8>) throws(ParseError) -> R) throws(ParseError) -> R {
    var copy = String(text)
    let result: Result<R, ParseError> = copy.withUTF8 { buf in Result { () throws(ParseError) -> R in try body(buf) } }
    return try result.get()
}

/// A hex digit's value (either case), or nil: candump text, and the portal's `%XX` escapes.
@inline(__always)
public func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
    default: nil
    }
}

@inline(__always)
func decimalValue(_ c: UInt8) -> UInt8? {
    c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") ? c - UInt8(ascii: "0") : nil
}

private let hexAlphabet: [UInt8] = Array("0123456789ABCDEF".utf8)

/// Upper-case hex digits of `v`, no prefix, no padding.
public func hexDigits(_ v: UInt32) -> String {
    String(v, radix: 16, uppercase: true)
}

/// `0x`-prefixed upper-case hex, as the tools print identifiers.
public func hex(_ v: UInt32) -> String { "0x" + hexDigits(v) }

/// The bytes of a hex string (two digits a byte, either case); nil when it is not hex.
public func bytes(fromHex text: String) -> [UInt8]? {
    let chars = Array(text.utf8)
    guard chars.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(chars.count / 2)
    for i in stride(from: 0, to: chars.count, by: 2) {
        guard let hi = hexValue(chars[i]), let lo = hexValue(chars[i + 1]) else { return nil }
        out.append(hi << 4 | lo)
    }
    return out
}

/// Upper-case hex of a byte string, two digits a byte, no separators.
public func hexBytes(_ data: [UInt8]) -> String {
    var out = [UInt8]()
    out.reserveCapacity(data.count * 2)
    for b in data {
        out.append(hexAlphabet[Int(b >> 4)])
        out.append(hexAlphabet[Int(b & 0xF)])
    }
    return String(decoding: out, as: UTF8.self)
}
