import Testing
@testable import TelematicsCore

@Suite("Vehicle state")
struct VehicleStateTests {
    let db = ProjectFiles.database

    func frame(_ message: String, _ values: [String: Double], at ms: Int64) throws -> CANFrame {
        let m = db.message(named: message)!
        let data = try SignalCodec.encode(m, values: values, missingAsZero: true)
        return CANFrame(id: m.id, data: data, isExtended: m.isExtended, timestamp: .milliseconds(ms))
    }

    @Test("a frame updates its quantities with their capture time and reports what changed")
    func ingest() throws {
        var t = try VehicleStateTracker(database: db)
        let first = t.ingest(try frame("Terminal_Status", ["Terminal_15": 1, "Terminal_S": 1], at: 1000))
        #expect(first.map(\.quantity) == [.ignitionOn, .keyPresent, .engineRunning])
        #expect(t.value(.ignitionOn) == .flag(true))
        #expect(t.reading(.ignitionOn)?.capturedAt == .milliseconds(1000))
        // Same values again: refreshed, not changed.
        #expect(t.ingest(try frame("Terminal_Status", ["Terminal_15": 1, "Terminal_S": 1], at: 1100)).isEmpty)
        #expect(t.reading(.ignitionOn)?.capturedAt == .milliseconds(1100))
        #expect(t.reading(.ignitionOn)?.changedAt == .milliseconds(1000))
        let off = t.ingest(try frame("Terminal_Status", ["Terminal_S": 1], at: 1200))
        #expect(off == [VehicleStateChange(quantity: .ignitionOn, old: .flag(true), new: .flag(false), at: .milliseconds(1200))])
    }

    @Test("numbers are rounded to the signal's resolution and choices carry their names")
    func typedValues() throws {
        var t = try VehicleStateTracker(database: db)
        _ = t.ingest(try frame("Battery_12V", ["Battery_Voltage": 12.62], at: 0))
        #expect(t.value(.batteryVoltage) == .number(12.62))
        _ = t.ingest(try frame("Door_Status", ["Central_Lock_State": 2], at: 0))
        #expect(t.value(.centralLock) == .choice(raw: 2, label: "Safelocked"))
        #expect(t.value(.centralLock)?.description == "Safelocked")
    }

    @Test("a quantity becomes unavailable after 3 cycle times without its message")
    func staleness() throws {
        var t = try VehicleStateTracker(database: db)
        _ = t.ingest(try frame("Terminal_Status", ["Terminal_15": 1], at: 0))
        // Terminal_Status has a 100 ms cycle: still fresh at 300 ms, stale after.
        #expect(t.expire(now: .milliseconds(300)).isEmpty)
        let gone = t.expire(now: .milliseconds(301))
        #expect(gone.contains(VehicleStateChange(quantity: .ignitionOn, old: .flag(true), new: nil, at: .milliseconds(301))))
        #expect(t.value(.ignitionOn) == nil)
        #expect(t.reading(.ignitionOn)?.isAvailable == false)
        // Reported once, and back when the message returns.
        #expect(t.expire(now: .milliseconds(400)).isEmpty)
        let back = t.ingest(try frame("Terminal_Status", ["Terminal_15": 1], at: 500))
        #expect(back.contains(VehicleStateChange(quantity: .ignitionOn, old: nil, new: .flag(true), at: .milliseconds(500))))
    }

    @Test("a multiplexed page is allowed one round of all pages per cycle")
    func multiplexedStaleness() throws {
        var t = try VehicleStateTracker(database: db)
        _ = t.ingest(try frame("Cluster_Info", ["Cluster_Page": 0, "Odometer": 23817], at: 0))
        #expect(t.value(.odometer) == .number(23817))
        // 200 ms cycle × 3 pages × 3 = 1800 ms.
        #expect(t.expire(now: .milliseconds(1800)).isEmpty)
        #expect(t.expire(now: .milliseconds(1801)).map(\.quantity).contains(.odometer))
    }

    @Test("event-driven quantities never expire")
    func eventMessagesDoNotExpire() throws {
        let q = VehicleQuantity("test.request", .choice, "TCU_Body_Request", "Body_Request")
        var t = try VehicleStateTracker(database: db, quantities: [q])
        _ = t.ingest(try frame("TCU_Body_Request", ["Body_Request": 1], at: 0))
        #expect(t.expire(now: .milliseconds(3_600_000)).isEmpty)
        #expect(t.value(q) == .choice(raw: 1, label: "Lock"))
    }

    @Test("a silent bus is reported after the silence timeout, and active again on the next frame")
    func silence() throws {
        var t = try VehicleStateTracker(database: db, silenceTimeoutMs: 1000)
        _ = t.expire(now: .milliseconds(0))
        #expect(t.activity == .waiting)
        _ = t.expire(now: .milliseconds(1001))
        #expect(t.activity == .silent(since: .milliseconds(0)))
        _ = t.ingest(try frame("Terminal_Status", [:], at: 1500))
        #expect(t.activity == .active)
        _ = t.expire(now: .milliseconds(2500))
        #expect(t.activity == .active)
        _ = t.expire(now: .milliseconds(2501))
        #expect(t.activity == .silent(since: .milliseconds(1500)))
    }

    @Test("unknown, error, remote and short frames are counted")
    func counters() throws {
        var t = try VehicleStateTracker(database: db)
        _ = t.ingest(CANFrame(id: 0x7AB, data: [1]))
        _ = t.ingest(CANFrame(id: 0x40, data: [0, 0, 0, 0, 0, 0, 0, 0], isError: true))
        _ = t.ingest(CANFrame(id: 0x3C0, data: [], isRemote: true, remoteLength: 4))
        _ = t.ingest(CANFrame(id: 0x3C0, data: [0, 2]))
        #expect(t.counters.frames == 4)
        #expect(t.counters.unknownID == 1)
        #expect(t.counters.errorFrames == 1 && t.counters.busOffEvents == 1)
        #expect(t.counters.remoteFrames == 1)
        #expect(t.counters.truncated == 1)
        // The short frame still carried Terminal_15 (byte 1).
        #expect(t.value(.ignitionOn) == .flag(true))
    }

    @Test("a DBC without the unit's signals is refused, listing what is missing")
    func missingBindings() throws {
        let db = try DBCParser.parse("BO_ 960 Terminal_Status: 4 BCM\n SG_ Other : 0|1@1+ (1,0) [0|1] \"\" TCU\n")
        do {
            _ = try VehicleStateTracker(database: db)
            Issue.record("accepted")
        } catch {
            #expect(error.missing.contains("signal Terminal_Status.Terminal_15 (for ignition.on)"))
            #expect(error.missing.contains("message Door_Status (for doors.frontLeft.open)"))
            #expect(error.missing.contains("message TCU_Status (transmitted by the unit)"))
        }
    }

    @Test("the snapshot nests quantities by their dotted keys")
    func snapshot() throws {
        var t = try VehicleStateTracker(database: db)
        _ = t.ingest(try frame("Door_Status", ["Door_FL_Open": 1], at: 2000))
        let s = t.snapshot()
        #expect(s["doors"]?["frontLeft"]?["open"]?["value"] == .bool(true))
        #expect(s["doors"]?["frontLeft"]?["open"]?["capturedAt"] == .number(2))
        #expect(s["ignition"]?["on"]?["available"] == .bool(false))
    }
}
