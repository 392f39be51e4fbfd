#if canImport(Glibc)
import UnitConfiguration
import Glibc
#endif
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// Where the simulated car's frames go: a SocketCAN interface or the software log bus.
public enum CarBus: Sendable, Equatable, CustomStringConvertible {
    case socketCAN(String)
    case logBus(String)

    /// `socketcan:vcan0` or `logbus:DIR`, as the unit's `[can] source` names the same bus.
    public static func parse(_ text: String) -> CarBus? {
        switch DaemonConfiguration.CANSource.parse(text) {
        case .socketCAN(let i)?: .socketCAN(i)
        case .logBus(let d)?: .logBus(d)
        default: nil
        }
    }

    public var description: String {
        switch self {
        case .socketCAN(let i): "socketcan:\(i)"
        case .logBus(let d): "logbus:\(d)"
        }
    }
}

/// The simulated car as a service: owns one `SimulatedVehicle`, runs it on its own thread on
/// the monotonic clock (physics, scenario, cyclic and event frames, the unit's requests), feeds
/// gpsd with NMEA once a second, and serves live commands from the control socket.
public final class CarService: Service, Sendable {
    public struct Options: Sendable {
        public var bus: CarBus
        public var database: DBCDatabase
        public var configuration = SimulatedVehicle.Configuration()
        public var scenario: Scenario?
        /// Folder that a scenario's route files are relative to.
        public var scenarioFolder = "."
        /// gpsd's NMEA input (`gpsd udp://HOST:PORT`).
        public var gpsdUDP: (host: String, port: UInt16)?
        /// Stop when the scenario ends.
        public var exitAtEnd = false
        public init(bus: CarBus, database: DBCDatabase) {
            self.bus = bus
            self.database = database
        }
    }

    struct State {
        var car: SimulatedVehicle
        var runner: ScenarioRunner?
        /// The last events, numbered from 1, for `events` and `wait`.
        var log: [(seq: Int, event: SimEvent)] = []
        var seq = 0
        var requests: [(seq: Int, kind: String)] = []
        var finished = false

        mutating func append(_ events: [SimEvent]) {
            for e in events {
                seq += 1
                log.append((seq, e))
            }
            if log.count > 4_000 { log.removeFirst(log.count - 2_000) }
        }
    }

    private let options: Options
    private let state: Mutex<State>
    private let channel: any CANChannel
    private let changed = Wakeup()
    private let stop = Atomic<Bool>(false)
    private let origin = monotonicNow()
    private let nmea: UDPSender?
    private let output: @Sendable (String) -> Void

    public init(options: Options, output: @escaping @Sendable (String) -> Void) throws(SystemError) {
        self.options = options
        self.output = output
        switch options.bus {
        case .socketCAN(let iface):
            // Only the unit's frames: the car's own never come back to its socket.
            let unitMessages = options.database.messages.filter { $0.sender == SimulatedVehicle.unitNode }
            channel = try SocketCANChannel(interface: iface, filters: unitMessages.map { CANFilter(id: $0.id, isExtended: $0.isExtended) },
                                           receiveErrorFrames: false)
        case .logBus(let dir):
            channel = try LogBusChannel(directory: dir, side: .car)
        }
        if let (host, port) = options.gpsdUDP { nmea = try UDPSender(host: host, port: port) } else { nmea = nil }
        state = Mutex(State(car: SimulatedVehicle(database: options.database, configuration: options.configuration),
                            runner: options.scenario.map { ScenarioRunner($0) }))
    }

    /// Milliseconds since the car started, on the monotonic clock.
    var nowMs: Int64 { nowNs / 1_000_000 }
    /// Nanoseconds since the car started: the loop sleeps until a frame's due millisecond to
    /// the nanosecond (waking a millisecond late every time would be a millisecond of jitter).
    var nowNs: Int64 { monotonicNow().nanoseconds - origin.nanoseconds }

    public func run() async throws {
        let (ended, continuation) = AsyncStream<Void>.makeStream()
        let thread = DedicatedThread(name: "car") { [self] in
            self.loop()
            continuation.finish()
        }
        // Ends when the loop does (a scenario's end) or at the graceful shutdown.
        await withGracefulShutdownHandler {
            for await _ in ended {}
        } onGracefulShutdown: { [self] in
            self.stop.store(true, ordering: .releasing)
        }
        stop.store(true, ordering: .releasing)
        thread.join()
        channel.close()
    }

    private func loop() {
        var nextNMEA = (nowMs / 1_000 + 1) * 1_000
        while !stop.load(ordering: .acquiring) {
            let t = nowMs
            var frames: [CANFrame] = []
            var events: [SimEvent] = []
            var wake: Int64 = t + 100
            var done = false
            var loadErrors: [String] = []
            state.withLock { s in
                s.car.advance(to: t)
                let requests = s.car.takeRequests()
                for r in requests { s.requests.append((s.seq, r.kind)) }
                if s.requests.count > 1_000 { s.requests.removeFirst(500) }
                if var runner = s.runner {
                    for step in runner.due(at: t, vehicle: s.car, requests: requests) {
                        switch resolve(step.command) {
                        case .success(let c):
                            let outcome = s.car.apply(c)
                            if case .refused(let why) = outcome { loadErrors.append("scenario line \(step.line): refused (\(why))") }
                        case .failure(let e): loadErrors.append(e.description)
                        }
                    }
                    if runner.finished, !s.finished {
                        s.finished = true
                        done = options.exitAtEnd
                    }
                    if let n = runner.nextTimedMs() { wake = min(wake, n) }
                    s.runner = runner
                }
                frames = s.car.dueFrames(at: t)
                events = s.car.takeEvents()
                s.append(events)
                wake = min(wake, s.car.nextFrameDueMs)
            }
            for f in frames {
                do { try channel.send(f) } catch { output("bus: cannot send \(hex(f.id)): \(error)") }
            }
            for e in events { output(e.description) }
            for e in loadErrors { output("scenario: \(e)") }
            if done {
                output("scenario: ended")
                return
            }
            if t >= nextNMEA {
                if let nmea {
                    let sentences = state.withLock { $0.car.nmeaEpoch(utcMs: wallClockNow().nanoseconds / 1_000_000) }
                    for line in sentences { nmea.send(line + "\r\n") }
                }
                nextNMEA += 1_000
                if nextNMEA <= t { nextNMEA = (t / 1_000 + 1) * 1_000 }
            }
            changed.broadcast()
            let waitNs = max(0, min(wake, nextNMEA) * 1_000_000 - nowNs)
            do {
                if let frame = try channel.receive(timeoutNs: min(waitNs, 100_000_000)) {
                    state.withLock { s in
                        s.car.advance(to: nowMs)
                        _ = s.car.receive(frame)
                    }
                }
            } catch {
                output("bus: \(error)")
                return
            }
        }
    }

    /// A route file named by a command, loaded and parsed.
    func resolve(_ command: CarCommand) -> Result<CarCommand, ParseError> {
        guard case .routeFile(let path, let kmh) = command else { return .success(command) }
        let full = path.hasPrefix("/") ? path : options.scenarioFolder + "/" + path
        do {
            let text = try readTextFile(full)
            return .success(.route(try RouteFile.parse(text, source: full), kmh: kmh))
        } catch let e as ParseError {
            return .failure(e)
        } catch {
            return .failure(ParseError(source: full, line: 0, "\(error)"))
        }
    }

    // MARK: Control

    /// The control socket's requests: `do` (a command line), `status`, `events`, `wait`.
    public func handle(_ request: JSON) -> JSON {
        func fail(_ message: String) -> JSON { .object([("ok", .bool(false)), ("error", .string(message))]) }
        switch request["command"]?.stringValue {
        case "do":
            guard let line = request["line"]?.stringValue else { return fail("do needs a line") }
            let command: CarCommand
            do { command = try CarCommand.parse(Substring(line), source: "command") } catch { return fail(error.description) }
            switch resolve(command) {
            case .failure(let e): return fail(e.description)
            case .success(let c):
                let (outcome, events) = state.withLock { s -> (ECUOutcome, [SimEvent]) in
                    s.car.advance(to: nowMs)
                    let o = s.car.apply(c)
                    let e = s.car.takeEvents()
                    s.append(e)
                    return (o, e)
                }
                for e in events { output(e.description) }
                if case .refused(let why) = outcome { return fail("refused: \(why)") }
                return .object([("ok", .bool(true)), ("outcome", .string(outcome.description)),
                                ("events", .array(events.map { .string($0.description) }))])
            }
        case "status":
            return state.withLock { s in
                s.car.advance(to: nowMs)
                var status = s.car.statusJSON
                if case .object(var fields) = status, let r = s.runner {
                    fields.append(("scenario", .object([
                        ("name", .string(r.scenario.name)), ("finished", .bool(r.finished)),
                        ("line", r.current.map { .number(Double(r.scenario.steps[$0].line)) } ?? .null),
                    ])))
                    status = .object(fields)
                }
                return .object([("ok", .bool(true)), ("car", status)])
            }
        case "events":
            let since = Int(request["since"]?.integer(in: 0...Int64(Int32.max)) ?? 0)
            return state.withLock { s in
                .object([("ok", .bool(true)), ("last", .number(Double(s.seq))),
                         ("events", .array(s.log.filter { $0.seq > since }.map { .string($0.event.description) }))])
            }
        case "wait":
            guard let text = request["condition"]?.stringValue else { return fail("wait needs a condition") }
            let condition: Scenario.Condition
            do { condition = try Scenario.Condition.parse(Substring(text), source: "wait") } catch { return fail(error.description) }
            let timeout = request["timeoutMs"]?.integer(in: 0...3_600_000) ?? 30_000
            let deadline = nowMs + timeout
            let (seq0, arrivals0) = state.withLock { ($0.seq, $0.car.arrivals) }
            while true {
                let met = state.withLock { s in
                    condition.holds(s.car, requestsSince: s.requests.filter { $0.seq >= seq0 }.map(\.kind), arrivalsBaseline: arrivals0)
                }
                if met { return .object([("ok", .bool(true))]) }
                let left = deadline - nowMs
                if left <= 0 { return fail("timed out after \(timeout) ms waiting for \(text)") }
                changed.wait(timeoutMs: left)
            }
        default:
            return fail("unknown command (do, status, events, wait)")
        }
    }
}

/// Wakes the threads waiting for the car to change (`wait`), without polling.
final class Wakeup: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    private var cond = pthread_cond_t()
    private var generation = 0

    init() {
        pthread_mutex_init(&mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(&cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    func broadcast() {
        pthread_mutex_lock(&mutex)
        generation &+= 1
        pthread_cond_broadcast(&cond)
        pthread_mutex_unlock(&mutex)
    }

    /// Waits for the next broadcast, at most `timeoutMs`.
    func wait(timeoutMs: Int64) {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let ns = Int64(ts.tv_nsec) + min(timeoutMs, 3_600_000) * 1_000_000
        ts.tv_sec += Int(ns / 1_000_000_000)
        ts.tv_nsec = Int(ns % 1_000_000_000)
        pthread_mutex_lock(&mutex)
        let g = generation
        while generation == g {
            if pthread_cond_timedwait(&cond, &mutex, &ts) != 0 { break }
        }
        pthread_mutex_unlock(&mutex)
    }
}

/// Sends NMEA sentences to gpsd's UDP input on loopback (one sentence per datagram).
final class UDPSender: Sendable {
    private let fd: Int32
    private let address: sockaddr_in

    init(host: String, port: UInt16) throws(SystemError) {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &a.sin_addr) == 1 else {
            throw SystemError(.invalidInput, "expected an IPv4 address for gpsd's UDP input, found '\(host)'")
        }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemError(.io, "cannot open a UDP socket", errno: errno) }
        self.fd = fd
        address = a
    }

    deinit { close(fd) }

    func send(_ text: String) {
        var a = address
        var bytes = Array(text.utf8)
        _ = withUnsafePointer(to: &a) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                bytes.withUnsafeMutableBytes { sendto(fd, $0.baseAddress, $0.count, 0, sa, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
    }
}
