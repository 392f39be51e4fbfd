#if canImport(Glibc)
import Glibc
#endif
import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore

/// The daemon's control socket: a Unix stream socket that only the owner and group can use
/// (mode 0660). One request per connection, one JSON object per line each way:
/// `{"command":"status"}` → `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
public final class ControlServer: Service, Sendable {
    public typealias Handler = @Sendable (JSON) -> JSON
    private let path: String
    private let handler: Handler
    private let logger: Logger
    private let listenFD: Int32
    private let stop = Atomic<Bool>(false)
    private let active = Atomic<Int>(0)
    /// Clients served at once on their own threads; beyond, one at a time.
    static let maximumClients = 16

    /// Binds the socket now, so that a configuration or permission problem stops the daemon
    /// at start instead of later.
    public init(path: String, logger: Logger, handler: @escaping Handler) throws(ControlError) {
        self.path = path
        self.handler = handler
        self.logger = logger
        guard path.utf8.count < 108 else { throw ControlError("control socket path is longer than 107 bytes: \(path)") }
        if access(path, F_OK) == 0 {
            // A socket left by a daemon that died is removed; a live one is an error.
            if (try? ControlClient.connect(path)).map({ Glibc.close($0); return true }) == true {
                throw ControlError("another daemon is already listening on \(path)")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError("cannot create the control socket", errno: errno) }
        var addr = makeUnixAddress(path)
        let old = umask(0o117)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(old)
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw ControlError("cannot bind the control socket \(path)", errno: e)
        }
        chmod(path, 0o660)
        guard listen(fd, 16) == 0 else {
            let e = errno
            Glibc.close(fd)
            throw ControlError("cannot listen on \(path)", errno: e)
        }
        listenFD = fd
    }

    public func run() async throws {
        let fd = listenFD
        let thread = DedicatedThread(name: "control") { [self] in
            while !self.stop.load(ordering: .acquiring) {
                LoopMonitor.shared.turn(.control) { self.stop.load(ordering: .acquiring) }
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 100) > 0 else { continue }
                let conn = accept(fd, nil, nil)
                guard conn >= 0 else { continue }
                // Each client on its own thread: a registration waits for the backend, and a
                // client that never sends must not hold up the next one. Beyond that many, a
                // client is told to come back: the accept loop never serves one itself, so slow
                // clients cannot stall it (nor the watchdog that watches it).
                if self.active.add(1, ordering: .relaxed).newValue <= Self.maximumClients {
                    DedicatedThread.detached(name: "control-client") { [self] in
                        self.serve(conn)
                        Glibc.close(conn)
                        self.active.subtract(1, ordering: .relaxed)
                    }
                } else {
                    self.active.subtract(1, ordering: .relaxed)
                    writeAll(conn, JSON.object([("ok", .bool(false)), ("error", .string("busy: \(Self.maximumClients) clients are being served; try again"))]).text + "\n")
                    Glibc.close(conn)
                }
            }
        }
        try? await gracefulShutdown()
        stop.store(true, ordering: .releasing)
        thread.join()
        Glibc.close(listenFD)
        unlink(path)
    }

    private func serve(_ conn: Int32) {
        guard let line = readLine(conn, timeoutMs: 2000, limit: 65536) else { return }
        let reply: JSON
        do {
            let request = try JSON.parse(line)
            reply = handler(request)
        } catch {
            reply = .object([("ok", .bool(false)), ("error", .string("request is not valid JSON: \(error)"))])
        }
        writeAll(conn, reply.text + "\n")
    }
}

/// Talks to a running daemon over its control socket.
public enum ControlClient {
    /// Sends one request and returns the reply.
    public static func request(_ path: String, _ request: JSON, timeoutMs: Int = 5000) throws(ControlError) -> JSON {
        let fd = try connect(path)
        defer { close(fd) }
        writeAll(fd, request.text + "\n")
        guard let line = readLine(fd, timeoutMs: timeoutMs, limit: 16 << 20) else {
            throw ControlError("no reply from the daemon on \(path)")
        }
        do { return try JSON.parse(line) } catch { throw ControlError("the daemon's reply is not JSON: \(error)") }
    }

    static func connect(_ path: String) throws(ControlError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError("cannot create a socket", errno: errno) }
        var addr = makeUnixAddress(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw ControlError("cannot reach the daemon on \(path) (is telematicsd running?)", errno: e)
        }
        return fd
    }
}

/// A control socket problem.
public struct ControlError: Error, Sendable, CustomStringConvertible {
    public var message: String
    public var errno: Int32?
    init(_ message: String, errno: Int32? = nil) {
        self.message = message
        self.errno = errno
    }
    public var description: String {
        guard let errno else { return message }
        return message + ": " + String(cString: strerror(errno))
    }
}

func makeUnixAddress(_ path: String) -> sockaddr_un {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { dst in
        let bytes = Array(path.utf8.prefix(dst.count - 1))
        for (i, b) in bytes.enumerated() { dst[i] = b }
        dst[bytes.count] = 0
    }
    return addr
}

func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
        if n < 0 { if errno == EINTR { continue }; return }
        off += n
    }
}

/// Reads one line, all of it within `timeoutMs` (a deadline for the whole line, not per
/// `recv`: a client sending a byte a second is cut off like a silent one).
func readLine(_ fd: Int32, timeoutMs: Int, limit: Int) -> String? {
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    let deadline = Int64(now.tv_sec) * 1_000 + Int64(now.tv_nsec) / 1_000_000 + Int64(timeoutMs)
    while out.count < limit {
        clock_gettime(CLOCK_MONOTONIC, &now)
        let left = deadline - (Int64(now.tv_sec) * 1_000 + Int64(now.tv_nsec) / 1_000_000)
        guard left > 0 else { return nil }
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, Int32(left)) > 0 else { return nil }
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { if errno == EINTR { continue }; return nil }
        if n == 0 { break }
        if let nl = buf[0..<n].firstIndex(of: 10) {
            out.append(contentsOf: buf[0..<nl])
            return String(decoding: out, as: UTF8.self)
        }
        out.append(contentsOf: buf[0..<n])
    }
    return out.isEmpty ? nil : String(decoding: out, as: UTF8.self)
}
