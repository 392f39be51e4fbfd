import CarCrypto
import CMosquitto
#if canImport(Glibc)
import Glibc
#endif
import Outbox
import CPlatform
import Platform
import Synchronization
import TelematicsCore

/// How a fleet process reaches its broker and keeps its outbox.
public struct FleetSettings: Sendable {
    public var host = "127.0.0.1"
    public var port: Int32 = 8883
    public var ca: String
    public var issuerCertificate: String
    public var issuerKey: String
    public var outboxPath: String
    public var keepaliveSeconds: Int32 = 60
    /// Messages in flight per car.
    public var window = 4
    /// New connections per second at most (a fleet that starts or comes back ramps up).
    public var connectsPerSecond = 2_000
    /// Connections in their handshake at most: the broker's accept queue is short (a connect
    /// that finds it full waits for the SYN's retransmission, a second), and its TLS handshakes
    /// are its heaviest work. The fleet waits for handshakes to finish before it starts more.
    public var connectingWindow = 64
    /// How long to run (nil: until stopped).
    public var durationMs: Int64?
    /// The start spreads the cars' first connections over this long.
    public var rampMs: Int64 = 5_000
    /// SUMO's floating car data (geo): the cars' trips and positions (nil: their own).
    public var trajectoriesPath: String?
    /// The cars that register with the backend themselves: VIN → the pairing code their
    /// owner's garage gave (`tcu-backend garage import`). Their registration's answer gives
    /// them the key remote commands are signed with; the others keep their plan's.
    public var pairingCodes: [String: String] = [:]
    /// The backend's Ed25519 public key (`tcu-backend keys`): the registration answers must
    /// carry its signature.
    public var answerKey: [UInt8]?
    /// The owners' app (the remote-command scenario); nil: no owner sends commands.
    public var app: FleetApp.Settings?

    public init(ca: String, issuerCertificate: String, issuerKey: String, outboxPath: String) {
        self.ca = ca
        self.issuerCertificate = issuerCertificate
        self.issuerKey = issuerKey
        self.outboxPath = outboxPath
    }
}

/// What the fleet did, for its report line (one a second, and one at the end).
public struct FleetStatistics: Sendable {
    public var cars = 0
    public var connected = 0
    /// Cars connecting (connect called, no CONNACK yet) and waiting to connect again.
    public var connecting = 0
    public var down = 0
    public var stored: Int64 = 0
    public var published: Int64 = 0
    public var acknowledged: Int64 = 0
    public var reconnects: Int64 = 0
    public var connectAttempts: Int64 = 0
    public var waiting: Int64 = 0
    public var refused: Int64 = 0
    public var dials: Int = 0
    /// Connections lost or refused, and the last reason.
    public var lost: Int64 = 0
    public var lastError: String?
    /// Cars registered with the backend by their pairing code, refused registrations, and the
    /// remote commands the cars received.
    public var registered = 0
    public var registrationsRefused: Int64 = 0
    public var commands: Int64 = 0
    /// The owners' app's figures (the remote-command scenario).
    public var app: FleetApp.Figures?
    /// Where the loop's time went since the last line (ms): the sockets, the cars, the outbox's
    /// commit and the sending; and how many turns it made.
    public var loopMs: (io: Int64, cars: Int64, commit: Int64, send: Int64) = (0, 0, 0, 0)
    public var turns: Int64 = 0
    /// Crash (the airbag's line) to dial, microseconds, each crash.
    public var crashToDialUs: [Int64] = []

    public var json: JSON {
        var o: [(String, JSON)] = [
            ("cars", .number(Double(cars))), ("connected", .number(Double(connected))), ("connecting", .number(Double(connecting))),
            ("down", .number(Double(down))), ("stored", .number(Double(stored))),
            ("published", .number(Double(published))), ("acknowledged", .number(Double(acknowledged))),
            ("waiting", .number(Double(waiting))), ("reconnects", .number(Double(reconnects))),
            ("connectAttempts", .number(Double(connectAttempts))), ("refused", .number(Double(refused))),
            ("dials", .number(Double(dials))), ("lost", .number(Double(lost))),
        ]
        if let lastError { o.append(("lastError", .string(lastError))) }
        o.append(("registered", .number(Double(registered))))
        o.append(("registrationsRefused", .number(Double(registrationsRefused))))
        o.append(("commands", .number(Double(commands))))
        if let app { o.append(("app", app.json)) }
        o.append(("turns", .number(Double(turns))))
        o.append(("loopMs", .object([("io", .number(Double(loopMs.io))), ("cars", .number(Double(loopMs.cars))),
                                     ("commit", .number(Double(loopMs.commit))), ("send", .number(Double(loopMs.send)))])))
        if !crashToDialUs.isEmpty {
            let sorted = crashToDialUs.sorted()
            func pct(_ p: Int) -> JSON { .number(Double(sorted[min(sorted.count - 1, sorted.count * p / 100)])) }
            o.append(("crashToDialUs", .object([("p50", pct(50)), ("p99", pct(99)), ("max", .number(Double(sorted.last!)))])))
        }
        return .object(o)
    }
}

/// A fleet shard in one process: its cars (values), one libmosquitto connection each driven
/// by one epoll loop on one thread (libmosquitto's socket-level API: no thread per car), one
/// SQLite outbox with a stream per car. The cars' eCall runs on its own line and thread
/// (`eCall`): a crash never waits for the broker connections; a call's report comes back
/// through the inbox to be sent.
public final class FleetLoop: @unchecked Sendable {
    // Everything below is the loop thread's alone, but the stop flag and the inbox.
    private var cars: [FleetCar]
    private var links: [OpaquePointer?]
    private var uplinks: [UplinkMachine]
    /// Per car: the highest sequence number handed to libmosquitto on this connection.
    private var taken: [Int64]
    private var socketOf: [Int32]
    private var wantsWrite: [Bool]
    private var contexts: UnsafeMutablePointer<CarContext>
    private let vins: [String]
    private let settings: FleetSettings
    private let identities: FleetIdentities
    private let outbox: FleetOutboxStore
    private let clocks: Clocks
    private let epoll: Int32
    private var trajectories: FleetTrajectories?
    private var startedMs: Int64 = 0
    private let inbox: Inbox
    private let stopping = Atomic<Bool>(false)
    /// The cars' eCall: its machines, the airbag line and the simulated PSAP, on its own thread.
    public let eCall: FleetECallLine
    private var pendingMessages: [(slot: Int, message: OutboxMessage)] = []
    private var pendingAcks: [(slot: Int, seq: Int64)] = []
    /// Registrations to keep in the next commit (the stored text), by slot.
    private var pendingRegistrations: [Int: String] = [:]
    /// The owners' app (the remote-command scenario).
    public let app: FleetApp?
    private var dirty: Set<Int> = []
    private var outputs: [FleetCar.Output] = []
    private var rng = SystemRandomNumberGenerator()
    public private(set) var statistics = FleetStatistics()
    private let report: @Sendable (FleetStatistics) -> Void
    private let log: @Sendable (String) -> Void

    struct CarContext {
        var loop: Unmanaged<FleetLoop>
        var slot: Int
    }

    private static let initialised: Bool = { mosquitto_lib_init(); return true }()

    /// The shard's cars, ready to run: identities made, the outbox opened (what a previous run
    /// left is sent first).
    public init(plan: FleetPlan, shard: FleetPlan.Shard, settings: FleetSettings, clocks: Clocks = .system,
                report: @escaping @Sendable (FleetStatistics) -> Void, log: @escaping @Sendable (String) -> Void) throws(SystemError) {
        _ = Self.initialised
        self.settings = settings
        self.clocks = clocks
        self.report = report
        self.log = log
        let specs = shard.cars.map { plan.car($0) }
        vins = specs.map(\.vin)
        var behaviour = FleetCar.Behaviour(plan)
        behaviour.tripsFromTrajectory = settings.trajectoriesPath != nil
        trajectories = try settings.trajectoriesPath.map { (p) throws(SystemError) in try FleetTrajectories(path: p) }
        let start = clocks.wallMs
        do {
            outbox = try FleetOutboxStore(path: settings.outboxPath, vins: vins)
        } catch {
            throw SystemError(.invalidInput, "fleet outbox \(settings.outboxPath): \(error)")
        }
        // A car keeps the registration it got from the backend; one with a pairing code and none
        // kept registers on its first connection; the others are as their plan says.
        var kept: [Registration?] = []
        for (slot, spec) in specs.enumerated() {
            if let text = outbox.registrations[slot] {
                do { kept.append(try Registration.parse(text, source: "\(settings.outboxPath): car \(spec.vin)")) } catch {
                    throw SystemError(.invalidInput, "\(error)")
                }
            } else {
                kept.append(settings.pairingCodes[spec.vin] != nil ? Registration() : nil)
            }
        }
        // The cars live around Kotka (the map the project ships), each at its own place.
        cars = specs.enumerated().map { slot, spec in
            let ring = Double(spec.index % 1_000) / 1_000
            return FleetCar(spec: spec, behaviour: behaviour, startMs: start,
                            home: (60.466 + 0.05 * ring - 0.025, 26.946 + 0.08 * Double((spec.index * 7919) % 1_000) / 1_000 - 0.04),
                            registration: kept[slot])
        }
        let n = specs.count
        identities = try FleetIdentities(vins: vins, issuerCertificate: settings.issuerCertificate, issuerKey: settings.issuerKey,
                                         ca: settings.ca, host: settings.host)
        links = Array(repeating: nil, count: n)
        uplinks = Array(repeating: UplinkMachine(window: settings.window), count: n)
        taken = Array(repeating: 0, count: n)
        socketOf = Array(repeating: -1, count: n)
        wantsWrite = Array(repeating: false, count: n)
        epoll = try syscall("epoll_create1") { epoll_create1(Int32(EPOLL_CLOEXEC)) }
        let inbox = try Inbox()
        self.inbox = inbox
        eCall = try FleetECallLine(cars: n, clocks: clocks) { slot, report in inbox.post(slot, report) }
        app = settings.app.map { FleetApp(settings: $0, clocks: clocks, log: log) }
        contexts = .allocate(capacity: max(1, n))
        var ev = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(u64: UInt64.max))
        _ = try syscall("epoll_ctl inbox") { epoll_ctl(epoll, EPOLL_CTL_ADD, inbox.bell, &ev) }
        for slot in 0..<n {
            (contexts + slot).initialize(to: CarContext(loop: Unmanaged.passUnretained(self), slot: slot))
            guard let m = mosquitto_new("tcu-\(vins[slot])", true, contexts + slot) else {
                throw SystemError(.io, "mosquitto_new for \(vins[slot])", errno: errno)
            }
            mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, Int32(MQTT_PROTOCOL_V311))
            mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1)
            mosquitto_void_option(m, MOSQ_OPT_SSL_CTX, UnsafeMutableRawPointer(identities.context))
            // The context as it is (libmosquitto 2 would add its defaults, and want a CA file for them).
            mosquitto_int_option(m, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0)
            var offline = Array(#"{"online":false}"#.utf8)
            mosquitto_will_set(m, "vehicles/\(vins[slot])/connection", Int32(offline.count), &offline, 1, true)
            mosquitto_connect_callback_set(m, fleetOnConnect)
            mosquitto_disconnect_callback_set(m, fleetOnDisconnect)
            mosquitto_publish_callback_set(m, fleetOnPublish)
            mosquitto_message_callback_set(m, fleetOnMessage)
            links[slot] = m
            // "Offline" cars never connect; the others start spread over the ramp.
            if cars[slot].spec.privacy == .offline {
                _ = uplinks[slot].close()
            } else {
                uplinks[slot] = UplinkMachine(window: settings.window,
                                              firstAttemptAt: clocks.monotonicMs + Int64.random(in: 0...max(0, settings.rampMs), using: &rng))
            }
        }
        // A restarted fleet: what the last run stored and the broker did not acknowledge goes first.
        do {
            for (slot, w) in try outbox.waiting() where slot < n {
                statistics.waiting += Int64(w.count)
                dirty.insert(slot)
            }
        } catch {
            throw SystemError(.io, "fleet outbox \(settings.outboxPath): \(error)")
        }
        statistics.cars = n
    }

    deinit {
        for m in links { mosquitto_destroy(m) }
        contexts.deinitialize(count: links.count)
        contexts.deallocate()
        close(epoll)
        outbox.close()
    }

    /// The shard's cars' crash times (monotonic ms from now), for the airbag line.
    public func scheduledCrashes() -> [(slot: Int, afterMs: Int64)] {
        cars.enumerated().flatMap { slot, car in
            car.spec.scenarios.filter { $0.0 == .crash }.map { (slot, Int64($0.atSecond) * 1_000) }
        }
    }

    public func stop() {
        stopping.store(true, ordering: .relaxed)
        inbox.ring()
    }

    /// Runs until `stop` or the configured duration; then says goodbye and commits.
    public func run() {
        let started = clocks.monotonicMs
        startedMs = started
        var nextTick = started, nextReport = started + 1_000
        var miscCursor = 0
        var events = [epoll_event](repeating: epoll_event(), count: 512)
        while !stopping.load(ordering: .relaxed) {
            let now = clocks.monotonicMs
            // At the end of its time the fleet lets the owners' commands on their way end (a
            // command lives a minute at most), unless it is stopped; then the cars stop, and
            // what they sent is let through to its acknowledgement (drainMs at most), so that
            // the last figures count every message the broker took.
            if drainingSince == nil, let d = settings.durationMs, now - started >= d,
               app?.idle ?? true || now - started >= d + Self.commandGraceMs {
                drainingSince = now
            }
            if let since = drainingSince, drained() || now - since >= Self.drainMs { break }
            let wait = Int32(max(0, min(nextTick, nextReport) - now))
            let ready = epoll_wait(epoll, &events, Int32(events.count), min(wait, 100))
            var mark = clocks.monotonic().nanoseconds
            turnNs.turns += 1
            if ready > 0 {
                for e in events[0..<Int(ready)] {
                    if e.data.u64 == UInt64.max { takeReports(); continue }
                    let slot = Int(e.data.u64)
                    guard slot < links.count, let m = links[slot], socketOf[slot] >= 0 else { continue }
                    identities.serving = slot
                    if e.events & (EPOLLIN.rawValue | EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 {
                        let rc = mosquitto_loop_read(m, 1)
                        if rc != MOSQ_ERR_SUCCESS.rawValue { lost(slot, rc); continue }
                        // During the TLS handshake libmosquitto advances only on reads; once it
                        // is done, the CONNECT it queued goes out here (see `watch`).
                        if uplinks[slot].phase == .connecting, socketOf[slot] >= 0 {
                            let rc = mosquitto_loop_write(m, 1)
                            if rc != MOSQ_ERR_SUCCESS.rawValue { lost(slot, rc); continue }
                        }
                    }
                    if socketOf[slot] >= 0, e.events & EPOLLOUT.rawValue != 0 {
                        let rc = mosquitto_loop_write(m, 1)
                        if rc != MOSQ_ERR_SUCCESS.rawValue { lost(slot, rc); continue }
                    }
                    watch(slot)
                }
            }
            let t = clocks.monotonicMs
            lap(&mark, \.io)
            if t >= nextTick {
                nextTick = t + 100
                if drainingSince == nil { tick(t) }
                // Keepalives and timeouts: a tenth of the cars a tick, each once a second.
                let count = links.count
                let share = (count + 9) / 10
                for _ in 0..<min(share, count) {
                    if uplinks[miscCursor].connAckOverdue(at: t, timeoutMs: Self.connAckTimeoutMs) {
                        lost(miscCursor, Int32(MOSQ_ERR_CONN_LOST.rawValue), reason: "no CONNACK within \(Self.connAckTimeoutMs / 1_000) s")
                    } else if let m = links[miscCursor], socketOf[miscCursor] >= 0 {
                        identities.serving = miscCursor
                        let rc = mosquitto_loop_misc(m)
                        if rc != MOSQ_ERR_SUCCESS.rawValue, rc != MOSQ_ERR_NO_CONN.rawValue { lost(miscCursor, rc) } else { watch(miscCursor) }
                    }
                    miscCursor = (miscCursor + 1) % max(1, count)
                }
            }
            lap(&mark, \.cars)
            commitAndSend(mark: &mark)
            if t >= nextReport {
                nextReport = t + 1_000
                publishStatistics()
            }
        }
        takeReports()
        commitAndSend()
        for slot in links.indices {
            perform(slot, uplinks[slot].close())
        }
        // Let the goodbyes out.
        for slot in links.indices where socketOf[slot] >= 0 {
            identities.serving = slot
            if let m = links[slot] { _ = mosquitto_loop_write(m, 1) }
        }
        app?.stop()
        publishStatistics()
    }

    // MARK: - Cars

    /// Since when the fleet is draining (its time is up): the cars no longer advance.
    private var drainingSince: Int64?

    /// Every connected car's messages are sent and acknowledged, and stored as such.
    private func drained() -> Bool {
        for slot in uplinks.indices where uplinks[slot].phase == .up {
            if !uplinks[slot].inFlight.isEmpty || taken[slot] < outbox.lastSequence[slot] { return false }
        }
        return pendingMessages.isEmpty && pendingAcks.isEmpty
    }

    private func tick(_ monotonicNow: Int64) {
        let now = clocks.wallMs
        var connecting = 0
        for u in uplinks where u.phase == .connecting { connecting += 1 }
        if let t = trajectories {
            do { try t.advance(to: Double(monotonicNow - startedMs) / 1_000) } catch {
                // The rest of the file is not usable: the cars drive on their own from here.
                log("\(error); the cars drive on their own from now")
                trajectories = nil
            }
        }
        var connects = min(max(1, settings.connectsPerSecond / 10), max(0, settings.connectingWindow - connecting))
        for slot in cars.indices {
            let motion = trajectories?.motion(ofCar: slot)
            if cars[slot].nextDueMs <= now || motion != nil || (trajectories != nil && cars[slot].isDriving) {
                outputs.removeAll(keepingCapacity: true)
                cars[slot].advance(to: now, motion: motion, into: &outputs)
                take(outputs, slot: slot)
            }
        }
        // The cars due to connect, from where the last tick stopped: none waits behind the
        // lower numbers when the window is short (after a broker restart, all are due).
        var scanned = 0
        while connects > 0, scanned < uplinks.count {
            let slot = connectCursor
            connectCursor = (connectCursor + 1) % uplinks.count
            scanned += 1
            if uplinks[slot].isDue(at: monotonicNow) {
                connects -= 1
                connect(slot, at: monotonicNow)
            }
        }
    }

    private var connectCursor = 0

    private func take(_ outs: [FleetCar.Output], slot: Int) {
        for o in outs {
            switch o {
            case .message(let m):
                pendingMessages.append((slot, m))
            case .registration(let r):
                pendingRegistrations[slot] = r.stored.text
            case .appCommand(let action, let t):
                app?.ask(vin: vins[slot], action, targetTemperature: t)
            case .registrationRefused(let refusal):
                statistics.registrationsRefused += 1
                log("the registration of \(vins[slot]) was refused: \(refusal.code)")
            }
        }
    }

    /// A message from the broker: a remote command, or the answer to the car's registration.
    fileprivate func received(_ slot: Int, topic: String, payload: [UInt8]) {
        guard cars.indices.contains(slot) else { return }
        let vin = vins[slot], now = clocks.wallMs
        outputs.removeAll(keepingCapacity: true)
        if topic == "vehicles/\(vin)/commands" {
            statistics.commands += 1
            cars[slot].command(payload, nowMs: now, mac: CarCrypto.hmacSHA256, into: &outputs)
        } else if topic == "vehicles/\(vin)/registration/response", let answer = try? JSON.parse(String(decoding: payload, as: UTF8.self)) {
            let authentic = CarCrypto.isAuthentic(answer, vin: vin, kind: "registration", key: settings.answerKey)
            cars[slot].registrationAnswered(answer, authentic: authentic, nowMs: now, into: &outputs)
        }
        take(outputs, slot: slot)
    }

    /// On a connection: a car with a pairing code that is not registered yet sends its code.
    private func registerIfNeeded(_ slot: Int, _ m: OpaquePointer) {
        guard let code = settings.pairingCodes[vins[slot]], cars[slot].needsRegistration,
              let (_, body) = cars[slot].registrationRequest(code: code, canCheckAnswers: settings.answerKey != nil, nowMs: clocks.wallMs)
        else { return }
        var payload = Array(body.text.utf8)
        mosquitto_publish(m, nil, "vehicles/\(vins[slot])/registration/request", Int32(payload.count), &payload, 1, false)
    }

    /// The eCall line's reports of finished calls: to the backend, for a registered car.
    private func takeReports() {
        let now = clocks.wallMs
        for (slot, report) in inbox.take() where cars.indices.contains(slot) {
            outputs.removeAll(keepingCapacity: true)
            cars[slot].eCallEnded(report, nowMs: now, into: &outputs)
            take(outputs, slot: slot)
        }
    }

    // MARK: - Outbox

    /// Time spent in each part of the loop since the last report (ns).
    private struct TurnTimes {
        var io: Int64 = 0, cars: Int64 = 0, commit: Int64 = 0, send: Int64 = 0, turns: Int64 = 0
    }
    private var turnNs = TurnTimes()

    private func lap(_ mark: inout Int64, _ part: WritableKeyPath<TurnTimes, Int64>) {
        let now = clocks.monotonic().nanoseconds
        turnNs[keyPath: part] += now - mark
        mark = now
    }

    private func commitAndSend() {
        var mark = clocks.monotonic().nanoseconds
        commitAndSend(mark: &mark)
    }

    private func commitAndSend(mark: inout Int64) {
        if !pendingMessages.isEmpty || !pendingAcks.isEmpty || !pendingRegistrations.isEmpty {
            do {
                let got = try outbox.commit(appending: pendingMessages, acknowledged: pendingAcks, registrations: pendingRegistrations)
                statistics.stored += Int64(pendingMessages.count) - (outbox.refused - statistics.refused)
                statistics.refused = outbox.refused
                statistics.acknowledged += Int64(pendingAcks.count)
                pendingMessages.removeAll(keepingCapacity: true)
                pendingAcks.removeAll(keepingCapacity: true)
                pendingRegistrations.removeAll(keepingCapacity: true)
                dirty.formUnion(got)
            } catch {
                // Kept for the next turn: nothing is lost, the disk may come back.
                log("fleet outbox: \(error)")
                return
            }
        }
        lap(&mark, \.commit)
        defer { lap(&mark, \.send) }
        guard !dirty.isEmpty else { return }
        let now = clocks.wallMs
        for slot in dirty {
            let room = uplinks[slot].room
            guard room > 0, taken[slot] < outbox.lastSequence[slot], let m = links[slot] else { continue }
            let entries: [FleetOutboxStore.Entry]
            do { entries = try outbox.take(slot: slot, after: taken[slot], limit: room) } catch {
                log("fleet outbox: \(error)")
                continue
            }
            identities.serving = slot
            for e in entries {
                var mid: Int32 = 0
                var payload = wireEnvelope(payload: e.payload, sequence: e.seq, sentAtMs: now)
                let rc = mosquitto_publish(m, &mid, "vehicles/\(vins[slot])/\(e.stream)", Int32(payload.count), &payload, 1, false)
                guard rc == MOSQ_ERR_SUCCESS.rawValue else { break }
                uplinks[slot].sent(String(e.seq), as: mid)
                taken[slot] = e.seq
                statistics.published += 1
            }
            watch(slot)
        }
        dirty.removeAll(keepingCapacity: true)
    }


    // MARK: - Links

    private func connect(_ slot: Int, at now: Int64) {
        guard let m = links[slot] else { return }
        statistics.connectAttempts += 1
        identities.serving = slot
        // A blocking TCP connect (the TLS handshake and CONNECT go on in the loop): libmosquitto's
        // asynchronous connect leaves a socket whose connect is still in progress to its own
        // select loop, which cannot watch more than 1 024 sockets.
        let rc = mosquitto_connect(m, settings.host, settings.port, settings.keepaliveSeconds)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            statistics.lost += 1
            statistics.lastError = "connect: \(String(cString: mosquitto_strerror(rc)))"
            uplinks[slot].connectFailed("connect: \(String(cString: mosquitto_strerror(rc)))", at: now, jitter: jitter())
            return
        }
        uplinks[slot].connectCalled(at: now)
        let fd = mosquitto_socket(m)
        socketOf[slot] = fd
        var ev = epoll_event(events: EPOLLIN.rawValue, data: epoll_data_t(u64: UInt64(slot)))
        wantsWrite[slot] = false
        if epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &ev) != 0 { lost(slot, Int32(MOSQ_ERR_ERRNO.rawValue)) }
    }

    /// Keeps the socket's interest in writing as libmosquitto needs it. Not while connecting:
    /// libmosquitto queues the CONNECT at once but sends nothing until the TLS handshake is
    /// done, and the handshake advances only on reads; a writable socket would wake the loop
    /// for nothing, over and over, for every car in its handshake.
    private func watch(_ slot: Int) {
        guard let m = links[slot], socketOf[slot] >= 0 else { return }
        let w = mosquitto_want_write(m) && uplinks[slot].phase == .up
        guard w != wantsWrite[slot] else { return }
        wantsWrite[slot] = w
        var ev = epoll_event(events: EPOLLIN.rawValue | (w ? EPOLLOUT.rawValue : 0), data: epoll_data_t(u64: UInt64(slot)))
        _ = epoll_ctl(epoll, EPOLL_CTL_MOD, socketOf[slot], &ev)
    }

    /// How long past its duration the fleet waits for the owners' commands on their way.
    static let commandGraceMs: Int64 = 65_000

    /// A connection with no CONNACK this long is given up (and tried again after the backoff).
    static let connAckTimeoutMs: Int64 = 10_000
    /// How long the fleet waits, at the end of its time, for the acknowledgements of what its
    /// cars sent.
    static let drainMs: Int64 = 10_000

    private func lost(_ slot: Int, _ rc: Int32, reason: String? = nil) {
        let fd = socketOf[slot]
        if fd >= 0 {
            _ = epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil)
        }
        socketOf[slot] = -1
        wantsWrite[slot] = false
        // (libmosquitto closed the socket on its error path.)
        // (Counted once: libmosquitto reports a loss both to the callback and to the caller.)
        if rc != 0, uplinks[slot].phase == .up || uplinks[slot].phase == .connecting {
            statistics.lost += 1
            statistics.lastError = reason ?? String(cString: mosquitto_strerror(rc))
        }
        uplinks[slot].connectionLost(reason ?? "disconnected: \(String(cString: mosquitto_strerror(rc)))", unexpected: rc != 0, at: clocks.monotonicMs,
                                     jitter: jitter())
        // Sent, not acknowledged: it goes again on the next connection; so does a registration
        // request whose answer did not come.
        taken[slot] = 0
        cars[slot].registrationUnanswered()
    }

    private func jitter() -> Double { Double.random(in: 0.5...1.0, using: &rng) }

    private func perform(_ slot: Int, _ actions: [UplinkAction]) {
        guard let m = links[slot] else { return }
        let topic = "vehicles/\(vins[slot])/connection"
        identities.serving = slot
        for a in actions {
            switch a {
            case .announceOnline:
                var online = Array(#"{"online":true}"#.utf8)
                mosquitto_publish(m, nil, topic, Int32(online.count), &online, 1, true)
                mosquitto_subscribe(m, nil, "vehicles/\(vins[slot])/commands", 1)
                if settings.pairingCodes[vins[slot]] != nil {
                    mosquitto_subscribe(m, nil, "vehicles/\(vins[slot])/registration/response", 1)
                    registerIfNeeded(slot, m)
                }
                dirty.insert(slot)
            case .sayGoodbye:
                var offline = Array(#"{"online":false}"#.utf8)
                mosquitto_publish(m, nil, topic, Int32(offline.count), &offline, 1, true)
            case .disconnect:
                mosquitto_disconnect(m)
            }
        }
    }

    fileprivate func connected(_ slot: Int, _ rc: Int32) {
        let wasReconnect = uplinks[slot].reconnects
        perform(slot, uplinks[slot].connAck(rc, at: clocks.monotonicMs, jitter: jitter()))
        if uplinks[slot].reconnects > wasReconnect { statistics.reconnects += 1 }
    }

    fileprivate func disconnected(_ slot: Int, _ rc: Int32) {
        if rc != 0, socketOf[slot] >= 0 { lost(slot, rc) }
    }

    fileprivate func published(_ slot: Int, _ mid: Int32) {
        uplinks[slot].published(mid)
        for id in uplinks[slot].takeAcknowledged() {
            if let seq = Int64(id) { pendingAcks.append((slot, seq)) }
        }
        dirty.insert(slot)
    }

    private func publishStatistics() {
        (statistics.dials, statistics.crashToDialUs) = eCall.statistics
        statistics.loopMs = (turnNs.io / 1_000_000, turnNs.cars / 1_000_000, turnNs.commit / 1_000_000, turnNs.send / 1_000_000)
        statistics.turns = turnNs.turns
        turnNs = TurnTimes()
        statistics.app = app?.current
        statistics.registered = cars.reduce(0) { $0 + ($1.registration.commandKey != nil ? 1 : 0) }
        statistics.waiting = 0
        statistics.connected = 0
        statistics.connecting = 0
        statistics.down = 0
        for u in uplinks {
            switch u.phase {
            case .up: statistics.connected += 1
            case .connecting: statistics.connecting += 1
            case .down: statistics.down += 1
            case .offline: break
            }
        }
        for slot in cars.indices { statistics.waiting += outbox.lastSequence[slot] - min(taken[slot], outbox.lastSequence[slot]) }
        report(statistics)
    }
}

private func context(_ u: UnsafeMutableRawPointer?) -> FleetLoop.CarContext { u!.assumingMemoryBound(to: FleetLoop.CarContext.self).pointee }
private let fleetOnConnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = { _, u, rc in
    let c = context(u)
    c.loop.takeUnretainedValue().connected(c.slot, rc)
}
private let fleetOnDisconnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = { _, u, rc in
    let c = context(u)
    c.loop.takeUnretainedValue().disconnected(c.slot, rc)
}
private let fleetOnPublish: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = { _, u, mid in
    let c = context(u)
    c.loop.takeUnretainedValue().published(c.slot, mid)
}
private let fleetOnMessage: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafePointer<mosquitto_message>?) -> Void = { _, u, message in
    guard let message, let topic = message.pointee.topic else { return }
    let c = context(u)
    let n = Int(max(0, message.pointee.payloadlen))
    let payload = n == 0 ? [] : Array(UnsafeRawBufferPointer(start: message.pointee.payload, count: n))
    c.loop.takeUnretainedValue().received(c.slot, topic: String(cString: topic), payload: payload)
}

/// What the eCall line hands the loop (finished calls' reports), with the eventfd that wakes it.
final class Inbox: Sendable {
    let bell: Int32
    private let reports = Mutex<[(Int, ECallReport)]>([])

    init() throws(SystemError) {
        bell = try syscall("eventfd") { eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC)) }
    }

    deinit { close(bell) }

    func post(_ slot: Int, _ report: ECallReport) {
        reports.withLock { $0.append((slot, report)) }
        ring()
    }

    func ring() {
        var one: UInt64 = 1
        _ = write(bell, &one, 8)
    }

    func take() -> [(Int, ECallReport)] {
        var drained: UInt64 = 0
        _ = read(bell, &drained, 8)
        return reports.withLock { q in defer { q.removeAll() }; return q }
    }
}
