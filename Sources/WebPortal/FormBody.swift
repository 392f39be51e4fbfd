import TelematicsCore

/// An HTML form as a browser posts it (`application/x-www-form-urlencoded`, the WHATWG URL
/// standard's rules): `name=value` pairs joined by `&`, `+` for a space, `%XX` for any other
/// byte, UTF-8 text. A malformed body is refused whole with what was wrong and where, never
/// half-read: a `%` without two hex digits, text that is not UTF-8, a field twice, too many
/// fields.
public struct FormBody: Sendable, Equatable {
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// The most fields a form of the portal has is well below this.
    public static let maximumFields = 32

    public private(set) var fields: [String: String] = [:]

    public subscript(_ name: String) -> String? { fields[name] }

    public init(fields: [String: String]) { self.fields = fields }

    public init(parsing body: [UInt8]) throws(Failure) {
        if body.isEmpty { return }
        var count = 0
        var offset = 0
        for pair in body.split(separator: UInt8(ascii: "&"), omittingEmptySubsequences: false) {
            defer { offset += pair.count + 1 }
            if pair.isEmpty { continue }
            count += 1
            guard count <= Self.maximumFields else { throw Failure(description: "more than \(Self.maximumFields) fields") }
            let eq = pair.firstIndex(of: UInt8(ascii: "="))
            let name = try Self.decode(pair[pair.startIndex..<(eq ?? pair.endIndex)], at: offset)
            let value = try eq.map { i throws(Failure) in try Self.decode(pair[(i + 1)...], at: offset + (i - pair.startIndex) + 1) } ?? ""
            guard !name.isEmpty else { throw Failure(description: "a field without a name at byte \(offset)") }
            guard fields[name] == nil else { throw Failure(description: "the field '\(name.prefix(40))' is given twice") }
            fields[name] = value
        }
    }

    /// One name or value: `+` to a space, `%XX` to its byte, the whole checked as UTF-8.
    static func decode(_ raw: ArraySlice<UInt8>, at offset: Int) throws(Failure) -> String {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(raw.count)
        var i = raw.startIndex
        while i < raw.endIndex {
            let b = raw[i]
            if b == UInt8(ascii: "+") {
                bytes.append(UInt8(ascii: " "))
            } else if b == UInt8(ascii: "%") {
                guard i + 2 < raw.endIndex, let hi = hexValue(raw[i + 1]), let lo = hexValue(raw[i + 2]) else {
                    throw Failure(description: "a '%' not followed by two hex digits at byte \(offset + (i - raw.startIndex))")
                }
                bytes.append(hi << 4 | lo)
                i += 2
            } else {
                bytes.append(b)
            }
            i += 1
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw Failure(description: "text that is not UTF-8 near byte \(offset)")
        }
        return text
    }

    /// The form encoded again (names sorted): what a test posts.
    public var encoded: String {
        fields.keys.sorted().map { Self.encode($0) + "=" + Self.encode(fields[$0]!) }.joined(separator: "&")
    }

    static func encode(_ s: String) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "*"):
                out.unicodeScalars.append(Unicode.Scalar(b))
            case UInt8(ascii: " "): out += "+"
            default:
                let digits = Array("0123456789ABCDEF".unicodeScalars)
                out += "%"
                out.unicodeScalars.append(digits[Int(b >> 4)])
                out.unicodeScalars.append(digits[Int(b & 15)])
            }
        }
        return out
    }
}
