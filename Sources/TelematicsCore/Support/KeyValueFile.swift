/// The unit's configuration syntax: `[section]` headers, `key = value` lines, `#` comments.
///
/// Small on purpose (a head unit's configuration is edited by hand over ssh); every value
/// keeps its line so that a later check can say where a bad value is.
public struct KeyValueFile: Sendable {
    public struct Entry: Sendable, Equatable {
        public var section: String
        public var key: String
        public var value: String
        public var line: Int
    }

    public private(set) var entries: [Entry] = []
    public var source: String?

    public static func parse(_ text: String, source: String? = nil) throws(ParseError) -> KeyValueFile {
        var file = KeyValueFile()
        file.source = source
        var section = ""
        var seen = Set<String>()
        var lineNo = 0
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNo += 1
            var line = raw
            if line.hasSuffix("\r") { line = line.dropLast() }
            let trimmed = line.trimmingSpaces
            if trimmed.isEmpty || trimmed.hasPrefix("#") || trimmed.hasPrefix(";") { continue }
            if trimmed.hasPrefix("[") {
                guard trimmed.hasSuffix("]"), trimmed.count > 2 else {
                    throw ParseError(source: source, line: lineNo, column: 1, "section header must look like [name]")
                }
                section = String(trimmed.dropFirst().dropLast()).trimmingSpaces
                guard section.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }) else {
                    throw ParseError(source: source, line: lineNo, column: 2, "section name '\(section)' may hold only letters, digits, '-' and '_'")
                }
                continue
            }
            guard let eq = trimmed.firstIndex(of: "=") else {
                throw ParseError(source: source, line: lineNo, column: 1, "expected 'key = value' or a [section], found '\(trimmed)'")
            }
            let key = String(trimmed[..<eq]).trimmingSpaces
            var value = String(trimmed[trimmed.index(after: eq)...]).trimmingSpaces
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." }) else {
                throw ParseError(source: source, line: lineNo, column: 1, "invalid key '\(key)'")
            }
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            } else if let hash = value.range(of: " #") {
                value = String(value[..<hash.lowerBound]).trimmingSpaces
            }
            let full = section.isEmpty ? key : section + "." + key
            guard seen.insert(full).inserted else {
                throw ParseError(source: source, line: lineNo, column: 1, "key '\(full)' is set twice")
            }
            file.entries.append(Entry(section: section, key: key, value: value, line: lineNo))
        }
        return file
    }

    /// The entry for `section.key`, if set.
    public func entry(_ section: String, _ key: String) -> Entry? {
        entries.first { $0.section == section && $0.key == key }
    }

    public func error(_ e: Entry, _ message: String) -> ParseError {
        ParseError(source: source, line: e.line, "\(e.section.isEmpty ? "" : e.section + ".")\(e.key): \(message)")
    }

    /// Rejects keys the reader does not know (typos must not pass silently).
    public func checkKnown(_ known: [String: Set<String>]) throws(ParseError) {
        for e in entries {
            guard let keys = known[e.section] else {
                throw ParseError(source: source, line: e.line, "unknown section [\(e.section)]; known: \(known.keys.sorted().joined(separator: ", "))")
            }
            guard keys.contains(e.key) else {
                throw error(e, "unknown key; [\(e.section)] knows \(keys.sorted().joined(separator: ", "))")
            }
        }
    }

    public func string(_ section: String, _ key: String) -> String? { entry(section, key)?.value }

    public func required(_ section: String, _ key: String) throws(ParseError) -> Entry {
        guard let e = entry(section, key) else {
            throw ParseError(source: source, line: 0, "\(section).\(key) is required but not set")
        }
        return e
    }

    public func bool(_ section: String, _ key: String, default d: Bool) throws(ParseError) -> Bool {
        guard let e = entry(section, key) else { return d }
        return try bool(e)
    }

    /// The entry's value as true or false; the error names its line and key.
    public func bool(_ e: Entry) throws(ParseError) -> Bool {
        switch e.value.lowercased() {
        case "true", "yes", "on", "1": return true
        case "false", "no", "off", "0": return false
        default: throw error(e, "expected true or false, found '\(e.value)'")
        }
    }

    public func integer(_ section: String, _ key: String, default d: Int64, range: ClosedRange<Int64>) throws(ParseError) -> Int64 {
        guard let e = entry(section, key) else { return d }
        return try integer(e, range: range)
    }

    /// The entry's value as an integer within `range`; the error names its line and key.
    public func integer(_ e: Entry, range: ClosedRange<Int64>) throws(ParseError) -> Int64 {
        guard let v = Int64(e.value) else { throw error(e, "expected an integer, found '\(e.value)'") }
        guard range.contains(v) else { throw error(e, "\(v) is outside \(range.lowerBound)...\(range.upperBound)") }
        return v
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    public var trimmingSpaces: String {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return String(s)
    }
}

extension String {
    func range(of needle: String) -> Range<String.Index>? {
        guard !needle.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}
