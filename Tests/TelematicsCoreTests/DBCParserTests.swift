import Testing
@testable import TelematicsCore

let miniDBC = """
VERSION "1"

NS_ :
\tCM_
\tBA_DEF_

BS_:

BU_: BCM TCU

VAL_TABLE_ VT_Lock 1 "Locked" 0 "Unlocked" ;

BO_ 960 Terminal_Status: 4 BCM
 SG_ Terminal_15 : 9|1@1+ (1,0) [0|1] "" TCU
 SG_ Cabin : 23|12@0- (0.1,0) [-40|85] "degC" TCU,BCM

BO_ 2566834709 Battery: 8 BCM
 SG_ Voltage : 0|12@1+ (0.01,0) [0|40.95] "V" TCU
 SG_ Temp : 16|32@1- (1,0) [0|0] "" TCU

BO_ 1714 Cluster: 8 BCM
 SG_ Page M : 0|2@1+ (1,0) [0|3] "" TCU
 SG_ Odo m0 : 8|24@1+ (1,0) [0|16777215] "km" TCU
 SG_ Days m1 : 8|16@1- (1,0) [-32768|32767] "d" TCU

CM_ "network";
CM_ BO_ 960 "Terminals.";
CM_ SG_ 960 Terminal_15 "Ignition
on.";
BA_DEF_ BO_ "GenMsgCycleTime" INT 0 65535;
BA_DEF_DEF_ "GenMsgCycleTime" 0;
BA_ "GenMsgCycleTime" BO_ 960 100;
SIG_VALTYPE_ 2566834709 Temp : 1;
VAL_ 960 Terminal_15 1 "On" 0 "Off" ;
EV_ Foo: 0 [0|1] "" 0 1 DUMMY_NODE_VECTOR0 Vector__XXX;
"""

@Suite("DBC parser")
struct DBCParserTests {
    @Test("parses messages, signals, comments, attributes, value tables and multiplexing")
    func parsesEverything() throws {
        let db = try DBCParser.parse(miniDBC)
        #expect(db.version == "1")
        #expect(db.nodes == ["BCM", "TCU"])
        #expect(db.valueTables["VT_Lock"] == [1: "Locked", 0: "Unlocked"])
        #expect(db.comment == "network")
        let t = try #require(db.message(id: 0x3C0, isExtended: false))
        #expect(t.name == "Terminal_Status" && t.length == 4 && t.sender == "BCM")
        #expect(t.cycleTimeMs == 100)
        #expect(t.comment == "Terminals.")
        let ign = try #require(t.signal(named: "Terminal_15"))
        #expect(ign.startBit == 9 && ign.length == 1 && ign.byteOrder == .littleEndian && !ign.isSigned)
        #expect(ign.valueTable == [1: "On", 0: "Off"])
        #expect(ign.comment == "Ignition\non.")
        let cabin = try #require(t.signal(named: "Cabin"))
        #expect(cabin.byteOrder == .bigEndian && cabin.isSigned && cabin.factor == 0.1)
        #expect(cabin.minimum == -40 && cabin.maximum == 85 && cabin.unit == "degC" && cabin.receivers == ["TCU", "BCM"])
        let bat = try #require(db.message(id: 0x18FECA15, isExtended: true))
        #expect(bat.isExtended && bat.cycleTimeMs == nil)
        #expect(bat.signal(named: "Temp")?.valueType == .float32)
        #expect(db.message(id: 0x18FECA15, isExtended: false) == nil)
        let c = try #require(db.message(named: "Cluster"))
        #expect(c.signal(named: "Page")?.isMultiplexer == true)
        #expect(c.signal(named: "Odo")?.multiplexer == MultiplexCondition(multiplexer: "Page", values: [0...0]).with(index: 0))
        #expect(c.signal(named: "Days")?.multiplexer?.values == [1...1])
    }

    @Test("parses the project's own DBC with every message and cycle time")
    func parsesProjectDBC() throws {
        let db = try DBCParser.parse(ProjectFiles.dbc)
        #expect(db.messages.count == 15)
        #expect(db.message(named: "ESP_Speed")?.cycleTimeMs == 20)
        #expect(db.message(named: "TCU_Body_Request")?.cycleTimeMs == nil)
        #expect(db.message(named: "Battery_12V")?.isExtended == true)
        #expect(db.message(named: "Cluster_Info")?.isMultiplexed == true)
        _ = try VehicleStateTracker(database: db)
    }

    static let malformed: [(String, Int, String)] = [
        ("BO_ 100 A: 8 X\n SG_ S : 0|8@2+ (1,0) [0|0] \"\" X\n", 2, "byte order must be 0 (Motorola) or 1 (Intel)"),
        ("BO_ 100 A: 8 X\n SG_ S : 0|8@1+ (1,0 [0|0] \"\" X\n", 2, "expected ')' after the offset"),
        ("BO_ 100 A: 8 X\n SG_ S : 60|8@1+ (1,0) [0|0] \"\" X\n", 2, "needs 9 bytes but message A has 8"),
        ("BO_ 100 A: 8 X\n SG_ S : 0|0@1+ (1,0) [0|0] \"\" X\n", 2, "signal length must be 1-64 bits"),
        ("BO_ 100 A: 8 X\nBO_ 100 B: 8 X\n", 2, "message identifier 100 is defined twice"),
        ("BO_ 100 A: 8 X\nBO_ 101 A: 8 X\n", 2, "message name 'A' is defined twice"),
        ("BO_ 4000 A: 8 X\n", 1, "standard identifier 0xFA0 is above 0x7FF"),
        ("BO_ 100 A: 8 X\n SG_ S : 0|8@1+ (1,0) [0|0] \"\" X\n SG_ S : 8|8@1+ (1,0) [0|0] \"\" X\n", 3, "signal 'S' is defined twice"),
        ("BO_ 100 A: 8 X\nVAL_ 100 Nope 1 \"x\" ;\n", 2, "message A has no signal 'Nope'"),
        ("VAL_ 100 Nope 1 \"x\" ;\n", 1, "no message with identifier 100 is defined"),
        ("BO_ 100 A: 8 X\n SG_ S m1 : 0|8@1+ (1,0) [0|0] \"\" X\n", 2, "is multiplexed but message A has no multiplexer signal"),
        ("BO_ 100 A: 12 X\n", 1, "classic CAN carries at most 8"),
        ("BO_ 100 A: 8 X\n SG_ S : 0|8@1+ (0,0) [0|0] \"\" X\n", 2, "factor of signal S is 0"),
        ("BO_ 100 A: 8 X\n SG_ S : 0|8@1+ (1,0) [5|1] \"\" X\n", 2, "minimum 5.0 is above maximum 1.0"),
        ("CM_ \"never closed;\n", 1, "string is not closed"),
        ("FOO_ 1 2 3;\n", 1, "unknown keyword 'FOO_'"),
        ("BA_ \"Undefined\" BO_ 1 2;\n", 1, "attribute \"Undefined\" is not defined"),
        ("SG_ S : 0|8@1+ (1,0) [0|0] \"\" X\n", 1, "SG_ must follow a BO_"),
        ("BO_ 100 A: 8 X\n SG_ S : 0|8@1+ (1,0) [0|0] \"\" X\nSIG_VALTYPE_ 100 S : 1;\n", 3, "signal S is 8 bits; a float needs 32"),
        // What cantools refuses stays refused.
        ("BO_ 100 A: 8 X\nSIG_VALTYPE_ 100 Nope : 1;\n", 2, "message A has no signal 'Nope'"),
        ("SIG_VALTYPE_ 999 S : 1;\n", 1, "no message with identifier 999 is defined"),
        ("BO_ 100 A: 8 X\n SG_ M M : 0|8@1+ (1,0) [0|0] \"\" X\n SG_ S m : 8|8@1+ (1,0) [0|0] \"\" X\n", 3,
         "expected ':' or a multiplexer indicator (M, mN, mNM) after the signal name, found 'm'"),
    ]

    @Test("takes what real exports contain and cantools accepts: nodes over several lines, Vector's pseudo-message, and comments, attributes, transmitters and multiplexer ranges for what is not defined (skipped, with a warning naming the line)")
    func realWorldLeniency() throws {
        let text = """
        VERSION ""
        BU_:
          Gateway
          Body_ECU
        BO_ 100 A: 8 Gateway
         SG_ Mux M : 0|8@1+ (1,0) [0|255] "" Body_ECU
         SG_ S m1 : 8|8@1+ (1,0) [0|255] "" Body_ECU
        BO_ 3221225472 VECTOR__INDEPENDENT_SIG_MSG: 0 Vector__XXX
         SG_ Orphan : 0|8@1+ (1,0) [0|0] "" Vector__XXX
        CM_ SG_ 3221225472 Orphan "belongs to no frame";
        CM_ BO_ 999 "a removed message";
        CM_ SG_ 100 Gone "a removed signal";
        BA_DEF_ BO_ "GenMsgCycleTime" INT 0 10000;
        BA_ "GenMsgCycleTime" BO_ 999 100;
        BA_ "GenMsgCycleTime" BO_ 100 50;
        BO_TX_BU_ 999 : Gateway;
        SG_MUL_VAL_ 100 Gone Mux 1-1;
        CM_ BO_ 100 "kept";
        """
        let db = try DBCParser.parse(text, source: "export.dbc")
        #expect(db.nodes == ["Gateway", "Body_ECU"])
        #expect(db.messages.map(\.name) == ["A"])
        #expect(db.message(named: "A")?.cycleTimeMs == 50)
        #expect(db.message(named: "A")?.comment == "kept")
        #expect(db.warnings.map(\.description) == [
            "export.dbc:11:9: a comment (CM_) for message 999, which is not defined: skipped",
            "export.dbc:12:13: a comment (CM_) for signal 'Gone', which message A does not have: skipped",
            "export.dbc:14:27: attribute \"GenMsgCycleTime\" (BA_) for message 999, which is not defined: skipped",
            "export.dbc:16:11: BO_TX_BU_ for message 999, which is not defined: skipped",
            "export.dbc:17:17: SG_MUL_VAL_ for signal 'Gone', which message A does not have: skipped",
        ])
        // The project's own file has nothing to warn about.
        #expect(try DBCParser.parse(ProjectFiles.dbc).warnings.isEmpty)
    }

    @Test("rejects malformed files with the line and what is wrong", arguments: malformed)
    func rejectsMalformed(_ text: String, _ line: Int, _ message: String) {
        do {
            _ = try DBCParser.parse(text, source: "bad.dbc")
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.line == line)
            #expect(error.source == "bad.dbc")
            #expect(error.message.contains(message), "\(error)")
            #expect(error.description.hasPrefix("bad.dbc:\(line):"))
        }
    }

    @Test("reads SG_MUL_VAL_ ranges for extended multiplexing")
    func extendedMultiplexing() throws {
        let text = """
        BO_ 100 A: 8 X
         SG_ Mux M : 0|4@1+ (1,0) [0|0] "" X
         SG_ Sub m2M : 4|4@1+ (1,0) [0|0] "" X
         SG_ Deep m1 : 8|8@1+ (1,0) [0|0] "" X
        SG_MUL_VAL_ 100 Sub Mux 2-3, 5-5;
        SG_MUL_VAL_ 100 Deep Sub 1-1;
        """
        let db = try DBCParser.parse(text)
        let m = try #require(db.message(named: "A"))
        #expect(m.signal(named: "Sub")?.multiplexer?.values == [2...3, 5...5])
        // Mux = 3, Sub = 1: Deep present.
        #expect(SignalCodec.presentSignals(m, data: [0x13, 0x7F, 0, 0, 0, 0, 0, 0]) == [true, true, true])
        // Mux = 4: Sub absent, so Deep absent too.
        #expect(SignalCodec.presentSignals(m, data: [0x14, 0x7F, 0, 0, 0, 0, 0, 0]) == [true, false, false])
    }
}

extension MultiplexCondition {
    func with(index: Int) -> MultiplexCondition {
        var c = self
        c.multiplexerIndex = index
        return c
    }
}
