#if canImport(Glibc)
import Glibc
#endif
import Logging

/// Writes one line per log record to stderr in the form journald reads well: a `<N>` syslog
/// priority prefix when stderr is the journal (JOURNAL_STREAM is set), then the message and
/// its metadata as `key=value` pairs with dotted keys (`can.id=0x3C0`).
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String
    private let journal: Bool

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
        self.journal = getenv("JOURNAL_STREAM") != nil
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    public func log(event: LogEvent) {
        var line = journal ? "<\(Self.priority(event.level))>" : "\(event.level.rawValue.uppercased()) "
        line += event.message.description
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        for key in all.keys.sorted() {
            line += " " + key + "=" + Self.quoteIfNeeded(all[key]!.description)
        }
        line += "\n"
        // Queued, never written here: the caller may be the CAN reader or the eCall.
        LogWriter.shared.write(line)
    }

    static func quoteIfNeeded(_ s: String) -> String {
        guard s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) else { return s }
        return "\"" + s.replacing("\"", with: "\\\"") + "\""
    }
}
