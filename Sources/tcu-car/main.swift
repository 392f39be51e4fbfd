import ArgumentParser
import Control
import Logging
import Platform
import ServiceLifecycle
import TelematicsCore
import VehicleBus
import VehicleSim

#if canImport(Glibc)
import Glibc
#endif

@main
struct TCUCar: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcu-car",
        abstract: "The simulated car around the telematics unit: every other ECU of the DBC on the same bus.",
        discussion: """
            tcu-car run puts the car on a bus (socketcan:vcan0, or logbus:DIR where the kernel has \
            no CAN: the unit then reads [can] source = logbus:DIR), sends every cyclic message at \
            its GenMsgCycleTime with its counter and checksum, answers the unit's body and climate \
            requests, drives routes and feeds gpsd with NMEA. The other subcommands talk to a \
            running car over its control socket, or play scenarios offline. See docs/vehicle-sim.md.
            """,
        subcommands: [Run.self, Do.self, Status.self, Wait.self, Events.self, ScenarioCommand.self]
    )
}

struct ControlOption: ParsableArguments {
    @Option(help: "The car's control socket.")
    var control: String = "/tmp/tcu-car.sock"
}

func fail(_ message: String, code: Int32 = 1) -> Never {
    var line = Array("tcu-car: error: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(code)
}

/// Writes to standard output at once (the car's log is read live by people and tests).
func emit(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}

func say(_ line: String) { emit(line + "\n") }

func loadDatabase(_ path: String) -> DBCDatabase {
    let db: DBCDatabase
    do { db = try loadDBC(path: path) } catch { fail(error.description, code: error.code == .invalidInput ? 65 : 66) }
    for w in db.warnings {
        var line = Array("tcu-car: warning: \(w)\n".utf8)
        _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }
    return db
}

func loadScenario(_ path: String) -> Scenario {
    let text: String
    do { text = try readTextFile(path) } catch { fail(error.description, code: 66) }
    do { return try Scenario.parse(text, source: path) } catch { fail(error.description, code: 65) }
}

func request(_ control: String, _ body: JSON, timeoutMs: Int = 5_000) -> JSON {
    do {
        let reply = try ControlClient.request(control, body, timeoutMs: timeoutMs)
        if reply["ok"]?.boolValue != true { fail(reply["error"]?.stringValue ?? "the car refused") }
        return reply
    } catch {
        fail("\(error) (is tcu-car run listening on \(control)?)", code: 69)
    }
}

extension TCUCar {
    struct Run: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Run the simulated car on a bus until SIGTERM (or the scenario's end).")

        @Option(help: "The bus: socketcan:IFACE (vcan0, can0) or logbus:DIR (the software bus).")
        var bus: String
        @Option(help: "The DBC file describing the bus.")
        var dbc: String = "hw/vehicle.dbc"
        @Option(help: "A scenario file to play (docs/vehicle-sim.md).")
        var scenario: String?
        @Flag(help: "Stop when the scenario ends.")
        var exitAtEnd = false
        @OptionGroup var control: ControlOption
        @Option(help: "Feed gpsd's NMEA UDP input at HOST:PORT once a second (gpsd -n udp://HOST:PORT).")
        var gpsdUdp: String?
        @Option(help: "Where the car stands at the start, LAT,LON (overrides the scenario's start).")
        var start: String?
        @Option(help: "The heading at the start, degrees from north.")
        var heading: Double?
        @Option(help: "The bus sleeps after the car has been idle this long (60s, 5m).")
        var sleepAfter: String?

        func run() async throws {
            // First: a SIGTERM while the car starts waits, then stops it gracefully.
            let signals: ProcessSignals
            do { signals = try ProcessSignals() } catch { fail(error.description, code: 71) }
            guard let carBus = CarBus.parse(bus) else { fail("--bus: expected socketcan:IFACE or logbus:DIR, found '\(bus)'", code: 64) }
            var options = CarService.Options(bus: carBus, database: loadDatabase(dbc))
            if let scenario {
                let s = loadScenario(scenario)
                options.scenario = s
                options.scenarioFolder = directoryName(scenario)
                if let p = s.start { options.configuration.position = p }
                if let h = s.startHeading { options.configuration.heading = h }
                if let ms = s.sleepAfterMs { options.configuration.sleepAfterMs = ms }
            }
            options.exitAtEnd = exitAtEnd
            if let start {
                guard let p = GeoPoint.parse(Substring(start)) else { fail("--start: expected LAT,LON in degrees, found '\(start)'", code: 64) }
                options.configuration.position = p
            }
            if let heading {
                guard heading.isFinite, (0...360).contains(heading) else { fail("--heading: expected 0 to 360 degrees", code: 64) }
                options.configuration.heading = heading
            }
            if let sleepAfter {
                guard let ms = parseDuration(Substring(sleepAfter)) else { fail("--sleep-after: expected a duration (60s, 5m), found '\(sleepAfter)'", code: 64) }
                options.configuration.sleepAfterMs = ms
            }
            if let gpsdUdp {
                let parts = gpsdUdp.split(separator: ":")
                guard parts.count == 2, let port = UInt16(parts[1]), port > 0 else {
                    fail("--gpsd-udp: expected HOST:PORT, found '\(gpsdUdp)'", code: 64)
                }
                options.gpsdUDP = (String(parts[0]), port)
            }
            let car: CarService
            do { car = try CarService(options: options, output: { say($0) }) } catch {
                fail(error.description, code: error.code == .unavailable ? 69 : 66)
            }
            let unmodelled = SimulatedVehicle(database: options.database).unmodelled
            if !unmodelled.isEmpty { say("bus: not modelled, not sent: \(unmodelled.joined(separator: ", "))") }
            let logger = Logger(label: "tcu-car")
            let server: ControlServer
            do { server = try ControlServer(path: control.control, logger: logger, handler: { car.handle($0) }) } catch {
                fail(error.description, code: 73)
            }
            say("bus: \(carBus), control \(control.control)\(options.scenario.map { ", scenario \($0.name)" } ?? "")")
            let group = ServiceGroup(configuration: .init(
                services: [.init(service: car, successTerminationBehavior: .gracefullyShutdownGroup), .init(service: server)],
                logger: logger
            ))
            guard signals.route({ request in
                if case .stop(first: true) = request { Task { await group.triggerGracefulShutdown() } }
            }) else { fail("cannot start the signals thread", code: 71) }
            try await group.run()
        }
    }

    struct Do: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Do something to the running car: door open frontLeft, lock, press sos, crash front severity 3, drive to LAT,LON speed 50, ...",
            discussion: "The grammar is in docs/vehicle-sim.md; a refusal (a door open when locking) exits with 1 and says why."
        )
        @OptionGroup var control: ControlOption
        @Argument(parsing: .captureForPassthrough, help: "The command, as words.")
        var words: [String] = []

        func run() throws {
            let reply = request(control.control, .object([("command", .string("do")), ("line", .string(words.joined(separator: " ")))]))
            for e in reply["events"]?.arrayValue ?? [] { if let s = e.stringValue { say(s) } }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The running car's state.")
        @OptionGroup var control: ControlOption
        @Flag(help: "As JSON.")
        var json = false

        func run() throws {
            let car = request(control.control, .object([("command", .string("status"))]))["car"] ?? .null
            if json { say(car.text); return }
            for (key, value) in car.objectValue ?? [] { say("\(key): \(value.text)") }
        }
    }

    struct Wait: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Wait until a condition holds: speed > 50, cabin >= 18, unit requests lock, alarm, arrived, asleep, awake."
        )
        @OptionGroup var control: ControlOption
        @Option(help: "Give up after this long (30s, 2m); exits with 1.")
        var timeout: String = "30s"
        @Argument(parsing: .captureForPassthrough, help: "The condition, as words.")
        var words: [String] = []

        func run() throws {
            guard let ms = parseDuration(Substring(timeout)) else { fail("--timeout: expected a duration (30s), found '\(timeout)'", code: 64) }
            _ = request(control.control, .object([("command", .string("wait")), ("condition", .string(words.joined(separator: " "))),
                                                  ("timeoutMs", .number(Double(ms)))]), timeoutMs: Int(ms) + 5_000)
        }
    }

    struct Events: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "What the running car did (its last events).")
        @OptionGroup var control: ControlOption
        @Option(help: "Only events after this number.")
        var since: Int = 0

        func run() throws {
            let reply = request(control.control, .object([("command", .string("events")), ("since", .number(Double(since)))]))
            for e in reply["events"]?.arrayValue ?? [] { if let s = e.stringValue { say(s) } }
        }
    }

    struct ScenarioCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "scenario",
            abstract: "Play scenarios offline in simulated time: print the trace, or check it against the golden file.",
            subcommands: [Play.self, Check.self]
        )

        struct Play: ParsableCommand {
            static let configuration = CommandConfiguration(commandName: "play", abstract: "Print a scenario's trace and end state.")
            @Option(help: "The DBC file.")
            var dbc: String = "hw/vehicle.dbc"
            @Argument(help: "The scenario file.")
            var file: String

            func run() throws {
                emit(playback(file, dbc: dbc))
            }
        }

        struct Check: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "check",
                abstract: "Compare each scenario's trace with its golden file (FILE.chk beside it); --update writes them."
            )
            @Option(help: "The DBC file.")
            var dbc: String = "hw/vehicle.dbc"
            @Flag(help: "Write the golden files instead of comparing.")
            var update = false
            @Argument(help: "The scenario files.")
            var files: [String]

            func run() throws {
                var failed = 0
                for file in files {
                    let trace = playback(file, dbc: dbc)
                    let golden = file.hasSuffix(".scn") ? String(file.dropLast(4)) + ".chk" : file + ".chk"
                    if update {
                        guard writeFileDurably(golden, trace, mode: 0o644) else { fail("cannot write \(golden)") }
                        say("wrote \(golden)")
                        continue
                    }
                    let expected = (try? readTextFile(golden)) ?? ""
                    if expected == trace {
                        say("ok \(file)")
                    } else {
                        failed += 1
                        say("FAILED \(file): the trace differs from \(golden) (make golden rewrites it)")
                        let a = expected.split(separator: "\n", omittingEmptySubsequences: false)
                        let b = trace.split(separator: "\n", omittingEmptySubsequences: false)
                        for i in 0..<max(a.count, b.count) where (i < a.count ? a[i] : "") != (i < b.count ? b[i] : "") {
                            say("  line \(i + 1): expected: \(i < a.count ? a[i] : "<none>")")
                            say("  line \(i + 1):      got: \(i < b.count ? b[i] : "<none>")")
                            break
                        }
                    }
                }
                say("\(files.count - failed) passed, \(failed) failed")
                if failed > 0 { throw ExitCode(1) }
            }
        }
    }
}

func playback(_ file: String, dbc: String) -> String {
    let scenario = loadScenario(file)
    let folder = directoryName(file)
    do throws(ParseError) {
        return try ScenarioPlayback.run(scenario, database: loadDatabase(dbc)) { (path: String) throws(ParseError) -> [GeoPoint] in
            let full = path.hasPrefix("/") ? path : folder + "/" + path
            let text: String
            do throws(SystemError) { text = try readTextFile(full) } catch { throw ParseError(source: full, line: 0, error.description) }
            return try RouteFile.parse(text, source: full)
        }
    } catch {
        fail(error.description, code: 65)
    }
}
