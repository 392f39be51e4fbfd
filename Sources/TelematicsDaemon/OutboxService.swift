#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Outbox
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// The durable outbox in the daemon: producers hand messages over without waiting; one thread
/// owns the SQLite file and commits whatever has gathered in one transaction (group commit).
/// A database that cannot be opened is reported and retried; it never stops the daemon, and it
/// never touches the eCall, which only hands its report over like any producer.
public final class OutboxService: Service, Sendable {
    private let path: String
    private let maximumBytes: Int64
    private let logger: Logger
    private let queue = Mutex<[OutboxMessage]>([])
    private let wake = DispatchSemaphore(value: 0)
    private let stop = Atomic<Bool>(false)
    private let stats = Mutex<(store: OutboxStore.Statistics?, error: String?, committed: Int64, dropped: Int64)>((nil, nil, 0, 0))
    /// While the store cannot be opened, at most this many messages wait in memory.
    static let memoryLimit = 10_000
    static let reopenIntervalMs: Int64 = 30_000

    public init(path: String, maximumBytes: Int64, logger: Logger) {
        self.path = path
        self.maximumBytes = maximumBytes
        self.logger = logger
    }

    /// Queues a message for the next commit; never blocks.
    public func submit(_ m: OutboxMessage) {
        let dropped = queue.withLock { q -> Bool in
            if q.count >= Self.memoryLimit { q.removeFirst(); return true }
            q.append(m)
            return false
        }
        if dropped { stats.withLock { $0.dropped += 1 } }
        wake.signal()
    }

    public func report() -> JSON {
        let s = stats.withLock { $0 }
        var o: [(String, JSON)] = [("path", .string(path)), ("committed", .number(Double(s.committed)))]
        if let e = s.error { o.append(("error", .string(e))) }
        if s.dropped > 0 { o.append(("droppedInMemory", .number(Double(s.dropped)))) }
        if let st = s.store {
            o.append(("bytes", .number(Double(st.bytes))))
            o.append(("waiting", .object(OutboxPriority.allCases.compactMap { p in st.messages[p].map { (p.name, .number(Double($0))) } })))
            o.append(("evicted", .object(OutboxPriority.allCases.compactMap { p in st.evicted[p].map { (p.name, .number(Double($0))) } })))
            o.append(("coalesced", .number(Double(st.coalesced))))
        }
        return .object(o)
    }

    public func run() async throws {
        let thread = DedicatedThread(name: "outbox") { [self] in self.loop() }
        try? await gracefulShutdown()
        stop.store(true, ordering: .releasing)
        wake.signal()
        thread.join()
    }

    private func open() -> OutboxStore? {
        do {
            let store = try OutboxStore(path: path, maximumBytes: maximumBytes)
            if let aside = store.movedAside {
                logger.error("the outbox database was damaged; moved aside, starting afresh", metadata: ["outbox.movedTo": "\(aside)"])
            }
            stats.withLock { $0.error = nil; $0.store = try? store.statistics() }
            logger.info("outbox open", metadata: ["outbox.path": "\(path)"])
            return store
        } catch {
            stats.withLock { $0.error = error.description }
            logger.error("cannot open the outbox; retrying", metadata: ["outbox.path": "\(path)", "error": "\(error)"])
            return nil
        }
    }

    private func loop() {
        var store = open()
        var lastAttempt = monotonicNow()
        while true {
            _ = wake.wait(timeout: .now() + .milliseconds(1000))
            let stopping = stop.load(ordering: .acquiring)
            if store == nil, stopping || monotonicNow().milliseconds(since: lastAttempt) >= Self.reopenIntervalMs {
                lastAttempt = monotonicNow()
                store = open()
            }
            if let s = store {
                let batch = queue.withLock { q in defer { q.removeAll(keepingCapacity: true) }; return q }
                if !batch.isEmpty {
                    do {
                        try s.append(batch)
                        stats.withLock { $0.committed += Int64(batch.count); $0.store = try? s.statistics() }
                    } catch {
                        // Keep them for the next try (the disk may be full for a while).
                        queue.withLock { $0.insert(contentsOf: batch, at: 0) }
                        stats.withLock { $0.error = error.description }
                        logger.error("cannot commit to the outbox", metadata: ["error": "\(error)", "outbox.waiting": "\(batch.count)"])
                    }
                }
            }
            if stopping { store?.close(); return }
        }
    }
}
