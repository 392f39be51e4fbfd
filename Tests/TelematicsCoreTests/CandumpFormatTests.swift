import Testing
@testable import TelematicsCore

@Suite("candump and cansend text forms")
struct CandumpFormatTests {
    static let roundTrips = [
        "123#DEADBEEF", "7FF#", "000#00", "12345678#0102030405060708", "123#R", "123#R4",
        "123##1" + String(repeating: "AB", count: 64), "1F334455##311223344", "20000080#0000000000000000",
        "123##0",
    ]

    @Test("frames read and print back identically", arguments: roundTrips)
    func roundTrip(_ text: String) throws {
        let f = try CandumpFormat.parseFrame(Substring(text))
        #expect(CandumpFormat.formatFrame(f) == text)
    }

    @Test("frame kinds are recognised")
    func kinds() throws {
        let ext = try CandumpFormat.parseFrame("00000123#11")
        #expect(ext.isExtended && ext.id == 0x123)
        let fd = try CandumpFormat.parseFrame("123##3" + String(repeating: "00", count: 12))
        #expect(fd.isFD && fd.bitRateSwitch && fd.errorStateIndicator && fd.data.count == 12)
        let err = try CandumpFormat.parseFrame("20000040#0000000000000000")
        #expect(err.isError && err.id == 0x40)
        let rtr = try CandumpFormat.parseFrame("123#R8")
        #expect(rtr.isRemote && rtr.remoteLength == 8)
        let dotted = try CandumpFormat.parseFrame("123#DE.AD.BE.EF")
        #expect(dotted.data == [0xDE, 0xAD, 0xBE, 0xEF])
    }

    static let malformed: [(String, String)] = [
        ("123DEADBEEF", "expected '#'"),
        ("1234#00", "3 hex digits (11-bit) or 8 (29-bit)"),
        ("12G#00", "not a hex digit in the identifier"),
        ("800#00", "above 0x7FF"),
        ("123#ABC", "odd number of hex digits"),
        ("123#001122334455667788", "longer than 8 bytes"),
        ("123##1" + String(repeating: "00", count: 9), "not a valid FD length"),
        ("123#R9", "remote frame length"),
        ("123#0X", "not a hex digit in the data"),
        ("123##", "flags nibble"),
    ]

    @Test("malformed frames are rejected with the column and the reason", arguments: malformed)
    func rejects(_ text: String, _ message: String) {
        do {
            _ = try CandumpFormat.parseFrame(Substring(text), line: 7)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.line == 7)
            #expect(error.message.contains(message), "\(error)")
        }
    }

    @Test("log lines carry time and interface, with micro- or nanosecond fractions")
    func logLines() throws {
        let f = try CandumpFormat.parseLogLine("(1436509052.249713) vcan0 044#2A366C2BBA", line: 1)
        #expect(f.timestamp == Timestamp(seconds: 1436509052, nanoseconds: 249_713_000))
        #expect(f.interface == "vcan0" && f.id == 0x44 && f.data == [0x2A, 0x36, 0x6C, 0x2B, 0xBA])
        #expect(CandumpFormat.formatLogLine(f) == "(1436509052.249713) vcan0 044#2A366C2BBA")
        let tx = try CandumpFormat.parseLogLine("(0000000001.000001) can1 123#00 T", line: 1)
        #expect(tx.interface == "can1" && tx.timestamp == Timestamp(seconds: 1, nanoseconds: 1000))
        #expect(CandumpFormat.formatLogLine(tx) == "(0000000001.000001) can1 123#00")
    }

    static let badLines: [(String, Int, String)] = [
        ("1436509052.249713 vcan0 044#00", 1, "expected '('"),
        ("(1436509052) vcan0 044#00", 12, "SECONDS.FRACTION"),
        ("(1436509052.5 vcan0 044#00", 14, "expected ')'"),
        ("(1436509052.5) vcan0", 15, "an interface name and a frame"),
        ("(1436509052.5) vcan0 044#00 extra", 15, "unexpected text after the frame"),
        ("(1436509052.5) vcan0 044#0G", 27, "not a hex digit"),
    ]

    @Test("malformed log lines name the column", arguments: badLines)
    func badLogLines(_ text: String, _ column: Int, _ message: String) {
        do {
            _ = try CandumpFormat.parseLogLine(Substring(text), line: 3)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.line == 3)
            #expect(error.column == column, "\(error)")
            #expect(error.message.contains(message), "\(error)")
        }
    }
}
