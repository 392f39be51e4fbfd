#if canImport(Glibc)
import Glibc
#endif
import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore

/// A control socket's server side (the daemon's, the simulated car's): a Unix stream socket
/// that only the owner and group can use (mode 0660). One request per connection, one JSON
/// object per line each way: `{"command":"status"}` → `{"ok":true,...}` or
/// `{"ok":false,"error":"..."}`.
public final class ControlServer: Service, Sendable {
    public typealias Handler = @Sendable (JSON) -> JSON
    private let path: String
    private let handler: Handler
    private let logger: Logger
    private let listenFD: Int32
    private let stop = StopSignal()
    private let active = Atomic<Int>(0)
    /// Clients served at once on their own threads; beyond, one at a time.
    static let maximumClients = 16

    /// Binds the socket now, so that a configuration or permission problem stops the daemon
    /// at start instead of later.
    /// Called at every turn of the accept loop (at least every 100 ms) with its stop signal:
    /// the daemon's watchdog beats there (and a test's injected hang holds the loop there).
    private let turn: @Sendable (StopSignal) -> Void

    public init(path: String, logger: Logger, turn: @escaping @Sendable (StopSignal) -> Void = { _ in },
                handler: @escaping Handler) throws(ControlError) {
        self.turn = turn
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
        // Made under a temporary name and renamed once it listens: the path appears only when
        // a client can connect (a client waiting for it never finds a socket that refuses).
        let staging = path.utf8.count + 4 < 108 ? path + ".new" : path
        if staging != path { unlink(staging) }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ControlError("cannot create the control socket", errno: errno) }
        var addr = unixSocketAddress(staging)
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
        chmod(staging, 0o660)
        guard listen(fd, 16) == 0, rename(staging, path) == 0 else {
            let e = errno
            Glibc.close(fd)
            unlink(staging)
            throw ControlError("cannot listen on \(path)", errno: e)
        }
        listenFD = fd
    }

    public func run() async throws {
        let fd = listenFD
        let thread = DedicatedThread(name: "control") { [self] in
            while !self.stop.isSet {
                self.turn(self.stop)
                var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&pfd, 1, 100) > 0 else { continue }
                let conn = accept(fd, nil, nil)
                guard conn >= 0 else { continue }
                // Each client on its own thread: a registration waits for the backend, and a
                // client that never sends must not hold up the next one. Beyond that many, a
                // client is told to come back: the accept loop never serves one itself, so slow
                // clients cannot stall it (nor the watchdog that watches it).
                let served = self.active.add(1, ordering: .relaxed).newValue <= Self.maximumClients
                    && DedicatedThread.detached(name: "control-client") { [self] in
                        self.serve(conn)
                        Glibc.close(conn)
                        self.active.subtract(1, ordering: .relaxed)
                    }
                if !served {
                    // Too many at once, or no thread to be had: told, never left hanging.
                    self.active.subtract(1, ordering: .relaxed)
                    writeControlLine(conn, JSON.object([("ok", .bool(false)), ("error", .string("busy: \(Self.maximumClients) clients are being served; try again"))]).text + "\n")
                    Glibc.close(conn)
                }
            }
        }
        try? await gracefulShutdown()
        stop.set()
        thread.join()
        Glibc.close(listenFD)
        unlink(path)
    }

    private func serve(_ conn: Int32) {
        guard let line = readControlLine(conn, timeoutMs: 2000, limit: 65536) else { return }
        let reply: JSON
        do {
            let request = try JSON.parse(line)
            reply = handler(request)
        } catch {
            reply = .object([("ok", .bool(false)), ("error", .string("request is not valid JSON: \(error)"))])
        }
        writeControlLine(conn, reply.text + "\n")
    }
}
