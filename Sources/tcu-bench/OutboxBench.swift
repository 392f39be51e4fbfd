import ArgumentParser
import Outbox
import TelematicsCore
import VehicleBus

#if canImport(Glibc)
import Glibc
#endif

/// Appends to the durable outbox (WAL, synchronous=FULL) one message per transaction and in
/// batches (group commit), on a real file, and reads a large backlog back.
struct OutboxBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox",
        abstract: "Durable outbox: messages per second with one commit each and with group commits."
    )

    @Option(help: "A folder for the database files.") var folder = "/tmp"
    @Option(help: "Messages per measurement.") var messages = 2_000

    func run() throws {
        var results: [(String, JSON)] = []
        for batch in [1, 10, 100] {
            let path = "\(folder)/tcu-bench-outbox-\(getpid())-\(batch).db"
            defer { for s in ["", "-wal", "-shm"] { unlink(path + s) } }
            let store = try OutboxStore(path: path)
            let payload = #"{"type":"doorOpened","door":"frontLeft","at":1764000000123}"#
            let start = monotonicNow()
            var n = 0
            while n < messages {
                let chunk = (0..<batch).map { i in
                    OutboxMessage(id: randomMessageID(), stream: "events", priority: .event, capturedAtMs: Int64(n + i), payload: payload)
                }
                try store.append(chunk)
                n += batch
            }
            let seconds = Double(monotonicNow().nanoseconds - start.nanoseconds) / 1e9
            results.append(("batch\(batch)PerSecond", .number((Double(n) / seconds).rounded())))
            if batch == 100 {
                // Reading the backlog: what a daemon does after starting with a full outbox.
                store.close()
                let t0 = monotonicNow()
                let reopened = try OutboxStore(path: path)
                let openMs = Double(monotonicNow().nanoseconds - t0.nanoseconds) / 1e6
                let first = try reopened.next(limit: 100)
                let firstMs = Double(monotonicNow().nanoseconds - t0.nanoseconds) / 1e6
                results.append(("reopenMs", .number((openMs * 100).rounded() / 100)))
                results.append(("firstBatchMs", .number((firstMs * 100).rounded() / 100)))
                results.append(("backlog", .number(Double(n))))
                _ = first
            }
        }
        print(JSON.object(results).text)
    }
}
