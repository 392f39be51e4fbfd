import Testing
@testable import TelematicsCore

/// Numbers that come from outside (MQTT, the eCall link, candump logs, DBC files) are checked
/// before they are converted: each of these once trapped (issue 14's findings 4, 7, 8, 9, 16).
@Suite("Numbers from outside")
struct OutsideNumbersTests {
    @Test("JSON numbers become integers only when whole and in range", arguments: [
        ("1", Int64(1)), ("-3", -3), ("1e300", nil), ("-1e300", nil), ("1e999", nil), ("1.5", nil),
        ("9223372036854775807", nil), ("9007199254740992", 9_007_199_254_740_992), ("\"7\"", nil), ("null", nil),
    ] as [(String, Int64?)])
    func integers(_ text: String, _ want: Int64?) throws {
        #expect(try JSON.parse(text).integer() == want)
    }

    @Test("a range bounds the integer")
    func range() throws {
        #expect(try JSON.parse("256").integer(in: 0...255) == nil)
        #expect(try JSON.parse("255").integer(in: 0...255) == 255)
    }

    @Test("an eCall peer's huge message identifier or call number is a parse error, not a trap", arguments: [
        #"{"type":"msd","call":1,"messageIdentifier":1e300,"msd":"00"}"#,
        #"{"type":"msd","call":1,"messageIdentifier":256,"msd":"00"}"#,
        #"{"type":"setup","call":1e300,"outcome":"answered"}"#,
        #"{"type":"msd","call":-1,"messageIdentifier":1,"msd":"00"}"#,
    ])
    func eCallWire(_ line: String) {
        #expect(throws: ParseError.self) { try ECallWire.parse(line) }
    }

    @Test("a candump timestamp beyond the year 2262 is an error naming the line")
    func candumpTime() {
        #expect(throws: ParseError(line: 7, column: 11, "timestamp seconds out of range (at most 9223372035)")) {
            try CandumpFormat.parseLogLine("(99999999999.000000) can0 3C0#00030000", line: 7)
        }
        #expect((try? CandumpFormat.parseLogLine("(9223372035.000000) can0 3C0#00", line: 1)) != nil)
    }

    @Test("a DBC cycle time of 1e300 ms and a multiplexer range to Int64.max are refused with the line")
    func dbc() {
        let base = "VERSION \"\"\nBU_: A\nBO_ 100 M: 8 A\n SG_ S : 0|8@1+ (1,0) [0|255] \"\" A\n"
        #expect(throws: ParseError.self) {
            try DBCParser.parse(base + "BA_DEF_ BO_ \"GenMsgCycleTime\" FLOAT 0 1e308;\nBA_ \"GenMsgCycleTime\" BO_ 100 1e300;\n")
        }
        let mux = "VERSION \"\"\nBU_: A\nBO_ 100 M: 8 A\n SG_ X M : 0|8@1+ (1,0) [0|0] \"\" A\n SG_ S m0 : 8|8@1+ (1,0) [0|0] \"\" A\n"
        for range in ["0-9223372036854775807", "0-9223372036854775808", "5-3"] {
            #expect(throws: ParseError.self) { try DBCParser.parse(mux + "SG_MUL_VAL_ 100 S X \(range);\n") }
        }
        #expect((try? DBCParser.parse(mux + "SG_MUL_VAL_ 100 S X 0-4294967295;\n")) != nil)
    }

    @Test("a 64-bit signal encodes up to its maximum and refuses 2^64 without a trap")
    func sixtyFourBits() throws {
        let db = try DBCParser.parse("VERSION \"\"\nBU_: A\nBO_ 100 M: 8 A\n SG_ U : 0|64@1+ (1,0) [0|0] \"\" A\n SG_ I : 0|64@1- (1,0) [0|0] \"\" A\n")
        let m = db.messages[0]
        #expect(throws: EncodeError.self) { try SignalCodec.encodeBits(m.signals[0], physical: 18_446_744_073_709_551_616.0) }
        #expect(try SignalCodec.encodeBits(m.signals[0], physical: 9_007_199_254_740_992) == 9_007_199_254_740_992)
        #expect(throws: EncodeError.self) { try SignalCodec.encodeBits(m.signals[1], physical: 9.3e18) }
        #expect(try SignalCodec.encodeBits(m.signals[1], physical: -1) == UInt64.max)
    }
}
