/// Parser for the Vector DBC format.
///
/// Covers what the unit's services need and what real DBC files contain: `VERSION`, `NS_`,
/// `BS_`, `BU_`, `VAL_TABLE_`, `BO_`/`SG_` (byte order, sign, factor, offset, range, unit,
/// receivers, `M`/`mN`/`mNM` multiplexing), `BO_TX_BU_`, `CM_`, `BA_DEF_`, `BA_DEF_DEF_`,
/// `BA_`, `VAL_`, `SIG_VALTYPE_` and `SG_MUL_VAL_`. Statements the unit has no use for
/// (environment variables, signal groups, relations) are skipped to their `;`.
///
/// Every error names the line and column and what was wrong; the file is then rejected whole.
/// What real exports contain and cantools accepts is accepted: a node list over several lines,
/// Vector's `VECTOR__INDEPENDENT_SIG_MSG` pseudo-message; a comment, attribute, transmitter
/// list or multiplexer range for a message or signal the file does not define is skipped with
/// a warning (`DBCDatabase.warnings`). What cantools refuses stays an error: value descriptions
/// or a value type for what does not exist, an undefined attribute, a bare `m` indicator.
public enum DBCParser {
    public static func parse(_ text: String, source: String? = nil) throws(ParseError) -> DBCDatabase {
        var p = Parser(Lexer(text))
        do {
            try p.parseFile()
            try p.finish()
        } catch {
            throw source.map { error.in($0) } ?? error
        }
        if let source { p.db.warnings = p.db.warnings.map { $0.in(source) } }
        return p.db
    }
}

// MARK: - Lexer

struct Token {
    enum Kind: Equatable { case identifier, number, string, punct, end }
    var kind: Kind
    var text: String
    var line: Int
    var column: Int
}

struct Lexer {
    private let bytes: [UInt8]
    private var i = 0
    private var line = 1
    private var lineStart = 0

    init(_ text: String) { bytes = Array(text.utf8) }

    mutating func next() throws(ParseError) -> Token {
        skipSpaceAndComments()
        let col = i - lineStart + 1
        let ln = line
        guard i < bytes.count else { return Token(kind: .end, text: "", line: ln, column: col) }
        let c = bytes[i]
        if c == UInt8(ascii: "\"") {
            i += 1
            var out = [UInt8]()
            while true {
                guard i < bytes.count else { throw ParseError(line: ln, column: col, "string is not closed") }
                let d = bytes[i]
                if d == UInt8(ascii: "\\"), i + 1 < bytes.count {
                    out.append(bytes[i + 1]); i += 2; continue
                }
                if d == UInt8(ascii: "\"") { i += 1; break }
                if d == UInt8(ascii: "\n") { line += 1; lineStart = i + 1 }
                out.append(d); i += 1
            }
            return Token(kind: .string, text: String(decoding: out, as: UTF8.self), line: ln, column: col)
        }
        if isDigit(c) || ((c == UInt8(ascii: "-") || c == UInt8(ascii: "+")) && i + 1 < bytes.count && (isDigit(bytes[i + 1]) || bytes[i + 1] == UInt8(ascii: "."))) || (c == UInt8(ascii: ".") && i + 1 < bytes.count && isDigit(bytes[i + 1])) {
            let start = i
            i += 1
            while i < bytes.count, isDigit(bytes[i]) || bytes[i] == UInt8(ascii: ".") { i += 1 }
            if i < bytes.count, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
                var j = i + 1
                if j < bytes.count, bytes[j] == UInt8(ascii: "+") || bytes[j] == UInt8(ascii: "-") { j += 1 }
                if j < bytes.count, isDigit(bytes[j]) {
                    i = j
                    while i < bytes.count, isDigit(bytes[i]) { i += 1 }
                }
            }
            return Token(kind: .number, text: String(decoding: bytes[start..<i], as: UTF8.self), line: ln, column: col)
        }
        if isIdentStart(c) {
            let start = i
            while i < bytes.count, isIdentStart(bytes[i]) || isDigit(bytes[i]) { i += 1 }
            return Token(kind: .identifier, text: String(decoding: bytes[start..<i], as: UTF8.self), line: ln, column: col)
        }
        let start = i
        i += 1
        if c >= 0x80 {
            // Consume the rest of a UTF-8 sequence so the error shows the whole character.
            while i < bytes.count, bytes[i] & 0xC0 == 0x80 { i += 1 }
        }
        return Token(kind: .punct, text: String(decoding: bytes[start..<i], as: UTF8.self), line: ln, column: col)
    }

    private mutating func skipSpaceAndComments() {
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "\n") { line += 1; i += 1; lineStart = i; continue }
            if c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") { i += 1; continue }
            if c == 0xEF, i + 2 < bytes.count, bytes[i + 1] == 0xBB, bytes[i + 2] == 0xBF { i += 3; continue } // BOM
            if c == UInt8(ascii: "/"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "/") {
                while i < bytes.count, bytes[i] != UInt8(ascii: "\n") { i += 1 }
                continue
            }
            break
        }
    }

    private func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
    private func isIdentStart(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || c == UInt8(ascii: "_")
    }
}

// MARK: - Parser

private let skippedKeywords: Set<String> = [
    "EV_", "ENVVAR_DATA_", "SGTYPE_", "SGTYPE_VAL_", "SIG_GROUP_", "SIG_TYPE_REF_", "BA_DEF_REL_",
    "BA_REL_", "BA_DEF_DEF_REL_", "BU_SG_REL_", "BU_EV_REL_", "BU_BO_REL_", "CAT_DEF_", "CAT_",
    "FILTER", "SIGTYPE_VALTYPE_", "BA_DEF_SGTYPE_", "BA_SGTYPE_", "SIG_TYPE_REF_", "EV_DATA_",
]

private struct Parser {
    /// Every keyword a statement starts with.
    static let keywords: Set<String> = skippedKeywords.union([
        "VERSION", "NS_", "BS_", "BU_", "VAL_TABLE_", "BO_", "SG_", "BO_TX_BU_", "CM_", "BA_DEF_", "BA_DEF_DEF_", "BA_",
        "VAL_", "SIG_VALTYPE_", "SG_MUL_VAL_",
    ])

    var lexer: Lexer
    var tok: Token
    var db = DBCDatabase()

    init(_ lexer: Lexer) {
        self.lexer = lexer
        self.tok = Token(kind: .end, text: "", line: 1, column: 1)
    }

    mutating func advance() throws(ParseError) { tok = try lexer.next() }

    func error(_ msg: String, at t: Token? = nil) -> ParseError {
        let t = t ?? tok
        return ParseError(line: t.line, column: t.column, msg)
    }

    func describe(_ t: Token) -> String {
        switch t.kind {
        case .end: "end of file"
        case .string: "string \"\(t.text)\""
        default: "'\(t.text)'"
        }
    }

    mutating func expectPunct(_ p: String, _ context: String) throws(ParseError) {
        guard tok.kind == .punct, tok.text == p else {
            throw error("expected '\(p)' \(context), found \(describe(tok))")
        }
        try advance()
    }

    mutating func acceptPunct(_ p: String) throws(ParseError) -> Bool {
        if tok.kind == .punct, tok.text == p { try advance(); return true }
        return false
    }

    mutating func identifier(_ what: String) throws(ParseError) -> String {
        guard tok.kind == .identifier else { throw error("expected \(what), found \(describe(tok))") }
        let s = tok.text
        try advance()
        return s
    }

    mutating func string(_ what: String) throws(ParseError) -> String {
        guard tok.kind == .string else { throw error("expected \(what) in double quotes, found \(describe(tok))") }
        let s = tok.text
        try advance()
        return s
    }

    mutating func double(_ what: String) throws(ParseError) -> Double {
        guard tok.kind == .number, let d = Double(tok.text) else {
            throw error("expected \(what) (a number), found \(describe(tok))")
        }
        try advance()
        return d
    }

    mutating func integer(_ what: String) throws(ParseError) -> Int64 {
        guard tok.kind == .number else { throw error("expected \(what) (an integer), found \(describe(tok))") }
        let text = tok.text.hasPrefix("+") ? String(tok.text.dropFirst()) : tok.text
        guard let v = Int64(text) else {
            if let u = UInt64(text), u <= UInt64(UInt32.max) * 2 { try advance(); return Int64(u) }
            throw error("expected \(what) (an integer), found '\(tok.text)'")
        }
        try advance()
        return v
    }

    mutating func messageRef() throws(ParseError) -> Int {
        let t = tok
        guard let idx = try messageRefIfDefined(skipping: nil) else {
            throw error("no message with identifier \(t.text) is defined (BO_ must come first)", at: t)
        }
        return idx
    }

    /// The message a statement refers to; when the file does not define it, nil, after a
    /// warning (none for Vector's pseudo-message) and skipping the statement `what` to its `;`.
    /// With `what` nil, nil without a warning or a skip (the caller refuses).
    mutating func messageRefIfDefined(skipping what: String?) throws(ParseError) -> Int? {
        let t = tok
        let raw = try integer("a message identifier")
        guard raw >= 0, raw <= 0xFFFF_FFFF else { throw error("message identifier \(raw) out of range", at: t) }
        let ext = raw & 0x8000_0000 != 0
        if let idx = db.messageIndex(id: UInt32(raw & 0x1FFF_FFFF), isExtended: ext) { return idx }
        if let what {
            if raw != Self.independentSignals {
                warn("\(what) for message \(raw), which is not defined: skipped", at: t)
            }
            try skipStatement()
        }
        return nil
    }

    mutating func signalRef(in message: Int) throws(ParseError) -> Int {
        let t = tok
        guard let idx = try signalRefIfDefined(in: message, skipping: nil) else {
            throw error("message \(db.messages[message].name) has no signal '\(t.text)'", at: t)
        }
        return idx
    }

    /// As messageRefIfDefined, for a signal of `message`.
    mutating func signalRefIfDefined(in message: Int, skipping what: String?) throws(ParseError) -> Int? {
        let t = tok
        let name = try identifier("a signal name")
        if let idx = db.messages[message].signalIndex(named: name) { return idx }
        if let what {
            warn("\(what) for signal '\(name)', which message \(db.messages[message].name) does not have: skipped", at: t)
            try skipStatement()
        }
        return nil
    }

    /// Vector's pseudo-message for signals that belong to no frame (0xC0000000).
    static let independentSignals: Int64 = 0xC000_0000

    mutating func warn(_ msg: String, at t: Token) {
        db.warnings.append(ParseError(line: t.line, column: t.column, msg))
    }

    mutating func skipStatement() throws(ParseError) {
        let start = tok
        while !(tok.kind == .punct && tok.text == ";") {
            if tok.kind == .end { throw error("statement \(describe(start)) is not closed with ';'", at: start) }
            try advance()
        }
        try advance()
    }

    mutating func parseFile() throws(ParseError) {
        try advance()
        var currentMessage: Int?
        while tok.kind != .end {
            guard tok.kind == .identifier else {
                throw error("expected a DBC keyword at the start of a statement, found \(describe(tok))")
            }
            let kw = tok
            if kw.text != "SG_" { currentMessage = nil }
            switch kw.text {
            case "VERSION":
                try advance()
                db.version = try string("the version")
            case "NS_":
                try advance()
                try expectPunct(":", "after NS_")
                // The new-symbols list: indented keywords, up to the next statement at column 1.
                while tok.kind == .identifier, tok.column > 1 { try advance() }
            case "BS_":
                try advance()
                try expectPunct(":", "after BS_")
                if tok.kind == .number {
                    _ = try integer("the baud rate")
                    try expectPunct(":", "after the baud rate")
                    _ = try integer("BTR1")
                    try expectPunct(",", "between BTR1 and BTR2")
                    _ = try integer("BTR2")
                }
            case "BU_":
                try advance()
                try expectPunct(":", "after BU_")
                // On one line, or (as some exports write it) one node per line, up to the next
                // keyword.
                while tok.kind == .identifier, !Self.keywords.contains(tok.text) { db.nodes.append(tok.text); try advance() }
            case "VAL_TABLE_":
                try advance()
                let name = try identifier("the value table name")
                let table = try valueDescriptions()
                db.valueTables[name] = table
            case "BO_":
                currentMessage = try parseMessage()
            case "SG_":
                guard let m = currentMessage else {
                    throw error("SG_ must follow a BO_ message definition")
                }
                try parseSignal(into: m)
            case "BO_TX_BU_":
                try advance()
                guard let m = try messageRefIfDefined(skipping: "BO_TX_BU_") else { continue }
                try expectPunct(":", "after the message identifier")
                var tx: [String] = []
                repeat { tx.append(try identifier("a transmitter node")) } while try acceptPunct(",")
                try expectPunct(";", "closing BO_TX_BU_")
                db.update(m) { $0.transmitters = tx }
            case "CM_":
                try parseComment()
            case "BA_DEF_":
                try parseAttributeDefinition()
            case "BA_DEF_DEF_":
                try advance()
                let t = tok
                let name = try string("the attribute name")
                guard var def = db.attributeDefinitions[name] else {
                    throw error("default for undefined attribute \"\(name)\" (BA_DEF_ must come first)", at: t)
                }
                def.defaultValue = try attributeValue(for: def)
                db.attributeDefinitions[name] = def
                try expectPunct(";", "closing BA_DEF_DEF_")
            case "BA_":
                try parseAttributeValue()
            case "VAL_":
                try advance()
                if tok.kind == .identifier {
                    // Value descriptions of an environment variable: not used by the unit.
                    try skipStatement()
                } else {
                    let m = try messageRef()
                    let s = try signalRef(in: m)
                    let table = try valueDescriptions()
                    db.update(m) { $0.signals[s].valueTable = table }
                }
            case "SIG_VALTYPE_":
                try advance()
                let m = try messageRef()
                let s = try signalRef(in: m)
                _ = try acceptPunct(":")
                let t = tok
                let v = try integer("the value type (0 integer, 1 float, 2 double)")
                let type: SignalValueType
                switch v {
                case 0: type = .integer
                case 1: type = .float32
                case 2: type = .float64
                default: throw error("value type must be 0, 1 or 2, found \(v)", at: t)
                }
                try expectPunct(";", "closing SIG_VALTYPE_")
                let sig = db.messages[m].signals[s]
                let need = type == .float32 ? 32 : 64
                if type != .integer, sig.length != need {
                    throw error("signal \(sig.name) is \(sig.length) bits; a \(type == .float32 ? "float" : "double") needs \(need)", at: t)
                }
                db.update(m) { $0.signals[s].valueType = type }
            case "SG_MUL_VAL_":
                try advance()
                guard let m = try messageRefIfDefined(skipping: "SG_MUL_VAL_"),
                      let s = try signalRefIfDefined(in: m, skipping: "SG_MUL_VAL_") else { continue }
                let muxTok = tok
                let mux = try identifier("the multiplexer signal")
                guard db.messages[m].signalIndex(named: mux) != nil else {
                    throw error("message \(db.messages[m].name) has no multiplexer signal '\(mux)'", at: muxTok)
                }
                var ranges: [ClosedRange<Int64>] = []
                repeat {
                    let rt = tok
                    let lo = try integer("a multiplexer range start")
                    // The lexer reads "3-5" as 3 and -5 (Int64.min has no negation: refused below).
                    let end = try integer("a multiplexer range end")
                    guard lo >= 0, end > Int64.min, -end >= lo, -end <= Int64(UInt32.max) else {
                        throw error("invalid multiplexer range \(lo)-\(end == Int64.min ? "9223372036854775808" : String(-end)) (expected START-END with 0 <= START <= END <= 4294967295)", at: rt)
                    }
                    let hi = -end
                    ranges.append(lo...hi)
                } while try acceptPunct(",")
                try expectPunct(";", "closing SG_MUL_VAL_")
                db.update(m) { $0.signals[s].multiplexer = MultiplexCondition(multiplexer: mux, values: ranges) }
            default:
                if skippedKeywords.contains(kw.text) {
                    try advance()
                    try skipStatement()
                } else {
                    throw error("unknown keyword '\(kw.text)'")
                }
            }
        }
    }

    mutating func valueDescriptions() throws(ParseError) -> [Int64: String] {
        var table: [Int64: String] = [:]
        while tok.kind == .number {
            let t = tok
            let v = try integer("a raw value")
            let s = try string("the description of value \(v)")
            guard table[v] == nil else { throw error("value \(v) is described twice", at: t) }
            table[v] = s
        }
        try expectPunct(";", "closing the value descriptions")
        return table
    }

    mutating func parseMessage() throws(ParseError) -> Int? {
        let kw = tok
        try advance()
        let idTok = tok
        let raw = try integer("the message identifier")
        let name = try identifier("the message name")
        try expectPunct(":", "after the message name")
        let dlcTok = tok
        let dlc = try integer("the message length")
        let sender = try identifier("the sending node")
        guard raw >= 0, raw <= 0xFFFF_FFFF else { throw error("message identifier \(raw) out of range", at: idTok) }
        // Vector's pseudo-message holding signals that belong to no frame.
        if name == "VECTOR__INDEPENDENT_SIG_MSG" || raw == 0xC000_0000 {
            while tok.kind == .identifier, tok.text == "SG_" {
                let line = tok.line
                try advance()
                while tok.kind != .end, tok.line == line { try advance() }
            }
            return nil
        }
        let ext = raw & 0x8000_0000 != 0
        let id = UInt32(raw & 0x7FFF_FFFF)
        if ext {
            guard id <= 0x1FFF_FFFF else { throw error("extended identifier \(hex(id)) is above 0x1FFFFFFF", at: idTok) }
        } else {
            guard id <= 0x7FF else {
                throw error("standard identifier \(hex(id)) is above 0x7FF (set bit 31 for an extended identifier)", at: idTok)
            }
        }
        guard dlc >= 0, dlc <= 64 else { throw error("message length \(dlc) is not 0-64 bytes", at: dlcTok) }
        var m = DBCMessage(id: id, isExtended: ext, name: name, length: Int(dlc), sender: sender)
        m.line = kw.line
        if db.message(named: name) != nil {
            throw error("message name '\(name)' is defined twice", at: kw)
        }
        guard db.add(m) else {
            throw error("message identifier \(raw) is defined twice", at: idTok)
        }
        return db.messages.count - 1
    }

    mutating func parseSignal(into m: Int) throws(ParseError) {
        let kw = tok
        try advance()
        let nameTok = tok
        let name = try identifier("the signal name")
        var isMux = false
        var muxValue: Int64?
        if tok.kind == .identifier {
            let t = tok.text
            if t == "M" {
                isMux = true
            } else if t.hasPrefix("m"), let (v, alsoMux) = parseMuxIndicator(t) {
                muxValue = v
                isMux = alsoMux
            } else {
                throw error("expected ':' or a multiplexer indicator (M, mN, mNM) after the signal name, found '\(t)'")
            }
            try advance()
        }
        try expectPunct(":", "after the signal name")
        let startTok = tok
        let start = try integer("the start bit")
        try expectPunct("|", "between start bit and length")
        let lenTok = tok
        let length = try integer("the signal length")
        try expectPunct("@", "before the byte order")
        let orderTok = tok
        // "1+" lexes as the number 1 then '+'; "0-" as 0 then '-'.
        let order = try integer("the byte order (0 Motorola, 1 Intel)")
        guard order == 0 || order == 1 else { throw error("byte order must be 0 (Motorola) or 1 (Intel), found \(order)", at: orderTok) }
        guard tok.kind == .punct, tok.text == "+" || tok.text == "-" else {
            throw error("expected '+' (unsigned) or '-' (signed) after the byte order, found \(describe(tok))")
        }
        let signed = tok.text == "-"
        try advance()
        try expectPunct("(", "before factor and offset")
        let factor = try double("the factor")
        try expectPunct(",", "between factor and offset")
        let offset = try double("the offset")
        try expectPunct(")", "after the offset")
        try expectPunct("[", "before the minimum")
        let minimum = try double("the minimum")
        try expectPunct("|", "between minimum and maximum")
        let maxTok = tok
        let maximum = try double("the maximum")
        try expectPunct("]", "after the maximum")
        let unit = try string("the unit")
        var receivers: [String] = []
        while tok.kind == .identifier, tok.line == kw.line || (tok.line == nameTok.line) {
            if tok.text == "SG_" || tok.text == "BO_" { break }
            receivers.append(tok.text)
            try advance()
            if !(try acceptPunct(",")) { break }
        }
        guard start >= 0, start < 512 else { throw error("start bit \(start) is outside a 64-byte payload", at: startTok) }
        guard length >= 1, length <= 64 else { throw error("signal length must be 1-64 bits, found \(length)", at: lenTok) }
        guard factor != 0 else { throw error("factor of signal \(name) is 0", at: nameTok) }
        guard minimum <= maximum else { throw error("minimum \(minimum) is above maximum \(maximum)", at: maxTok) }
        var sig = DBCSignal(
            name: name, startBit: Int(start), length: Int(length),
            byteOrder: order == 1 ? .littleEndian : .bigEndian, isSigned: signed,
            factor: factor, offset: offset, minimum: minimum, maximum: maximum,
            unit: unit, receivers: receivers
        )
        sig.line = kw.line
        sig.isMultiplexer = isMux
        if let muxValue { sig.multiplexer = MultiplexCondition(multiplexer: "", values: [muxValue...muxValue]) }
        let msg = db.messages[m]
        guard msg.signalIndex(named: name) == nil else {
            throw error("signal '\(name)' is defined twice in message \(msg.name)", at: nameTok)
        }
        if sig.byteOrder == .bigEndian, sig.linearStart + sig.length > 512 {
            throw error("Motorola signal \(name) starting at bit \(start) with \(length) bits runs past the payload", at: startTok)
        }
        guard sig.requiredBytes <= msg.length else {
            throw error("signal \(name) needs \(sig.requiredBytes) bytes but message \(msg.name) has \(msg.length)", at: startTok)
        }
        db.update(m) { $0.signals.append(sig) }
    }

    /// `m3` → (3, false); `m3M` → (3, true).
    func parseMuxIndicator(_ t: String) -> (Int64, Bool)? {
        var s = Substring(t.dropFirst())
        var alsoMux = false
        if s.hasSuffix("M") { alsoMux = true; s = s.dropLast() }
        guard !s.isEmpty, let v = Int64(s), v >= 0 else { return nil }
        return (v, alsoMux)
    }

    mutating func parseComment() throws(ParseError) {
        try advance()
        if tok.kind == .string {
            db.comment = try string("the comment")
        } else {
            let kindTok = tok
            let kind = try identifier("BU_, BO_, SG_ or EV_")
            switch kind {
            case "BU_", "EV_":
                _ = try identifier("the node or variable name")
                _ = try string("the comment")
            case "BO_":
                guard let m = try messageRefIfDefined(skipping: "a comment (CM_)") else { return }
                let c = try string("the comment")
                db.update(m) { $0.comment = c }
            case "SG_":
                guard let m = try messageRefIfDefined(skipping: "a comment (CM_)"),
                      let s = try signalRefIfDefined(in: m, skipping: "a comment (CM_)") else { return }
                let c = try string("the comment")
                db.update(m) { $0.signals[s].comment = c }
            default:
                throw error("CM_ applies to BU_, BO_, SG_ or EV_, not '\(kind)'", at: kindTok)
            }
        }
        try expectPunct(";", "closing CM_")
    }

    mutating func parseAttributeDefinition() throws(ParseError) {
        try advance()
        var object = DBCObjectKind.network
        if tok.kind == .identifier, let k = DBCObjectKind(rawValue: tok.text), k != .network {
            object = k
            try advance()
        }
        let name = try string("the attribute name")
        let typeTok = tok
        let typeName = try identifier("the attribute type (INT, HEX, FLOAT, STRING, ENUM)")
        let kind: DBCAttributeDefinition.Kind
        switch typeName {
        case "INT":
            let lo = try double("the minimum"); let hi = try double("the maximum")
            kind = .int(min: lo, max: hi)
        case "HEX":
            let lo = try double("the minimum"); let hi = try double("the maximum")
            kind = .hex(min: lo, max: hi)
        case "FLOAT":
            let lo = try double("the minimum"); let hi = try double("the maximum")
            kind = .float(min: lo, max: hi)
        case "STRING":
            kind = .string
        case "ENUM":
            var values: [String] = []
            if tok.kind == .string {
                repeat { values.append(try string("an enumeration value")) } while try acceptPunct(",")
            }
            kind = .enumeration(values)
        default:
            throw error("unknown attribute type '\(typeName)'", at: typeTok)
        }
        try expectPunct(";", "closing BA_DEF_")
        db.attributeDefinitions[name] = DBCAttributeDefinition(name: name, object: object, kind: kind, defaultValue: nil)
    }

    mutating func attributeValue(for def: DBCAttributeDefinition) throws(ParseError) -> DBCAttributeValue {
        let t = tok
        switch def.kind {
        case .string:
            return .string(try string("the value of \(def.name)"))
        case .enumeration(let values):
            if tok.kind == .string {
                let s = try string("the value of \(def.name)")
                guard values.contains(s) else { throw error("\"\(s)\" is not one of the values of \(def.name): \(values)", at: t) }
                return .string(s)
            }
            let i = try integer("the value of \(def.name)")
            guard i >= 0, i < values.count else { throw error("\(i) is not an index into the values of \(def.name)", at: t) }
            return .string(values[Int(i)])
        case .int(let lo, let hi), .hex(let lo, let hi), .float(let lo, let hi):
            let v = try double("the value of \(def.name)")
            if lo < hi, v < lo || v > hi {
                throw error("value \(v) of \(def.name) is outside its range \(lo)...\(hi)", at: t)
            }
            return .number(v)
        }
    }

    mutating func parseAttributeValue() throws(ParseError) {
        try advance()
        let nameTok = tok
        let name = try string("the attribute name")
        guard let def = db.attributeDefinitions[name] else {
            throw error("attribute \"\(name)\" is not defined (BA_DEF_ must come first)", at: nameTok)
        }
        if tok.kind == .identifier {
            let kindTok = tok
            let kind = try identifier("BU_, BO_, SG_ or EV_")
            switch kind {
            case "BU_", "EV_":
                _ = try identifier("the node or variable name")
                _ = try attributeValue(for: def)
            case "BO_":
                guard let m = try messageRefIfDefined(skipping: "attribute \"\(name)\" (BA_)") else { return }
                let v = try attributeValue(for: def)
                db.update(m) { $0.attributes[name] = v }
            case "SG_":
                guard let m = try messageRefIfDefined(skipping: "attribute \"\(name)\" (BA_)"),
                      let s = try signalRefIfDefined(in: m, skipping: "attribute \"\(name)\" (BA_)") else { return }
                let v = try attributeValue(for: def)
                db.update(m) { $0.signals[s].attributes[name] = v }
            default:
                throw error("BA_ applies to BU_, BO_, SG_ or EV_, not '\(kind)'", at: kindTok)
            }
        } else {
            _ = try attributeValue(for: def)
        }
        try expectPunct(";", "closing BA_")
    }

    /// Checks that need the whole file: multiplexer wiring, and the attributes the unit uses.
    mutating func finish() throws(ParseError) {
        let cycleDefault = db.attributeDefinitions["GenMsgCycleTime"]?.defaultValue?.number
        let fdDefault = db.attributeDefinitions["VFrameFormat"]?.defaultValue?.string
        for mi in db.messages.indices {
            let msg = db.messages[mi]
            let muxes = msg.signals.filter { $0.isMultiplexer }
            var updated = msg
            for si in msg.signals.indices {
                guard var cond = msg.signals[si].multiplexer else { continue }
                if cond.multiplexer.isEmpty {
                    guard muxes.count == 1 else {
                        let problem = muxes.isEmpty ? "no multiplexer signal (M)" : "\(muxes.count) multiplexer signals and no SG_MUL_VAL_"
                        throw ParseError(line: msg.signals[si].line, "signal \(msg.signals[si].name) is multiplexed but message \(msg.name) has \(problem)")
                    }
                    cond.multiplexer = muxes[0].name
                }
                guard let mux = msg.signal(named: cond.multiplexer), mux.isMultiplexer else {
                    throw ParseError(line: msg.signals[si].line, "signal \(cond.multiplexer) that selects \(msg.signals[si].name) is not a multiplexer (M)")
                }
                cond.multiplexerIndex = msg.signalIndex(named: cond.multiplexer)!
                if cond.multiplexer == msg.signals[si].name {
                    throw ParseError(line: msg.signals[si].line, "signal \(msg.signals[si].name) cannot multiplex itself")
                }
                updated.signals[si].multiplexer = cond
            }
            if let c = msg.attributes["GenMsgCycleTime"]?.number ?? cycleDefault, c > 0 {
                // A cycle is milliseconds: at most a day, whole (1e300 would trap a conversion).
                guard let ms = Int(exactly: c.rounded()), ms <= 86_400_000 else {
                    throw ParseError(line: msg.line, "GenMsgCycleTime of \(msg.name) is \(c) ms; expected at most 86400000 (a day)")
                }
                updated.cycleTimeMs = ms
            }
            let format = msg.attributes["VFrameFormat"]?.string ?? fdDefault
            updated.isFD = format?.hasSuffix("CAN_FD") ?? false
            if !updated.isFD, updated.length > 8 {
                throw ParseError(line: msg.line, "message \(msg.name) is \(msg.length) bytes; classic CAN carries at most 8 (set VFrameFormat to a CAN FD format)")
            }
            let snapshot = updated
            db.update(mi) { $0 = snapshot }
        }
    }
}
