#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Synchronization
import TelematicsCore
import Testing
@testable import TelematicsDaemon
import Control
import Outbox
import Platform
import VehicleBus

func tempDir() -> String {
    var template = Array("/tmp/tcud-test-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
}

func write(_ path: String, _ text: String) {
    let f = fopen(path, "w")!
    fputs(text, f)
    fclose(f)
}

let root: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
    return path
}()

/// A channel a test feeds by hand (`push`), with a clock the test moves. A receive waits for a
/// pushed frame up to its timeout, as a socket would: no sleeping.
final class FakeChannel: CANChannel, @unchecked Sendable {
    private let queue = Mutex<[CANFrame]>([])
    private let pushed = DispatchSemaphore(value: 0)
    let sent = Mutex<[CANFrame]>([])
    let clock = Mutex<Timestamp>(.zero)
    func push(_ frames: [CANFrame]) {
        queue.withLock { $0 += frames }
        for _ in frames { pushed.signal() }
    }
    func receive(timeoutNs: Int64) throws(SystemError) -> CANFrame? {
        guard pushed.wait(timeout: .now() + .nanoseconds(Int(min(timeoutNs, 1_000_000_000)))) == .success else { return nil }
        return queue.withLock { $0.removeFirst() }
    }
    func send(_ frame: CANFrame) throws(SystemError) { sent.withLock { $0.append(frame) } }
    var isExhausted: Bool { false }
    var kernelDrops: UInt64 { 0 }
    func close() {}
}

@Suite("Daemon")
struct DaemonTests {
    let db = try! loadDBC(path: root + "/hw/vehicle.dbc")

    @Test("configuration, DBC and profile load; a broken one stops start-up with its exit code")
    func loading() throws {
        let dir = tempDir()
        write(dir + "/ok.conf", """
        [can]
        source = socketcan:vcan0
        dbc = \(root)/hw/vehicle.dbc
        [vehicle]
        profile = \(root)/hw/vehicle-profile.conf
        [control]
        socket = \(dir)/ctl.sock
        """)
        let setup = try Daemon.load(configPath: dir + "/ok.conf")
        #expect(setup.profile.vin.value == "VSSZZZKLZNR012345")
        #expect(setup.database.messages.count == 15)

        write(dir + "/bad.conf", "[can]\nsource = socketcan:vcan0\ndbc = \(root)/hw/vehicle.dbc\nbitrate = 500000\n")
        do { _ = try Daemon.load(configPath: dir + "/bad.conf"); Issue.record("accepted") } catch {
            #expect(error.exitCode == 78)
            #expect(error.message.contains("bad.conf:4: can.bitrate: unknown key"))
        }
        write(dir + "/broken.dbc", "BO_ 1 A: 8 X\n SG_ S : 0|8@1+ (1,0) [0|0] \"\" X\nBO_ 1 B: 8 X\n")
        write(dir + "/dbc.conf", "[can]\nsource = socketcan:vcan0\ndbc = broken.dbc\n[vehicle]\nprofile = \(root)/hw/vehicle-profile.conf\n")
        do { _ = try Daemon.load(configPath: dir + "/dbc.conf"); Issue.record("accepted") } catch {
            #expect(error.exitCode == 65)
            #expect(error.message.contains("broken.dbc:3:"))
        }
        write(dir + "/nofile.conf", "[can]\nsource = candump:missing.log\ndbc = \(root)/hw/vehicle.dbc\n[vehicle]\nprofile = \(root)/hw/vehicle-profile.conf\n")
        do { _ = try Daemon.load(configPath: dir + "/nofile.conf"); Issue.record("accepted") } catch {
            #expect(error.exitCode == 66)
            #expect(error.message.contains("missing.log"))
        }
    }

    @Test("the bus service decodes frames into state and reports staleness on its clock")
    func busService() async throws {
        let channel = FakeChannel()
        let tracker = try VehicleStateTracker(database: db, silenceTimeoutMs: 1000)
        let bus = VehicleBusService(channel: channel, tracker: tracker, now: { channel.clock.withLock { $0 } },
                                    logger: quietLogger)
        let events = bus.subscribe()
        let m = db.message(named: "Terminal_Status")!
        let data = try SignalCodec.encode(m, values: ["Terminal_15": 1], missingAsZero: true)
        channel.push([CANFrame(id: m.id, data: data, timestamp: .milliseconds(100))])
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await bus.run() }
            var iterator = events.makeAsyncIterator()
            var sawIgnition = false
            while !sawIgnition, let e = await iterator.next() {
                if case .changed(let c) = e { sawIgnition = c.contains { $0.quantity == .ignitionOn && $0.new == .flag(true) } }
            }
            #expect(bus.value(.ignitionOn) == .flag(true))
            // Move the test clock past 3 × 100 ms: the reader thread expires the value.
            channel.clock.withLock { $0 = .milliseconds(401) }
            var sawUnavailable = false
            while !sawUnavailable, let e = await iterator.next() {
                if case .changed(let c) = e { sawUnavailable = c.contains { $0.quantity == .ignitionOn && $0.new == nil } }
            }
            #expect(bus.value(.ignitionOn) == nil)
            channel.clock.withLock { $0 = .milliseconds(1101) }
            var sawSilent = false
            while !sawSilent, let e = await iterator.next() {
                if case .activity(.silent) = e { sawSilent = true }
            }
            #expect(sawSilent)
            group.cancelAll()
        }
    }

    @Test("transmit encodes the DBC message, sends it and logs it; bad requests are refused")
    func transmit() throws {
        let channel = FakeChannel()
        let logPath = tempDir() + "/tx.log"
        let bus = VehicleBusService(channel: channel, tracker: try VehicleStateTracker(database: db), now: { Timestamp(seconds: 1_700_000_000) },
                                    logger: quietLogger, interfaceName: "vcan0", transmitLog: try CandumpLogWriter(path: logPath))
        let frame = try bus.transmit(message: "TCU_Body_Request", signals: ["Body_Request": 1, "Body_Request_Counter": 3], missingAsZero: true)
        #expect(CandumpFormat.formatFrame(frame) == "5F1#31000000")
        #expect(channel.sent.withLock { $0 } == [frame])
        #expect(try readTextFile(logPath) == "(1700000000.000000) vcan0 5F1#31000000\n")
        #expect(throws: TransmitError.self) { try bus.transmit(message: "Nope", signals: [:]) }
        #expect(throws: TransmitError.self) { try bus.transmit(message: "TCU_Clima_Request", signals: ["Clima_Target_Temperature": 45], missingAsZero: true) }
        #expect(StatusTransmitter.signals(counter: 17) == ["TCU_Alive_Counter": 1])
    }

    @Test("the control socket answers over a real Unix socket, owner and group only")
    func controlSocket() async throws {
        let dir = tempDir()
        let path = dir + "/ctl.sock"
        let channel = FakeChannel()
        let bus = VehicleBusService(channel: channel, tracker: try VehicleStateTracker(database: db), now: { .zero }, logger: quietLogger)
        let profile = try VehicleProfile.parse(try readTextFile(root + "/hw/vehicle-profile.conf"))
        let server = try ControlServer(path: path, logger: quietLogger) { ControlCommands.handle($0, bus: bus, profile: profile) }
        var st = stat()
        stat(path, &st)
        #expect(st.st_mode & 0o777 == 0o660)
        // A second daemon on the same socket is refused.
        #expect(throws: ControlError.self) { try ControlServer(path: path, logger: quietLogger) { _ in .null } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await server.run() }
            // The server's task may wait for a thread of the cooperative pool while other suites
            // run long synchronous tests on it: a generous first wait, not a race.
            let status = try ControlClient.request(path, .object([("command", .string("status"))]), timeoutMs: 60_000)
            #expect(status["ok"] == .bool(true))
            #expect(status["vehicle"]?["vin"] == .string("VSSZZZKLZNR012345"))
            #expect(status["state"]?["doors"]?["frontLeft"]?["open"]?["available"] == .bool(false))
            let sent = try ControlClient.request(path, .object([("command", .string("transmit")), ("message", .string("TCU_Body_Request")), ("signals", .object([("Body_Request", .number(2))]))]))
            #expect(sent["frame"] == .string("5F1#02000000"))
            let unknown = try ControlClient.request(path, .object([("command", .string("fly"))]))
            #expect(unknown["ok"] == .bool(false))
            #expect(unknown["error"]?.stringValue?.contains("unknown command 'fly'") == true)
            group.cancelAll()
        }
    }
}

let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

@Suite("Two cars in one process")
struct TwoUnitsTests {
    /// A car's own folder: its profile (VIN), configuration, outbox, journal, sockets.
    func car(vin: String, trace: String) throws -> (dir: String, setup: LoadedSetup) {
        let dir = tempDir()
        let profile = try readTextFile(root + "/hw/vehicle-profile.conf").replacing("VSSZZZKLZNR012345", with: vin)
        write(dir + "/profile.conf", profile)
        write(dir + "/telematicsd.conf", """
        [can]
        source = candump:\(root)/hw/traces/\(trace)
        dbc = \(root)/hw/vehicle.dbc
        replay = fast
        exit-at-end = true
        transmit-status = false
        [vehicle]
        profile = profile.conf
        [control]
        socket = \(dir)/ctl.sock
        [outbox]
        path = \(dir)/outbox.db
        [privacy]
        settings-file = \(dir)/privacy
        [registration]
        file = \(dir)/registration
        [ecall]
        journal = \(dir)/ecall.journal
        shutdown-grace-ms = 0
        """)
        // Registered (the owner accepted the terms): before that nothing is queued for the backend.
        write(dir + "/registration", #"{"status":"completed","user":"ana@example.com","role":"primary","#
              + #""services":["vehicleStatus","alerts"],"licenceExpiresAt":4102444800000}"#)
        return (dir, try Daemon.load(configPath: dir + "/telematicsd.conf"))
    }

    @Test("two units with two VINs run side by side in one process; neither sees the other's frames, messages or files",
          .timeLimit(.minutes(2)))
    func twoUnits() async throws {
        let a = try car(vin: "VSSZZZKLZNR012345", trace: "drive.log")
        let b = try car(vin: "VSSZZZKLZNR099999", trace: "alarm.log")
        let log = LogOutput(writer: LogWriter(), level: .critical)
        let units = [try TelematicsUnit(a.setup, log: log), try TelematicsUnit(b.setup, log: log)]
        // Both run at once, each to the end of its own log.
        await withTaskGroup(of: Void.self) { group in
            for unit in units { group.addTask { await unit.run() } }
        }
        func stored(_ dir: String) throws -> [OutboxMessage] {
            let store = try OutboxStore(path: dir + "/outbox.db")
            defer { store.close() }
            return try store.next(limit: 100_000).map(\.message)
        }
        let fromA = try stored(a.dir), fromB = try stored(b.dir)
        // Each outbox holds its own car's messages only, and what its own log showed.
        #expect(!fromA.isEmpty && !fromB.isEmpty)
        #expect(fromA.allSatisfy { $0.payload.contains("VSSZZZKLZNR012345") && !$0.payload.contains("VSSZZZKLZNR099999") })
        #expect(fromB.allSatisfy { $0.payload.contains("VSSZZZKLZNR099999") && !$0.payload.contains("VSSZZZKLZNR012345") })
        #expect(fromB.contains { $0.stream == "alarms" })  // the forced door of alarm.log
        #expect(!fromA.contains { $0.stream == "alarms" })  // drive.log has no theft
        #expect(fromA.contains { $0.payload.contains("ignitionOn") })  // drive.log's trip
        #expect(!fromB.contains { $0.payload.contains("ignitionOn") })
        // Each took down its own control socket.
        #expect(access(a.dir + "/ctl.sock", F_OK) != 0 && access(b.dir + "/ctl.sock", F_OK) != 0)
    }
}
