#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization

/// Hands each log record to `LogWriter`, which sends it to journald with its metadata as
/// journal fields (`can.id` becomes `CAN_ID=0x3C0`, searchable with `journalctl CAN_ID=0x3C0`)
/// when stderr is the journal, and otherwise writes one line to stderr: a `<N>` syslog
/// priority prefix when JOURNAL_STREAM is set, then the message and its metadata as `key=value`.
///
/// The level is the output's (`LogOutput`), one for every logger of a car, so that a reload
/// (SIGHUP) changes it for all of them.
/// One log record on its way to the journal or stderr.
public struct LogRecord: Sendable {
    public var priority: Int
    public var level: String
    public var message: String
    public var fields: [(String, String)]
}

/// Where a car's log records go (a `LogWriter`) and at which level. Loggers made from it share
/// the level: a reload changes it for all of them. Nothing here is the process's: two cars in
/// one process have two outputs (they may share a writer).
public final class LogOutput: Sendable {
    public let writer: LogWriter
    private let threshold: Atomic<Int>

    public init(writer: LogWriter, level: Logger.Level) {
        self.writer = writer
        threshold = Atomic(Logger.Level.allCases.firstIndex(of: level)!)
    }

    public var level: Logger.Level {
        get { Logger.Level.allCases[threshold.load(ordering: .relaxed)] }
        set { threshold.store(Logger.Level.allCases.firstIndex(of: newValue)!, ordering: .relaxed) }
    }

    /// A logger that writes here.
    public func logger(label: String) -> Logger {
        Logger(label: label) { JournalLogHandler(label: $0, output: self) }
    }
}

public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let output: LogOutput

    public var logLevel: Logger.Level {
        get { output.level }
        set { output.level = newValue }
    }

    public init(label: String, output: LogOutput) {
        self.label = label
        self.output = output
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
        var all = metadata
        if let m = event.metadata { all.merge(m) { $1 } }
        let fields = all.keys.sorted().map { ($0, all[$0]!.description) }
        // Queued, never written here: the caller may be the CAN reader or the eCall.
        output.writer.write(LogRecord(priority: Self.priority(event.level), level: event.level.rawValue,
                                         message: event.message.description, fields: fields))
    }

    /// The record as one stderr line (journal: with its `<N>` priority prefix).
    static func line(_ r: LogRecord, journal: Bool) -> String {
        var line = journal ? "<\(r.priority)>" : "\(r.level.uppercased()) "
        line += r.message
        for (key, value) in r.fields { line += " " + key + "=" + quoteIfNeeded(value) }
        return line + "\n"
    }

    /// A metadata key as a journal field name: upper case, `.` and `-` as `_`, nothing else
    /// than A-Z, 0-9 and `_`, not starting with `_` (those are journald's own) nor a digit.
    static func journalFieldName(_ key: String) -> String {
        var name = String(key.uppercased().map { c -> Character in
            c.isASCII && (c.isLetter || c.isNumber) ? c : "_"
        })
        while name.hasPrefix("_") { name.removeFirst() }
        if name.first?.isNumber ?? true { name = "F" + name }
        return String(name.prefix(64))
    }

    /// The journal's native datagram: `KEY=value` lines, and a value holding a newline as
    /// `KEY`, newline, its length (64-bit little endian), the value, newline.
    static func journalDatagram(_ r: LogRecord, identifier: String) -> [UInt8] {
        var out: [UInt8] = []
        func add(_ key: String, _ value: String) {
            out += Array(key.utf8)
            if value.contains("\n") {
                out.append(UInt8(ascii: "\n"))
                let bytes = Array(value.utf8)
                withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { out += $0 }
                out += bytes
            } else {
                out.append(UInt8(ascii: "="))
                out += Array(value.utf8)
            }
            out.append(UInt8(ascii: "\n"))
        }
        add("MESSAGE", r.message)
        add("PRIORITY", String(r.priority))
        add("SYSLOG_IDENTIFIER", identifier)
        for (key, value) in r.fields where !key.isEmpty { add(journalFieldName(key), value) }
        return out
    }

    static func quoteIfNeeded(_ s: String) -> String {
        guard s.isEmpty || s.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) else { return s }
        return "\"" + s.replacing("\"", with: "\\\"") + "\""
    }
}
