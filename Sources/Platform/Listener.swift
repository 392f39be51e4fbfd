#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A listening stream socket, and the one accept loop every server here uses (the control
/// socket, the backend's HTTP API, the eCall link's peers).
///
/// `serve` hands each connection to a thread of its own, up to `maximum` at once: the loop
/// never serves a client itself, so a slow client cannot stall it (nor a watchdog that watches
/// it); beyond the maximum, or when no thread can be had, `refuse` answers the client at once
/// and it is closed. `accept` takes one connection, for a peer that serves one at a time.
public final class Listener: Sendable {
    public enum Address: Sendable, Equatable {
        /// An IPv4 address (or "localhost") and a port; 0 takes any free port (see `port`).
        case tcp(host: String, port: UInt16)
        /// A Unix stream socket at `path` with the file mode `mode`. It is made under a
        /// temporary name and renamed once it listens: a client that sees the path can connect.
        case unix(path: String, mode: mode_t)
    }

    public let fd: Int32
    /// The TCP port it listens on (the one the kernel chose for port 0); nil for Unix.
    public let port: UInt16?
    private let active = Atomic<Int>(0)

    public init(_ address: Address, backlog: Int32 = 16) throws(SystemError) {
        switch address {
        case .tcp(let host, let port):
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            guard inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &addr.sin_addr) == 1 else {
                throw SystemError(.invalidInput, "cannot listen on \(host):\(port): not an IPv4 address")
            }
            let fd = try syscall("cannot make a socket") { socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            do throws(SystemError) {
                _ = try syscall("cannot listen on \(host):\(port)") {
                    withUnsafePointer(to: &addr) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                    }
                }
                _ = try syscall("cannot listen on \(host):\(port)") { listen(fd, backlog) }
            } catch {
                Glibc.close(fd)
                throw error
            }
            var actual = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
            self.fd = fd
            self.port = UInt16(bigEndian: actual.sin_port)
        case .unix(let path, let mode):
            guard path.utf8.count < 108 else { throw SystemError(.invalidInput, "socket path is longer than 107 bytes: \(path)") }
            let staging = path.utf8.count + 4 < 108 ? path + ".new" : path
            if staging != path { unlink(staging) }
            let fd = try syscall("cannot make a socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
            var addr = unixSocketAddress(staging)
            // No moment where another user could connect: the mode is set as it is made.
            let old = umask(~mode & 0o777)
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            let bindErrno = errno
            umask(old)
            do throws(SystemError) {
                guard bound == 0 else { throw SystemError(.io, "cannot bind \(path)", errno: bindErrno) }
                chmod(staging, mode)
                _ = try syscall("cannot listen on \(path)") { listen(fd, backlog) }
                _ = try syscall("cannot put the socket at \(path)") { rename(staging, path) }
            } catch {
                Glibc.close(fd)
                unlink(staging)
                throw error
            }
            self.fd = fd
            self.port = nil
        }
    }

    /// The next connection, or nil after `timeoutMs` without one.
    public func accept(timeoutMs: Int32) -> Int32? {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&pfd, 1, timeoutMs) == 1 else { return nil }
        let c = Glibc.accept(fd, nil, nil)
        guard c >= 0 else { return nil }
        // Not inherited by a program the process starts (accept4 needs _GNU_SOURCE here).
        _ = fcntl(c, F_SETFD, FD_CLOEXEC)
        return c
    }

    /// The accept loop, until `stop` is set (seen within 100 ms); blocks. `turn` is called at
    /// every turn with the stop signal (a watchdog beats there). Each connection is closed after
    /// `handle` (or `refuse`) returns.
    public func serve(name: String, maximum: Int, stop: StopSignal, turn: (StopSignal) -> Void = { _ in },
                      refuse: (Int32) -> Void, handle: @escaping @Sendable (Int32) -> Void) {
        while !stop.isSet {
            turn(stop)
            guard let conn = accept(timeoutMs: 100) else { continue }
            let served = active.add(1, ordering: .relaxed).newValue <= maximum
                && DedicatedThread.detached(name: name) { [self] in
                    handle(conn)
                    Glibc.close(conn)
                    active.subtract(1, ordering: .relaxed)
                }
            if !served {
                active.subtract(1, ordering: .relaxed)
                refuse(conn)
                Glibc.close(conn)
            }
        }
    }

    public func close() { Glibc.close(fd) }
}

/// A Unix socket address for `path` (at most 107 bytes: longer paths are cut).
public func unixSocketAddress(_ path: String) -> sockaddr_un {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &addr.sun_path) { dst in
        let bytes = Array(path.utf8.prefix(dst.count - 1))
        for (i, b) in bytes.enumerated() { dst[i] = b }
        dst[bytes.count] = 0
    }
    return addr
}
