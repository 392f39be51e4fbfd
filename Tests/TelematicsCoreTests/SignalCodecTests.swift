import Testing
@testable import TelematicsCore

@Suite("Signal codec")
struct SignalCodecTests {
    let db = ProjectFiles.database

    func signal(_ m: String, _ s: String) -> DBCSignal { db.message(named: m)!.signal(named: s)! }

    static let vectors: [(String, String, [UInt8], Double)] = [
        // Intel, 12 bits across two bytes: 0x4EE = 1262 × 0.01.
        ("Battery_12V", "Battery_Voltage", [0xEE, 0x04, 0x54, 0x00], 12.62),
        ("Battery_12V", "Battery_SoC", [0xEE, 0x04, 0x54, 0x00], 84),
        // Motorola signed 12 bits: 0xF83 = -125 × 0.1.
        ("Climate_Status", "Cabin_Temperature", [0, 0, 0xF8, 0x30, 0, 0, 0, 0], -12.5),
        // Motorola, 5 bits at the top of byte 1, offset 16: raw 11 → 21.5 °C.
        ("Climate_Status", "Target_Temperature", [0, 0x58, 0, 0, 0, 0, 0, 0], 21.5),
        // Motorola signed 8 bits crossing bytes 3 and 4: 0xEC = -20 × 0.5.
        ("Climate_Status", "Outside_Temperature", [0, 0, 0, 0x0E, 0xC0, 0, 0, 0], -10),
        // Motorola, 10 bits from the MSB of byte 0: 0x3E8 = 1000 × 0.1.
        ("Window_Status", "Window_FL_Position", [0xFA, 0x00, 0, 0, 0, 0, 0, 0], 100),
        // Motorola 3 bits crossing bytes 4 and 5 (bits 1, 0 of byte 4 and 7 of byte 5): 0b011.
        ("Climate_Status", "Climatisation_State", [0, 0, 0, 0, 0x01, 0x80, 0, 0], 3),
        // Intel signed 10 bits: 0x3C0 = -64 × 0.03125.
        ("ESP_Speed", "Longitudinal_Accel", [0, 0, 0, 0, 0xC0, 0x03, 0, 0], -2),
        // Multiplexed page 1, signed 16 bits: -3 days.
        ("Cluster_Info", "Inspection_Due_Days", [0x01, 0xFD, 0xFF, 0, 0, 0, 0, 0], -3),
    ]

    @Test("decodes hand-computed vectors (Intel, Motorola, signed, scaled, multiplexed)", arguments: vectors)
    func decodesVectors(_ message: String, _ name: String, _ data: [UInt8], _ expected: Double) throws {
        let s = signal(message, name)
        let bits = try #require(SignalCodec.rawBits(s, in: data))
        #expect(abs(SignalCodec.physical(s, bits: bits) - expected) < 1e-9)
    }

    @Test("encodes the same vectors back to the same bits", arguments: vectors)
    func encodesVectors(_ message: String, _ name: String, _ data: [UInt8], _ expected: Double) throws {
        let s = signal(message, name)
        var out = [UInt8](repeating: 0, count: data.count)
        SignalCodec.insert(s, bits: try SignalCodec.encodeBits(s, physical: expected), into: &out)
        #expect(SignalCodec.rawBits(s, in: out) == SignalCodec.rawBits(s, in: data))
    }

    @Test("insert leaves the other bits alone")
    func insertPreservesNeighbours() throws {
        let s = signal("Climate_Status", "Outside_Temperature")
        var data = [UInt8](repeating: 0xFF, count: 8)
        SignalCodec.insert(s, bits: 0, into: &data)
        #expect(data == [0xFF, 0xFF, 0xFF, 0xF0, 0x0F, 0xFF, 0xFF, 0xFF])
    }

    @Test("64-bit signals read the whole payload, signed and unsigned")
    func sixtyFourBits() throws {
        let text = """
        BO_ 1 A: 8 X
         SG_ U : 0|64@1+ (1,0) [0|0] "" X
        BO_ 2 B: 8 X
         SG_ S : 7|64@0- (1,0) [0|0] "" X
        """
        let db = try DBCParser.parse(text)
        let u = db.message(named: "A")!.signals[0]
        let s = db.message(named: "B")!.signals[0]
        let ones = [UInt8](repeating: 0xFF, count: 8)
        #expect(SignalCodec.rawBits(u, in: ones) == UInt64.max)
        #expect(SignalCodec.rawInteger(s, bits: SignalCodec.rawBits(s, in: ones)!) == -1)
        let be: [UInt8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]
        #expect(SignalCodec.rawBits(s, in: be) == 0x0102030405060708)
        #expect(SignalCodec.rawBits(u, in: be) == 0x0807060504030201)
    }

    @Test("float signals read IEEE 754 bits")
    func floats() throws {
        let db = try DBCParser.parse("BO_ 1 A: 8 X\n SG_ F : 0|32@1- (2,1) [0|0] \"\" X\nSIG_VALTYPE_ 1 F : 1;\n")
        let f = db.message(named: "A")!.signals[0]
        let bits = UInt64(Float(1.5).bitPattern)
        #expect(SignalCodec.physical(f, bits: bits) == 4.0)
        #expect(try SignalCodec.encodeBits(f, physical: 4.0) == bits)
    }

    @Test("encoding rounds half to even like cantools")
    func roundsHalfToEven() throws {
        let s = DBCSignal(name: "X", startBit: 0, length: 8, byteOrder: .littleEndian, isSigned: false, factor: 0.5)
        #expect(try SignalCodec.encodeBits(s, physical: 0.25) == 0)
        #expect(try SignalCodec.encodeBits(s, physical: 0.75) == 2)
        #expect(try SignalCodec.encodeBits(s, physical: 1.25) == 2)
    }

    @Test("encoding rejects values outside the range or the bits, naming the signal")
    func encodeErrors() throws {
        let m = db.message(named: "TCU_Clima_Request")!
        #expect(throws: EncodeError.self) { try SignalCodec.encode(m, values: ["Clima_Target_Temperature": 31], missingAsZero: true) }
        do {
            _ = try SignalCodec.encode(m, values: ["Clima_Target_Temperature": 31], missingAsZero: true)
        } catch {
            #expect(error.signal == "Clima_Target_Temperature")
            #expect(error.message.contains("outside 16.0...30.0"))
        }
        do {
            _ = try SignalCodec.encode(m, values: ["Nope": 1])
            Issue.record("unknown signal accepted")
        } catch {
            #expect(error.message.contains("has no signal 'Nope'"))
        }
        do {
            _ = try SignalCodec.encode(m, values: ["Clima_Request": 1])
            Issue.record("missing signals accepted")
        } catch {
            #expect(error.message.contains("needs a value"))
        }
        let unranged = DBCSignal(name: "Y", startBit: 0, length: 4, byteOrder: .littleEndian, isSigned: true)
        #expect(throws: EncodeError.self) { try SignalCodec.encodeBits(unranged, physical: 8) }
        #expect(try SignalCodec.encodeBits(unranged, physical: -8) == UInt64(bitPattern: -8))
    }

    @Test("multiplexed encode writes only the page's signals and refuses others")
    func multiplexedEncode() throws {
        let m = db.message(named: "Cluster_Info")!
        let data = try SignalCodec.encode(m, values: ["Cluster_Page": 1, "Inspection_Due_Days": -3, "Inspection_Due_Distance": 1000, "Service_Due_Now": 0])
        #expect(data == [0x01, 0xFD, 0xFF, 0x64, 0x00, 0x00, 0x00, 0x00])
        let decoded = SignalCodec.decode(m, data: data).map { m.signals[$0.index].name }
        #expect(decoded == ["Cluster_Page", "Inspection_Due_Days", "Inspection_Due_Distance", "Service_Due_Now"])
        #expect(throws: EncodeError.self) { try SignalCodec.encode(m, values: ["Cluster_Page": 1, "Odometer": 5], missingAsZero: true) }
    }

    @Test("a short payload decodes the signals that fit and no others")
    func truncatedPayload() {
        let m = db.message(named: "ESP_Speed")!
        let names = SignalCodec.decode(m, data: [0x01, 0x10, 0x27]).map { m.signals[$0.index].name }
        #expect(names == ["ESP_Counter", "Vehicle_Speed"])
    }

    @Test("value-table names come from the raw value")
    func labels() {
        let s = signal("Door_Status", "Central_Lock_State")
        #expect(s.label(bits: 2) == "Safelocked")
        #expect(s.label(bits: 5) == nil)
    }
}
