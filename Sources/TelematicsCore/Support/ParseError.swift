/// What was wrong with a piece of input, and where.
///
/// Every text format the unit reads (DBC, candump logs, configuration, profiles, JSON)
/// rejects bad input with one of these, so that the message always names the place:
/// `hw/car.dbc:42:17: expected '|' between start bit and length`.
public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The file (or other origin) the input came from, when known.
    public var source: String?
    /// 1-based line number.
    public var line: Int
    /// 1-based column, when known.
    public var column: Int?
    public var message: String

    public init(source: String? = nil, line: Int, column: Int? = nil, _ message: String) {
        self.source = source
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        var s = source ?? "<input>"
        s += ":\(line)"
        if let column { s += ":\(column)" }
        return s + ": " + message
    }

    /// The same error, attributed to `source`.
    public func `in`(_ source: String) -> ParseError {
        var e = self
        e.source = source
        return e
    }
}
