#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// Writes one line per log record to stderr in the form journald reads well: a `<N>` syslog
/// priority prefix when stderr is the journal (JOURNAL_STREAM is set), then the message and
/// its metadata as `key=value` pairs with dotted keys (`can.id=0x3C0`).
///
/// The level is one for the whole process, so that a reload (SIGHUP) changes it for every logger.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    private static let threshold = Atomic<Int>(Logger.Level.allCases.firstIndex(of: .info)!)
    private let label: String
    private let journal: Bool

    public var logLevel: Logger.Level {
        get { Self.level }
        set { Self.level = newValue }
    }

    /// The process's log level.
    public static var level: Logger.Level {
        get { Logger.Level.allCases[threshold.load(ordering: .relaxed)] }
        set { threshold.store(Logger.Level.allCases.firstIndex(of: newValue)!, ordering: .relaxed) }
    }

    public init(label: String) {
        self.label = label
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
