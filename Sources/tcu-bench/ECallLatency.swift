import ArgumentParser
import ECallLink
import ECallSIP
import Logging
import Outbox
import Platform
import Synchronization
import TelematicsCore
import TelematicsDaemon
import VehicleBus

#if canImport(Glibc)
import Glibc
#endif

/// Crash frame to call placed: the time from the moment the CAN channel hands the crash
/// frame to the reader thread to the moment the dial request arrives at the network peer,
/// through the real bus service, eCall service and TCP link, with the bus at full load.
struct ECallLatencyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ecall-latency",
        abstract: "Latency from the crash frame to the eCall being placed, with the bus at full load."
    )

    @Option(help: "The DBC file.") var dbc: String
    @Option(help: "The vehicle profile.") var profile: String
    @Option(help: "Number of crashes to measure.") var samples = 300
    @Option(help: "Background bus load in frames per second.") var load = 8_000
    @Option(help: "An MQTT broker HOST:PORT: the outbox flushes a backlog to it during the measurement.") var broker: String?
    @Option(help: "Messages waiting in the outbox at the start (with --broker).") var backlog = 50_000
    @Option(help: "With --broker: the CA of the broker's certificate (PEM), for TLS.") var tlsCa: String?
    @Option(help: "With --broker: the car's client certificate (PEM).") var tlsCert: String?
    @Option(help: "With --broker: the car's private key (PEM).") var tlsKey: String?
    @Option(help: "The eCall thread's SCHED_FIFO priority, as [ecall] realtime-priority (0: the cooperative pool).")
    var realtimePriority: Int32 = 10
    @Option(help: "Busy threads at normal priority beside the unit, as other processes loading every core.")
    var hog = 0
    @Option(help: "The eCall's transport: circuit-switched (the dial on the TCP link) or ng (the SIP INVITE, to a UDP peer).")
    var transport = "circuit-switched"

    func run() async throws {
        let db = try loadDBC(path: dbc)
        let vehicle = try VehicleProfile.parse(try readTextFile(profile), source: profile)
        let channel = LoadChannel(db: db, framesPerSecond: load)
        let logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        let bus = VehicleBusService(channel: channel, tracker: try VehicleStateTracker(database: db),
                                    now: { wallClockNow() }, logger: logger)
        // The network peer: answers every dial "busy"; with one attempt allowed the call ends
        // at once and the unit is idle again after T9 (1 ms) for the next crash.
        let listener = try LineListener(TCPEndpoint(host: "127.0.0.1", port: 0))
        var config = ECallConfiguration()
        config.maximumAttempts = 1
        config.t9Ms = 1
        guard (0...99).contains(realtimePriority) else { throw ValidationError("--realtime-priority: expected 0 to 99") }
        let executor = realtimePriority > 0 ? ThreadExecutor(name: "ecall", realtimePriority: realtimePriority) : nil
        if let executor, case .refused(_, let why) = executor.scheduling {
            throw ValidationError("--realtime-priority \(realtimePriority): refused (\(why)); run as root or raise RLIMIT_RTPRIO")
        }
        guard ["circuit-switched", "ng"].contains(transport) else { throw ValidationError("--transport: expected circuit-switched or ng") }
        // NG-eCall: the INVITE goes to a UDP peer that stands for the proxy and the PSAP.
        let sipPeer = transport == "ng" ? try SIPPeer() : nil
        let ng: ((@escaping @Sendable (ECallLinkEvent) -> Void) -> any ECallTransport)? = sipPeer.map { peer in
            let settings = SIPSettings(local: Endpoint(host: "127.0.0.1", port: 0), proxy: "sip:127.0.0.1:\(peer.port)",
                                       domain: "bench.invalid", testURI: "sip:test@bench.invalid", probeIntervalMs: 0,
                                       realtimePriority: realtimePriority > 0 ? realtimePriority : nil)
            return { SIPECallTransport(settings: settings, vin: vehicle.vin.value, deliver: $0) }
        }
        let eCall = ECallService(configuration: config, linkEndpoint: listener.endpoint, bus: bus, profile: vehicle,
                                 logger: logger, monotonic: { monotonicNow().nanoseconds / 1_000_000 },
                                 utcNow: { UInt32(clamping: wallClockNow().nanoseconds / 1_000_000_000) }, transport: ng, executor: executor)
        // Other work on every core, at normal priority: spinning threads that never sleep.
        let hogging = Atomic<Bool>(true)
        let hogs = (0..<max(0, hog)).map { i in
            DedicatedThread(name: "hog-\(i)") {
                var x: UInt64 = 1
                while hogging.load(ordering: .relaxed) { x = x &* 6364136223846793005 &+ 1442695040888963407 }
                _ = x
            }
        }
        defer {
            hogging.store(false, ordering: .relaxed)
            for h in hogs { h.join() }
        }
        // A large backlog in the outbox, flushed to the broker while the crashes are measured.
        var outbox: OutboxService?
        let outboxPath = "/tmp/tcu-bench-latency-\(getpid()).db"
        defer { for suffix in ["", "-wal", "-shm"] { unlink(outboxPath + suffix) } }
        if let broker {
            let parts = broker.split(separator: ":")
            guard parts.count == 2, let port = Int32(parts[1]) else { throw ValidationError("--broker: expected HOST:PORT") }
            let store = try OutboxStore(path: outboxPath, maximumBytes: 1 << 30)
            var n = 0
            while n < backlog {
                try store.append((0..<min(1000, backlog - n)).map { i in
                    OutboxMessage(id: messageID(unixMs: Clocks.system.wallMs), stream: "events", priority: .event, capturedAtMs: Int64(n + i),
                                  payload: #"{"type":"opened","quantity":"doors.frontLeft.open","value":true}"#)
                })
                n += 1000
            }
            store.close()
            var up = UplinkConfiguration(host: String(parts[0]), port: port, vin: vehicle.vin.value)
            up.window = 64
            up.tlsCA = tlsCa
            up.tlsCertificate = tlsCert
            up.tlsKey = tlsKey
            outbox = OutboxService(path: outboxPath, maximumBytes: 1 << 30, logger: logger, uplink: up)
        }
        let latencies = Mutex<[Int64]>([])
        // The network peer stands for another machine: it runs at the eCall's priority, so that
        // the figure is the unit's time, not the peer's own wait for a core.
        let onDial: @Sendable (Int64) -> Void = { dialAt in
            if let crashAt = channel.takeCrashTime() { latencies.withLock { $0.append(dialAt - crashAt) } }
        }
        let priority = executor == nil ? nil : realtimePriority
        let peer: any BenchPeer = try sipPeer.map { try $0.start(realtimePriority: priority, onDial: onDial) }
            ?? PeerThread(listener: listener, realtimePriority: priority, onDial: onDial)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await bus.run() }
            group.addTask { try await eCall.run() }
            if let outbox { group.addTask { try await outbox.run() } }
            // Wait for the link, then crash, wait for the dial, reset, repeat.
            while !eCall.linkIsAttached { try await Task.sleep(for: .milliseconds(10)) }
            for i in 0..<samples {
                channel.crash(true)
                while latencies.withLock({ $0.count }) <= i { try await Task.sleep(for: .milliseconds(1)) }
                channel.crash(false)
                while eCall.phaseNow != .idle { try await Task.sleep(for: .milliseconds(1)) }
                // Let the cleared crash flag reach the latch before the next crash.
                try await Task.sleep(for: .milliseconds(20))
            }
            group.cancelAll()
        }
        peer.stop()
        let flushed = outbox.map { o -> Double in
            Double(o.report().backend?.acknowledged ?? 0)
        }
        let sorted = latencies.withLock { $0 }.sorted()
        func pct(_ p: Double) -> Double { Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1000 }
        print(JSON.object([
            ("samples", .number(Double(sorted.count))),
            ("busLoadFramesPerSecond", .number(Double(load))),
            ("p50Microseconds", .number(pct(0.5))),
            ("p99Microseconds", .number(pct(0.99))),
            ("maxMicroseconds", .number(Double(sorted.last ?? 0) / 1000)),
            ("outboxBacklog", .number(Double(broker == nil ? 0 : backlog))),
            ("outboxFlushedDuringRun", .number(flushed ?? 0)),
            ("scheduling", .string(executor?.scheduling.description ?? "cooperative pool")),
            ("hogThreads", .number(Double(hogs.count))),
            ("transport", .string(transport)),
        ]).text)
    }
}

/// A bus at a steady load of ESP_Speed frames, with a crash frame on demand.
final class LoadChannel: CANChannel, @unchecked Sendable {
    private let speed: CANFrame
    private let crashOn: CANFrame
    private let crashOff: CANFrame
    private let gapNs: Int64
    private var next = monotonicNow()
    private let pending = Mutex<CANFrame?>(nil)
    private let crashAt = Mutex<Int64?>(nil)

    init(db: DBCDatabase, framesPerSecond: Int) {
        let esp = db.message(named: "ESP_Speed")!
        let airbag = db.message(named: "Airbag_01")!
        speed = CANFrame(id: esp.id, data: try! SignalCodec.encode(esp, values: ["Vehicle_Speed": 60], missingAsZero: true))
        crashOn = CANFrame(id: airbag.id, data: try! SignalCodec.encode(airbag, values: ["Crash_Detected": 1, "Crash_Severity": 3], missingAsZero: true))
        crashOff = CANFrame(id: airbag.id, data: try! SignalCodec.encode(airbag, values: [:], missingAsZero: true))
        gapNs = 1_000_000_000 / Int64(max(1, framesPerSecond))
    }

    func crash(_ on: Bool) { pending.withLock { $0 = on ? crashOn : crashOff } }

    func takeCrashTime() -> Int64? { crashAt.withLock { v in defer { v = nil }; return v } }

    func receive(timeoutNs: Int64) throws(SystemError) -> CANFrame? {
        let timeoutMs = (timeoutNs + 999_999) / 1_000_000
        if var f = pending.withLock({ v in defer { v = nil }; return v }) {
            f.timestamp = wallClockNow()
            if f.data == crashOn.data { crashAt.withLock { $0 = monotonicNow().nanoseconds } }
            return f
        }
        // Pace the background load.
        sleepUntil(monotonic: next, maxMs: timeoutMs)
        next = Timestamp(nanoseconds: max(next.nanoseconds + gapNs, monotonicNow().nanoseconds - 10 * gapNs))
        var f = speed
        f.timestamp = wallClockNow()
        return f
    }

    func send(_ frame: CANFrame) throws(SystemError) {}
    var isExhausted: Bool { false }
    var kernelDrops: UInt64 { 0 }
    func close() {}
}

/// The network side for the benchmark: notes when each dial arrives, answers "busy".
protocol BenchPeer: Sendable {
    func stop()
}

/// The network side for the benchmark: notes when each dial arrives, answers "busy".
final class PeerThread: BenchPeer {
    private let stopFlag = Atomic<Bool>(false)
    private let thread = Mutex<DedicatedThread?>(nil)

    init(listener: LineListener, realtimePriority: Int32?, onDial: @escaping @Sendable (Int64) -> Void) {
        let t = DedicatedThread(name: "bench-peer") { [self] in
            if let realtimePriority { _ = raiseCallingThread(toRealtimePriority: realtimePriority) }
            serve(listener, onDial)
        }
        thread.withLock { $0 = t }
    }

    private func serve(_ listener: LineListener, _ onDial: @Sendable (Int64) -> Void) {
        var conn: LineConnection?
        while !stopFlag.load(ordering: .acquiring) {
            if conn == nil { conn = listener.accept(timeoutMs: 50); continue }
            switch conn!.readLine(timeoutMs: 50) {
            case .timeout: continue
            case .closed: conn = nil
            case .line(let text):
                let at = monotonicNow().nanoseconds
                if case .dial(let call, _)? = try? ECallWire.parse(text) {
                    onDial(at)
                    conn!.send(ECallWire.setup(call: call, outcome: .busy).json.text)
                }
            }
        }
        conn?.close()
        listener.close()
    }

    func stop() {
        stopFlag.store(true, ordering: .releasing)
        thread.withLock({ $0 })?.join()
    }
}

/// NG-eCall's network side for the benchmark: a UDP socket standing for the proxy and the PSAP;
/// notes when each INVITE arrives and answers 486 Busy Here (libre then sends the ACK).
final class SIPPeer: BenchPeer, @unchecked Sendable {
    let fd: Int32
    let port: UInt16
    private let stopFlag = Atomic<Bool>(false)
    private var thread: DedicatedThread?

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw ValidationError("cannot open the SIP peer's socket") }
        self.fd = fd
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard bound else { throw ValidationError("cannot bind the SIP peer's socket") }
        port = UInt16(bigEndian: a.sin_port)
    }

    func start(realtimePriority: Int32?, onDial: @escaping @Sendable (Int64) -> Void) throws -> SIPPeer {
        thread = DedicatedThread(name: "bench-sip-peer") { [self] in
            if let realtimePriority { _ = raiseCallingThread(toRealtimePriority: realtimePriority) }
            serve(onDial)
        }
        return self
    }

    private func serve(_ onDial: @Sendable (Int64) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while !stopFlag.load(ordering: .acquiring) {
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 50) > 0 else { continue }
            var from = sockaddr_storage()
            var fromLen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &from) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &fromLen) }
            }
            guard n > 0 else { continue }
            let at = monotonicNow().nanoseconds
            let text = String(decoding: buffer[..<n], as: UTF8.self)
            guard text.hasPrefix("INVITE ") else { continue }
            onDial(at)
            // The response copies the transaction's header fields (RFC 3261 8.2.6.2).
            var reply = "SIP/2.0 486 Busy Here\r\n"
            for line in text.split(separator: "\r\n", omittingEmptySubsequences: false) {
                if line.isEmpty { break }
                let name = line.prefix { $0 != ":" }.lowercased()
                if ["via", "from", "call-id", "cseq"].contains(name) { reply += line + "\r\n" }
                if name == "to" { reply += line + ";tag=bench\r\n" }
            }
            reply += "Content-Length: 0\r\n\r\n"
            let bytes = Array(reply.utf8)
            _ = withUnsafePointer(to: &from) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, bytes, bytes.count, 0, $0, fromLen) }
            }
        }
    }

    func stop() {
        stopFlag.store(true, ordering: .releasing)
        thread?.join()
        close(fd)
    }
}
