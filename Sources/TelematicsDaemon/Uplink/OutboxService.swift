#if canImport(Glibc)
import Glibc
#endif
import BackendLink
import Dispatch
import Logging
import Outbox
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// Where and how the outbox sends.
public struct UplinkConfiguration: Sendable {
    public var host: String
    public var port: Int32
    public var vin: String
    public var keepaliveSeconds: Int32 = 10
    public var window = 64
    public var tlsCA: String?
    public var tlsCertificate: String?
    public var tlsKey: String?

    public init(host: String, port: Int32, vin: String) {
        self.host = host
        self.port = port
        self.vin = vin
    }
}

/// The durable outbox and the backend link in the daemon: producers hand messages over without
/// waiting; one thread owns the SQLite file and the MQTT client. It commits whatever gathered
/// in one transaction (group commit), publishes the next messages at QoS 1 while connected,
/// with a bounded window in flight, and deletes a message only on its PUBACK; after a
/// reconnect the unacknowledged ones go again (the backend removes duplicates by id).
/// Reconnects back off exponentially with jitter. A database that cannot be opened is
/// reported and retried; it never stops the daemon, and it never touches the eCall, which only
/// hands its report over like any producer.
public final class OutboxService: Service, Sendable {
    private let uplink: UplinkConfiguration?
    private let link = Mutex<(connected: Bool, published: Int64, acknowledged: Int64, reconnects: Int64, lastError: String?)>((false, 0, 0, 0, nil))
    private let path: String
    private let maximumBytes: Int64
    private let diskReserveBytes: Int64?
    private let logger: Logger
    private let queue = Mutex(OutboxBuffer(limitBytes: OutboxService.memoryLimitBytes))
    private let wake = DispatchSemaphore(value: 0)
    private let stop = StopSignal()
    private let stats = Mutex<(store: OutboxStore.Statistics?, error: String?, committed: Int64, diskLow: Bool)>((nil, nil, 0, false))
    /// When the backend confirmed deleting the car's data (UTC ms).
    private let deletionConfirmed = Mutex<Int64?>(nil)
    /// A factory reset asked for: the thread empties the store, then queues this message.
    /// Its answer: how many messages were deleted, nil when the store could not do it.
    private let reset = Mutex<(request: OutboxMessage, done: OneShot<Int?>)?>(nil)
    /// Interactive requests (registration): to publish, and the answers by request id.
    private let interactions = Mutex<(outgoing: [(suffix: String, payload: [UInt8])], waiting: [String: OneShot<JSON>])>(([], [:]))
    private let commandHandler = Mutex<(@Sendable ([UInt8]) -> Void)?>(nil)

    /// Who takes the remote commands that arrive on `vehicles/{vin}/commands` (called on the
    /// link's thread; hand them over, do not work there).
    public func onCommand(_ handler: @escaping @Sendable ([UInt8]) -> Void) { commandHandler.withLock { $0 = handler } }
    /// The user's privacy level, and whether unsent positions must go (they stopped sharing).
    private let privacy = Mutex<(mode: PrivacyMode, discardPositions: Bool, withheld: Int64)>((.shareMyPosition, false, 0))
    /// Whether a message may leave for the backend at all (the registration and the licence:
    /// `BackendConsent`), and what was held back for want of each. None: everything may.
    private let consent = Mutex<(gate: (@Sendable (OutboxMessage) -> BackendConsent.Verdict)?, notRegistered: Int64, licence: Int64)>((nil, 0, 0))

    /// What decides, message by message, whether anything may go to the backend (the unit sets
    /// it before anything runs; without one, as in a bench, everything may).
    public func gate(_ verdict: @escaping @Sendable (OutboxMessage) -> BackendConsent.Verdict) {
        consent.withLock { $0.gate = verdict }
    }
    /// What may wait in memory for the next commit (a store that cannot be opened, a disk that
    /// stalls, input faster than the commits): about 10 000 events.
    static let memoryLimitBytes = 4 << 20
    static let reopenIntervalMs: Int64 = 30_000

    /// The car's loop watch (the watchdog's).
    private let monitor: LoopMonitor

    /// Where its time comes from (the reopen interval, the link's backoff, the send times).
    private let clocks: Clocks

    public init(path: String, maximumBytes: Int64, diskReserveBytes: Int64? = nil, logger: Logger, uplink: UplinkConfiguration? = nil,
                monitor: LoopMonitor = LoopMonitor(), clocks: Clocks = .system) {
        self.monitor = monitor
        self.clocks = clocks
        self.diskReserveBytes = diskReserveBytes
        self.uplink = uplink
        self.path = path
        self.maximumBytes = maximumBytes
        self.logger = logger
    }

    /// Queues a message for the next commit; never blocks. While nothing can be committed, at
    /// most `memoryLimit` wait in memory: beyond it the lowest-priority oldest one goes (never
    /// an eCall report or an alarm, unless nothing else is left).
    public func submit(_ m: OutboxMessage) { submit(contentsOf: [m]) }

    /// Queues messages for the next commit, under one lock (a batch of vehicle events).
    public func submit(contentsOf batch: [OutboxMessage]) {
        // What the registration, the licence or the privacy level does not let out is not even
        // kept: it was not the car's to send when it happened.
        var consented = batch
        if let gate = consent.withLock({ $0.gate }) {
            var notRegistered: Int64 = 0, licence: Int64 = 0
            consented = batch.filter { m in
                switch gate(m) {
                case .allowed: return true
                case .notRegistered, .unknownStream: notRegistered += 1
                case .licence: licence += 1
                }
                return false
            }
            if notRegistered + licence > 0 { consent.withLock { $0.notRegistered += notRegistered; $0.licence += licence } }
        }
        let allowed = privacy.withLock { p -> [OutboxMessage] in
            let kept = consented.filter { p.mode.allows($0) }
            p.withheld += Int64(consented.count - kept.count)
            return kept
        }
        guard !allowed.isEmpty else { return }
        let notices = queue.withLock { q in allowed.compactMap { q.add($0) } }
        for n in notices { tell(n) }
        wake.signal()
        // eCall reports, alarms and command results go out at once; events and state wait for the
        // link's next turn (at most 50 ms), which gathers them into one commit.
        if allowed.contains(where: { $0.priority < .event }) { linkWake.signal() }
    }

    /// Logs a burst of evictions once when it starts and once when it ends (OutboxBuffer).
    private func tell(_ notice: OutboxBuffer.Notice) {
        switch notice {
        case .burstStarted:
            logger.warning("the outbox cannot keep up: dropping the oldest state and events in memory (eCall reports and alarms are kept)",
                           metadata: ["outbox.memoryLimitBytes": "\(Self.memoryLimitBytes)"])
        case .burstEnded(let dropped):
            let list = OutboxPriority.allCases.compactMap { p in dropped[p].map { "\(p.name) \($0)" } }.joined(separator: ", ")
            logger.warning("the outbox caught up; messages dropped in memory meanwhile", metadata: ["outbox.dropped": "\(list)"])
            returnFreedMemory()
        }
    }

    /// Ends the link thread's network wait early (see `submit`).
    private let linkWake = WakePipe()

    /// Empties the outbox (queue and file) and then stores `request` (the backend is asked to
    /// delete the car's data, delivered like everything else). Blocks until done, at most
    /// `timeoutMs`; returns how many messages were deleted, nil when the store could not do it.
    public func factoryReset(then request: OutboxMessage, timeoutMs: Int64 = 5_000) -> Int? {
        queue.withLock { $0.removeAll() }
        let done = OneShot<Int?>()
        reset.withLock { $0 = (request, done) }
        wake.signal()
        return done.wait(timeoutMs: timeoutMs) ?? nil
    }

    public enum Interaction: Sendable {
        case answer(JSON)
        case noConnection
        case timeout
    }

    /// Sends a request straight over the backend link, not through the outbox (with no link it
    /// fails at once: the person in the car must know now, not when the link returns), and
    /// waits up to `timeoutMs` for the answer carrying the same `requestId` on
    /// `vehicles/{vin}/{suffix}/response`. Blocks the calling thread (the control socket's).
    public func interact(suffix: String, body: JSON, requestId: String, timeoutMs: Int64) -> Interaction {
        guard link.withLock({ $0.connected }), privacy.withLock({ $0.mode.connects }) else { return .noConnection }
        let answer = OneShot<JSON>()
        interactions.withLock { i in
            i.outgoing.append((suffix + "/request", Array(body.text.utf8)))
            i.waiting[requestId] = answer
        }
        // At once: the link thread waits in the MQTT loop on its wake pipe, not on the semaphore.
        wake.signal()
        linkWake.signal()
        let got = answer.wait(timeoutMs: timeoutMs)
        interactions.withLock { _ = $0.waiting.removeValue(forKey: requestId) }
        return got.map { .answer($0) } ?? .timeout
    }

    /// An answer from the backend: kept for the request that waits for it, dropped otherwise.
    private func answered(_ body: JSON) {
        guard let id = body["requestId"]?.stringValue else { return }
        if body["type"]?.stringValue == "dataDeleted" {
            deletionConfirmed.withLock { $0 = clocks.wallMs }
            logger.notice("the backend deleted the car's data (factory reset)", metadata: ["outbox.requestId": "\(id)"])
            return
        }
        interactions.withLock { $0.waiting[id] }?.give(body)
    }

    /// Follows the user's privacy level: "offline" closes the backend link, anything but
    /// "share my position" keeps positions in (and deletes the unsent ones).
    public func setPrivacy(_ mode: PrivacyMode) {
        privacy.withLock { p in
            if mode != .shareMyPosition, p.mode == .shareMyPosition { p.discardPositions = true }
            p.mode = mode
        }
        wake.signal()
    }

    /// What `tcuctl status` shows of the outbox and the backend link, and what systemd's
    /// status line is made from.
    public func report() -> OutboxReport {
        let s = stats.withLock { $0 }
        let (waiting, dropped) = queue.withLock { ($0.count, $0.dropped) }
        let (notRegistered, licence) = consent.withLock { ($0.notRegistered, $0.licence) }
        return OutboxReport(
            path: path, committed: s.committed, withheldByPrivacy: privacy.withLock { $0.withheld },
            withheldBeforeRegistration: notRegistered, withheldByLicence: licence,
            dataDeletionConfirmedAt: deletionConfirmed.withLock { $0 }, error: s.error,
            waitingInMemory: waiting, droppedInMemory: dropped,
            backend: uplink.map { u in
                let l = link.withLock { $0 }
                return .init(broker: "\(u.host):\(u.port)", connected: l.connected, published: l.published,
                             acknowledged: l.acknowledged, reconnects: l.reconnects, lastError: l.lastError)
            },
            store: s.store, diskLow: s.diskLow
        )
    }

    public func run() async throws {
        let thread = DedicatedThread(name: "outbox") { [self] in self.loop() }
        try? await gracefulShutdown()
        stop.set()
        wake.signal()
        thread.join()
    }

    private let openAttempted = Atomic<Bool>(false)

    /// True once the first attempt to open the database has ended, well or not: the daemon is
    /// ready then (a unit whose disk failed still makes its eCalls).
    public var hasTriedToOpen: Bool { openAttempted.load(ordering: .acquiring) }

    private func open() -> OutboxStore? {
        defer { openAttempted.store(true, ordering: .releasing) }
        do {
            let store = try OutboxStore(path: path, maximumBytes: maximumBytes, diskReserveBytes: diskReserveBytes)
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
        // Background work: under CPU pressure the kernel runs the CAN reader and the eCall first.
        // (On Linux the nice value is per thread; "who = 0" is the calling thread.)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
        var store = open()
        var lastAttempt = clocks.monotonic()
        func makeUplink() -> Uplink? {
            let u = self.uplink.flatMap { Uplink(configuration: $0, logger: logger, clocks: clocks) }
            u?.onResponse = { [self] body in self.answered(body) }
            u?.onCommand = { [self] payload in self.commandHandler.withLock { $0 }?(payload) }
            return u
        }
        var uplink = makeUplink()
        // Counting the rows is a scan: refresh the status at most once a second.
        var statsAt = Timestamp.zero
        var commitFailing = false
        while true {
            monitor.turn(.outbox, stop: stop)
            let (mode, discard) = privacy.withLock { p in defer { p.discardPositions = false }; return (p.mode, p.discardPositions) }
            // Offline: no data leaves the car; the link says goodbye and stays down.
            uplink?.follow(connects: mode.connects)
            if let u = uplink, mode.connects {
                // The MQTT loop is this thread's wait: it returns on network activity or after 50 ms.
                u.service(now: clocks.monotonic(), wake: linkWake)
            } else {
                _ = wake.wait(timeout: .now() + .milliseconds(uplink == nil ? 1000 : 50))
            }
            if let u = uplink {
                link.withLock { $0.connected = u.connected; $0.reconnects = u.reconnects; $0.lastError = u.lastError }
            }
            let stopping = stop.isSet
            if store == nil, stopping || clocks.monotonic().milliseconds(since: lastAttempt) >= Self.reopenIntervalMs {
                lastAttempt = clocks.monotonic()
                store = open()
            }
            if let s = store, let (request, done) = reset.withLock({ r in defer { r = nil }; return r }) {
                do {
                    let n = try s.deleteAll()
                    try s.append([request])
                    // A new MQTT session as well: the client library keeps what it handed to
                    // the broker unacknowledged and would send it again on the next connection,
                    // after the backend had deleted the car's data.
                    if uplink != nil {
                        uplink?.close()
                        uplink = makeUplink()
                    }
                    done.give(n)
                    logger.notice("factory reset: the outbox is empty", metadata: ["outbox.deleted": "\(n)"])
                } catch {
                    done.give(nil)
                    logger.error("factory reset: cannot empty the outbox", metadata: ["error": "\(error)"])
                }
            }
            if let s = store, discard {
                do {
                    let n = try s.discardUnsentPositions()
                    if n > 0 { logger.notice("unsent positions deleted: the user stopped sharing the position", metadata: ["outbox.deleted": "\(n)"]) }
                } catch {
                    logger.error("cannot delete the unsent positions", metadata: ["error": "\(error)"])
                }
            }
            if let s = store {
                let (batch, notice) = queue.withLock { $0.drain() }
                if let notice { tell(notice) }
                if !batch.isEmpty {
                    do {
                        let wasLow = s.isDiskLow
                        try s.append(batch)
                        stats.withLock { $0.committed += Int64(batch.count); $0.error = nil }
                        if s.isDiskLow != wasLow {
                            if s.isDiskLow {
                                logger.warning("the disk holding the outbox is nearly full: evicting low-priority messages (eCall reports and alarms are kept)", metadata: [
                                    "outbox.path": "\(path)", "outbox.diskReserveBytes": "\(s.diskReserveBytes)",
                                ])
                            } else {
                                logger.notice("the disk holding the outbox has room again")
                            }
                        }
                        if commitFailing {
                            commitFailing = false
                            logger.notice("the outbox commits again")
                        }
                    } catch {
                        // Keep them for the next try (the disk may be full for a while); say so once.
                        if let notice = queue.withLock({ $0.putBack(batch) }) { tell(notice) }
                        stats.withLock { $0.error = error.description }
                        if !commitFailing {
                            commitFailing = true
                            logger.error("cannot commit to the outbox; keeping the messages in memory", metadata: [
                                "error": "\(error)", "outbox.waiting": "\(batch.count)",
                            ])
                        }
                    }
                }
                if let u = uplink, u.connected {
                    for r in interactions.withLock({ i in defer { i.outgoing.removeAll() }; return i.outgoing }) {
                        u.publishDirect(suffix: r.suffix, payload: r.payload)
                    }
                }
                if let u = uplink {
                    do {
                        try u.exchange(with: s, positions: mode == .shareMyPosition)
                        link.withLock { $0.published = u.published; $0.acknowledged = u.acknowledged }
                    } catch {
                        logger.error("outbox read failed", metadata: ["error": "\(error)"])
                    }
                }
                if clocks.monotonic().milliseconds(since: statsAt) >= 1_000 {
                    statsAt = clocks.monotonic()
                    stats.withLock { $0.store = try? s.statistics(); $0.diskLow = s.isDiskLow }
                }
            }
            if stopping {
                uplink?.close()
                uplink = nil
                store?.close()
                return
            }
        }
    }
}

/// The MQTT side of the outbox thread: it carries out what `UplinkMachine` (the core) decides
/// about the connection, the backoff and the in-flight window.
final class Uplink {
    let configuration: UplinkConfiguration
    let logger: Logger
    let client: MQTTClient
    private var machine: UplinkMachine
    private let clocks: Clocks
    private(set) var published: Int64 = 0
    private(set) var acknowledged: Int64 = 0
    private var rng = SystemRandomNumberGenerator()
    /// Answers to interactive requests (`vehicles/{vin}/.../response`).
    var onResponse: ((JSON) -> Void)?
    var onCommand: (([UInt8]) -> Void)?

    var connected: Bool { machine.phase == .up }
    var reconnects: Int64 { machine.reconnects }
    var lastError: String? { machine.lastError }
    var connectionTopic: String { "vehicles/\(configuration.vin)/connection" }

    init?(configuration: UplinkConfiguration, logger: Logger, clocks: Clocks) {
        self.clocks = clocks
        self.configuration = configuration
        self.logger = logger
        machine = UplinkMachine(window: configuration.window)
        do {
            client = try MQTTClient(
                clientID: "tcu-\(configuration.vin)", host: configuration.host, port: configuration.port,
                keepaliveSeconds: configuration.keepaliveSeconds,
                will: .init(topic: "vehicles/\(configuration.vin)/connection", payload: #"{"online":false}"#, retain: true)
            )
            if let ca = configuration.tlsCA {
                try client.useTLS(caFile: ca, certFile: configuration.tlsCertificate, keyFile: configuration.tlsKey)
            }
        } catch {
            logger.error("cannot set up the backend link", metadata: ["error": "\(error)"])
            return nil
        }
        client.onConnect = { [unowned self] rc in self.perform(self.machine.connAck(rc, at: clocks.monotonicMs, jitter: self.jitter())) }
        client.onDisconnect = { [unowned self] rc in self.lost(rc) }
        client.onPublish = { [unowned self] mid in self.machine.published(mid) }
        client.onMessage = { [unowned self] topic, payload in
            if topic.hasSuffix("/response"), let body = try? JSON.parse(String(decoding: payload, as: UTF8.self)) {
                self.onResponse?(body)
                return
            }
            if topic.hasSuffix("/commands") {
                self.onCommand?(payload)
                return
            }
            self.logger.info("message from the backend", metadata: ["mqtt.topic": "\(topic)", "mqtt.bytes": "\(payload.count)"])
        }
    }

    /// The backoff's jitter: 0.5 to 1.0, so that a fleet does not come back all at once.
    private func jitter() -> Double { Double.random(in: 0.5...1.0, using: &rng) }

    /// Follows the privacy level: offline closes the link (with a goodbye), back online it
    /// connects at once.
    func follow(connects: Bool) {
        let actions = machine.privacyChanged(connects: connects)
        perform(actions)
        if !actions.isEmpty { _ = client.loop(timeoutMs: 10) }
    }

    /// Connects when due, then runs the network for up to 50 ms.
    func service(now: Timestamp, wake: WakePipe) {
        let ms = now.nanoseconds / 1_000_000
        if let wait = machine.msUntilAttempt(at: ms) {
            // Until the next attempt is due, wait for work (a message to commit ends the wait).
            guard wait == 0 else { wake.wait(timeoutMs: Int32(min(50, max(1, wait)))); return }
            let rc = client.connect()
            guard rc == 0 else {
                machine.connectFailed("connect: \(MQTTClient.describe(rc))", at: ms, jitter: jitter())
                return
            }
            machine.connectCalled()
        }
        guard machine.phase == .up || machine.phase == .connecting else {
            wake.wait(timeoutMs: 50)
            return
        }
        let rc = client.loop(timeoutMs: 50, wake: wake)
        if rc != 0 { lost(rc) }
    }

    private func lost(_ rc: Int32) {
        // rc 0: the daemon closed it itself.
        if machine.connectionLost("disconnected: \(MQTTClient.describe(rc))", unexpected: rc != 0, at: clocks.monotonicMs, jitter: jitter()) {
            logger.warning("backend link down", metadata: ["mqtt.reason": "\(MQTTClient.describe(rc))"])
        }
    }

    private func perform(_ actions: [UplinkAction]) {
        for action in actions {
            switch action {
            case .announceOnline:
                _ = client.publish(topic: connectionTopic, payload: Array(#"{"online":true}"#.utf8), retain: true)
                _ = client.subscribe("vehicles/\(configuration.vin)/commands")
                _ = client.subscribe("vehicles/\(configuration.vin)/+/response")
                logger.notice("backend link up", metadata: ["mqtt.broker": "\(configuration.host):\(configuration.port)"])
            case .sayGoodbye:
                // A clean goodbye: the retained state says offline (the will covers a crash).
                _ = client.publish(topic: connectionTopic, payload: Array(#"{"online":false}"#.utf8), retain: true)
                _ = client.loop(timeoutMs: 100)
            case .disconnect:
                client.disconnect()
            }
        }
    }

    /// Deletes what was acknowledged, and fills the window while connected.
    func exchange(with store: OutboxStore, positions: Bool) throws(OutboxError) {
        let room = machine.room
        guard !machine.acknowledged.isEmpty || room > 0 else { return }
        let entries = try store.exchange(acknowledging: machine.acknowledged, takeUpTo: room,
                                         excluding: Set(machine.inFlight.values), positions: positions)
        acknowledged += Int64(machine.takeAcknowledged().count)
        for e in entries {
            let payload = wireEnvelope(payload: e.message.payload, sequence: e.sequence, sentAtMs: clocks.wallMs)
            guard let mid = client.publish(topic: "vehicles/\(configuration.vin)/\(e.message.stream)", payload: payload) else { break }
            machine.sent(e.message.id, as: mid)
            published += 1
        }
    }

    /// Publishes straight away (QoS 1), not through the outbox: interactive requests.
    func publishDirect(suffix: String, payload: [UInt8]) {
        _ = client.publish(topic: "vehicles/\(configuration.vin)/\(suffix)", payload: payload)
    }

    func close() {
        let actions = machine.close()
        perform(actions)
        if !actions.isEmpty { _ = client.loop(timeoutMs: 10) }
    }
}

/// The outbox and its backend link as they are now (typed: the control socket's JSON is made
/// at the edge, `json`).
public struct OutboxReport: Sendable {
    public struct Link: Sendable {
        public var broker: String
        public var connected: Bool
        public var published: Int64
        public var acknowledged: Int64
        public var reconnects: Int64
        public var lastError: String?
    }

    public var path: String
    public var committed: Int64
    public var withheldByPrivacy: Int64
    /// Not kept because the car was not registered (no consent yet), or the licence did not
    /// cover the service.
    public var withheldBeforeRegistration: Int64 = 0
    public var withheldByLicence: Int64 = 0
    public var dataDeletionConfirmedAt: Int64?
    /// Why the store cannot be used (nil while it works).
    public var error: String?
    public var waitingInMemory: Int
    public var droppedInMemory: [OutboxPriority: Int]
    /// Nil without a broker.
    public var backend: Link?
    /// The file's figures (nil until it has been opened).
    public var store: OutboxStore.Statistics?
    public var diskLow: Bool

    /// Messages waiting in the file, all priorities.
    public var waitingInStore: Int { store.map { $0.messages.values.reduce(0, +) } ?? 0 }

    public var json: JSON {
        func byPriority(_ counts: [OutboxPriority: some BinaryInteger]) -> JSON {
            .object(OutboxPriority.allCases.compactMap { p in counts[p].map { (p.name, .number(Double($0))) } })
        }
        var o: [(String, JSON)] = [("path", .string(path)), ("committed", .number(Double(committed)))]
        if withheldByPrivacy > 0 { o.append(("withheldByPrivacy", .number(Double(withheldByPrivacy)))) }
        if withheldBeforeRegistration > 0 { o.append(("withheldBeforeRegistration", .number(Double(withheldBeforeRegistration)))) }
        if withheldByLicence > 0 { o.append(("withheldByLicence", .number(Double(withheldByLicence)))) }
        if let at = dataDeletionConfirmedAt { o.append(("dataDeletionConfirmedAt", .number(Double(at)))) }
        if let error { o.append(("error", .string(error))) }
        o.append(("waitingInMemory", .number(Double(waitingInMemory))))
        if !droppedInMemory.isEmpty {
            o.append(("droppedInMemory", .number(Double(droppedInMemory.values.reduce(0, +)))))
            o.append(("droppedInMemoryBy", byPriority(droppedInMemory)))
        }
        if let b = backend {
            var l: [(String, JSON)] = [
                ("broker", .string(b.broker)), ("connected", .bool(b.connected)),
                ("published", .number(Double(b.published))), ("acknowledged", .number(Double(b.acknowledged))),
                ("reconnects", .number(Double(b.reconnects))),
            ]
            if let e = b.lastError { l.append(("lastError", .string(e))) }
            o.append(("backend", .object(l)))
        }
        if let st = store {
            o.append(("bytes", .number(Double(st.bytes))))
            o.append(("waiting", byPriority(st.messages)))
            o.append(("evicted", byPriority(st.evicted)))
            o.append(("coalesced", .number(Double(st.coalesced))))
            o.append(("diskLow", .bool(diskLow)))
        }
        return .object(o)
    }
}
