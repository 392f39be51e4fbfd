import UnitConfiguration
import ECallLink
import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// Why the daemon could not start, with the exit code it ends with (sysexits.h).
public struct StartupError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Int32, Sendable {
        /// EX_DATAERR: the DBC or the vehicle profile is invalid.
        case data = 65
        /// EX_NOINPUT: a file named by the configuration cannot be read.
        case noInput = 66
        /// EX_UNAVAILABLE: the CAN interface or the kernel's CAN support is missing.
        case unavailable = 69
        /// EX_OSERR: the system refused what every start needs (the signals' pipe or thread).
        case osError = 71
        /// EX_CANTCREAT: the control socket cannot be created.
        case cantCreate = 73
        /// EX_CONFIG: the configuration file is invalid.
        case config = 78
    }
    public var kind: Kind
    public var message: String
    public var exitCode: Int32 { kind.rawValue }
    public var description: String { message }
}

/// Everything the daemon is built from, loaded and checked.
public struct LoadedSetup: Sendable {
    /// The file it was loaded from (a reload reads it again).
    public var configPath: String
    public var configuration: DaemonConfiguration
    public var database: DBCDatabase
    public var profile: VehicleProfile
    public var tracker: VehicleStateTracker
}

/// The composition root: loads the configuration, builds the services, runs them in one
/// service group with SIGTERM/SIGINT as graceful shutdown.
public enum Daemon {
    /// Loads and validates the configuration, the DBC and the profile (what `--check-config` runs).
    public static func load(configPath: String) throws(StartupError) -> LoadedSetup {
        let text: String
        do { text = try readTextFile(configPath) } catch { throw StartupError(kind: .noInput, message: error.description) }
        let config: DaemonConfiguration
        do {
            config = try DaemonConfiguration.parse(text, source: configPath, baseDirectory: directoryName(configPath))
        } catch {
            throw StartupError(kind: .config, message: error.description)
        }
        let db: DBCDatabase
        do { db = try loadDBC(path: config.dbcPath) } catch {
            throw StartupError(kind: error.code == .invalidInput ? .data : .noInput, message: error.description)
        }
        let profile: VehicleProfile
        do {
            let ptext = try readTextFile(config.profilePath)
            profile = try VehicleProfile.parse(ptext, source: config.profilePath)
        } catch let e as SystemError {
            throw StartupError(kind: .noInput, message: e.description)
        } catch {
            throw StartupError(kind: .data, message: "\(error)")
        }
        let tracker: VehicleStateTracker
        do {
            tracker = try VehicleStateTracker(database: db, silenceTimeoutMs: config.silenceTimeoutMs)
        } catch {
            throw StartupError(kind: .data, message: "\(config.dbcPath): \(error)")
        }
        if case .candumpLog(let p) = config.source {
            do { _ = try CandumpLogReader(path: p) } catch { throw StartupError(kind: .noInput, message: error.description) }
        }
        return LoadedSetup(configPath: configPath, configuration: config, database: db, profile: profile, tracker: tracker)
    }

    /// Runs the daemon until SIGTERM/SIGINT (or the end of a replayed log when configured).
    /// `logLevelFixed`: the level came from the command line, and a reload leaves it alone.
    public static func run(_ setup: LoadedSetup, log: LogOutput, logLevelFixed: Bool = false) async throws(StartupError) {
        limitHeapArenas()  // before the first thread starts
        // First: a SIGTERM that comes while the daemon starts waits, and stops it gracefully
        // once the services run (a stop requested before the group runs is remembered by it).
        let signals: ProcessSignals
        do { signals = try ProcessSignals() } catch { throw StartupError(kind: .osError, message: error.description) }
        let priority = setup.configuration.eCallRealtimePriority
        let eCallThread = ThreadExecutor(name: "ecall", realtimePriority: priority > 0 ? Int32(priority) : nil)
        let unit = try TelematicsUnit(setup, log: log, logLevelFixed: logLevelFixed, eCallThread: eCallThread)
        let routed = signals.route { request in
            switch request {
            case .reload: unit.reload()
            case .stop(first: true): unit.stop(reason: "a termination signal came")
            case .stop(first: false): unit.hurry()
            }
        }
        guard routed else {
            unit.abandon()
            throw StartupError(kind: .osError, message: "cannot start the signals thread")
        }
        await unit.run()
    }

    /// What systemd shows as the unit's status: the bus, the backend link, the eCall.
    static func statusLine(bus: VehicleBusService, outbox: OutboxService, eCall: ECallService) -> String {
        // What the unit is doing, not counters: systemd shows the line, and it is sent when it changes.
        var line = "CAN \(bus.activity.name)"
        let o = outbox.report()
        if let e = o.error {
            line += "; outbox unavailable (\(e))"
        } else {
            line += "; outbox \(o.waitingInStore) waiting"
        }
        if let link = o.backend {
            line += link.connected ? ", backend connected" : ", backend unreachable"
        }
        line += "; eCall \(eCall.phaseNow)"
        return line
    }

    /// Reads the configuration again (SIGHUP). An invalid file changes nothing; a valid one
    /// changes what can change at run time, and the log says which sections need a restart.
    /// Returns nil when applied, otherwise why not.
    static func reloadConfiguration(path: String, running: RunningConfiguration, logLevelFixed: Bool, log: LogOutput, logger: Logger,
                                    apply: (DaemonConfiguration) -> Void) -> String? {
        let new: DaemonConfiguration
        do {
            new = try load(configPath: path).configuration
        } catch {
            logger.error("reload refused: the configuration is invalid; running with the previous one", metadata: ["error": "\(error.message)"])
            return error.message
        }
        let old = running.value.withLock { $0 }
        var changed = old.reloadableChanges(to: new)
        if logLevelFixed { changed.removeAll { $0 == "log.level" } }
        if changed.contains("log.level"), let level = Logger.Level(rawValue: new.logLevel.rawValue) {
            log.level = level
        }
        apply(new)
        let restart = old.sectionsNeedingRestart(for: new)
        // The running configuration takes the new reloadable values only: the rest still runs as it was.
        running.value.withLock { $0.takeReloadableValues(from: new, except: logLevelFixed ? ["log.level"] : []) }
        logger.notice("configuration reloaded", metadata: ["config.path": "\(path)", "config.changed": "\(changed.joined(separator: ","))"])
        if !restart.isEmpty {
            logger.warning("changes that take effect at the next restart", metadata: ["config.sections": "\(restart.joined(separator: ","))"])
        }
        return nil
    }
}

/// The configuration the daemon runs with (a reload changes its reloadable values).
public final class RunningConfiguration: Sendable {
    let value: Mutex<DaemonConfiguration>
    init(_ c: DaemonConfiguration) { value = Mutex(c) }

    /// The values a reload can change, as they are now (for `tcuctl status`).
    func report() -> ReloadableSettings {
        let c = value.withLock { $0 }
        return ReloadableSettings(logLevel: c.logLevel, stateIntervalMs: c.stateIntervalMs, stateHeartbeatSeconds: c.stateHeartbeatSeconds)
    }
}

/// The configuration's values that a reload changes, as the unit runs with them (typed; `json`
/// is the control socket's form).
public struct ReloadableSettings: Sendable {
    public var logLevel: DaemonConfiguration.LogLevel
    public var stateIntervalMs: Int64
    public var stateHeartbeatSeconds: Int64

    public var json: JSON {
        .object([
            ("log.level", .string(logLevel.rawValue)), ("backend.state-interval-ms", .number(Double(stateIntervalMs))),
            ("backend.state-heartbeat-s", .number(Double(stateHeartbeatSeconds))),
        ])
    }
}

/// The control socket's commands.
public enum ControlCommands {
    static func failure(_ message: String) -> JSON { .object([("ok", .bool(false)), ("error", .string(message))]) }

    public static func handle(_ request: JSON, bus: VehicleBusService, profile: VehicleProfile, eCall: ECallService? = nil,
                              outbox: OutboxService? = nil, gnss: GNSSService? = nil, privacy: PrivacySetting? = nil,
                              registration: CarRegistration? = nil, reset: FactoryReset? = nil, supervisor: Supervisor? = nil,
                              running: RunningConfiguration? = nil, capabilities: CapabilityService? = nil,
                              faultInjection: Bool = false) -> JSON {
        let command: ControlRequest
        switch ControlRequest.parse(request) {
        case .success(let c): command = c
        case .failure(let e): return failure(e.message)
        }
        switch command {
        case .ping:
            return .object([("ok", .bool(true))])
        case .fault(let hang):
            // Only when the configuration allows it: a test makes a main loop hang.
            guard faultInjection else { return failure("fault injection is off ([control] fault-injection)") }
            guard let loop = hang.flatMap(LoopMonitor.Loop.init(rawValue:)) else {
                return failure("\"hang\" must name a loop: \(LoopMonitor.Loop.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard let supervisor else { return failure("no loop is watched") }
            supervisor.monitor.injectHang(loop)
            return .object([("ok", .bool(true))])
        case .status:
            var o: [(String, JSON)] = [("ok", .bool(true)), ("vehicle", profile.json), ("bus", bus.report().json)]
            if let privacy { o.append(("privacy", .string(privacy.current.rawValue))) }
            if let registration { o.append(("registration", registration.current.json)) }
            if let capabilities { o.append(("capabilities", Capabilities.json(capabilities.current()))) }
            if let eCall { o.append(("ecall", eCall.report().json)) }
            if let outbox { o.append(("outbox", outbox.report().json)) }
            if let supervisor { o.append(("health", supervisor.report().json)) }
            if let running { o.append(("configuration", running.report().json)) }
            if let gnss {
                let g = gnss.report()
                o.append(("gnss", g.json))
                o.append(("parking", g.parkingJSON))
            } else {
                o.append(("gnss", .object([("fitted", .bool(false))])))
            }
            o.append(("state", bus.stateSnapshot()))
            return .object(o)
        case .eCall(let action):
            guard let eCall else { return failure("the eCall service is not running") }
            switch action {
            case .test:
                eCall.requestTest()
                return .object([("ok", .bool(true))])
            case .cancel:
                switch eCall.requestCancel() {
                case .success: return .object([("ok", .bool(true))])
                case .failure(let refusal): return failure(refusal.description)
                }
            case .status:
                return .object([("ok", .bool(true)), ("ecall", eCall.report().json)])
            }
        case .factoryReset:
            guard let reset else { return failure("the factory reset is not available") }
            switch reset.perform() {
            case .success(let deleted):
                return .object([("ok", .bool(true)), ("outboxMessagesDeleted", .number(Double(deleted))), ("backendAsked", .bool(true))])
            case .failure(let f): return failure(f.description)
            }
        case .register(let code):
            guard let registration else { return failure("registration is not available") }
            return registration.register(code: code).json
        case .createAccount(let email, let password, let spin):
            guard let registration else { return failure("registration is not available") }
            return registration.createAccount(email: email, password: password, spin: spin).json
        case .addCar(let email, let password, let accepted):
            guard let registration else { return failure("registration is not available") }
            return registration.addCarAndRegister(email: email, password: password, acceptedTerms: accepted).json
        case .renewLicence(let package, let years):
            guard let registration else { return failure("registration is not available") }
            return registration.renew(package: package, years: years).json
        case .privacy(let mode):
            guard let privacy else { return failure("the privacy setting is not available") }
            if let mode { privacy.set(mode) }
            return .object([("ok", .bool(true)), ("privacy", .string(privacy.current.rawValue))])
        case .navi(let request, let language):
            guard let registration else { return failure("the online services are not available") }
            // The current fix, while it is fresh (the filter took it from gpsd checked).
            let position = gnss?.currentFix().map { GeoPoint(latitude: $0.latitude, longitude: $0.longitude) }
            return registration.navi(request, language: language, position: position)
        case .transmit(let message, let signals):
            do {
                let frame = try bus.transmit(message: message, signals: signals, missingAsZero: true)
                return .object([("ok", .bool(true)), ("frame", .string(CandumpFormat.formatFrame(frame)))])
            } catch {
                return failure(error.description)
            }
        }
    }
}
