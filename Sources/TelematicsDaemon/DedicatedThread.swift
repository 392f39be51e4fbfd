#if canImport(Glibc)
import Glibc
#endif

/// A named OS thread for blocking reads (a CAN socket, a log file, an accept loop), so that
/// they never occupy the cooperative pool that the async services run on.
public final class DedicatedThread: @unchecked Sendable {
    // Set once in start(); joined once by the owner.
    private var thread = pthread_t()

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    public init(name: String, _ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed for \(name): \(rc)")
    }

    public func join() { pthread_join(thread, nil) }

    /// A thread nobody joins: it ends with its body.
    public static func detached(name: String, _ body: @escaping @Sendable () -> Void) {
        let t = DedicatedThread(name: name, body)
        pthread_detach(t.thread)
    }
}
