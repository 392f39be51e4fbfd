/// A value of a vehicle quantity.
public enum VehicleValue: Sendable, Equatable, CustomStringConvertible {
    case flag(Bool)
    case number(Double)
    /// A raw value and its name from the DBC value table (nil when the table has none).
    case choice(raw: Int64, label: String?)

    public var json: JSON {
        switch self {
        case .flag(let b): .bool(b)
        case .number(let d): .number(d)
        case .choice(let raw, let label): label.map(JSON.string) ?? .number(Double(raw))
        }
    }

    /// Plain text for logs: the label of a choice, `true`/`false`, or the number.
    public var description: String {
        switch self {
        case .flag(let b): b ? "true" : "false"
        case .number(let d): JSON.format(d)
        case .choice(let raw, let label): label ?? String(raw)
        }
    }

    public var flag: Bool? { if case .flag(let b) = self { b } else { nil } }
    public var number: Double? { if case .number(let d) = self { d } else { nil } }
    /// A choice's raw value (the DBC's value-table number).
    public var raw: Int64? { if case .choice(let r, _) = self { r } else { nil } }
}

/// The latest value of a quantity and when it was seen.
public struct Reading: Sendable, Equatable {
    public var value: VehicleValue
    /// When the last frame carrying it arrived (refreshed by every frame).
    public var capturedAt: Timestamp
    /// When the value last changed.
    public var changedAt: Timestamp
    /// False once its message has stopped arriving for 3 cycle times.
    public var isAvailable: Bool
}

/// A change the services care about: a new value, or a value that became unavailable.
public struct VehicleStateChange: Sendable, Equatable {
    public var quantity: VehicleQuantity
    public var old: VehicleValue?
    /// nil when the quantity became unavailable.
    public var new: VehicleValue?
    public var at: Timestamp

    public init(quantity: VehicleQuantity, old: VehicleValue?, new: VehicleValue?, at: Timestamp) {
        self.quantity = quantity
        self.old = old
        self.new = new
        self.at = at
    }
}

/// Counters of what came off the bus.
public struct BusCounters: Sendable, Equatable {
    public var frames: UInt64 = 0
    public var decoded: UInt64 = 0
    public var unknownID: UInt64 = 0
    public var truncated: UInt64 = 0
    public var errorFrames: UInt64 = 0
    public var remoteFrames: UInt64 = 0
    public var busOffEvents: UInt64 = 0
    /// Frames the kernel dropped from the socket queue (SO_RXQ_OVFL), as last reported.
    public var kernelDrops: UInt64 = 0
    public init() {}
}

/// What the bus as a whole is doing.
public enum BusActivity: Sendable, Equatable {
    /// No frame has arrived yet.
    case waiting
    case active
    /// No frame for longer than the silence timeout.
    case silent(since: Timestamp)

    /// As the status shows it: waiting, active, silent.
    public var name: String {
        switch self {
        case .waiting: "waiting"
        case .active: "active"
        case .silent: "silent"
        }
    }
}

/// Why a DBC cannot serve the unit.
public struct BindingError: Error, Sendable, CustomStringConvertible {
    public var missing: [String]
    public var description: String {
        "the DBC lacks what the unit needs: " + missing.joined(separator: "; ")
    }
}

/// The live state of the vehicle, fed frame by frame. Pure: time comes with the frames and
/// with `expire(now:)`.
///
/// Overview: `ingest` decodes the bound signals of a known frame and reports changed
/// quantities; `expire` marks a quantity unavailable when its message has not arrived for 3
/// times its cycle time (times the page count of a multiplexed message, since each page comes
/// only once per round) and reports a silent bus when no frame at all arrived for
/// `silenceTimeoutMs`. Event-driven messages (no cycle time) never expire.
public struct VehicleStateTracker: Sendable {
    public let database: DBCDatabase
    public let decoder: FrameDecoder
    public let quantities: [VehicleQuantity]
    public let silenceTimeoutMs: Int64
    public private(set) var counters = BusCounters()
    public private(set) var activity = BusActivity.waiting
    private(set) var readings: [Reading?]
    /// What a bound signal needs at decode time, resolved once.
    private struct Binding: Sendable {
        var position: Int
        var quantity: Int
        var factor: Double
        var labels: [Int64: String]
        var signShift: UInt64
    }
    /// For each DBC message index, the signals bound to quantities.
    private var bound: [[Binding]]
    private var messageLengths: [Int]
    private var multiplexed: [Bool]
    private var timeoutMs: [Int64?]
    private var lastFrameAt: Timestamp?
    private var watchingSince: Timestamp?
    /// For each state block, the indices of its quantities.
    let blockIndices: [String: [Int]]

    public init(database: DBCDatabase, quantities: [VehicleQuantity] = VehicleQuantity.all, silenceTimeoutMs: Int64 = 2000) throws(BindingError) {
        self.database = database
        self.decoder = FrameDecoder(database)
        self.quantities = quantities
        messageLengths = database.messages.map(\.length)
        multiplexed = database.messages.map(\.isMultiplexed)
        self.silenceTimeoutMs = silenceTimeoutMs
        readings = Array(repeating: nil, count: quantities.count)
        bound = Array(repeating: [], count: database.messages.count)
        timeoutMs = Array(repeating: nil, count: quantities.count)
        var blocks: [String: [Int]] = [:]
        for (qi, q) in quantities.enumerated() { if let b = StateBlock.name(of: q) { blocks[b, default: []].append(qi) } }
        blockIndices = blocks
        var missing: [String] = []
        for (qi, q) in quantities.enumerated() {
            guard let mi = database.messageIndex(named: q.message) else {
                missing.append("message \(q.message) (for \(q.key))")
                continue
            }
            let m = database.messages[mi]
            guard let si = m.signalIndex(named: q.signal) else {
                missing.append("signal \(q.message).\(q.signal) (for \(q.key))")
                continue
            }
            let s = m.signals[si]
            bound[mi].append(Binding(
                position: decoder.position(message: mi, signal: si), quantity: qi, factor: s.factor,
                labels: s.valueTable, signShift: s.isSigned && s.length < 64 ? UInt64(64 - s.length) : 0
            ))
            if let cycle = m.cycleTimeMs, cycle > 0 {
                var pages = 1
                if m.signals[si].multiplexer != nil {
                    var values = Set<Int64>()
                    for s in m.signals { for r in s.multiplexer?.values ?? [] where r.count < 64 { for v in r { values.insert(v) } } }
                    pages = max(1, values.count)
                }
                timeoutMs[qi] = 3 * Int64(cycle) * Int64(pages)
            }
        }
        for tx in TransmittedMessage.all where database.message(named: tx) == nil {
            missing.append("message \(tx) (transmitted by the unit)")
        }
        guard missing.isEmpty else { throw BindingError(missing: missing) }
    }

    /// The latest reading of a quantity, available or not; nil if never seen.
    public func reading(_ q: VehicleQuantity) -> Reading? {
        quantities.firstIndex(of: q).flatMap { readings[$0] }
    }

    /// The current value when it is available.
    public func value(_ q: VehicleQuantity) -> VehicleValue? {
        guard let r = reading(q), r.isAvailable else { return nil }
        return r.value
    }

    /// Notes the kernel's drop counter from the socket.
    public mutating func noteKernelDrops(_ total: UInt64) { counters.kernelDrops = total }

    /// Takes one frame off the bus and returns the quantities whose value changed.
    public mutating func ingest(_ frame: CANFrame) -> [VehicleStateChange] {
        counters.frames += 1
        let t = frame.timestamp
        lastFrameAt = t
        activity = .active
        if frame.isError {
            counters.errorFrames += 1
            // CAN_ERR_BUSOFF: the controller went bus-off.
            if frame.id & 0x40 != 0 { counters.busOffEvents += 1 }
            return []
        }
        if frame.isRemote { counters.remoteFrames += 1; return [] }
        guard let mi = decoder.messageIndex(id: frame.id, isExtended: frame.isExtended) else {
            counters.unknownID += 1
            return []
        }
        if frame.data.count < messageLengths[mi] { counters.truncated += 1 }
        counters.decoded += 1
        let bindings = bound[mi]
        if bindings.isEmpty { return [] }
        var changes: [VehicleStateChange] = []
        let (le, be) = FrameDecoder.words(frame.data)
        let muxed = multiplexed[mi]
        for b in bindings {
            if muxed, !decoder.isPresent(message: mi, signal: b.position, le: le, be: be, data: frame.data) { continue }
            guard let (bits, physical) = decoder.value(message: mi, signal: b.position, le: le, be: be, data: frame.data) else { continue }
            let value: VehicleValue
            switch quantities[b.quantity].kind {
            case .flag: value = .flag(bits != 0)
            case .number: value = .number(roundToResolution(physical, factor: b.factor))
            case .choice:
                let raw = b.signShift == 0 ? Int64(bitPattern: bits) : Int64(bitPattern: bits << b.signShift) >> Int64(b.signShift)
                value = .choice(raw: raw, label: b.labels[raw])
            }
            let qi = b.quantity
            if var r = readings[qi] {
                let wasAvailable = r.isAvailable
                let old = r.value
                r.capturedAt = t
                r.isAvailable = true
                if old != value || !wasAvailable {
                    r.value = value
                    r.changedAt = t
                    changes.append(VehicleStateChange(quantity: quantities[qi], old: wasAvailable ? old : nil, new: value, at: t))
                }
                readings[qi] = r
            } else {
                readings[qi] = Reading(value: value, capturedAt: t, changedAt: t, isAvailable: true)
                changes.append(VehicleStateChange(quantity: quantities[qi], old: nil, new: value, at: t))
            }
        }
        return changes
    }

    /// Marks quantities whose message stopped arriving as unavailable, and the bus as silent
    /// when nothing arrived for the silence timeout. Returns the quantities that became
    /// unavailable.
    public mutating func expire(now: Timestamp) -> [VehicleStateChange] {
        if watchingSince == nil { watchingSince = now }
        let quietSince = lastFrameAt ?? watchingSince!
        if now.milliseconds(since: quietSince) > silenceTimeoutMs {
            if case .silent = activity {} else { activity = .silent(since: quietSince) }
        }
        var changes: [VehicleStateChange] = []
        for qi in readings.indices {
            guard var r = readings[qi], r.isAvailable, let limit = timeoutMs[qi] else { continue }
            if now.milliseconds(since: r.capturedAt) > limit {
                r.isAvailable = false
                readings[qi] = r
                changes.append(VehicleStateChange(quantity: quantities[qi], old: r.value, new: nil, at: now))
            }
        }
        return changes
    }

    /// The whole state as nested JSON (`doors.frontLeft.open` → `{"doors":{"frontLeft":{"open":…}}}`),
    /// each leaf `{"value": …, "capturedAt": …, "changedAt": …}` or `{"available": false, …}`.
    public func snapshot() -> JSON {
        var root = JSONTree()
        for (qi, q) in quantities.enumerated() {
            let leaf: JSON
            if let r = readings[qi] {
                var o: [(String, JSON)] = []
                if r.isAvailable { o.append(("value", r.value.json)) } else { o.append(("available", .bool(false))); o.append(("lastValue", r.value.json)) }
                o.append(("capturedAt", .number(r.capturedAt.seconds)))
                o.append(("changedAt", .number(r.changedAt.seconds)))
                leaf = .object(o)
            } else {
                leaf = .object([("available", .bool(false))])
            }
            root.insert(path: q.key.split(separator: ".").map(String.init), leaf)
        }
        return root.json
    }

    /// The bus's activity and counters as they are now.
    public var busReport: BusReport { BusReport(activity: activity, lastFrameAt: lastFrameAt, counters: counters) }
}

/// What the bus has seen: its activity, its last frame's time and its counters (typed; `fields`
/// are the control socket's form).
public struct BusReport: Sendable, Equatable {
    public var activity: BusActivity
    public var lastFrameAt: Timestamp?
    public var counters: BusCounters

    public init(activity: BusActivity, lastFrameAt: Timestamp?, counters: BusCounters) {
        self.activity = activity
        self.lastFrameAt = lastFrameAt
        self.counters = counters
    }

    /// The report's fields in the control socket's order.
    public var fields: [(String, JSON)] {
        var o: [(String, JSON)] = [("activity", .string(activity.name))]
        if case .silent(let since) = activity { o.append(("silentSince", .number(since.seconds))) }
        if let lastFrameAt { o.append(("lastFrameAt", .number(lastFrameAt.seconds))) }
        o += [
            ("frames", .number(Double(counters.frames))),
            ("decoded", .number(Double(counters.decoded))),
            ("unknownId", .number(Double(counters.unknownID))),
            ("truncated", .number(Double(counters.truncated))),
            ("errorFrames", .number(Double(counters.errorFrames))),
            ("remoteFrames", .number(Double(counters.remoteFrames))),
            ("busOff", .number(Double(counters.busOffEvents))),
            ("kernelDrops", .number(Double(counters.kernelDrops))),
        ]
        return o
    }
}

/// Builds nested JSON objects from dotted paths, keeping first-seen order.
struct JSONTree {
    private var keys: [String] = []
    private var children: [String: JSONTree] = [:]
    private var leaves: [String: JSON] = [:]

    mutating func insert(path: [String], _ value: JSON) {
        guard let head = path.first else { return }
        if !keys.contains(head) { keys.append(head) }
        if path.count == 1 {
            leaves[head] = value
        } else {
            children[head, default: JSONTree()].insert(path: Array(path.dropFirst()), value)
        }
    }

    var json: JSON {
        .object(keys.map { k in (k, leaves[k] ?? children[k]?.json ?? .null) })
    }
}

/// A physical value rounded to the decimals of the signal's factor, so that 1262 × 0.01
/// reads 12.62 rather than 12.620000000000001. The codec itself keeps full precision
/// (it must match other DBC tools bit for bit); this is for the state people read.
func roundToResolution(_ v: Double, factor: Double) -> Double {
    var scale = 1.0
    var f = abs(factor)
    var digits = 0
    while digits < 9, f != f.rounded() {
        f *= 10
        scale *= 10
        digits += 1
    }
    guard digits > 0 else { return v }
    return (v * scale).rounded() / scale
}
