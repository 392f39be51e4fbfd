/// Writes bits most significant first, as ASN.1 PER unaligned lays them out.
struct BitWriter {
    private(set) var bytes: [UInt8] = []
    private(set) var bitCount = 0

    mutating func write(_ value: UInt64, bits: Int) {
        precondition(bits >= 0 && bits <= 64)
        var i = bits
        while i > 0 {
            i -= 1
            let bit = (value >> UInt64(i)) & 1
            if bitCount % 8 == 0 { bytes.append(0) }
            if bit == 1 { bytes[bytes.count - 1] |= 0x80 >> UInt8(bitCount % 8) }
            bitCount += 1
        }
    }

    mutating func write(_ flag: Bool) { write(flag ? 1 : 0, bits: 1) }

    mutating func writeBytes(_ data: [UInt8]) {
        for b in data { write(UInt64(b), bits: 8) }
    }

    /// Zero bits up to the next octet boundary.
    mutating func pad() {
        while bitCount % 8 != 0 { write(0, bits: 1) }
    }
}

/// Reads bits most significant first; running past the end is an error naming the field.
struct BitReader {
    let bytes: [UInt8]
    private(set) var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count * 8 - position }

    mutating func read(_ bits: Int, _ field: String) throws(MSDError) -> UInt64 {
        guard bits <= remaining else {
            throw MSDError(field: field, "the message ends before \(field) (\(bits) bits needed, \(max(0, remaining)) left)")
        }
        var v: UInt64 = 0
        for _ in 0..<bits {
            let bit = (bytes[position / 8] >> UInt8(7 - position % 8)) & 1
            v = v << 1 | UInt64(bit)
            position += 1
        }
        return v
    }

    mutating func flag(_ field: String) throws(MSDError) -> Bool { try read(1, field) == 1 }

    mutating func readBytes(_ count: Int, _ field: String) throws(MSDError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(UInt8(try read(8, field))) }
        return out
    }
}
