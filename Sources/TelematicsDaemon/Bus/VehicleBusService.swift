import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// What the bus service tells the rest of the daemon.
public enum BusEvent: Sendable {
    case changed([VehicleStateChange])
    case activity(BusActivity)
    case malformedInput(ParseError)
    /// A frame shorter than its DBC message (reported once a minute per identifier).
    case shortFrame(id: UInt32, message: String, length: Int, expected: Int)
    case receiveFailed(String)
    case endOfLog
}

/// Reads the CAN bus on a dedicated thread, keeps the vehicle state, and transmits frames.
///
/// The blocking receive, the decode and the state update all happen on the reader thread,
/// under a short lock; only changes (few) cross into the async world through per-subscriber
/// streams. So a fully loaded bus costs no task switches, and a slow subscriber can lag
/// behind (its stream keeps the newest events) without ever stalling the bus.
public final class VehicleBusService: Service, Sendable {
    private let channel: any CANChannel
    private let tracker: Mutex<VehicleStateTracker>
    private let now: @Sendable () -> Timestamp
    private let logger: Logger
    private let exitAtEndOfLog: Bool
    private let interfaceName: String?
    private let stop = StopSignal()
    private struct Subscriber: Sendable {
        var continuation: AsyncStream<BusEvent>.Continuation?
        /// Called on the reader thread itself (a watcher): no task hop at all.
        var watcher: (@Sendable ([VehicleStateChange]) -> Void)?
        /// Only these quantities' changes are passed on (nil: all events).
        var quantities: Set<VehicleQuantity>?
    }
    private let subscribers = Mutex<[Subscriber]>([])
    private let feeds = Mutex<[ChangeFeed]>([])
    private let transmitted = Atomic<UInt64>(0)
    /// Events the log loop's stream had no room for (a flood read at full speed).
    private let logDrops = Atomic<UInt64>(0)
    private let transmitLog: CandumpLogWriter?
    /// The car's loop watch (the watchdog's): the reader beats at every turn.
    private let monitor: LoopMonitor
    public let database: DBCDatabase

    public init(
        channel: any CANChannel, tracker: VehicleStateTracker, now: @escaping @Sendable () -> Timestamp,
        logger: Logger, exitAtEndOfLog: Bool = false, interfaceName: String? = nil,
        transmitLog: CandumpLogWriter? = nil, monitor: LoopMonitor = LoopMonitor()
    ) {
        self.transmitLog = transmitLog
        self.monitor = monitor
        self.channel = channel
        self.database = tracker.database
        self.tracker = Mutex(tracker)
        self.now = now
        self.logger = logger
        self.exitAtEndOfLog = exitAtEndOfLog
        self.interfaceName = interfaceName
    }

    /// A stream of bus events for one consumer, fed from the reader thread; subscribe before
    /// `run()`. A slow consumer loses the oldest events beyond `limit`, never stalls the bus.
    public func subscribe(bufferingNewest limit: Int = 1024) -> AsyncStream<BusEvent> {
        let (stream, continuation) = AsyncStream<BusEvent>.makeStream(bufferingPolicy: .bufferingNewest(limit))
        subscribers.withLock { $0.append(Subscriber(continuation: continuation, quantities: nil)) }
        return stream
    }

    /// Only the changes of these quantities, nothing else, in batches (see ChangeFeed): beyond
    /// `capacity` waiting changes the oldest ordinary ones go (a `kept` one only when nothing
    /// else is left), counted in the bus report (`changesDropped`) and logged once per burst.
    /// Subscribe before `run()`.
    public func changes(of quantities: Set<VehicleQuantity>, capacity: Int = 256, kept: Set<VehicleQuantity> = [],
                        for name: String) -> ChangeFeed {
        let feed = ChangeFeed(quantities: quantities, capacity: capacity, kept: kept, name: name, logger: logger)
        feeds.withLock { $0.append(feed) }
        return feed
    }

    /// Calls `watcher` on the CAN reader thread with the changes of these quantities, as they
    /// are decoded: for the eCall's triggers, which must not wait for a task to be scheduled.
    /// The watcher must return at once (hand over, never block).
    public func watch(_ quantities: Set<VehicleQuantity>, _ watcher: @escaping @Sendable ([VehicleStateChange]) -> Void) {
        subscribers.withLock { $0.append(Subscriber(continuation: nil, watcher: watcher, quantities: quantities)) }
    }

    /// The current value of a quantity, if available.
    public func value(_ q: VehicleQuantity) -> VehicleValue? { tracker.withLock { $0.value(q) } }

    /// One state block's values and newest capture time.
    public func stateBlock(_ name: String) -> (values: JSON, capturedAt: Timestamp?) { tracker.withLock { $0.block(name) } }

    /// Every state block's signature (what changed since the last look).
    public func stateSignatures() -> [String: BlockSignature] { tracker.withLock { $0.blockSignatures() } }

    /// The vehicle's state as the status shows it (the state blocks' tree).
    public func stateSnapshot() -> JSON { tracker.withLock { $0.snapshot() } }

    /// The bus as it is now, for status queries.
    public func report() -> BusServiceReport {
        var dropped: [VehicleQuantity: Int] = [:]
        for f in feeds.withLock({ $0 }) { dropped.merge(f.dropped, uniquingKeysWith: +) }
        return BusServiceReport(
            interface: interfaceName, bus: tracker.withLock { $0.busReport },
            transmitted: transmitted.load(ordering: .relaxed), changesDropped: dropped,
            logEventsDropped: logDrops.load(ordering: .relaxed),
            controllerState: interfaceName.flatMap { CANInterfaceControl.state(of: $0)?.rawValue })
    }

    /// Whether frames come (cheap enough for the once-a-second status line).
    public var activity: BusActivity { tracker.withLock { $0.activity } }

    /// Encodes a DBC message from physical values and transmits it. `xorChecksum` names a
    /// signal that carries the XOR of the bytes before its own (the body requests' checksum).
    @discardableResult
    public func transmit(message name: String, signals: [String: Double], missingAsZero: Bool = false,
                         xorChecksum: String? = nil) throws(TransmitError) -> CANFrame {
        guard let m = database.message(named: name) else { throw TransmitError("the DBC has no message '\(name)'") }
        var data: [UInt8]
        do { data = try SignalCodec.encode(m, values: signals, missingAsZero: missingAsZero) } catch { throw TransmitError(error.description) }
        if let xorChecksum {
            guard let cs = m.signals.first(where: { $0.name == xorChecksum }) else { throw TransmitError("\(name) has no signal '\(xorChecksum)'") }
            var values = signals
            values[xorChecksum] = Double(TelematicsCore.xorChecksum(data, checksumByte: cs.startBit / 8))
            do { data = try SignalCodec.encode(m, values: values, missingAsZero: missingAsZero) } catch { throw TransmitError(error.description) }
        }
        var frame = CANFrame(id: m.id, data: data, isExtended: m.isExtended, isFD: m.isFD)
        frame.timestamp = now()
        frame.interface = interfaceName ?? "replay"
        do { try channel.send(frame) } catch { throw TransmitError(error.description) }
        transmitLog?.write(frame)
        transmitted.add(1, ordering: .relaxed)
        logger.debug("frame transmitted", metadata: ["can.id": "\(hex(m.id))", "can.message": "\(name)", "can.data": "\(hexBytes(data))"])
        return frame
    }

    public func run() async throws {
        let (events, continuation) = AsyncStream<BusEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
        let thread = DedicatedThread(name: "can-reader") { [self] in
            self.readLoop(continuation)
            continuation.finish()
        }
        await withGracefulShutdownHandler {
            for await event in events {
                self.log(event)
                if case .endOfLog = event, self.exitAtEndOfLog { break }
            }
        } onGracefulShutdown: {
            self.stop.set()
        }
        stop.set()
        thread.join()
        channel.close()
        transmitLog?.close()
        for s in subscribers.withLock({ $0 }) { s.continuation?.finish() }
        // The feeds' services end with the group's graceful shutdown (which the bus's end
        // starts), not before it: a service that returned on its own first would end the group
        // with "a service has finished unexpectedly".
    }

    /// The reader thread: receive, decode, update, expire; never blocks longer than 100 ms so
    /// that a stop request and the staleness checks are served promptly.
    private func readLoop(_ out: AsyncStream<BusEvent>.Continuation) {
        var lastExpire = now()
        var lastActivity = BusActivity.waiting
        var failures = 0
        // Log sources report the malformed lines they skipped.
        let malformed: (() -> [ParseError])? = (channel as? CandumpReplayChannel).map { r in { r.takeMalformed() } }
            ?? (channel as? LogBusChannel).map { r in { r.takeMalformed() } }
        let decoder = tracker.withLock { $0.decoder }
        var shortReported: [UInt32: Timestamp] = [:]
        while !stop.isSet {
            monitor.turn(.canReader, stop: stop)
            do {
                if let frame = try channel.receive(timeoutMs: 100) {
                    failures = 0
                    // The tracker already tells a short frame (its truncated counter); only then
                    // is the message looked up again, for the log.
                    let (changes, short) = tracker.withLock { t -> ([VehicleStateChange], Bool) in
                        let before = t.counters.truncated
                        let changes = t.ingest(frame)
                        return (changes, t.counters.truncated != before)
                    }
                    if !changes.isEmpty { emit(out, .changed(changes)) }
                    if frame.isError, frame.id & 0x40 != 0 { recoverFromBusOff() }
                    if short, let mi = decoder.messageIndex(id: frame.id, isExtended: frame.isExtended) {
                        let key = frame.dbcID
                        if shortReported[key].map({ frame.timestamp.milliseconds(since: $0) >= 60_000 }) ?? true {
                            shortReported[key] = frame.timestamp
                            let m = database.messages[mi]
                            emit(out, .shortFrame(id: frame.id, message: m.name, length: frame.data.count, expected: m.length))
                        }
                    }
                } else if channel.isExhausted {
                    emit(out, .endOfLog)
                    if exitAtEndOfLog { return }
                    // Values still go stale and the bus silent, ten times a second, until the stop.
                    while !stop.isSet {
                        monitor.turn(.canReader, stop: stop)
                        stop.wait(timeoutMs: 100)
                        expireAndReport(&lastActivity, out)
                    }
                    return
                }
            } catch {
                failures += 1
                emit(out, .receiveFailed(error.description))
                // An interface that went down comes back (ip link set up); keep trying gently.
                monitor.pause(.canReader, ms: min(5000, 100 * Int64(1 << min(failures, 6))), stop: stop)
            }
            if let malformed {
                for e in malformed() { emit(out, .malformedInput(e)) }
            }
            let t = now()
            if t.milliseconds(since: lastExpire) >= 50 {
                lastExpire = t
                let drops = channel.kernelDrops
                tracker.withLock { $0.noteKernelDrops(drops) }
                expireAndReport(&lastActivity, out)
            }
        }
    }

    private func expireAndReport(_ lastActivity: inout BusActivity, _ out: AsyncStream<BusEvent>.Continuation) {
        let t = now()
        let (changes, activity) = tracker.withLock { tr in (tr.expire(now: t), tr.activity) }
        if !changes.isEmpty { emit(out, .changed(changes)) }
        if activity != lastActivity {
            lastActivity = activity
            emit(out, .activity(activity))
        }
    }

    /// Events go to the log loop and, straight from the reader thread, to every watcher, feed
    /// and subscriber: the eCall sees a crash without waiting behind the log.
    private func emit(_ out: AsyncStream<BusEvent>.Continuation, _ event: BusEvent) {
        // Changes that would not be logged at the current level do not travel to the log loop
        // (the busiest hop: continuous numbers change at the message rate).
        let logged: Bool
        if case .changed(let changes) = event {
            let level = logger.logLevel
            logged = changes.contains { level <= Self.logLevel(of: $0) }
        } else {
            logged = true
        }
        if logged, case .dropped = out.yield(event) { logDrops.add(1, ordering: .relaxed) }
        subscribers.withLock { subs in
            for s in subs {
                guard let wanted = s.quantities else { s.continuation?.yield(event); continue }
                if case .changed(let changes) = event {
                    let mine = changes.filter { wanted.contains($0.quantity) }
                    if !mine.isEmpty { s.watcher?(mine) }
                }
            }
        }
        if case .changed(let changes) = event {
            feeds.withLock { for f in $0 { f.push(changes) } }
        }
    }

    private func recoverFromBusOff() {
        guard let interfaceName else { return }
        // With restart-ms set the kernel restarts the controller itself.
        if CANInterfaceControl.restartMs(of: interfaceName) == 0 {
            do {
                try CANInterfaceControl.restart(interfaceName)
                logger.warning("CAN controller was bus-off; restarted", metadata: ["can.interface": "\(interfaceName)"])
            } catch {
                logger.error("CAN controller is bus-off and could not be restarted", metadata: ["can.interface": "\(interfaceName)", "error": "\(error)"])
            }
        }
    }

    /// Continuous numbers change at the message rate; they stay out of the info log.
    private static func logLevel(of c: VehicleStateChange) -> Logger.Level {
        c.quantity.kind == .number && c.new != nil && c.old != nil ? .debug : .info
    }

    private func log(_ event: BusEvent) {
        switch event {
        case .changed(let changes):
            for c in changes {
                let level = Self.logLevel(of: c)
                // The metadata is built only for a line that is written.
                guard logger.logLevel <= level else { continue }
                var meta: Logger.Metadata = ["vehicle.quantity": "\(c.quantity.key)"]
                meta["vehicle.value"] = c.new.map { "\($0)" } ?? "unavailable"
                if let old = c.old { meta["vehicle.previous"] = "\(old)" }
                logger.log(level: level, c.new == nil ? "vehicle value unavailable" : "vehicle state changed", metadata: meta)
            }
        case .activity(let a):
            switch a {
            case .active: logger.info("CAN bus active")
            case .silent: logger.warning("CAN bus silent", metadata: ["can.silenceTimeoutMs": "\(tracker.withLock { $0.silenceTimeoutMs })"])
            case .waiting: break
            }
        case .shortFrame(let id, let message, let length, let expected):
            logger.warning("CAN frame shorter than its DBC message; decoded the signals it holds", metadata: [
                "can.id": "\(hex(id))", "can.message": "\(message)", "can.length": "\(length)", "can.expectedLength": "\(expected)",
            ])
        case .malformedInput(let e):
            logger.error("malformed CAN log line skipped", metadata: ["error": "\(e)"])
        case .receiveFailed(let e):
            logger.error("CAN receive failed", metadata: ["error": "\(e)"])
        case .endOfLog:
            logger.notice("end of the CAN log reached")
        }
    }
}

/// Why a frame could not be transmitted.
public struct TransmitError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ d: String) { description = d }
}

/// The bus service's status: the core's bus report, the interface and what the service itself
/// counts (typed; `json` is the control socket's form).
public struct BusServiceReport: Sendable {
    /// Nil when frames come from a log.
    public var interface: String?
    public var bus: BusReport
    public var transmitted: UInt64
    /// Changes the services could not keep up with, by quantity.
    public var changesDropped: [VehicleQuantity: Int]
    public var logEventsDropped: UInt64
    /// The controller's state (error-active, bus-off...) where the kernel reports it.
    public var controllerState: String?

    public var json: JSON {
        var o = bus.fields
        o.append(("transmitted", .number(Double(transmitted))))
        if !changesDropped.isEmpty {
            o.append(("changesDropped", .number(Double(changesDropped.values.reduce(0, +)))))
            o.append(("changesDroppedBy", .object(changesDropped.sorted { $0.key.key < $1.key.key }.map { ($0.key.key, .number(Double($0.value))) })))
        }
        if logEventsDropped > 0 { o.append(("logEventsDropped", .number(Double(logEventsDropped)))) }
        if let interface {
            o.insert(("interface", .string(interface)), at: 0)
            if let controllerState { o.append(("controllerState", .string(controllerState))) }
        }
        return .object(o)
    }
}
