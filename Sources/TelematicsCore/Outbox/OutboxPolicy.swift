/// What the car tells the backend, in the order it matters. Lower raw values go first and
/// are evicted last; eCall reports and theft alarms are never evicted.
public enum OutboxPriority: Int, Sendable, CaseIterable, Comparable {
    case eCallReport = 0
    case theftAlarm = 1
    case commandResult = 2
    case event = 3
    case state = 4

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    /// Whether a full outbox may drop messages of this priority.
    public var isEvictable: Bool { self >= .commandResult }

    public var name: String {
        switch self {
        case .eCallReport: "ecall"
        case .theftAlarm: "alarm"
        case .commandResult: "commandResult"
        case .event: "event"
        case .state: "state"
        }
    }
}

/// A message handed to the outbox.
public struct OutboxMessage: Sendable, Equatable {
    /// Unique id (the backend removes duplicates by it).
    public var id: String
    /// The topic suffix it goes to (`events`, `state`, ...); order is kept per stream.
    public var stream: String
    public var priority: OutboxPriority
    /// For state: the block it replaces while unsent (`doors`); nil for messages never coalesced.
    public var coalesceKey: String?
    /// When the car captured it (UTC milliseconds).
    public var capturedAtMs: Int64
    /// The JSON body.
    public var payload: String
    /// It holds where the car is (the parking position): only "share my position" sends it.
    public var carriesPosition: Bool

    public init(id: String, stream: String, priority: OutboxPriority, coalesceKey: String? = nil, capturedAtMs: Int64, payload: String,
                carriesPosition: Bool = false) {
        self.id = id
        self.stream = stream
        self.priority = priority
        self.coalesceKey = coalesceKey
        self.capturedAtMs = capturedAtMs
        self.payload = payload
        self.carriesPosition = carriesPosition
    }
}

/// The privacy level the car's user chose (Settings → Online services → Service management).
/// The legal eCall is never affected: it has its own link and works in every mode.
public enum PrivacyMode: String, Sendable, CaseIterable {
    /// Everything the services need goes to the backend, positions included.
    case shareMyPosition
    /// The car uses its position but never sends it: no parking position, no tracking.
    case useMyPosition
    /// No data leaves the car except the legal eCall.
    case offline

    /// The short words of the command line: share, use, offline.
    public init?(word: String) {
        switch word {
        case "share", "shareMyPosition": self = .shareMyPosition
        case "use", "useMyPosition": self = .useMyPosition
        case "offline": self = .offline
        default: return nil
        }
    }

    /// Whether a message may leave the car in this mode.
    public func allows(_ m: OutboxMessage) -> Bool {
        switch self {
        case .shareMyPosition: true
        case .useMyPosition: !m.carriesPosition
        case .offline: false
        }
    }

    /// Whether the backend link is up at all in this mode.
    public var connects: Bool { self != .offline }
}

/// A message as the outbox holds it, ready to send.
public struct OutboxEntry: Sendable, Equatable {
    public var message: OutboxMessage
    /// The per-vehicle sequence number, given when the message is first taken for sending:
    /// coalesced and evicted messages were never sent, so the numbers the backend sees have
    /// no gaps unless something was really lost.
    public var sequence: Int64

    public init(message: OutboxMessage, sequence: Int64) {
        self.message = message
        self.sequence = sequence
    }
}

/// A message identifier: a UUID version 7 (RFC 9562, 5.7) in the usual 8-4-4-4-12 lower-case
/// hex form: 48 bits of Unix milliseconds, then 74 random bits. Identifiers made later sort
/// later, so the outbox's unique index (and the backend's) grows at its end instead of taking
/// every insert at a random place; the random part keeps them unguessable and unique.
public func messageID<G: RandomNumberGenerator>(unixMs: Int64, using rng: inout G) -> String {
    let a: UInt64 = rng.next(), b: UInt64 = rng.next()
    // Before 1970 or past the year 10889, the field is clamped (never a trap).
    let ms = UInt64(clamping: min(max(unixMs, 0), 0xFFFF_FFFF_FFFF))
    let high = ms << 16 | 0x7000 | (a & 0x0FFF)
    let low = 0x8000_0000_0000_0000 | (b & 0x3FFF_FFFF_FFFF_FFFF)
    return String(unsafeUninitializedCapacity: 36) { out in
        let digits: (UInt64) -> UInt8 = { $0 < 10 ? UInt8(48 + $0) : UInt8(87 + $0) }
        var at = 0
        func put(_ value: UInt64, nibbles: Int, dash: Bool) {
            for k in stride(from: nibbles - 1, through: 0, by: -1) {
                out[at] = digits((value >> (4 * UInt64(k))) & 0xF)
                at += 1
            }
            if dash { out[at] = UInt8(ascii: "-"); at += 1 }
        }
        put(high >> 32, nibbles: 8, dash: true)
        put(high >> 16 & 0xFFFF, nibbles: 4, dash: true)
        put(high & 0xFFFF, nibbles: 4, dash: true)
        put(low >> 48, nibbles: 4, dash: true)
        put(low & 0xFFFF_FFFF_FFFF, nibbles: 12, dash: false)
        return at
    }
}

/// The same with the system's random generator.
public func messageID(unixMs: Int64) -> String {
    var g = SystemRandomNumberGenerator()
    return messageID(unixMs: unixMs, using: &g)
}

/// A stored message as it goes to the broker: its sequence number and send time in front of its
/// body (the backend finds gaps by the one; the other tells how long the message waited). The
/// unit's link and the fleet's both send this.
public func wireEnvelope(payload: String, sequence: Int64, sentAtMs: Int64) -> [UInt8] {
    guard payload.hasPrefix("{") else { return Array(payload.utf8) }
    let rest = payload.dropFirst()
    let separator = rest.hasPrefix("}") ? "" : ","
    return Array("{\"seq\":\(sequence),\"sentAt\":\(sentAtMs)\(separator)\(rest)".utf8)
}
