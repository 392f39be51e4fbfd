#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Synchronization

/// Takes log lines from any thread without ever blocking it, and writes them to stderr on its
/// own thread. When stderr stalls (a journald that does not read, a full pipe) the queue keeps
/// the newest lines up to its bound and counts what it dropped: a stalled log must never
/// delay the CAN reader or the eCall.
public final class LogWriter: Sendable {
    public static let shared = LogWriter()

    private let queue = Mutex<(lines: [String], dropped: Int)>(([], 0))
    private let wake = DispatchSemaphore(value: 0)
    private let limit = 10_000
    private let started = Atomic<Bool>(false)
    private let idle = Atomic<Bool>(true)

    public func write(_ line: String) {
        let first = queue.withLock { q -> Bool in
            if q.lines.count >= limit {
                q.lines.removeFirst(q.lines.count - limit + 1)
                q.dropped += 1
            }
            q.lines.append(line)
            return q.lines.count == 1
        }
        if !started.exchange(true, ordering: .acquiringAndReleasing) {
            _ = DedicatedThread(name: "log-writer") { [self] in self.loop() }
        }
        if first { wake.signal() }
    }

    /// Waits (bounded) until the queue is written: for a clean exit.
    public func flush(timeoutMs: Int = 1000) {
        for _ in 0..<timeoutMs {
            if queue.withLock({ $0.lines.isEmpty }) && idle.load(ordering: .acquiring) { return }
            usleep(1000)
        }
    }

    private func loop() {
        while true {
            wake.wait()
            while true {
                idle.store(false, ordering: .releasing)
                let (lines, dropped) = queue.withLock { q in defer { q = ([], 0) }; return q }
                if lines.isEmpty { idle.store(true, ordering: .releasing); break }
                let warning = getenv("JOURNAL_STREAM") != nil ? "<4>" : "WARNING "
                var text = dropped > 0 ? "\(warning)log lines dropped while stderr was stalled log.dropped=\(dropped)\n" : ""
                for l in lines { text += l }
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
