import ECallLink
import Logging
import Synchronization
import TelematicsCore
import Testing
@testable import TelematicsDaemon
import Platform
import VehicleBus

/// A network the test plays by hand: it records what the unit sends.
final class FakeTransport: ECallTransport, @unchecked Sendable {
    let deliver: @Sendable (ECallLinkEvent) -> Void
    let sent = Mutex<[ECallWire]>([])
    /// Rung at each message the unit sends.
    let sending = Bell()
    init(_ deliver: @escaping @Sendable (ECallLinkEvent) -> Void) { self.deliver = deliver }
    var isAttached: Bool { true }
    func send(_ message: ECallWire) -> Bool {
        sent.withLock { $0.append(message) }
        sending.ring()
        return true
    }
    func start() { deliver(.attached) }
    func shutdown() {}
}

@Suite("eCall service")
struct ECallServiceTests {
    let db = try! loadDBC(path: root + "/hw/vehicle.dbc")

    func frame(_ message: String, _ values: [String: Double]) throws -> CANFrame {
        let m = db.message(named: message)!
        return CANFrame(id: m.id, data: try SignalCodec.encode(m, values: values, missingAsZero: true))
    }

    @Test("a crash frame on the bus becomes a dial, an answered call an MSD with the car's data")
    func crashToMSD() async throws {
        let channel = FakeChannel()
        // The bus clock stands at the frames' time: the seat occupancy cannot go stale while the
        // test waits (a wall clock made it stale at the first expiry check, 50 ms in).
        let bus = VehicleBusService(channel: channel, tracker: try VehicleStateTracker(database: db), now: { .zero }, logger: quietLogger)
        let profile = try VehicleProfile.parse(try readTextFile(root + "/hw/vehicle-profile.conf"))
        let transport = Mutex<FakeTransport?>(nil)
        let eCall = ECallService(
            configuration: ECallConfiguration(), linkEndpoint: TCPEndpoint(host: "127.0.0.1", port: 1), bus: bus, profile: profile,
            logger: quietLogger, monotonic: { monotonicNow().nanoseconds / 1_000_000 }, utcNow: { 1_800_000_000 },
            transport: { deliver in let t = FakeTransport(deliver); transport.withLock { $0 = t }; return t }
        )
        channel.push([
            try frame("Seat_Occupancy", ["Occupied_Driver": 1]),
            try frame("Airbag_01", [:]),
            try frame("Airbag_01", ["Crash_Detected": 1, "Crash_Severity": 3]),
        ])
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await bus.run() }
            group.addTask { try await eCall.run() }
            func sent() -> [ECallWire] { transport.withLock { $0?.sent.withLock { $0 } ?? [] } }
            /// Waits (a minute at most) until the unit has sent what `found` looks for.
            func awaitSent<T>(_ found: () -> T?) async -> T? {
                let deadline = monotonicNow().adding(milliseconds: 60_000)
                while true {
                    // The transport exists once the service has started.
                    let t = transport.withLock { $0 }
                    let seen = t?.sending.rung ?? 0
                    if let v = found() { return v }
                    let left = deadline.milliseconds(since: monotonicNow())
                    guard left > 0 else { return nil }
                    if let t { await t.sending.wait(after: seen, timeoutMs: left) } else { await Task.yield() }
                }
            }
            let dialled = await awaitSent { sent().contains(.dial(call: 1, number: "112")) ? true : nil }
            try #require(dialled == true, "no dial within a minute")
            transport.withLock { $0 }!.deliver(.received(.setup(call: 1, outcome: .answered)))
            transport.withLock { $0 }!.deliver(.received(.sendMSD(call: 1)))
            let msd = await awaitSent { () -> [UInt8]? in
                for case .msd(1, 1, let bytes) in sent() { return bytes }
                return nil
            }
            let decoded = try MSD.decode(try #require(msd, "no MSD within a minute"))
            #expect(decoded.automaticActivation && decoded.vin == "VSSZZZKLZNR012345" && decoded.timestamp == 1_800_000_000)
            #expect(decoded.numberOfOccupants == 1)
            #expect(sent().contains(.initiation(call: 1)))
            group.cancelAll()
        }
    }
}

@Suite("Vehicle events for the outbox")
struct VehicleEventTests {
    @Test("an alarm goes to the alarm stream at alarm priority; doors and locks are events; first readings are not")
    func events() throws {
        let t = Timestamp(seconds: 1_764_000_000)
        let alarm = VehicleEventService.message(for: VehicleStateChange(quantity: .alarmTriggered, old: .flag(false), new: .flag(true), at: t), vin: "V", id: "a")
        #expect(alarm?.priority == .theftAlarm && alarm?.stream == "alarms")
        #expect(try JSON.parse(alarm!.payload)["type"] == .string("alarmTriggered"))
        let door = VehicleEventService.message(for: VehicleStateChange(quantity: .doorRearRightOpen, old: .flag(false), new: .flag(true), at: t), vin: "V", id: "d")
        let doorBody = try JSON.parse(door!.payload)
        #expect(door?.priority == .event && doorBody["type"] == .string("opened"))
        #expect(door?.capturedAtMs == 1_764_000_000_000)
        #expect(VehicleEventService.message(for: VehicleStateChange(quantity: .doorRearRightOpen, old: nil, new: .flag(true), at: t), vin: "V", id: "x") == nil)
        #expect(VehicleEventService.message(for: VehicleStateChange(quantity: .alarmTriggered, old: .flag(true), new: .flag(false), at: t), vin: "V", id: "x") == nil)
        #expect(VehicleEventService.message(for: VehicleStateChange(quantity: .centralLock, old: .choice(raw: 0, label: "Unlocked"), new: nil, at: t), vin: "V", id: "x") == nil)
    }

    @Test("climatisation starting and stopping are events; a change of mode while on is state")
    func climatisation() throws {
        let t = Timestamp(seconds: 1_764_000_000)
        func type(_ old: Int64, _ new: Int64) throws -> String? {
            let m = VehicleEventService.message(for: VehicleStateChange(quantity: .climatisationState, old: .choice(raw: old, label: nil),
                                                                        new: .choice(raw: new, label: nil), at: t), vin: "V", id: "c")
            return try m.map { try JSON.parse($0.payload)["type"]?.stringValue ?? "" }
        }
        #expect(try type(0, 1) == "climatisationStarted" && type(2, 0) == "climatisationStopped" && type(1, 2) == nil)
    }

    @Test("an eCall report carries the call's facts at the highest priority, and no position")
    func report() throws {
        let r = ECallReport(kind: .automatic, ending: .clearedByRemote, attempts: 2, msdAcknowledged: true,
                            lastMessageIdentifier: 1, msdTimestamp: 5, startedAt: 0, endedAt: 900)
        let m = r.outboxMessage(vin: "V", id: "e", nowMs: 7)
        #expect(m.priority == .eCallReport && m.stream == "ecall")
        let body = try JSON.parse(m.payload)
        #expect(body["attempts"] == .number(2) && body["durationMs"] == .number(900))
        #expect(!m.payload.contains("latitude"))
    }
}
