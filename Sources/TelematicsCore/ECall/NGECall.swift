// NG-eCall (EN 17184, RFC 8147): the eCall over SIP, in the core. What the SIP transport needs
// that is not SIP itself: the service URNs, the MSD as a body part referenced from Call-Info
// (RFC 7852's by-reference mechanism), the multipart body beside the SDP offer, the PSAP's
// EmergencyCallData.Control blocks (an acknowledgement, a request for a new MSD), and how a
// final response maps onto the machine's set-up outcomes. The SIP stack (parsing,
// transactions, dialogs) is libre's, in the ECallSIP adapter; nothing here does IO.

/// The names and mappings of NG-eCall.
public enum NGECall {
    /// The MSD's media type (RFC 8147, 10.1): EN 15722's UPER bytes, unchanged.
    public static let msdContentType = "application/EmergencyCallData.eCall.MSD"
    /// The metadata/control block (RFC 8147, 10.2): acknowledgements and requests.
    public static let controlContentType = "application/EmergencyCallData.Control+xml"
    /// The INFO package that carries an MSD within the call (RFC 8147, 6).
    public static let infoPackage = "EmergencyCallData.eCall.MSD"
    /// `purpose` of the Call-Info header field that references the MSD.
    public static let msdPurpose = "EmergencyCallData.eCall.MSD"

    /// The service URN an eCall is sent to (3GPP TS 24.229, 5.1.6.11); nil for a test call,
    /// which goes to a configured, non-emergency URI.
    public static func serviceURN(_ kind: ECallKind) -> String? {
        switch kind {
        case .automatic: "urn:service:sos.ecall.automatic"
        case .manual: "urn:service:sos.ecall.manual"
        case .test: nil
        }
    }

    /// The Call-Info value that references the MSD body part by its Content-ID.
    public static func callInfo(contentID: String) -> String { "<cid:\(contentID)>;purpose=\(msdPurpose)" }

    /// The Content-IDs that a message's Call-Info values reference for the MSD (`<cid:ID>` with
    /// `purpose=EmergencyCallData.eCall.MSD`), in order.
    public static func msdReferences(callInfo values: [String]) -> [String] {
        var ids: [String] = []
        for value in values {
            // A header field may hold several comma-separated values (no comma inside `<...>`).
            for item in splitOutsideAngles(value, separator: ",") {
                let parts = item.split(separator: ";").map { $0.trimmingSpaces }
                guard let uri = parts.first, uri.hasPrefix("<cid:"), uri.hasSuffix(">") else { continue }
                let purpose = parts.dropFirst().first { $0.lowercased().hasPrefix("purpose=") }
                guard let p = purpose, p.dropFirst("purpose=".count).trimmingQuotes == msdPurpose else { continue }
                ids.append(String(uri.dropFirst("<cid:".count).dropLast()))
            }
        }
        return ids
    }

    /// What a final failure response to the INVITE means for the machine: busy (486, 600),
    /// no answer (408, 480, 487), no network (500 to 599 but 600: the emergency network could
    /// not take the call); any other refusal is a failed set-up too, redialled as busy.
    public static func setupOutcome(statusCode: Int) -> ECallWire.SetupOutcome {
        switch statusCode {
        case 200...299: .answered
        case 408, 480, 487: .noAnswer
        case 486, 600, 603: .busy
        case 500...599: .noNetwork
        default: .busy
        }
    }
}

/// One part of a MIME multipart body (RFC 2046): its header fields and its bytes.
public struct MIMEPart: Sendable, Equatable {
    public var headers: [Header]
    public var body: [UInt8]

    public struct Header: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    public init(headers: [Header], body: [UInt8]) {
        self.headers = headers
        self.body = body
    }

    public init(contentType: String, contentID: String? = nil, disposition: String? = nil, body: [UInt8]) {
        var h = [Header("Content-Type", contentType)]
        if let contentID { h.append(Header("Content-ID", "<\(contentID)>")) }
        if let disposition { h.append(Header("Content-Disposition", disposition)) }
        self.init(headers: h, body: body)
    }

    /// The first value of a header field (names compare without case).
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name.lowercased() == n }?.value
    }

    /// The media type without parameters, lowercased.
    public var mediaType: String? { header("Content-Type").map(MIMEMultipart.mediaType) }

    /// The Content-ID without its angle brackets.
    public var contentID: String? {
        guard var v = header("Content-ID")?.trimmingSpaces else { return nil }
        if v.hasPrefix("<"), v.hasSuffix(">") { v = String(v.dropFirst().dropLast()) }
        return v
    }
}

/// Builds and reads `multipart/mixed` bodies. Bytes throughout: an MSD holds NUL bytes and
/// anything else, so a part's body is never text.
public enum MIMEMultipart {
    /// The largest body read (a SIP message over UDP is far smaller).
    public static let maximumBytes = 65_536

    /// The body, each part framed by `--boundary`, CRLF line ends, and the closing delimiter.
    public static func build(_ parts: [MIMEPart], boundary: String) -> [UInt8] {
        var out: [UInt8] = []
        for p in parts {
            out += Array("--\(boundary)\r\n".utf8)
            for h in p.headers { out += Array("\(h.name): \(h.value)\r\n".utf8) }
            out += Array("\r\n".utf8)
            out += p.body
            out += Array("\r\n".utf8)
        }
        out += Array("--\(boundary)--\r\n".utf8)
        return out
    }

    /// `base`, lengthened until no part's bytes hold its delimiter (an MSD is binary: any
    /// sequence can occur in it).
    public static func boundary(for parts: [MIMEPart], base: String) -> String {
        var b = base
        var n = 0
        while parts.contains(where: { find(Array("--\(b)".utf8), in: $0.body, from: 0) != nil }) {
            n += 1
            b = "\(base)-\(n)"
        }
        return b
    }

    /// The `Content-Type` of a body built with this boundary.
    public static func contentType(boundary: String) -> String { "multipart/mixed;boundary=\(boundary)" }

    /// A media type without its parameters, lowercased: `Multipart/Mixed; boundary=x` → `multipart/mixed`.
    public static func mediaType(_ contentType: String) -> String {
        String(contentType.split(separator: ";", maxSplits: 1).first ?? "").trimmingSpaces.lowercased()
    }

    /// The boundary parameter of a multipart Content-Type (quoted or not), nil when absent.
    public static func boundary(of contentType: String) -> String? {
        for param in contentType.split(separator: ";").dropFirst() {
            let kv = param.split(separator: "=", maxSplits: 1)
            guard kv.count == 2, kv[0].trimmingSpaces.lowercased() == "boundary" else { continue }
            let b = kv[1].trimmingSpaces.trimmingQuotes
            // RFC 2046: 1 to 70 characters.
            return (1...70).contains(b.utf8.count) ? b : nil
        }
        return nil
    }

    /// The parts of a body whose Content-Type is `contentType`. A body that is not multipart is
    /// one part with that type. Refused with what is wrong: no boundary, no delimiter, a part's
    /// header without a colon, a body over `maximumBytes`.
    public static func parse(_ body: [UInt8], contentType: String) throws(ParseError) -> [MIMEPart] {
        guard body.count <= maximumBytes else { throw ParseError(line: 1, "the body is \(body.count) bytes, over \(maximumBytes)") }
        guard mediaType(contentType).hasPrefix("multipart/") else {
            return [MIMEPart(headers: [.init("Content-Type", contentType)], body: body)]
        }
        guard let b = boundary(of: contentType) else {
            throw ParseError(line: 1, "the multipart Content-Type '\(contentType)' has no valid boundary")
        }
        let delimiter = Array("--\(b)".utf8)
        // Each delimiter starts a line: at the body's start or after CRLF (LF alone is taken too).
        var starts: [Int] = []
        var i = 0
        while let at = find(delimiter, in: body, from: i) {
            if at == 0 || body[at - 1] == 0x0A { starts.append(at) }
            i = at + delimiter.count
        }
        guard !starts.isEmpty else { throw ParseError(line: 1, "no '--\(b)' delimiter in the multipart body") }
        var parts: [MIMEPart] = []
        for (n, s) in starts.enumerated() {
            var p = s + delimiter.count
            // The closing delimiter ends the body.
            if p + 1 < body.count, body[p] == 0x2D, body[p + 1] == 0x2D { return parts }
            // Rest of the delimiter line (transport padding).
            while p < body.count, body[p] != 0x0A { p += 1 }
            p += 1
            guard n + 1 < starts.count else {
                throw ParseError(line: 1, "part \(n + 1) of the multipart body has no closing delimiter '--\(b)--'")
            }
            // The part ends before the CRLF that precedes the next delimiter.
            var end = starts[n + 1]
            if end > 0, body[end - 1] == 0x0A { end -= 1 }
            if end > 0, body[end - 1] == 0x0D { end -= 1 }
            guard p <= end else { throw ParseError(line: 1, "part \(n + 1) of the multipart body is cut short") }
            parts.append(try part(Array(body[p..<end]), number: n + 1))
        }
        throw ParseError(line: 1, "the multipart body has no closing delimiter '--\(b)--'")
    }

    private static func part(_ bytes: [UInt8], number: Int) throws(ParseError) -> MIMEPart {
        var headers: [MIMEPart.Header] = []
        var i = 0
        while i < bytes.count {
            var lineEnd = i
            while lineEnd < bytes.count, bytes[lineEnd] != 0x0A { lineEnd += 1 }
            var contentEnd = lineEnd
            if contentEnd > i, bytes[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            if contentEnd == i {
                // The blank line: the body follows.
                return MIMEPart(headers: headers, body: lineEnd < bytes.count ? Array(bytes[(lineEnd + 1)...]) : [])
            }
            let line = String(decoding: bytes[i..<contentEnd], as: UTF8.self)
            if line.first == " " || line.first == "\t", let last = headers.indices.last {
                // A folded header line continues the one before (an empty one adds nothing).
                headers[last].value = (headers[last].value + " " + line.trimmingSpaces).trimmingSpaces
            } else {
                guard let colon = line.firstIndex(of: ":") else {
                    throw ParseError(line: headers.count + 1, "part \(number): expected 'Name: value' in the header, found '\(line.prefix(60))'")
                }
                headers.append(.init(String(line[..<colon]).trimmingSpaces, String(line[line.index(after: colon)...]).trimmingSpaces))
            }
            i = lineEnd + 1
        }
        // No blank line: headers only, an empty body.
        return MIMEPart(headers: headers, body: [])
    }

    private static func find(_ needle: [UInt8], in hay: [UInt8], from: Int) -> Int? {
        guard !needle.isEmpty, hay.count >= needle.count, from <= hay.count - needle.count else { return nil }
        var i = from
        while i <= hay.count - needle.count {
            if hay[i] == needle[0] {
                var k = 1
                while k < needle.count, hay[i + k] == needle[k] { k += 1 }
                if k == needle.count { return i }
            }
            i += 1
        }
        return nil
    }
}

/// The PSAP's metadata/control block (RFC 8147, 9: `application/EmergencyCallData.Control+xml`)
/// as the unit reads and the simulated PSAP writes it.
public enum EmergencyCallControl: Sendable, Equatable {
    /// The MSD with this Content-ID was received (`received="true"`) or could not be used.
    case ack(ref: String?, received: Bool)
    /// A request: `send-data` with `datatype="eCall.MSD"` asks for a new MSD.
    case request(action: String, datatype: String?)

    /// The largest block read.
    public static let maximumBytes = 16_384

    /// The elements of a control block, in order. Refused with what is wrong: not the
    /// EmergencyCallData.Control root, an `ack` without `received`, a value neither true nor false.
    public static func parse(_ xml: [UInt8]) throws(ParseError) -> [EmergencyCallControl] {
        guard xml.count <= maximumBytes else { throw ParseError(line: 1, "the control block is \(xml.count) bytes, over \(maximumBytes)") }
        let elements = XMLTags.scan(String(decoding: xml, as: UTF8.self))
        guard let root = elements.first(where: { !$0.name.hasPrefix("?") && !$0.name.hasPrefix("!") }),
              root.localName == "EmergencyCallData.Control" else {
            throw ParseError(line: 1, "expected an <EmergencyCallData.Control> block")
        }
        var out: [EmergencyCallControl] = []
        for e in elements.dropFirst() {
            switch e.localName {
            case "ack":
                guard let r = e.attributes["received"] else { throw ParseError(line: e.line, "<ack> needs a 'received' attribute") }
                guard r == "true" || r == "false" else { throw ParseError(line: e.line, "<ack received> must be true or false, found '\(r)'") }
                out.append(.ack(ref: e.attributes["ref"], received: r == "true"))
            case "request":
                guard let action = e.attributes["action"] else { throw ParseError(line: e.line, "<request> needs an 'action' attribute") }
                out.append(.request(action: action, datatype: e.attributes["datatype"]))
            default:
                // Other elements (capabilities, actionResult, ...) are allowed and not acted on.
                continue
            }
        }
        return out
    }

    /// Whether the block asks for a new MSD.
    public var isMSDRequest: Bool {
        if case .request(let action, let datatype) = self { return action == "send-data" && (datatype == nil || datatype == "eCall.MSD") }
        return false
    }

    /// The block as XML (the simulated PSAP's acknowledgement and requests).
    public static func xml(_ items: [EmergencyCallControl]) -> String {
        var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        s += "<EmergencyCallData.Control xmlns=\"urn:ietf:params:xml:ns:EmergencyCallData:control\">\n"
        for item in items {
            switch item {
            case .ack(let ref, let received):
                s += "  <ack" + (ref.map { " ref=\"\(xmlEscaped($0))\"" } ?? "") + " received=\"\(received)\"/>\n"
            case .request(let action, let datatype):
                s += "  <request action=\"\(xmlEscaped(action))\"" + (datatype.map { " datatype=\"\(xmlEscaped($0))\"" } ?? "") + "/>\n"
            }
        }
        return s + "</EmergencyCallData.Control>\n"
    }
}

/// Start tags and their attributes: enough XML for the control block (no DTD, no entities but
/// the five predefined ones, no namespaces beyond a prefix to drop).
struct XMLTags {
    struct Element {
        var name: String
        var attributes: [String: String]
        var line: Int
        /// The name without its namespace prefix.
        var localName: String { name.split(separator: ":").last.map(String.init) ?? name }
    }

    static func scan(_ text: String) -> [Element] {
        var out: [Element] = []
        let s = Array(text.utf8)
        var i = 0
        var line = 1
        while i < s.count {
            if s[i] == 0x0A { line += 1 }
            guard s[i] == UInt8(ascii: "<"), i + 1 < s.count, s[i + 1] != UInt8(ascii: "/") else { i += 1; continue }
            var j = i + 1
            while j < s.count, s[j] != UInt8(ascii: ">") {
                if s[j] == 0x0A { line += 1 }
                j += 1
            }
            let tag = String(decoding: s[(i + 1)..<min(j, s.count)], as: UTF8.self)
            out.append(parseTag(tag, line: line))
            i = j + 1
        }
        return out
    }

    private static func parseTag(_ tag: String, line: Int) -> Element {
        var t = Substring(tag)
        if t.hasSuffix("/") || t.hasSuffix("?") { t = t.dropLast() }
        let name = String(t.prefix { !$0.isWhitespace })
        var attributes: [String: String] = [:]
        var rest = t.dropFirst(name.count)
        while let eq = rest.firstIndex(of: "=") {
            let key = rest[..<eq].trimmingSpaces
            var after = rest[rest.index(after: eq)...].drop { $0.isWhitespace }
            guard let quote = after.first, quote == "\"" || quote == "'" else { break }
            after = after.dropFirst()
            guard let close = after.firstIndex(of: quote) else { break }
            let localKey = key.split(separator: ":").last.map(String.init) ?? key
            attributes[localKey] = xmlUnescaped(String(after[..<close]))
            rest = after[after.index(after: close)...]
        }
        return Element(name: name, attributes: attributes, line: line)
    }
}

func xmlEscaped(_ s: String) -> String {
    var o = ""
    for c in s {
        switch c {
        case "&": o += "&amp;"
        case "<": o += "&lt;"
        case ">": o += "&gt;"
        case "\"": o += "&quot;"
        case "'": o += "&apos;"
        default: o.append(c)
        }
    }
    return o
}

func xmlUnescaped(_ s: String) -> String {
    guard s.contains("&") else { return s }
    let entities: [(String, Character)] = [("&lt;", "<"), ("&gt;", ">"), ("&quot;", "\""), ("&apos;", "'"), ("&amp;", "&")]
    var o = ""
    var rest = Substring(s)
    while let c = rest.first {
        if c == "&", let (entity, value) = entities.first(where: { rest.hasPrefix($0.0) }) {
            o.append(value)
            rest = rest.dropFirst(entity.count)
        } else {
            o.append(c)
            rest = rest.dropFirst()
        }
    }
    return o
}

/// Splits at a separator outside `<...>`.
func splitOutsideAngles(_ s: String, separator: Character) -> [Substring] {
    var out: [Substring] = []
    var depth = 0
    var start = s.startIndex
    var i = s.startIndex
    while i < s.endIndex {
        let c = s[i]
        if c == "<" { depth += 1 } else if c == ">" { depth = max(0, depth - 1) } else if c == separator, depth == 0 {
            out.append(s[start..<i])
            start = s.index(after: i)
        }
        i = s.index(after: i)
    }
    out.append(s[start...])
    return out
}

extension StringProtocol {
    /// Without one pair of surrounding double quotes.
    var trimmingQuotes: String {
        hasPrefix("\"") && hasSuffix("\"") && count >= 2 ? String(dropFirst().dropLast()) : String(self)
    }
}
