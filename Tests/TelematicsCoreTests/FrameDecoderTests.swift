import Testing
@testable import TelematicsCore

/// A small seeded generator, so a failure can be replayed.
struct XorShift: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }
}

@Suite("Frame decoder (the fast path)")
struct FrameDecoderTests {
    /// Random non-overlapping layouts: Intel and Motorola, 1-64 bits, signed, scaled, a
    /// multiplexer with pages in some messages.
    static func randomDBC(_ rng: inout XorShift, messages: Int) -> String {
        var text = ""
        for m in 0..<messages {
            let extended = Bool.random(using: &rng)
            let id = extended ? UInt32.random(in: 0...0x1FFF_FFFF, using: &rng) | 0x8000_0000 : UInt32(m * 7 + 1)
            let length = Int.random(in: 1...8, using: &rng)
            text += "BO_ \(id) M\(m): \(length) X\n"
            var free = Set(0..<(length * 8))
            let muxed = length >= 2 && Int.random(in: 0..<4, using: &rng) == 0
            if muxed {
                text += " SG_ Mux M : 0|3@1+ (1,0) [0|0] \"\" X\n"
                free.subtract(0..<3)
            }
            var names = 0
            func place(_ mux: String) {
                for _ in 0..<20 {
                    // Whole-payload 64-bit signals are the edge case of sign handling: weight them up.
                    let len = length == 8 && Int.random(in: 0..<6, using: &rng) == 0 ? 64 : Int.random(in: 1...min(64, length * 8), using: &rng)
                    let motorola = Bool.random(using: &rng)
                    let lin = Int.random(in: 0...(length * 8 - len), using: &rng)
                    let bits: [Int] = motorola
                        ? (lin..<(lin + len)).map { ($0 / 8) * 8 + (7 - $0 % 8) }
                        : Array(lin..<(lin + len))
                    guard bits.allSatisfy(free.contains) else { continue }
                    free.subtract(bits)
                    let start = motorola ? (lin / 8) * 8 + (7 - lin % 8) : lin
                    let sign = len > 1 && Bool.random(using: &rng) ? "-" : "+"
                    let factor = [1, 0.5, 0.1, 10, 0.03125].randomElement(using: &rng)!
                    names += 1
                    text += " SG_ S\(names)\(mux) : \(start)|\(len)@\(motorola ? 0 : 1)\(sign) (\(factor),-3) [0|0] \"\" X\n"
                    return
                }
            }
            for _ in 0..<Int.random(in: 1...6, using: &rng) { place("") }
            if muxed {
                let shared = free
                for page in 0..<3 {
                    free = shared
                    for _ in 0..<2 { place(" m\(page)") }
                }
            }
        }
        return text
    }

    @Test("decodes exactly what the reference codec decodes, on random layouts and payloads")
    func matchesReference() throws {
        var rng = XorShift(state: 0x5EED_CAFE_F00D_1234)
        var compared = 0
        for _ in 0..<40 {
            let db = try DBCParser.parse(Self.randomDBC(&rng, messages: 8))
            let decoder = FrameDecoder(db)
            var fast: [DecodedSignal] = []
            for m in db.messages {
                for _ in 0..<50 {
                    // Full, short and empty payloads.
                    let n = [m.length, m.length, Int.random(in: 0...m.length, using: &rng)].randomElement(using: &rng)!
                    let data = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
                    decoder.decode(id: m.id, isExtended: m.isExtended, data: data, into: &fast)
                    let reference = SignalCodec.decode(m, data: data)
                    #expect(fast.sorted { $0.index < $1.index } == reference, "\(m.name) \(hexBytes(data))")
                    compared += reference.count
                }
            }
        }
        #expect(compared > 10_000)
    }

    @Test("unknown identifiers and the other frame format are not found")
    func lookup() throws {
        let db = try DBCParser.parse("BO_ 100 A: 1 X\nBO_ 2147483748 B: 1 X\n")
        let d = FrameDecoder(db)
        #expect(d.messageIndex(id: 100, isExtended: false) == 0)
        #expect(d.messageIndex(id: 100, isExtended: true) == 1)
        #expect(d.messageIndex(id: 101, isExtended: false) == nil)
        #expect(d.messageIndex(id: 0x1FFF_FFFF, isExtended: false) == nil)
    }
}
