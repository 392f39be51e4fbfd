import ArgumentParser
import Outbox
import Platform
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
            // Ids as the daemon makes them: one millisecond apart, in order.
            let idBase = Clocks.system.wallMs
            var n = 0
            while n < messages {
                let chunk = (0..<batch).map { i in
                    OutboxMessage(id: messageID(unixMs: idBase + Int64(n + i)), stream: "events", priority: .event, capturedAtMs: Int64(n + i), payload: payload)
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

/// Fills an outbox file with a backlog of event messages (the daemon's own file format), for
/// the drain and start-up measurements of `make bench`.
struct OutboxFillBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox-fill",
        abstract: "Appends N event messages to an outbox file in group commits; prints the rate."
    )

    @Option(help: "The outbox database file.") var path: String
    @Option(help: "Messages to append.") var messages = 20_000
    @Option(help: "Messages per commit.") var batch = 500

    func run() throws {
        let store = try OutboxStore(path: path, maximumBytes: 1 << 40)
        let payload = #"{"id":"x","vin":"VSSZZZKLZNR012345","type":"opened","quantity":"doors.frontLeft.open","value":true,"capturedAt":1764000000123}"#
        let start = monotonicNow()
        let idBase = Clocks.system.wallMs
        var n = 0
        while n < messages {
            let count = min(batch, messages - n)
            try store.append((0..<count).map { i in
                OutboxMessage(id: messageID(unixMs: idBase + Int64(n + i)), stream: "events", priority: .event, capturedAtMs: Int64(n + i), payload: payload)
            })
            n += count
        }
        let seconds = Double(monotonicNow().nanoseconds - start.nanoseconds) / 1e9
        store.close()
        print(JSON.object([("messages", .number(Double(n))), ("perSecond", .number((Double(n) / seconds).rounded()))]).text)
    }
}
