#if canImport(Glibc)
import Glibc
#endif
import ECallLink
import Synchronization
import TelematicsCore

/// How the simulated network and PSAP behave, from a scenario file (`key = value` lines).
public struct PSAPScenario: Sendable, Equatable {
    public enum SendMSD: String, Sendable { case auto, never }

    /// Outcome of each dialling attempt; the last one repeats.
    public var attempts: [ECallWire.SetupOutcome] = [.answered]
    public var answerDelayMs: Int64 = 50
    /// `auto`: ask for the MSD on INITIATION (push) or after the delay from the answer (pull).
    public var sendMSD: SendMSD = .auto
    public var sendMSDDelayMs: Int64 = 100
    public var llAck = true
    public var alAck = true
    public var alAckClearDown = false
    public var ackDelayMs: Int64 = 50
    /// The first N MSDs get no acknowledgement at all.
    public var ignoreMSDs = 0
    /// Drop the call when the N-th MSD arrives (0: never).
    public var dropOnMSD = 0
    /// Drop the call this long after answering it (-1: never).
    public var dropAfterAnswerMs: Int64 = -1
    /// After the AL-ACK, ask for the MSD again this many times.
    public var requestAgain = 0
    public var requestAgainDelayMs: Int64 = 300
    /// Clear down this long after the last AL-ACK, or after the answer when there is none (-1: never).
    public var hangUpAfterMs: Int64 = 1_000
    /// Call the unit back this long after the clear-down (-1: never).
    public var callbackAfterMs: Int64 = -1
    public var callbackHangUpAfterMs: Int64 = 500

    public init() {}

    static let keys: Set<String> = [
        "attempts", "answer-delay-ms", "send-msd", "send-msd-delay-ms", "ll-ack", "al-ack", "al-ack-clear-down",
        "ack-delay-ms", "ignore-msds", "drop-on-msd", "drop-after-answer-ms", "request-again", "request-again-delay-ms",
        "hang-up-after-ms", "callback-after-ms", "callback-hang-up-after-ms",
    ]

    public static func parse(_ text: String, source: String? = nil) throws(ParseError) -> PSAPScenario {
        let f = try KeyValueFile.parse(text, source: source)
        try f.checkKnown(["": keys])
        var s = PSAPScenario()
        if let e = f.entry("", "attempts") {
            var list: [ECallWire.SetupOutcome] = []
            for part in e.value.split(separator: ",") {
                guard let o = ECallWire.SetupOutcome(rawValue: part.trimmingSpaces) else {
                    throw f.error(e, "unknown outcome '\(part.trimmingSpaces)'; known: answered, busy, noAnswer, noNetwork")
                }
                list.append(o)
            }
            guard !list.isEmpty else { throw f.error(e, "needs at least one outcome") }
            s.attempts = list
        }
        if let e = f.entry("", "send-msd") {
            guard let v = SendMSD(rawValue: e.value) else { throw f.error(e, "expected auto or never") }
            s.sendMSD = v
        }
        let ms: ClosedRange<Int64> = -1...86_400_000
        s.answerDelayMs = try f.integer("", "answer-delay-ms", default: s.answerDelayMs, range: 0...600_000)
        s.sendMSDDelayMs = try f.integer("", "send-msd-delay-ms", default: s.sendMSDDelayMs, range: 0...600_000)
        s.llAck = try f.bool("", "ll-ack", default: true)
        s.alAck = try f.bool("", "al-ack", default: true)
        s.alAckClearDown = try f.bool("", "al-ack-clear-down", default: false)
        s.ackDelayMs = try f.integer("", "ack-delay-ms", default: s.ackDelayMs, range: 0...600_000)
        s.ignoreMSDs = Int(try f.integer("", "ignore-msds", default: 0, range: 0...255))
        s.dropOnMSD = Int(try f.integer("", "drop-on-msd", default: 0, range: 0...255))
        s.dropAfterAnswerMs = try f.integer("", "drop-after-answer-ms", default: -1, range: ms)
        s.requestAgain = Int(try f.integer("", "request-again", default: 0, range: 0...254))
        s.requestAgainDelayMs = try f.integer("", "request-again-delay-ms", default: s.requestAgainDelayMs, range: 0...600_000)
        s.hangUpAfterMs = try f.integer("", "hang-up-after-ms", default: s.hangUpAfterMs, range: ms)
        s.callbackAfterMs = try f.integer("", "callback-after-ms", default: -1, range: ms)
        s.callbackHangUpAfterMs = try f.integer("", "callback-hang-up-after-ms", default: s.callbackHangUpAfterMs, range: 0...86_400_000)
        return s
    }
}

/// The PSAP and network simulator: accepts units on a TCP port, plays the scenario, and logs
/// every event, with every MSD it received decoded, as JSON lines.
public final class PSAPSimulator: Sendable {
    private let listener: LineListener
    private let scenario: PSAPScenario
    private let log: @Sendable (JSON) -> Void
    private let stop = Atomic<Bool>(false)
    /// Callbacks the PSAP owes, by VIN: they survive the unit's connection going down.
    private let callbacks = CallbackBook()

    public init(listen endpoint: TCPEndpoint, scenario: PSAPScenario, log: @escaping @Sendable (JSON) -> Void) throws(LinkError) {
        listener = try LineListener(endpoint)
        self.scenario = scenario
        self.log = log
    }

    public func requestStop() { stop.store(true, ordering: .releasing) }

    /// Serves units one after another until `requestStop`.
    public func run() {
        log(.object([("event", .string("listening")), ("endpoint", .string(listener.endpoint.description))]))
        while !stop.load(ordering: .acquiring) {
            guard let conn = listener.accept(timeoutMs: 100) else { continue }
            var session = Session(scenario: scenario, conn: conn, log: log, callbacks: callbacks)
            session.run(until: { self.stop.load(ordering: .acquiring) })
            conn.close()
        }
        listener.close()
    }
}

/// Callbacks due, by VIN: (monotonic ms, call number).
final class CallbackBook: Sendable {
    let due = Mutex<[String: (at: Int64, call: Int)]>([:])
}

/// One connected unit.
struct Session {
    let scenario: PSAPScenario
    let conn: LineConnection
    let log: @Sendable (JSON) -> Void
    let callbacks: CallbackBook
    var vin = ""
    var started = monotonicMs()
    var dials = 0
    var msds = 0
    var requestsLeft: Int
    /// Pending events: (deadline, call, message to send or marker).
    var pending: [(at: Int64, call: Int, action: Action)] = []
    var msdRequested: Set<Int> = []
    var calledBack = false

    enum Action {
        case send(ECallWire)
        case ackDone(call: Int)
    }

    init(scenario: PSAPScenario, conn: LineConnection, log: @escaping @Sendable (JSON) -> Void, callbacks: CallbackBook) {
        self.scenario = scenario
        self.conn = conn
        self.log = log
        self.callbacks = callbacks
        requestsLeft = scenario.requestAgain
    }

    mutating func run(until shouldStop: () -> Bool) {
        record("connected")
        while !shouldStop() {
            let now = monotonicMs()
            pending.sort { $0.at < $1.at }
            while let first = pending.first, first.at <= now {
                pending.removeFirst()
                fire(first.action)
            }
            let owed = callbacks.due.withLock { book -> Int? in
                guard let c = book[vin], c.at <= now else { return nil }
                book[vin] = nil
                return c.call
            }
            if let call = owed { fire(.send(.incoming(call: call))) }
            let wait = pending.first.map { Int32(max(0, min(20, $0.at - monotonicMs()))) } ?? 20
            switch conn.readLine(timeoutMs: wait) {
            case .timeout: continue
            case .closed:
                record("disconnected")
                return
            case .line(let text):
                do { handle(try ECallWire.parse(text)) } catch {
                    record("malformed", [("line", .string(text)), ("error", .string(error.message))])
                }
            }
        }
    }

    mutating func record(_ event: String, _ fields: [(String, JSON)] = []) {
        log(.object([("t", .number(Double(monotonicMs() - started))), ("event", .string(event))] + fields))
    }

    mutating func schedule(_ afterMs: Int64, call: Int, _ action: Action) {
        pending.append((monotonicMs() + afterMs, call, action))
    }

    mutating func cancel(call: Int) { pending.removeAll { $0.call == call } }

    mutating func fire(_ action: Action) {
        switch action {
        case .send(let m):
            conn.send(m.json.text)
            record("sent", [("message", m.json)])
            switch m {
            case .cleared(let call), .dropped(let call):
                cancel(call: call)
                if case .cleared = m { scheduleCallback(after: call) }
            default: break
            }
        case .ackDone(let call):
            if requestsLeft > 0 {
                requestsLeft -= 1
                schedule(scenario.requestAgainDelayMs, call: call, .send(.sendMSD(call: call)))
            } else if scenario.hangUpAfterMs >= 0, !scenario.alAckClearDown {
                schedule(scenario.hangUpAfterMs, call: call, .send(.cleared(call: call)))
            }
        }
    }

    mutating func scheduleCallback(after call: Int) {
        guard scenario.callbackAfterMs >= 0, !calledBack else { return }
        calledBack = true
        let at = monotonicMs() + scenario.callbackAfterMs
        callbacks.due.withLock { $0[vin] = (at, call + 1_000) }
    }

    mutating func handle(_ m: ECallWire) {
        record("received", [("message", m.json)])
        switch m {
        case .hello(let vin):
            self.vin = vin
            record("attached", [("vin", .string(vin))])
        case .dial(let call, _):
            dials += 1
            let outcome = scenario.attempts[min(dials - 1, scenario.attempts.count - 1)]
            schedule(scenario.answerDelayMs, call: call, .send(.setup(call: call, outcome: outcome)))
            guard outcome == .answered else { return }
            if scenario.sendMSD == .auto {
                schedule(scenario.answerDelayMs + scenario.sendMSDDelayMs, call: call, .send(.sendMSD(call: call)))
                msdRequested.insert(call)
            }
            if scenario.dropAfterAnswerMs >= 0 {
                schedule(scenario.answerDelayMs + scenario.dropAfterAnswerMs, call: call, .send(.dropped(call: call)))
            }
            if (!scenario.alAck || scenario.sendMSD == .never), scenario.hangUpAfterMs >= 0 {
                schedule(scenario.answerDelayMs + scenario.hangUpAfterMs, call: call, .send(.cleared(call: call)))
            }
        case .initiation(let call):
            // Push mode: the request comes sooner than in pull mode.
            if scenario.sendMSD == .auto {
                pending.removeAll { if case .send(.sendMSD(let c)) = $0.action { return c == call } else { return false } }
                schedule(scenario.sendMSDDelayMs, call: call, .send(.sendMSD(call: call)))
            }
        case .msd(let call, let id, let bytes):
            msds += 1
            var fields: [(String, JSON)] = [("call", .number(Double(call))), ("messageIdentifier", .number(Double(id))), ("hex", .string(hexBytes(bytes)))]
            do { fields.append(("decoded", try MSD.decode(bytes).json)) } catch { fields.append(("error", .string(error.description))) }
            record("msd", fields)
            if scenario.dropOnMSD == msds {
                cancel(call: call)
                fire(.send(.dropped(call: call)))
                return
            }
            if msds <= scenario.ignoreMSDs { return }
            if scenario.llAck { schedule(scenario.ackDelayMs, call: call, .send(.llAck(call: call))) }
            if scenario.alAck {
                schedule(2 * scenario.ackDelayMs, call: call, .send(.alAck(call: call, clearDown: scenario.alAckClearDown)))
                schedule(2 * scenario.ackDelayMs, call: call, .ackDone(call: call))
            }
        case .hangUp(let call):
            cancel(call: call)
            scheduleCallback(after: call)
        case .answer(let call):
            schedule(scenario.callbackHangUpAfterMs, call: call, .send(.cleared(call: call)))
        case .deregister, .setup, .sendMSD, .llAck, .alAck, .cleared, .dropped, .incoming:
            break
        }
    }
}

func monotonicMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}
