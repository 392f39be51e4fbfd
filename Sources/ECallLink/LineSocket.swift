#if canImport(Glibc)
import Glibc
#endif
import Platform
import TelematicsCore

/// The link's endpoints are the core's `Endpoint`, with an IPv4 address or localhost.
public typealias TCPEndpoint = Endpoint

extension Endpoint {
    /// `HOST:PORT` or `tcp:HOST:PORT` with an IPv4 address or localhost (see `isIPv4OrLocalhost`).
    public static func parseLink(_ text: String) -> Endpoint? {
        guard let e = parse(text), e.isIPv4OrLocalhost else { return nil }
        return e
    }

    static func ipv4(_ host: String) -> in_addr? {
        var addr = in_addr()
        let h = host == "localhost" ? "127.0.0.1" : host
        return inet_pton(AF_INET, h, &addr) == 1 ? addr : nil
    }

    /// Nil for a host that is not an IPv4 address or localhost.
    func sockaddr() -> sockaddr_in? {
        guard let addr = Self.ipv4(host) else { return nil }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr = addr
        return a
    }
}

/// What went wrong on a link socket.
public struct LinkError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ what: String, errno e: Int32? = nil) {
        description = e.map { what + ": " + String(cString: strerror($0)) } ?? what
    }
}

/// A connected TCP socket carrying one JSON object per line. Reads are buffered; a write
/// never blocks longer than its send timeout, so a hung peer cannot hold the caller.
public final class LineConnection: @unchecked Sendable {
    // `fd` is fixed; `buffer` is used only by the one reading thread; writes are serialised
    // by the kernel per send() call (each line is one send).
    public let fd: Int32
    private var buffer: [UInt8] = []

    public init(fd: Int32) {
        self.fd = fd
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var tv = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    public static func connect(_ endpoint: TCPEndpoint, timeoutMs: Int32 = 1000) throws(LinkError) -> LineConnection {
        guard var addr = endpoint.sockaddr() else { throw LinkError("connect to \(endpoint): not an IPv4 address or localhost") }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw LinkError("socket", errno: errno) }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: Glibc.sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            guard errno == EINPROGRESS else { let e = errno; Glibc.close(fd); throw LinkError("connect to \(endpoint)", errno: e) }
            var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&pfd, 1, timeoutMs) == 1 else { Glibc.close(fd); throw LinkError("connect to \(endpoint): timed out") }
            var err: Int32 = 0
            var len = socklen_t(MemoryLayout<Int32>.size)
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
            guard err == 0 else { Glibc.close(fd); throw LinkError("connect to \(endpoint)", errno: err) }
        }
        // Back to blocking; reads use poll with a timeout.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~Int32(O_NONBLOCK))
        return LineConnection(fd: fd)
    }

    /// Sends one line; false when the peer is gone or the send timed out.
    @discardableResult
    public func send(_ text: String) -> Bool {
        var bytes = Array((text + "\n").utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; return false }
            off += n
        }
        return true
    }

    public enum ReadResult: Equatable {
        case line(String)
        case timeout
        case closed
    }

    /// The next line, waiting at most `timeoutMs`.
    public func readLine(timeoutMs: Int32) -> ReadResult {
        while true {
            if let nl = buffer.firstIndex(of: 10) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return .line(line)
            }
            guard buffer.count < 1 << 20 else { return .closed }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let r = poll(&pfd, 1, timeoutMs)
            if r == 0 { return .timeout }
            if r < 0 { if errno == EINTR { continue }; return .closed }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 { if errno == EINTR { continue }; return .closed }
            if n == 0 { return .closed }
            buffer += chunk[0..<n]
        }
    }

    public func close() { Glibc.close(fd) }
}

/// A listening TCP socket whose connections carry lines (the network peers: tcu-psap, the
/// benches).
public final class LineListener: Sendable {
    private let listener: Listener
    public let endpoint: TCPEndpoint

    public init(_ endpoint: TCPEndpoint) throws(LinkError) {
        do {
            listener = try Listener(.tcp(host: endpoint.host, port: endpoint.port), backlog: 4)
        } catch {
            throw LinkError("listen on \(endpoint): \(error)")
        }
        // Port 0 takes any free port: the endpoint says which.
        self.endpoint = TCPEndpoint(host: endpoint.host, port: listener.port ?? endpoint.port)
    }

    /// The next connection, or nil after `timeoutMs` without one.
    public func accept(timeoutMs: Int32) -> LineConnection? {
        listener.accept(timeoutMs: timeoutMs).map { LineConnection(fd: $0) }
    }

    public func close() { listener.close() }
}
