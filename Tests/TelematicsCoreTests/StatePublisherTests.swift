import Testing
@testable import TelematicsCore

@Suite("State blocks for the backend")
struct StatePublisherTests {
    let db = ProjectFiles.database

    func change(_ q: VehicleQuantity, at ms: Int64) -> VehicleStateChange {
        VehicleStateChange(quantity: q, old: nil, new: .flag(true), at: .milliseconds(ms))
    }

    @Test("quantities fall into blocks by the first part of their key; crash signals and buttons are not state")
    func blocks() {
        #expect(StateBlock.name(of: .doorFrontLeftOpen) == "doors")
        #expect(StateBlock.name(of: .targetTemperature) == "climate")
        #expect(StateBlock.name(of: .crashDetected) == nil)
        #expect(StateBlock.name(of: .sosButton) == nil)
        #expect(StateBlock.published == ["ignition", "driving", "doors", "locks", "windows", "lights", "climate", "cluster",
                                         "service", "occupancy", "alarm", "battery"])
        #expect(!StateBlock.quantities.contains(.crashDetected) && StateBlock.quantities.contains(.batteryVoltage))
    }

    @Test("a changed block goes at once, then at most once per interval; the last change is not lost")
    func interval() {
        var p = StatePublisher(minimumIntervalMs: 1_000, heartbeatMs: 900_000)
        #expect(p.due(now: .milliseconds(0)).isEmpty)
        p.note([change(.speed, at: 0), change(.doorFrontLeftOpen, at: 0)])
        #expect(p.due(now: .milliseconds(10)) == ["driving", "doors"])
        p.note([change(.speed, at: 20)])
        #expect(p.due(now: .milliseconds(20)).isEmpty)
        #expect(p.nextDue() == .milliseconds(1_010))
        p.note([change(.speed, at: 500)])
        #expect(p.due(now: .milliseconds(1_009)).isEmpty)
        #expect(p.due(now: .milliseconds(1_010)) == ["driving"])
        #expect(p.due(now: .milliseconds(5_000)).isEmpty)
        // A block that was quiet for longer than the interval goes at once.
        p.note([change(.doorFrontLeftOpen, at: 5_000)])
        #expect(p.due(now: .milliseconds(5_000)) == ["doors"])
    }

    @Test("a change waiting for its interval is forgotten at a factory reset")
    func forgetPending() {
        var p = StatePublisher(minimumIntervalMs: 1_000, heartbeatMs: 900_000)
        p.note([change(.doorFrontLeftOpen, at: 0)])
        #expect(p.due(now: .milliseconds(10)) == ["doors"])
        p.note([change(.doorFrontLeftOpen, at: 20)])
        p.forgetPending()
        #expect(p.due(now: .milliseconds(2_000)).isEmpty)
        p.note([change(.doorFrontLeftOpen, at: 3_000)])
        #expect(p.due(now: .milliseconds(3_000)) == ["doors"])
    }

    @Test("every heartbeat sends all blocks seen so far, changed or not")
    func heartbeat() {
        var p = StatePublisher(minimumIntervalMs: 1_000, heartbeatMs: 60_000)
        _ = p.due(now: .milliseconds(0))
        p.note([change(.batteryVoltage, at: 0), change(.alarmArmed, at: 0)])
        #expect(p.due(now: .milliseconds(0)) == ["alarm", "battery"])
        #expect(p.due(now: .milliseconds(59_999)).isEmpty)
        #expect(p.nextDue() == .milliseconds(60_000))
        #expect(p.due(now: .milliseconds(60_000)) == ["alarm", "battery"])
        #expect(p.due(now: .milliseconds(60_001)).isEmpty)
    }

    @Test("at shutdown every changed block goes regardless of the interval")
    func flush() {
        var p = StatePublisher(minimumIntervalMs: 1_000)
        p.note([change(.speed, at: 0)])
        _ = p.due(now: .milliseconds(0))
        p.note([change(.speed, at: 100), change(.fanLevel, at: 100)])
        #expect(p.due(now: .milliseconds(100)) == ["climate"])
        p.note([change(.fanLevel, at: 150)])
        #expect(p.flush(now: .milliseconds(200)) == ["driving", "climate"])
        #expect(p.due(now: .milliseconds(5_000)).isEmpty)
    }

    @Test("a block's values nest by the rest of their keys; unavailable values are null; the capture time is the newest")
    func blockValues() throws {
        var t = try VehicleStateTracker(database: db)
        let m = db.message(named: "Door_Status")!
        let data = try SignalCodec.encode(m, values: ["Door_FL_Open": 1, "Central_Lock_State": 2], missingAsZero: true)
        _ = t.ingest(CANFrame(id: m.id, data: data, timestamp: .milliseconds(4_000)))
        let (values, at) = t.block("doors")
        #expect(at == .milliseconds(4_000))
        #expect(values["frontLeft"]?["open"] == .bool(true))
        #expect(values["trunk"]?["locked"] == .bool(false))
        #expect(t.block("locks").values["central"] == .string("Safelocked"))
        let (climate, never) = t.block("climate")
        #expect(never == nil && climate["fanLevel"] == .null)
    }

    @Test("a block's signature changes with a value or an availability, not with a refresh of the same values")
    func signatures() throws {
        var t = try VehicleStateTracker(database: db)
        #expect(t.blockSignatures()["doors"]?.lastChange == nil)
        let m = db.message(named: "Door_Status")!
        func frame(_ open: Double, _ ms: Int64) throws -> CANFrame {
            CANFrame(id: m.id, data: try SignalCodec.encode(m, values: ["Door_FL_Open": open], missingAsZero: true), timestamp: .milliseconds(ms))
        }
        _ = t.ingest(try frame(1, 1_000))
        let first = t.blockSignatures()["doors"]
        #expect(first?.lastChange == .milliseconds(1_000))
        _ = t.ingest(try frame(1, 1_100))
        #expect(t.blockSignatures()["doors"] == first)
        #expect(t.blockSignatures()["climate"]?.lastChange == nil)
        _ = t.ingest(try frame(0, 1_200))
        let second = t.blockSignatures()["doors"]
        #expect(second != first)
        // Door_Status every 100 ms: unavailable after 300 ms without it.
        _ = t.expire(now: .milliseconds(2_000))
        #expect(t.blockSignatures()["doors"]?.available == 0 && t.blockSignatures()["doors"] != second)
    }

    @Test("a state message is coalesced per block, at state priority, on the state stream")
    func message() throws {
        let m = stateMessage(block: "doors", values: .object([("frontLeft", .object([("open", .bool(true))]))]),
                             capturedAtMs: 1_700_000_000_123, vin: "VSSZZZKLZNR012345", id: "x")
        #expect(m.stream == "state" && m.priority == .state && m.coalesceKey == "state.doors")
        let body = try JSON.parse(m.payload)
        #expect(body["type"] == .string("state") && body["block"] == .string("doors"))
        #expect(body["capturedAt"]?.numberValue == 1_700_000_000_123)
        #expect(body["values"]?["frontLeft"]?["open"] == .bool(true))
    }
}
