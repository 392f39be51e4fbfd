#if canImport(Glibc)
import Glibc
#endif

/// Waits for a file another program appends to (inotify's IN_MODIFY), with a deadline: how a
/// reader follows a growing log (`tail -f`) without polling it. Where inotify is not available
/// (no instance left, a file system without it) the wait is the deadline itself.
public final class FileGrowth: @unchecked Sendable {
    // Fixed at init; read by the one following thread.
    private let fd: Int32

    public init(path: String) {
        let fd = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        if fd >= 0, inotify_add_watch(fd, path, UInt32(IN_MODIFY)) < 0 {
            close(fd)
            self.fd = -1
        } else {
            self.fd = fd
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Returns when the file was written to since the last wait, or after `timeoutMs`.
    public func wait(timeoutMs: Int64) {
        let ms = max(0, min(timeoutMs, 60_000))
        guard fd >= 0 else {
            sleepUntil(monotonic: monotonicNow().adding(milliseconds: ms), maxMs: ms)
            return
        }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(ms)) > 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while read(fd, &buffer, buffer.count) > 0 {}
    }
}
