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

/// A random 128-bit identifier in the usual 8-4-4-4-12 hex form (version 4, RFC 9562).
public func randomMessageID<G: RandomNumberGenerator>(using rng: inout G) -> String {
    // Two 64-bit draws, not sixteen byte draws: the system generator is a syscall per draw.
    var bytes: [UInt8] = []
    bytes.reserveCapacity(16)
    for _ in 0..<2 {
        let word = rng.next()
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: word >> (8 * UInt64(i)))) }
    }
    bytes[6] = (bytes[6] & 0x0F) | 0x40
    bytes[8] = (bytes[8] & 0x3F) | 0x80
    let h = hexBytes(bytes).lowercased()
    let c = Array(h)
    return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-" + String(c[16..<20]) + "-" + String(c[20..<32])
}

public func randomMessageID() -> String {
    var g = SystemRandomNumberGenerator()
    return randomMessageID(using: &g)
}
