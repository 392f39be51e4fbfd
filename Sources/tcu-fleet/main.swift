import ArgumentParser
import Fleet
import Platform
import TelematicsCore

#if canImport(Glibc)
import Glibc
#endif

@main
struct TCUFleet: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcu-fleet",
        abstract: "A fleet of simulated cars in one process: each its own VIN, certificate, MQTT session and outbox stream.",
        discussion: """
            The fleet file (docs/fleet.md) says how many cars, their VIN range, the mix of \
            models, countries, licences and privacy levels, the scenarios a share of them meets \
            and how the fleet is split into shards. `check` reads it and says what is wrong, \
            `vins` lists a shard's VINs, `cars` its cars for the backend's garage import, `run` \
            runs one shard against a broker.
            """,
        subcommands: [Run.self, Check.self, VINs.self, Cars.self]
    )
}

/// VIN → pairing code from JSON lines (`tcu-backend garage import`'s output); the process ends
/// with the line that is wrong.
func readPairingCodes(_ path: String) -> [String: String] {
    let text: String
    do { text = try readTextFile(path) } catch { fail(error.description, 66) }
    var codes: [String: String] = [:]
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.trimmingSpaces.isEmpty {
        guard let j = try? JSON.parse(String(line)), let vin = j["vin"]?.stringValue, let code = j["pairingCode"]?.stringValue,
              isPairingCode(code) else {
            fail("\(path):\(n + 1): expected a JSON line with vin and pairingCode (8 digits)", 65)
        }
        codes[vin] = code
    }
    return codes
}

/// The file, read and checked, or the process ends with the reason (exit 65).
func loadPlan(_ path: String) -> FleetPlan {
    let text: String
    do { text = try readTextFile(path) } catch { fail(error.description, 66) }
    do { return try FleetPlan.parse(text, source: path) } catch { fail("\(error)", 65) }
}

/// The shard index: the option, else TCU_FLEET_SHARD, else JOB_COMPLETION_INDEX (a Kubernetes
/// Indexed Job's pod), else 0.
func shardIndex(_ option: Int?) -> Int {
    if let option { return option }
    for name in ["TCU_FLEET_SHARD", "JOB_COMPLETION_INDEX"] {
        if let v = getenv(name) {
            let text = String(cString: v)
            guard let i = Int(text), i >= 0 else { fail("\(name): expected a shard index (0, 1, ...), found '\(text)'", 64) }
            return i
        }
    }
    return 0
}

func shard(of plan: FleetPlan, _ index: Int, file: String) -> FleetPlan.Shard {
    guard let s = plan.shard(index) else {
        fail("\(file) has \(plan.shards.count) shard(s) (0-\(plan.shards.count - 1)); there is no shard \(index)", 64)
    }
    return s
}

func fail(_ message: String, _ code: Int32) -> Never {
    var line = Array("tcu-fleet: error: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(code)
}

func complain(_ text: String) {
    var line = Array("tcu-fleet: \(text)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

func say(_ text: String) {
    var line = Array((text + "\n").utf8)
    _ = line.withUnsafeMutableBytes { write(1, $0.baseAddress, $0.count) }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Read a fleet file and say what is wrong with it, or what fleet it makes.")

    @Argument(help: "The fleet file.")
    var file: String

    func run() throws {
        let plan = loadPlan(file)
        var counts: [String: Int] = [:]
        for i in 0..<plan.cars {
            let c = plan.car(i)
            counts["model \(c.model)", default: 0] += 1
            counts["licence \(c.licence.rawValue)", default: 0] += 1
            counts["privacy \(c.privacy.rawValue)", default: 0] += 1
            counts["country \(c.country)", default: 0] += 1
            for s in c.scenarios { counts["scenario \(s.0.rawValue)", default: 0] += 1 }
        }
        say("\(file): \(plan.cars) cars, VINs \(plan.car(0).vin) to \(plan.car(plan.cars - 1).vin), \(plan.shards.count) shard(s)")
        for s in plan.shards { say("  shard \(s.index): cars \(s.cars.lowerBound)-\(s.cars.upperBound - 1) (\(s.cars.count))") }
        for (k, v) in counts.sorted(by: { $0.key < $1.key }) { say("  \(k): \(v)") }
    }
}

struct VINs: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vins", abstract: "List a shard's VINs, one a line.")

    @Argument(help: "The fleet file.")
    var file: String

    @Option(help: "The shard (default: TCU_FLEET_SHARD, JOB_COMPLETION_INDEX, or 0).")
    var shard: Int?

    func run() throws {
        let plan = loadPlan(file)
        let s = tcu_fleet.shard(of: plan, shardIndex(shard), file: file)
        for i in s.cars { say(plan.car(i).vin) }
    }
}

struct Cars: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A shard's cars, one JSON line each: VIN, model, build date, country, licence, privacy.",
        discussion: """
            With --registrable, only the cars whose owner registers them (an active licence, a \
            privacy level that lets data out): what `tcu-backend garage import` puts in the \
            fleet owner's garage, for the pairing codes `run --pairing-codes` reads.
            """
    )

    @Argument(help: "The fleet file.")
    var file: String

    @Option(help: "The shard (default: TCU_FLEET_SHARD, JOB_COMPLETION_INDEX, or 0).")
    var shard: Int?

    @Flag(help: "Only the cars that register with the backend (an active licence, privacy not offline).")
    var registrable = false

    func run() throws {
        let plan = loadPlan(file)
        let s = tcu_fleet.shard(of: plan, shardIndex(shard), file: file)
        for i in s.cars {
            let c = plan.car(i)
            if registrable, c.licence != .active || c.privacy == .offline { continue }
            say(JSON.object([("vin", .string(c.vin)), ("model", .string(c.model)), ("built", .string(c.buildDate)),
                             ("country", .string(c.country)), ("licence", .string(c.licence.rawValue)),
                             ("privacy", .string(c.privacy.rawValue))]).text)
        }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one shard of the fleet against a broker.",
        discussion: """
            Every car connects with its own certificate (CN = its VIN), made in memory from \
            the issuing CA; the broker's ACL gives each only its own topics. One JSON line of \
            figures a second on standard output, and one at the end. SIGINT or SIGTERM stops \
            the fleet: the cars say goodbye and what is not acknowledged stays in the outbox for \
            the next run.
            """
    )

    @Argument(help: "The fleet file.")
    var file: String

    @Option(help: "The shard (default: TCU_FLEET_SHARD, JOB_COMPLETION_INDEX, or 0).")
    var shard: Int?

    @Option(help: "The broker, HOST:PORT (default: TCU_FLEET_BROKER, or 127.0.0.1:8883).")
    var broker: String?

    @Option(help: "The CA that signed the broker's certificate (PEM).")
    var ca: String

    @Option(help: "The CA certificate that signs the cars' certificates (PEM; the broker trusts it).")
    var issuerCertificate: String

    @Option(help: "Its private key (PEM file; never on the command line itself).")
    var issuerKey: String

    @Option(help: "The fleet's outbox (one SQLite file for all its cars).")
    var outbox: String

    @Option(help: "Stop after this many seconds (default: run until stopped).")
    var seconds: Int?

    @Option(help: "At most this many new connections a second.")
    var connectsPerSecond: Int = 2_000

    @Option(help: "Messages in flight per car.")
    var window: Int = 4

    @Option(help: "SUMO's floating car data (sumo --fcd-output FILE --fcd-output.geo true): the cars' trips, positions and speeds; hw/maps/build-fleet-trajectories makes one.")
    var trajectories: String?

    @Option(help: "The cars' pairing codes, JSON lines with vin and pairingCode (what tcu-backend garage import prints): these cars register with the backend on their first connection and take remote commands.")
    var pairingCodes: String?

    @Option(help: "The backend's public key, in hex (tcu-backend keys): the registration answers must carry its signature.")
    var answerKey: String?

    @Option(help: "The backend's app API, http://HOST:PORT: the remote-command scenario's owners send their commands there.")
    var appUrl: String?

    @Option(help: "The fleet owner's account for the app: a file of three lines, the login, the password and the S-PIN.")
    var appCredentials: String?

    func run() throws {
        let plan = loadPlan(file)
        let s = tcu_fleet.shard(of: plan, shardIndex(shard), file: file)
        let brokerText = broker ?? getenv("TCU_FLEET_BROKER").map { String(cString: $0) } ?? "127.0.0.1:8883"
        guard let endpoint = Endpoint.parse(brokerText) else { fail("--broker: expected HOST:PORT, found '\(brokerText)'", 64) }
        guard (1...1_000_000).contains(connectsPerSecond) else { fail("--connects-per-second: expected 1 to 1000000, found \(connectsPerSecond)", 64) }
        guard (1...1_000).contains(window) else { fail("--window: expected 1 to 1000, found \(window)", 64) }
        if let seconds, !(1...31_536_000).contains(seconds) { fail("--seconds: expected 1 to 31536000, found \(seconds)", 64) }
        // Three descriptors a car (its socket, and the socket pair libmosquitto keeps in every
        // client to wake its own loop), and some for the rest. Root may raise the hard limit.
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let needed = rlim_t(3 * s.cars.count + 64)
        if limit.rlim_cur < needed {
            var raised = limit
            raised.rlim_cur = needed
            raised.rlim_max = max(limit.rlim_max, needed)
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) != 0 {
                limit.rlim_cur = min(limit.rlim_max, needed)
                setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
                if limit.rlim_cur < needed {
                    fail("\(s.cars.count) cars need \(needed) open files (3 a car); the limit is \(limit.rlim_max) (raise it: ulimit -Hn, LimitNOFILE=, or fewer cars a shard)", 71)
                }
            }
        }
        var settings = FleetSettings(ca: ca, issuerCertificate: issuerCertificate, issuerKey: issuerKey, outboxPath: outbox)
        settings.host = endpoint.host
        settings.port = Int32(endpoint.port)
        settings.connectsPerSecond = connectsPerSecond
        settings.window = window
        settings.durationMs = seconds.map { Int64($0) * 1_000 }
        settings.trajectoriesPath = trajectories
        if let pairingCodes { settings.pairingCodes = readPairingCodes(pairingCodes) }
        if let answerKey {
            guard let key = bytes(fromHex: answerKey), key.count == 32 else { fail("--answer-key: expected 64 hex digits (tcu-backend keys)", 64) }
            settings.answerKey = key
        }
        if !settings.pairingCodes.isEmpty, settings.answerKey == nil {
            fail("--pairing-codes needs --answer-key: a car takes no registration answer it cannot check", 64)
        }
        switch (appUrl, appCredentials) {
        case (nil, nil): break
        case (let url?, let path?):
            do { settings.app = try FleetApp.Settings.read(url: url, credentials: path) } catch { fail(error.description, 66) }
        default: fail("--app-url and --app-credentials go together", 64)
        }
        let signals: ProcessSignals
        do { signals = try ProcessSignals(reload: []) } catch { fail(error.description, 71) }
        let loop: FleetLoop
        do {
            loop = try FleetLoop(plan: plan, shard: s, settings: settings, report: { say($0.json.text) }, log: { complain($0) })
        } catch {
            fail(error.description, 69)
        }
        guard signals.route({ _ in loop.stop() }) else { fail("cannot start the signals thread", 71) }
        // The eCall line on its own thread, and the airbag line: each crash the scenarios
        // schedule fires from there at its time.
        let line = DedicatedThread(name: "ecall") {
            // Above the broker connections, as a unit's eCall thread (where the system allows).
            if case .refused(_, let reason) = raiseCallingThread(toRealtimePriority: 10) {
                complain("the eCall line runs at normal priority (SCHED_FIFO refused: \(reason))")
            }
            loop.eCall.run()
        }
        let crashes = loop.scheduledCrashes().sorted { $0.afterMs < $1.afterMs }
        let stopped = StopSignal()
        if !crashes.isEmpty {
            let start = Clocks.system.monotonicMs
            DedicatedThread.detached(name: "airbags") {
                for c in crashes {
                    // Until the crash's time, or the fleet's stop.
                    if stopped.wait(timeoutMs: max(0, start + c.afterMs - Clocks.system.monotonicMs)) { return }
                    loop.eCall.crash(slot: c.slot)
                }
            }
        }
        loop.run()
        stopped.set()
        loop.eCall.stop()
        line.join()
    }
}
