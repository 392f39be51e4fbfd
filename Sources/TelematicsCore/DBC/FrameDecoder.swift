/// A DBC compiled for decoding at bus speed.
///
/// `SignalCodec` walks a signal bit by bit chunk and is the reference. This is the hot path:
/// each signal is reduced to a shift and a mask on the payload read once as a 64-bit word
/// (little-endian for Intel, big-endian for Motorola), the factor and offset are kept beside
/// it, and standard identifiers index a flat table. Payloads longer than 8 bytes (CAN FD) and
/// signals that do not fit one word fall back to `SignalCodec`. A test holds the two paths
/// equal on random layouts and payloads; the cantools cross-check goes through this one.
public struct FrameDecoder: Sendable {
    struct Layout: Sendable {
        enum Kind: UInt8, Sendable { case intel, motorola, generic }
        var kind: Kind
        /// Right shift of the 64-bit word that brings the signal to bit 0.
        var shift: UInt64
        var mask: UInt64
        /// Left-then-arithmetic-right shift that sign-extends (0 for unsigned and 64-bit signals).
        var signShift: UInt64
        var isSigned: Bool
        var factor: Double
        var offset: Double
        var valueType: SignalValueType
        /// Index of the signal in its DBC message.
        var index: Int
        /// Bytes of payload the signal needs.
        var requiredBytes: Int
        /// Index (into the compiled signals of the message) of its multiplexer, or -1.
        var mux: Int
    }

    struct Compiled: Sendable {
        var signals: [Layout]
        var conditions: [[ClosedRange<Int64>]]
        var multiplexed: Bool
    }

    public let database: DBCDatabase
    private let messages: [Compiled]
    /// Every message's layouts back to back, so the hot loop touches one array.
    private let flat: [Layout]
    /// Where each message's layouts start in `flat`, and how many there are.
    private let spans: [(start: Int, count: Int, multiplexed: Bool)]
    /// Standard identifiers 0...0x7FF → message index + 1 (0: unknown).
    private let standard: [Int32]
    private let extended: [UInt32: Int]

    public init(_ db: DBCDatabase) {
        database = db
        var standard = [Int32](repeating: 0, count: 0x800)
        var extended: [UInt32: Int] = [:]
        var compiled: [Compiled] = []
        for (mi, m) in db.messages.enumerated() {
            if m.isExtended { extended[m.id] = mi } else { standard[Int(m.id)] = Int32(mi + 1) }
            compiled.append(Self.compile(m))
        }
        self.standard = standard
        self.extended = extended
        self.messages = compiled
        var flat: [Layout] = []
        var spans: [(Int, Int, Bool)] = []
        for c in compiled {
            spans.append((flat.count, c.signals.count, c.multiplexed))
            flat += c.signals
        }
        self.flat = flat
        self.spans = spans
    }

    /// The signals in an order where every multiplexer comes before what it selects.
    static func compile(_ m: DBCMessage) -> Compiled {
        func depth(_ i: Int) -> Int {
            var d = 0
            var cur = i
            while let c = m.signals[cur].multiplexer, d <= m.signals.count { d += 1; cur = c.multiplexerIndex }
            return d
        }
        let order = m.signals.indices.sorted { (depth($0), $0) < (depth($1), $1) }
        var position = [Int](repeating: -1, count: m.signals.count)
        for (p, i) in order.enumerated() { position[i] = p }
        var layouts: [Layout] = []
        var conditions: [[ClosedRange<Int64>]] = []
        for i in order {
            let s = m.signals[i]
            let length = UInt64(s.length)
            var layout = Layout(
                kind: .generic, shift: 0, mask: length == 64 ? .max : (1 << length) - 1,
                signShift: (s.isSigned && s.valueType == .integer && length < 64) ? 64 - length : 0,
                isSigned: s.isSigned && s.valueType == .integer,
                factor: s.factor, offset: s.offset, valueType: s.valueType, index: i,
                requiredBytes: s.requiredBytes, mux: s.multiplexer.map { position[$0.multiplexerIndex] } ?? -1
            )
            let lin = s.linearStart
            if lin + s.length <= 64 {
                switch s.byteOrder {
                case .littleEndian:
                    layout.kind = .intel
                    layout.shift = UInt64(lin)
                case .bigEndian:
                    layout.kind = .motorola
                    layout.shift = UInt64(64 - lin - s.length)
                }
            }
            layouts.append(layout)
            conditions.append(s.multiplexer?.values ?? [])
        }
        return Compiled(signals: layouts, conditions: conditions, multiplexed: m.isMultiplexed)
    }

    /// Index of the DBC message for an identifier.
    @inline(__always)
    public func messageIndex(id: UInt32, isExtended: Bool) -> Int? {
        if !isExtended {
            guard id < 0x800 else { return nil }
            let v = standard[Int(id)]
            return v == 0 ? nil : Int(v - 1)
        }
        return extended[id]
    }

    /// Decodes every present signal of a frame into `out` (reused). Returns the message index,
    /// or nil for an identifier the DBC does not have.
    @discardableResult
    public func decode(id: UInt32, isExtended: Bool, data: [UInt8], into out: inout [DecodedSignal]) -> Int? {
        out.removeAll(keepingCapacity: true)
        guard let mi = messageIndex(id: id, isExtended: isExtended) else { return nil }
        decode(message: mi, data: data, into: &out)
        return mi
    }

    /// Decodes the present signals of message `mi` into `out` (appending).
    public func decode(message mi: Int, data: [UInt8], into out: inout [DecodedSignal]) {
        let count = data.count
        guard count <= 8 else {
            SignalCodec.decode(database.messages[mi], data: data, into: &out)
            return
        }
        let span = spans[mi]
        if span.multiplexed {
            decodeMultiplexed(message: mi, data: data, into: &out)
            return
        }
        let (le, be) = Self.words(data)
        // Fill a stack buffer and append it in one copy: no per-signal capacity checks.
        withUnsafeTemporaryAllocation(of: DecodedSignal.self, capacity: span.count) { tmp in
            var n = 0
            flat.withUnsafeBufferPointer { all in
                for p in span.start..<(span.start + span.count) {
                    let l = all[p]
                    guard l.requiredBytes <= count else { continue }
                    let bits = l.kind == .intel ? (le >> l.shift) & l.mask : (be >> l.shift) & l.mask
                    (tmp.baseAddress! + n).initialize(to: DecodedSignal(index: l.index, bits: bits, value: Self.physical(bits, l)))
                    n += 1
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: tmp[0..<n]))
        }
    }

    private func decodeMultiplexed(message mi: Int, data: [UInt8], into out: inout [DecodedSignal]) {
        let c = messages[mi]
        let count = data.count
        let (le, be) = Self.words(data)
        let base = out.count
        for p in c.signals.indices {
            let l = c.signals[p]
            guard l.requiredBytes <= count else { continue }
            if l.mux >= 0 {
                // The multiplexer comes earlier in this order; find its decoded value.
                let muxIndex = c.signals[l.mux].index
                var present = false
                for k in base..<out.count where out[k].index == muxIndex {
                    let raw = Self.integer(out[k].bits, c.signals[l.mux])
                    present = c.conditions[p].contains { $0.contains(raw) }
                    break
                }
                if !present { continue }
            }
            let bits = l.kind == .intel ? (le >> l.shift) & l.mask : (be >> l.shift) & l.mask
            out.append(DecodedSignal(index: l.index, bits: bits, value: Self.physical(bits, l)))
        }
    }

    /// Raw bits and physical value of one signal of message `mi`, if the payload holds it
    /// (multiplexing is the caller's concern: see `isPresent`).
    @inline(__always)
    func value(message mi: Int, signal p: Int, le: UInt64, be: UInt64, data: [UInt8]) -> (UInt64, Double)? {
        let l = messages[mi].signals[p]
        guard l.requiredBytes <= data.count else { return nil }
        let bits: UInt64
        switch l.kind {
        case .intel: bits = (le >> l.shift) & l.mask
        case .motorola: bits = (be >> l.shift) & l.mask
        case .generic:
            guard let b = SignalCodec.rawBits(database.messages[mi].signals[l.index], in: data) else { return nil }
            bits = b
        }
        return (bits, Self.physical(bits, l))
    }

    /// The payload as little- and big-endian 64-bit words (zero-padded past its end).
    @inline(__always)
    static func words(_ data: [UInt8]) -> (UInt64, UInt64) {
        var le: UInt64 = 0
        data.withUnsafeBufferPointer { buf in
            if buf.count >= 8 {
                le = UnsafeRawPointer(buf.baseAddress!).loadUnaligned(as: UInt64.self).littleEndian
            } else {
                for i in 0..<buf.count { le |= UInt64(buf[i]) << UInt64(8 * i) }
            }
        }
        return (le, le.byteSwapped)
    }

    @inline(__always)
    static func integer(_ bits: UInt64, _ l: Layout) -> Int64 {
        l.signShift == 0 ? Int64(bitPattern: bits) : Int64(bitPattern: bits << l.signShift) >> Int64(l.signShift)
    }

    @inline(__always)
    static func physical(_ bits: UInt64, _ l: Layout) -> Double {
        let raw: Double
        switch l.valueType {
        case .integer: raw = l.isSigned ? Double(integer(bits, l)) : Double(bits)
        case .float32: raw = Double(Float(bitPattern: UInt32(truncatingIfNeeded: bits)))
        case .float64: raw = Double(bitPattern: bits)
        }
        return raw * l.factor + l.offset
    }

    /// Position of signal `index` in the compiled order of message `mi`.
    func position(message mi: Int, signal index: Int) -> Int {
        messages[mi].signals.firstIndex { $0.index == index }!
    }

    /// Whether compiled signal `p` of message `mi` is present in a payload (its multiplexer
    /// chain selects it).
    func isPresent(message mi: Int, signal p: Int, le: UInt64, be: UInt64, data: [UInt8]) -> Bool {
        let c = messages[mi]
        var cur = p
        var depth = 0
        while c.signals[cur].mux >= 0, depth <= c.signals.count {
            let muxPos = c.signals[cur].mux
            guard let (bits, _) = value(message: mi, signal: muxPos, le: le, be: be, data: data) else { return false }
            let raw = Self.integer(bits, c.signals[muxPos])
            guard c.conditions[cur].contains(where: { $0.contains(raw) }) else { return false }
            cur = muxPos
            depth += 1
        }
        return true
    }
}
