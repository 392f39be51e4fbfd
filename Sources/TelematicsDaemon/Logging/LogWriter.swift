import Platform
#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// Takes log records from any thread without ever blocking it, and writes them on its own
/// thread: to journald's native socket (the metadata as journal fields) when stderr is the
/// journal, otherwise as lines on stderr. When the output stalls (a journald that does not
/// read, a full pipe) the queue keeps the newest records up to its bound and counts what it
/// dropped: a stalled log must never delay the CAN reader or the eCall.
public final class LogWriter: Sendable {
    public init() {}

    private let queue = Mutex<(records: [LogRecord], dropped: Int)>(([], 0))
    private let wake = DispatchSemaphore(value: 0)
    private let limit = 10_000
    private let started = Atomic<Bool>(false)
    private let idle = Atomic<Bool>(true)
    /// Flushes waiting for the writer to empty the queue.
    private let flushes = Mutex<[OneShot<Bool>]>([])

    public func write(_ record: LogRecord) {
        let first = queue.withLock { q -> Bool in
            if q.records.count >= limit {
                q.records.removeFirst(q.records.count - limit + 1)
                q.dropped += 1
            }
            q.records.append(record)
            return q.records.count == 1
        }
        if !started.exchange(true, ordering: .acquiringAndReleasing) {
            DedicatedThread.detached(name: "log-writer") { [self] in self.loop() }
        }
        if first { wake.signal() }
    }

    /// Waits (bounded) until the queue is written: for a clean exit.
    public func flush(timeoutMs: Int64 = 1000) {
        if queue.withLock({ $0.records.isEmpty }) && idle.load(ordering: .acquiring) { return }
        let done = OneShot<Bool>()
        flushes.withLock { $0.append(done) }
        wake.signal()
        _ = done.wait(timeoutMs: timeoutMs)
    }

    /// Whether stderr is the journal: JOURNAL_STREAM names its device and inode (systemd sets
    /// it for a unit whose output goes to the journal; a child with redirected stderr keeps
    /// the variable but not the stream, hence the comparison).
    static func stderrIsTheJournal() -> Bool {
        guard let value = getenv("JOURNAL_STREAM").map({ String(cString: $0) }) else { return false }
        let parts = value.split(separator: ":")
        var st = stat()
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]), fstat(2, &st) == 0 else { return false }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }

    private func loop() {
        let prefixed = getenv("JOURNAL_STREAM") != nil
        // TELEMATICSD_JOURNAL_SOCKET: another journal socket (a container's, a test's).
        let socketPath = getenv("TELEMATICSD_JOURNAL_SOCKET").map { String(cString: $0) } ?? "/run/systemd/journal/socket"
        let journal = Self.stderrIsTheJournal() ? UnixDatagramSender(socketPath) : nil
        while true {
            wake.wait()
            while true {
                idle.store(false, ordering: .releasing)
                var (records, dropped) = queue.withLock { q in defer { q = ([], 0) }; return q }
                if records.isEmpty {
                    idle.store(true, ordering: .releasing)
                    for f in flushes.withLock({ f in defer { f = [] }; return f }) { f.give(true) }
                    break
                }
                if dropped > 0 {
                    records.insert(LogRecord(priority: 4, level: "warning", message: "log lines dropped while the log was stalled",
                                             fields: [("log.dropped", "\(dropped)")]), at: 0)
                }
                var text = ""
                for r in records {
                    // A record the journal does not take (too large, socket gone) goes to stderr.
                    if let journal, journal.send(JournalLogHandler.journalDatagram(r, identifier: "telematicsd")) { continue }
                    text += JournalLogHandler.line(r, journal: prefixed)
                }
                var bytes = Array(text.utf8)
                var off = 0
                while off < bytes.count {
                    let n = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + off, $0.count - off) }
                    if n < 0 { if errno == EINTR { continue }; break }
                    off += n
                }
            }
        }
    }
}
