/// Signal decode and encode with the semantics of the common DBC tools (Vector CANdb++,
/// cantools): Intel bits counted from the LSB of byte 0; Motorola start bit = MSB in the
/// sawtooth numbering (bit 7 of byte 0 is 7, bit 0 of byte 1 is 8); two's complement for
/// signed signals; IEEE floats through `SIG_VALTYPE_`; physical = raw × factor + offset;
/// encoding rounds half to even, as Python's `round` does in cantools.
public enum SignalCodec {
    /// The raw bits of a signal, or nil when the payload is too short to hold it.
    @inlinable
    public static func rawBits(_ s: DBCSignal, in data: [UInt8]) -> UInt64? {
        data.withUnsafeBufferPointer { rawBits(s, in: $0) }
    }

    @usableFromInline
    static func rawBits(_ s: DBCSignal, in data: UnsafeBufferPointer<UInt8>) -> UInt64? {
        let length = s.length
        switch s.byteOrder {
        case .littleEndian:
            var pos = s.startBit
            guard (pos + length + 7) / 8 <= data.count else { return nil }
            var value: UInt64 = 0
            var done = 0
            while done < length {
                let bit = pos & 7
                let take = min(8 - bit, length - done)
                let chunk = (UInt64(data[pos >> 3]) >> UInt64(bit)) & ((1 << UInt64(take)) - 1)
                value |= chunk << UInt64(done)
                done += take
                pos += take
            }
            return value
        case .bigEndian:
            var pos = (s.startBit & ~7) + (7 - s.startBit & 7)
            guard (pos + length + 7) / 8 <= data.count else { return nil }
            var value: UInt64 = 0
            var remaining = length
            while remaining > 0 {
                let avail = 8 - (pos & 7)
                let take = min(avail, remaining)
                let chunk = (UInt64(data[pos >> 3]) >> UInt64(avail - take)) & ((1 << UInt64(take)) - 1)
                value = take == 64 ? chunk : (value << UInt64(take)) | chunk
                remaining -= take
                pos += take
            }
            return value
        }
    }

    /// The raw value as an integer (sign-extended for signed signals).
    @inlinable
    public static func rawInteger(_ s: DBCSignal, bits: UInt64) -> Int64 {
        guard s.isSigned, s.length < 64 else { return Int64(bitPattern: bits) }
        let signBit: UInt64 = 1 << UInt64(s.length - 1)
        return bits & signBit != 0 ? Int64(bitPattern: bits | ~((signBit << 1) - 1)) : Int64(bitPattern: bits)
    }

    /// Physical value of raw bits: raw × factor + offset (floats read as IEEE 754).
    @inlinable
    public static func physical(_ s: DBCSignal, bits: UInt64) -> Double {
        let raw: Double
        switch s.valueType {
        case .integer:
            if s.isSigned { raw = Double(rawInteger(s, bits: bits)) } else { raw = Double(bits) }
        case .float32: raw = Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))
        case .float64: raw = Double(bitPattern: bits)
        }
        return raw * s.factor + s.offset
    }

    /// Writes raw bits into the payload (the payload must be long enough).
    public static func insert(_ s: DBCSignal, bits: UInt64, into data: inout [UInt8]) {
        let length = s.length
        let value = length == 64 ? bits : bits & ((1 << UInt64(length)) - 1)
        switch s.byteOrder {
        case .littleEndian:
            var pos = s.startBit
            var done = 0
            while done < length {
                let bit = pos & 7
                let take = min(8 - bit, length - done)
                let mask = UInt8(truncatingIfNeeded: ((1 << UInt64(take)) - 1) << UInt64(bit))
                let chunk = UInt8(truncatingIfNeeded: (value >> UInt64(done)) << UInt64(bit))
                data[pos >> 3] = (data[pos >> 3] & ~mask) | (chunk & mask)
                done += take
                pos += take
            }
        case .bigEndian:
            var pos = (s.startBit & ~7) + (7 - s.startBit & 7)
            var remaining = length
            while remaining > 0 {
                let avail = 8 - (pos & 7)
                let take = min(avail, remaining)
                let shift = UInt64(avail - take)
                let part = (value >> UInt64(remaining - take)) & ((1 << UInt64(take)) - 1)
                let mask = UInt8(truncatingIfNeeded: ((1 << UInt64(take)) - 1) << shift)
                let chunk = UInt8(truncatingIfNeeded: part << shift)
                data[pos >> 3] = (data[pos >> 3] & ~mask) | (chunk & mask)
                remaining -= take
                pos += take
            }
        }
    }

    /// Raw bits for a physical value, or an error saying why it cannot be encoded.
    public static func encodeBits(_ s: DBCSignal, physical: Double) throws(EncodeError) -> UInt64 {
        guard physical.isFinite || s.valueType != .integer else {
            throw EncodeError(signal: s.name, "value \(physical) is not a finite number")
        }
        if s.hasRange {
            let slack = abs(s.factor) * 1e-9
            guard physical >= s.minimum - slack, physical <= s.maximum + slack else {
                throw EncodeError(signal: s.name, "value \(physical) is outside \(s.minimum)...\(s.maximum)")
            }
        }
        let scaled = (physical - s.offset) / s.factor
        switch s.valueType {
        case .float32: return UInt64(Float(scaled).bitPattern)
        case .float64: return scaled.bitPattern
        case .integer: break
        }
        let rounded = scaled.rounded(.toNearestOrEven)
        // Exact conversions: a value at 2^64 (Double(UInt64.max) rounds up to it) or beyond is
        // refused, never converted with a trap.
        if s.isSigned {
            let half: Int64 = s.length >= 64 ? 0 : 1 << Int64(s.length - 1)
            guard let v = Int64(exactly: rounded), s.length >= 64 || (v >= -half && v < half) else {
                throw EncodeError(signal: s.name, "value \(physical) needs raw \(rounded), which does not fit \(s.length) signed bits")
            }
            return UInt64(bitPattern: v)
        } else {
            guard let v = UInt64(exactly: rounded), s.length >= 64 || v < UInt64(1) << UInt64(s.length) else {
                throw EncodeError(signal: s.name, "value \(physical) needs raw \(rounded), which does not fit \(s.length) unsigned bits")
            }
            return v
        }
    }

    /// Which signals of a message are present in this payload: all plain signals, and the
    /// multiplexed ones whose multiplexer (itself present) has a matching raw value.
    public static func presentSignals(_ m: DBCMessage, data: [UInt8]) -> [Bool] {
        var present = [Bool](repeating: true, count: m.signals.count)
        guard m.isMultiplexed else { return present }
        var state = [UInt8](repeating: 0, count: m.signals.count) // 0 unknown, 1 present, 2 absent
        func resolve(_ i: Int, _ depth: Int) -> Bool {
            if state[i] != 0 { return state[i] == 1 }
            var ok = true
            if let c = m.signals[i].multiplexer {
                if depth > m.signals.count || !resolve(c.multiplexerIndex, depth + 1) {
                    ok = false
                } else if let bits = rawBits(m.signals[c.multiplexerIndex], in: data) {
                    ok = c.contains(rawInteger(m.signals[c.multiplexerIndex], bits: bits))
                } else {
                    ok = false
                }
            }
            state[i] = ok ? 1 : 2
            return ok
        }
        for i in m.signals.indices { present[i] = resolve(i, 0) }
        return present
    }

    /// Decodes every present signal of a message.
    public static func decode(_ m: DBCMessage, data: [UInt8]) -> [DecodedSignal] {
        var out: [DecodedSignal] = []
        out.reserveCapacity(m.signals.count)
        decode(m, data: data, into: &out)
        return out
    }

    /// Decodes into a reused buffer (no allocation once it has grown), for the hot path.
    public static func decode(_ m: DBCMessage, data: [UInt8], into out: inout [DecodedSignal]) {
        out.removeAll(keepingCapacity: true)
        if m.isMultiplexed {
            let present = presentSignals(m, data: data)
            for i in m.signals.indices where present[i] {
                if let bits = rawBits(m.signals[i], in: data) {
                    out.append(DecodedSignal(index: i, bits: bits, value: physical(m.signals[i], bits: bits)))
                }
            }
        } else {
            data.withUnsafeBufferPointer { buf in
                for i in m.signals.indices {
                    if let bits = rawBits(m.signals[i], in: buf) {
                        out.append(DecodedSignal(index: i, bits: bits, value: physical(m.signals[i], bits: bits)))
                    }
                }
            }
        }
    }

    /// Encodes physical values into a payload of the message's length.
    ///
    /// Signals not given are encoded as raw 0 when `missingAsZero`; otherwise every present
    /// signal must be given. Multiplexed signals must match their multiplexer's value.
    public static func encode(
        _ m: DBCMessage, values: [String: Double], missingAsZero: Bool = false
    ) throws(EncodeError) -> [UInt8] {
        for name in values.keys where m.signalIndex(named: name) == nil {
            throw EncodeError(signal: name, "message \(m.name) has no signal '\(name)'")
        }
        var data = [UInt8](repeating: 0, count: m.length)
        // Multiplexers first, so presence of the others can be judged from the payload.
        let order = m.signals.indices.sorted { a, b in
            (m.signals[a].isMultiplexer ? 0 : 1, a) < (m.signals[b].isMultiplexer ? 0 : 1, b)
        }
        for i in order where m.signals[i].isMultiplexer {
            let s = m.signals[i]
            if let v = values[s.name] {
                insert(s, bits: try encodeBits(s, physical: v), into: &data)
            } else if !missingAsZero {
                throw EncodeError(signal: s.name, "multiplexer \(s.name) of \(m.name) needs a value")
            }
        }
        let present = presentSignals(m, data: data)
        for i in order where !m.signals[i].isMultiplexer {
            let s = m.signals[i]
            if let v = values[s.name] {
                guard present[i] else {
                    throw EncodeError(signal: s.name, "signal \(s.name) is not present for the multiplexer value given")
                }
                insert(s, bits: try encodeBits(s, physical: v), into: &data)
            } else if present[i], !missingAsZero {
                throw EncodeError(signal: s.name, "signal \(s.name) of \(m.name) needs a value")
            }
        }
        return data
    }
}

/// One decoded signal: its index in the message, raw bits and physical value.
public struct DecodedSignal: Sendable, Equatable {
    public var index: Int
    public var bits: UInt64
    public var value: Double

    public init(index: Int, bits: UInt64, value: Double) {
        self.index = index
        self.bits = bits
        self.value = value
    }
}

/// Why a value could not be encoded into a signal.
public struct EncodeError: Error, Equatable, Sendable, CustomStringConvertible {
    public var signal: String
    public var message: String
    public init(signal: String, _ message: String) {
        self.signal = signal
        self.message = message
    }
    public var description: String { message }
}

extension DBCSignal {
    /// The value-table name of a raw value, if any.
    public func label(bits: UInt64) -> String? {
        valueTable.isEmpty ? nil : valueTable[SignalCodec.rawInteger(self, bits: bits)]
    }
}
