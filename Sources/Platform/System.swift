#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CPlatform
import TelematicsCore

/// The error the syscall chokepoint, and every adapter on it, throws: what failed, a message, and
/// the errno behind it.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// The kernel has no CAN support (EAFNOSUPPORT) or the interface does not exist.
        case unavailable
        case io
        case invalidInput
        case unsupported
    }
    public var code: Code
    public var message: String
    public var errno: Int32?

    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        guard let errno else { return message }
        return message + ": " + String(cString: strerror(errno)) + " (errno \(errno))"
    }
}

/// The one place syscalls are made: retries EINTR, turns -1 into a typed error.
@inline(__always)
public func syscall<T: FixedWidthInteger>(_ what: @autoclosure () -> String, _ body: () -> T) throws(SystemError) -> T {
    while true {
        let r = body()
        if r != -1 { return r }
        let e = errno
        if e == EINTR { continue }
        let code: SystemError.Code = (e == EAFNOSUPPORT || e == ENODEV || e == ENXIO || e == EPROTONOSUPPORT) ? .unavailable : .io
        throw SystemError(code, what(), errno: e)
    }
}

/// Gives the memory freed after a burst back to the system: glibc keeps freed heap pages for
/// reuse, so resident memory would stay at the burst's peak.
public func returnFreedMemory() { _ = cpl_malloc_trim() }

/// Caps the heap's arenas at two, unless the operator chose (MALLOC_ARENA_MAX): glibc gives
/// each busy thread an arena of its own (up to eight per core), and after a burst each keeps
/// its freed pages in pieces. Two arenas keep the CAN reader and the outbox from contending on
/// one lock while the burst's peak stays lower (make soak: 45 MB instead of 49).
public func limitHeapArenas() {
    guard getenv("MALLOC_ARENA_MAX") == nil else { return }
    _ = cpl_malloc_arena_max(2)
}

/// Reads a whole text file.
public func readTextFile(_ path: String) throws(SystemError) -> String {
    let fd = try syscall("cannot open \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = try syscall("cannot read \(path)") { buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
        if n == 0 { break }
        bytes.append(contentsOf: buf[0..<n])
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
        // Latin-1 DBC files exist in the wild; keep them readable.
        return String(decoding: bytes.map { $0 < 0x80 ? $0 : UInt8(ascii: "?") }, as: UTF8.self)
    }
    return text
}

/// The directory part of a path ("." when there is none).
public func directoryName(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// The two clocks a car reads, injected into every service so that a test can move time:
/// `monotonic` for durations and deadlines (never set back), `wall` for the times the backend
/// and the MSD see (GPS or NTP may set it).
public struct Clocks: Sendable {
    public var monotonic: @Sendable () -> Timestamp
    public var wall: @Sendable () -> Timestamp

    public init(monotonic: @escaping @Sendable () -> Timestamp, wall: @escaping @Sendable () -> Timestamp) {
        self.monotonic = monotonic
        self.wall = wall
    }

    /// The system's.
    public static let system = Clocks(monotonic: { monotonicNow() }, wall: { wallClockNow() })

    /// Monotonic milliseconds.
    public var monotonicMs: Int64 { monotonic().nanoseconds / 1_000_000 }
    /// Wall-clock milliseconds since the epoch.
    public var wallMs: Int64 { wall().nanoseconds / 1_000_000 }
}

/// Wall-clock time now.
public func wallClockNow() -> Timestamp {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Timestamp(seconds: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec))
}

/// Monotonic time now, for pacing.
public func monotonicNow() -> Timestamp {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Timestamp(seconds: Int64(ts.tv_sec), nanoseconds: Int64(ts.tv_nsec))
}

/// Sleeps on the calling (dedicated) thread until a monotonic time, or at most `maxMs`.
public func sleepUntil(monotonic t: Timestamp, maxMs: Int64) {
    let now = monotonicNow()
    let ns = min(t.nanoseconds - now.nanoseconds, maxMs * 1_000_000)
    guard ns > 0 else { return }
    var req = timespec(tv_sec: Int(ns / 1_000_000_000), tv_nsec: Int(ns % 1_000_000_000))
    var rem = timespec()
    while nanosleep(&req, &rem) == -1, errno == EINTR { req = rem }
}

/// Replaces a file so that a power cut leaves the old content or the new, never half: the text
/// goes to a temporary file, is fsynced, renamed over the file, and the folder is fsynced.
public func writeFileDurably(_ path: String, _ text: String, mode: mode_t = 0o600) -> Bool {
    let tmp = path + ".tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { return false }
    var bytes = Array(text.utf8)
    let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress, $0.count) }
    let synced = n == bytes.count && fsync(fd) == 0
    close(fd)
    guard synced, rename(tmp, path) == 0 else { unlink(tmp); return false }
    syncFolder(of: path)
    return true
}

/// fsyncs the folder holding `path`, so that a rename or an unlink in it is durable.
public func syncFolder(of path: String) {
    let fd = open(directoryName(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd >= 0 { fsync(fd); close(fd) }
}

/// Secrets (a password, an S-PIN) for the command-line tools: read from standard input, never
/// taken as arguments, where every local user reads them in `ps` and shells keep them in their
/// history. At a terminal each is asked for with its prompt and the echo off; from a pipe or a
/// redirected file (`tcu-backend user add EMAIL < secrets`), one per line, in order.
public enum SecretInput {
    /// True when standard input is a terminal (the prompts are shown).
    public static var interactive: Bool { isatty(0) == 1 }

    /// The next secret, or nil at the end of the input. `prompt` goes to standard error, and
    /// only at a terminal.
    public static func read(_ prompt: String) -> String? {
        guard interactive else { return readLine() }
        defer { show("\n") }
        return withoutEcho {
            show(prompt + ": ")
            return readLine()
        }
    }

    /// A prompt on standard error, where a terminal shows it and a pipe's reader ignores it.
    private static func show(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }

    /// Runs `body` (which shows a prompt, then reads standard input) with the terminal's echo
    /// off, when standard input is a terminal; the echo comes back afterwards. The echo goes off
    /// before the prompt shows, so that nothing typed after it is echoed, and nothing typed is
    /// discarded (TCSANOW, not TCSAFLUSH).
    public static func withoutEcho<T>(_ body: () -> T) -> T {
        var saved = termios()
        guard isatty(0) == 1, tcgetattr(0, &saved) == 0 else { return body() }
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        _ = tcsetattr(0, TCSANOW, &quiet)
        defer { _ = tcsetattr(0, TCSANOW, &saved) }
        return body()
    }
}
