/// A CAN database: the messages and signals of a bus, as a DBC file describes them.
public struct DBCDatabase: Sendable {
    public var version: String = ""
    public var nodes: [String] = []
    public var comment: String?
    public var valueTables: [String: [Int64: String]] = [:]
    public var attributeDefinitions: [String: DBCAttributeDefinition] = [:]
    /// What the parser skipped and why (a comment or attribute for a message or signal the file
    /// does not define): the file loads, and the tools show these.
    public var warnings: [ParseError] = []
    public private(set) var messages: [DBCMessage] = []
    private var indexByKey: [UInt32: Int] = [:]
    private var indexByName: [String: Int] = [:]

    public init() {}

    /// The message with this bus identifier (`isExtended` distinguishes 0x123 from 0x00000123).
    public func message(id: UInt32, isExtended: Bool) -> DBCMessage? {
        indexByKey[key(id, isExtended)].map { messages[$0] }
    }

    /// Index of the message for a frame, for callers that keep per-message tables.
    public func messageIndex(id: UInt32, isExtended: Bool) -> Int? {
        indexByKey[key(id, isExtended)]
    }

    public func message(named name: String) -> DBCMessage? {
        indexByName[name].map { messages[$0] }
    }

    public func messageIndex(named name: String) -> Int? { indexByName[name] }

    /// Adds a message; false when its identifier or name is already taken.
    mutating func add(_ m: DBCMessage) -> Bool {
        let k = key(m.id, m.isExtended)
        guard indexByKey[k] == nil, indexByName[m.name] == nil else { return false }
        indexByKey[k] = messages.count
        indexByName[m.name] = messages.count
        messages.append(m)
        return true
    }

    mutating func update(_ index: Int, _ body: (inout DBCMessage) -> Void) {
        body(&messages[index])
    }

    private func key(_ id: UInt32, _ ext: Bool) -> UInt32 { ext ? id | 0x8000_0000 : id }
}

/// One message (frame layout) of the database.
public struct DBCMessage: Sendable {
    public var id: UInt32
    public var isExtended: Bool
    public var name: String
    /// Payload length in bytes (the DBC's DLC field).
    public var length: Int
    public var sender: String
    public var transmitters: [String] = []
    public var comment: String?
    public var attributes: [String: DBCAttributeValue] = [:]
    /// `GenMsgCycleTime` in milliseconds (the attribute or its default); nil or 0 for event messages.
    public var cycleTimeMs: Int?
    /// True when `VFrameFormat` says the frame is CAN FD.
    public var isFD = false
    public var signals: [DBCSignal] = []
    /// The file line that declared the message, for later error messages.
    public var line: Int = 0

    public init(id: UInt32, isExtended: Bool, name: String, length: Int, sender: String) {
        self.id = id
        self.isExtended = isExtended
        self.name = name
        self.length = length
        self.sender = sender
    }

    public func signalIndex(named name: String) -> Int? { signals.firstIndex { $0.name == name } }
    public func signal(named name: String) -> DBCSignal? { signalIndex(named: name).map { signals[$0] } }

    /// True when some signal is only present for certain multiplexer values.
    public var isMultiplexed: Bool { signals.contains { $0.multiplexer != nil } }
}

/// Bit order of a signal in the payload.
public enum ByteOrder: Sendable, Equatable {
    /// `@1`: Intel; the start bit is the least significant bit.
    case littleEndian
    /// `@0`: Motorola; the start bit is the most significant bit in the DBC's sawtooth numbering.
    case bigEndian
}

/// How the raw bits are read.
public enum SignalValueType: Sendable, Equatable {
    case integer
    /// IEEE 754 single (`SIG_VALTYPE_ ... : 1`), 32 bits.
    case float32
    /// IEEE 754 double (`SIG_VALTYPE_ ... : 2`), 64 bits.
    case float64
}

/// When a multiplexed signal is present: its multiplexer signal has a raw value in `values`.
public struct MultiplexCondition: Sendable, Equatable {
    public var multiplexer: String
    public var values: [ClosedRange<Int64>]
    /// Index of the multiplexer signal in its message, resolved when the file is parsed.
    public var multiplexerIndex: Int = -1

    public init(multiplexer: String, values: [ClosedRange<Int64>]) {
        self.multiplexer = multiplexer
        self.values = values
    }

    public func contains(_ raw: Int64) -> Bool { values.contains { $0.contains(raw) } }
}

/// One signal of a message.
public struct DBCSignal: Sendable {
    public var name: String
    public var startBit: Int
    public var length: Int
    public var byteOrder: ByteOrder
    public var isSigned: Bool
    public var valueType: SignalValueType = .integer
    public var factor: Double
    public var offset: Double
    public var minimum: Double
    public var maximum: Double
    public var unit: String
    public var receivers: [String]
    /// Set for signals that select which other signals are present (`M`, or `mNM`).
    public var isMultiplexer = false
    /// Set for signals present only for some multiplexer values (`mN`, or `SG_MUL_VAL_`).
    public var multiplexer: MultiplexCondition?
    public var valueTable: [Int64: String] = [:]
    public var comment: String?
    public var attributes: [String: DBCAttributeValue] = [:]
    public var line: Int = 0

    public init(
        name: String, startBit: Int, length: Int, byteOrder: ByteOrder, isSigned: Bool,
        factor: Double = 1, offset: Double = 0, minimum: Double = 0, maximum: Double = 0,
        unit: String = "", receivers: [String] = []
    ) {
        self.name = name
        self.startBit = startBit
        self.length = length
        self.byteOrder = byteOrder
        self.isSigned = isSigned
        self.factor = factor
        self.offset = offset
        self.minimum = minimum
        self.maximum = maximum
        self.unit = unit
        self.receivers = receivers
    }

    /// True when the DBC gives a range (`[0|0]` means none).
    public var hasRange: Bool { !(minimum == 0 && maximum == 0) }

    /// Bit positions [first, first + length) in the "linear" numbering of the signal's byte
    /// order: LSB-first bytes for Intel, MSB-first bytes for Motorola.
    var linearStart: Int {
        switch byteOrder {
        case .littleEndian: startBit
        case .bigEndian: (startBit / 8) * 8 + (7 - startBit % 8)
        }
    }

    /// Bytes the signal needs in the payload.
    var requiredBytes: Int { (linearStart + length + 7) / 8 }
}

/// The kind of object an attribute applies to.
public enum DBCObjectKind: String, Sendable {
    case network = "", node = "BU_", message = "BO_", signal = "SG_", environment = "EV_"
}

public enum DBCAttributeValue: Sendable, Equatable {
    case number(Double)
    case string(String)

    public var number: Double? { if case .number(let d) = self { d } else { nil } }
    public var string: String? { if case .string(let s) = self { s } else { nil } }
}

public struct DBCAttributeDefinition: Sendable {
    public enum Kind: Sendable, Equatable {
        case int(min: Double, max: Double)
        case hex(min: Double, max: Double)
        case float(min: Double, max: Double)
        case string
        case enumeration([String])
    }
    public var name: String
    public var object: DBCObjectKind
    public var kind: Kind
    public var defaultValue: DBCAttributeValue?
}
