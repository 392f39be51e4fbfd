#if canImport(Glibc)
import Glibc
#endif
import Platform
import TelematicsCore

// The control protocol's client side and its socket helpers: what tcuctl needs to talk to a
// daemon (or to the simulated car), with nothing of the daemon itself. One request per
// connection, one JSON object per line each way (docs/protocol.md).

/// Talks to a running daemon over its control socket.
public enum ControlClient {
    /// Sends one request and returns the reply.
    public static func request(_ path: String, _ request: JSON, timeoutMs: Int = 5000) throws(ControlError) -> JSON {
        let fd = try connect(path)
        defer { close(fd) }
        writeControlLine(fd, request.text + "\n")
        guard let line = readControlLine(fd, timeoutMs: timeoutMs, limit: 16 << 20) else {
            throw ControlError("no reply from the daemon on \(path)")
        }
        do { return try JSON.parse(line) } catch { throw ControlError("the daemon's reply is not JSON: \(error)") }
    }

    /// A connected socket to the daemon (the server uses it to tell a live daemon from a dead one's socket).
    public static func connect(_ path: String) throws(ControlError) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError("cannot create a socket", errno: errno) }
        var addr = unixSocketAddress(path)
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
    public init(_ message: String, errno: Int32? = nil) {
        self.message = message
        self.errno = errno
    }
    public var description: String {
        guard let errno else { return message }
        return message + ": " + String(cString: strerror(errno))
    }
}

/// Writes all of `text` (a line of the control protocol), giving up on an error.
public func writeControlLine(_ fd: Int32, _ text: String) {
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
public func readControlLine(_ fd: Int32, timeoutMs: Int, limit: Int) -> String? {
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
