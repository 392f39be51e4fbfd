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
    private let listener: Listener
    private let stop = StopSignal()
    /// Clients served at once on their own threads; beyond, a client is told to come back.
    static let maximumClients = 16
    /// Called at every turn of the accept loop (at least every 100 ms) with its stop signal:
    /// the daemon's watchdog beats there (and a test's injected hang holds the loop there).
    private let turn: @Sendable (StopSignal) -> Void

    /// Binds the socket now (mode 0660), so that a configuration or permission problem stops
    /// the daemon at start instead of later.
    public init(path: String, logger: Logger, turn: @escaping @Sendable (StopSignal) -> Void = { _ in },
                handler: @escaping Handler) throws(ControlError) {
        self.turn = turn
        self.path = path
        self.handler = handler
        self.logger = logger
        if access(path, F_OK) == 0 {
            // A socket left by a daemon that died is replaced; a live one is an error.
            if (try? ControlClient.connect(path)).map({ Glibc.close($0); return true }) == true {
                throw ControlError("another daemon is already listening on \(path)")
            }
        }
        do {
            listener = try Listener(.unix(path: path, mode: 0o660), backlog: 16)
        } catch {
            throw ControlError("cannot create the control socket: \(error)")
        }
    }

    public func run() async throws {
        let thread = DedicatedThread(name: "control") { [self] in
            // Each client on its own thread: a registration waits for the backend, and a
            // client that never sends must not hold up the next one.
            listener.serve(name: "control-client", maximum: Self.maximumClients, stop: stop, turn: turn, refuse: { conn in
                writeControlLine(conn, JSON.object([
                    ("ok", .bool(false)), ("error", .string("busy: \(Self.maximumClients) clients are being served; try again")),
                ]).text + "\n")
            }, handle: { [self] conn in serve(conn) })
        }
        try? await gracefulShutdown()
        stop.set()
        thread.join()
        listener.close()
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
