#if canImport(Glibc)
import Glibc
#endif
import CPlatform

/// The one thread type: a named OS thread for blocking work (a CAN socket, a log file, an
/// accept loop, a connection), so that it never occupies the cooperative pool the async
/// services run on. Joined by its owner, or detached (`detached`) when nobody waits for it.
public final class DedicatedThread: @unchecked Sendable {
    // Set once in init; joined once by the owner.
    private let thread: pthread_t

    private final class Box {
        let name: String
        let body: @Sendable () -> Void
        init(_ name: String, _ body: @escaping @Sendable () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a thread the owner joins. A daemon that cannot make its own threads at start-up
    /// cannot run: that stops it.
    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        guard let t = Self.create(name: name, body) else { preconditionFailure("cannot start the thread \(name)") }
        thread = t
    }

    public func join() { pthread_join(thread, nil) }

    /// A thread nobody joins: it ends with its body. False when no thread could be made (the
    /// process is at its limit): the caller refuses the work instead of stopping.
    @discardableResult
    public static func detached(name: String, _ body: @escaping @Sendable () -> Void) -> Bool {
        guard let t = create(name: name, body) else { return false }
        pthread_detach(t)
        return true
    }

    private static func create(name: String, _ body: @escaping @Sendable () -> Void) -> pthread_t? {
        var t = pthread_t()
        let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
        let rc = pthread_create(&t, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            // The kernel keeps 15 bytes of a thread's name (ps -L, top -H, /proc/PID/task/*/comm).
            _ = cpl_name_this_thread(String(decoding: box.name.utf8.prefix(15), as: UTF8.self))
            box.body()
            return nil
        }, box)
        guard rc == 0 else {
            Unmanaged<Box>.fromOpaque(box).release()
            return nil
        }
        return t
    }
}
