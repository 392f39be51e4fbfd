import ArgumentParser
import Platform
import TelematicsCore
import VehicleBus

/// Measures the CAN decode paths on a recorded trace. Run by `make bench` (release build),
/// which puts the figures beside cantools' in docs/benchmarks.md.
@main
struct TCUBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcu-bench",
        abstract: "The unit's benchmarks (prints JSON); make bench runs them.",
        subcommands: [DecodeBench.self, ECallLatencyBench.self, OutboxBench.self, OutboxFillBench.self],
        defaultSubcommand: DecodeBench.self
    )
}

struct DecodeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode throughput of the unit's CAN paths on a candump log."
    )

    @Option(help: "The DBC file.")
    var dbc: String

    @Argument(help: "The candump -l log to decode.")
    var log: String

    @Option(help: "Minimum number of frames to decode per measurement (the trace is repeated).")
    var frames: Int = 2_000_000

    @Option(help: "Repetitions of each measurement; the best is reported.")
    var runs: Int = 3

    func run() throws {
        let db = try loadDBC(path: dbc)
        let reader = try CandumpLogReader(path: log)
        var trace: [CANFrame] = []
        while let f = try reader.next() { trace.append(f) }
        let lines = try readTextFile(log).split(separator: "\n")
        let rounds = max(1, frames / max(1, trace.count))
        let total = rounds * trace.count

        // 1. Codec: every signal of every frame, physical values (what cantools decode does).
        let decoder = FrameDecoder(db)
        var scratch: [DecodedSignal] = []
        var sink = 0.0
        let payloads = trace.map { (id: $0.id, extended: $0.isExtended, data: $0.data) }
        let codec = best(runs) {
            payloads.withUnsafeBufferPointer { frames in
                for _ in 0..<rounds {
                    for i in frames.indices {
                        decoder.decode(id: frames[i].id, isExtended: frames[i].extended, data: frames[i].data, into: &scratch)
                        if let first = scratch.first { sink += first.value }
                    }
                }
            }
        }
        // 2. The daemon's path: typed vehicle state with change detection.
        var tracker = try VehicleStateTracker(database: db)
        var changes = 0
        let state = best(runs) {
            for _ in 0..<rounds {
                for f in trace { changes += tracker.ingest(f).count }
            }
        }
        // 3. tcuctl can decode: parse the log line, decode, write the JSON line.
        var out = ""
        var bytes = 0
        let textRounds = max(1, rounds / 4)
        let text = best(runs) {
            for _ in 0..<textRounds {
                for (i, line) in lines.enumerated() {
                    guard let f = try? CandumpFormat.parseLogLine(line, line: i + 1) else { continue }
                    out.removeAll(keepingCapacity: true)
                    FrameJSON.write(f, decoder: decoder, scratch: &scratch, into: &out)
                    bytes += out.utf8.count
                }
            }
        }
        func fps(_ ns: Int64, _ n: Int) -> Double { Double(n) / (Double(ns) / 1e9) }
        let result = JSON.object([
            ("trace", .string(log)),
            ("traceFrames", .number(Double(trace.count))),
            ("codecFramesPerSecond", .number(fps(codec, total).rounded())),
            ("stateFramesPerSecond", .number(fps(state, total).rounded())),
            ("logToJSONFramesPerSecond", .number(fps(text, textRounds * lines.count).rounded())),
            ("framesPerMeasurement", .number(Double(total))),
        ])
        consume((sink, changes, bytes))
        print(result.text)
    }

    /// Keeps the optimiser from dropping work whose result is otherwise unused.
    @inline(never)
    func consume<T>(_ value: T) { withExtendedLifetime(value) {} }

    /// The fastest of `n` runs, in nanoseconds.
    func best(_ n: Int, _ body: () -> Void) -> Int64 {
        var fastest = Int64.max
        for _ in 0..<n {
            let start = monotonicNow()
            body()
            fastest = min(fastest, monotonicNow().nanoseconds - start.nanoseconds)
        }
        return fastest
    }
}
