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
    public static func run(_ setup: LoadedSetup, logger: Logger, logLevelFixed: Bool = false) async throws(StartupError) {
        limitHeapArenas()  // before the first thread starts
        let config = setup.configuration
        for w in setup.database.warnings { logger.warning("DBC: \(w)") }
        let channel: any CANChannel
        let now: @Sendable () -> Timestamp
        var interfaceName: String?
        var transmitLog: CandumpLogWriter?
        if let p = config.transmitLogPath {
            do { transmitLog = try CandumpLogWriter(path: p) } catch { throw StartupError(kind: .cantCreate, message: error.description) }
        }
        switch config.source {
        case .socketCAN(let iface):
            do {
                let socket = try SocketCANChannel(interface: iface, filters: CANFilter.exact(for: setup.database))
                // (The kernel reports twice what it was asked for: its bookkeeping.)
                if socket.receiveBuffer < 2 * SocketCANChannel.wantedReceiveBuffer {
                    logger.notice("the kernel capped the CAN receive queue; raise net.core.rmem_max for bursts",
                                  metadata: ["can.interface": "\(iface)", "can.receiveBuffer": "\(socket.receiveBuffer)"])
                }
                channel = socket
            } catch {
                throw StartupError(kind: .unavailable, message: error.description)
            }
            now = { wallClockNow() }
            interfaceName = iface
        case .candumpLog(let path):
            let replay: CandumpReplayChannel
            do {
                replay = try CandumpReplayChannel(
                    path: path, realtime: config.replay == .original && !config.follow, loop: config.replayLoop, follow: config.follow
                )
            } catch {
                throw StartupError(kind: .noInput, message: error.description)
            }
            channel = replay
            now = { replay.replayNow }
        case .logBus(let directory):
            do { channel = try LogBusChannel(directory: directory, side: .unit) } catch {
                throw StartupError(kind: .unavailable, message: error.description)
            }
            now = { wallClockNow() }
        }
        let bus = VehicleBusService(
            channel: channel, tracker: setup.tracker, now: now, logger: logger,
            exitAtEndOfLog: config.exitAtEndOfLog, interfaceName: interfaceName, transmitLog: transmitLog
        )
        let profile = setup.profile
        var uplink: UplinkConfiguration?
        if let broker = config.broker {
            var u = UplinkConfiguration(host: broker.host, port: Int32(broker.port), vin: profile.vin.value)
            u.keepaliveSeconds = Int32(config.brokerKeepaliveSeconds)
            u.window = Int(config.brokerWindow)
            u.tlsCA = config.tlsCA
            u.tlsCertificate = config.tlsCertificate
            u.tlsKey = config.tlsKey
            uplink = u
        }
        let outbox = OutboxService(
            path: config.outboxPath, maximumBytes: config.outboxMaximumBytes, diskReserveBytes: config.outboxDiskReserveBytes,
            logger: logger, uplink: uplink
        )
        let privacy = PrivacySetting(path: config.settingsFile, initial: config.privacy, logger: logger)
        privacy.observe { outbox.setPrivacy($0) }
        let registration = CarRegistration(path: config.registrationFile, timeoutMs: config.registrationTimeoutMs, outbox: outbox,
                                           privacy: privacy, profile: profile, logger: logger, answerKey: config.answerKey)
        let events = VehicleEventService(bus: bus, outbox: outbox, vin: profile.vin.value)
        let vin = profile.vin.value
        let eCall = ECallService(
            configuration: config.eCall, linkEndpoint: config.eCallLink, bus: bus, profile: profile,
            logger: logger, monotonic: { monotonicNow().nanoseconds / 1_000_000 },
            utcNow: { UInt32(clamping: wallClockNow().nanoseconds / 1_000_000_000) },
            journalPath: config.eCallJournal, gnssFitted: config.gpsd != nil, shutdownGraceMs: config.eCallShutdownGraceMs,
            onReport: { report in
                // To the backend only for a registered car (and where privacy lets it out).
                guard registration.current.status == .completed else {
                    logger.info("the eCall report stays in the car: it is not registered")
                    return
                }
                outbox.submit(report.outboxMessage(vin: vin, id: randomMessageID(), nowMs: wallClockNow().nanoseconds / 1_000_000))
            }
        )
        var gnss: GNSSService?
        if let gpsd = config.gpsd {
            var g = GNSSService.Configuration(host: gpsd.host, port: "\(gpsd.port)", parkingFile: config.parkingFile)
            g.filter = config.gnssFilter
            gnss = GNSSService(
                configuration: g, bus: bus, logger: logger, eCallPositions: { eCall.record($0) },
                onParking: { position in
                    let now = wallClockNow().nanoseconds / 1_000_000
                    // A remote service: only for a registered car whose licence has it.
                    guard registration.current.allows("parkingPosition", nowMs: now) else { return }
                    // "Use my position": the backend hears there is none to tell.
                    let shared = privacy.current == .shareMyPosition ? position : nil
                    var m = stateMessage(block: "parking", values: shared?.json ?? .null,
                                         capturedAtMs: shared.map { $0.parkedAt.nanoseconds / 1_000_000 } ?? now,
                                         vin: vin, id: randomMessageID())
                    m.carriesPosition = shared != nil
                    outbox.submit(m)
                }
            )
        }
        let stateService = VehicleStateService(bus: bus, outbox: outbox, vin: vin, minimumIntervalMs: config.stateIntervalMs,
                                               heartbeatMs: config.stateHeartbeatSeconds * 1_000)
        let capabilities = CapabilityService(registration: registration, privacy: privacy, outbox: outbox, vin: vin)
        let remote = RemoteCommandService(bus: bus, registration: registration, privacy: privacy, outbox: outbox, vin: vin,
                                          logger: logger, confirmTimeoutMs: config.remoteConfirmTimeoutMs,
                                          wakeUpsPerDay: config.wakeUpsPerDay, onWakeUp: {
                                              stateService.resendAll()
                                              capabilities.resend()
                                          })
        outbox.onCommand { remote.receive($0) }
        let buttons = ServiceButtonService(bus: bus, outbox: outbox, registration: registration, privacy: privacy, gnss: gnss,
                                           vin: vin, logger: logger)
        privacy.observe(initially: false) { [gnss] mode in
            // A new level: the parking block says what may now be said; back online, the
            // backend gets the whole state again.
            gnss?.resendParking()
            if mode.connects {
                stateService.resendAll()
                capabilities.resend()
            }
        }
        let notifier = SystemdNotifier()
        let running = RunningConfiguration(config)
        let supervisor = Supervisor(notifier: notifier, logger: logger, hooks: .init(
            isReady: { outbox.hasTriedToOpen },
            status: { statusLine(bus: bus, outbox: outbox, eCall: eCall) },
            probe: { eCall.probe() },
            reload: {
                reloadConfiguration(path: setup.configPath, running: running, logLevelFixed: logLevelFixed, logger: logger) { new in
                    stateService.setIntervals(minimumIntervalMs: new.stateIntervalMs, heartbeatMs: new.stateHeartbeatSeconds * 1_000)
                }
            }
        ))
        let control: ControlServer
        do {
            let reset = FactoryReset(registration: registration, gnss: gnss, privacy: privacy, configuredPrivacy: config.privacy,
                                     outbox: outbox, vin: vin, logger: logger)
            control = try ControlServer(path: config.controlSocket, logger: logger) { [gnss] request in
                ControlCommands.handle(request, bus: bus, profile: profile, eCall: eCall, outbox: outbox, gnss: gnss, privacy: privacy,
                                       registration: registration, reset: reset, supervisor: supervisor,
                                       running: running, capabilities: capabilities, faultInjection: config.faultInjection)
            }
        } catch {
            channel.close()
            throw StartupError(kind: .cantCreate, message: error.description)
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: bus, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup),
            .init(service: events),
            .init(service: control),
            // The outbox before the eCall: the group stops services in reverse order, so a call
            // that ends during a stop still hands its report to a running outbox.
            .init(service: outbox),
            .init(service: eCall),
            // After the outbox: the group stops services in reverse order, so the last state
            // is handed over before the outbox closes.
            .init(service: stateService),
            .init(service: capabilities),
            .init(service: remote),
            .init(service: buttons),
        ]
        if let gnss { services.append(.init(service: gnss)) }
        if config.transmitStatus {
            services.append(.init(service: StatusTransmitter(bus: bus, logger: logger) {
                let state = Double(eCall.phase.load(ordering: .relaxed))
                // Lamp: red while a self-test check fails, green while a call is active.
                let lamp: Double = eCall.warning.load(ordering: .relaxed) ? 2 : (state == 0 ? 0 : 1)
                return ["TCU_eCall_State": state, "TCU_eCall_Lamp": lamp]
            }))
        }
        // Last: the group stops services in reverse order, so systemd hears STOPPING=1 first.
        services.append(.init(service: supervisor))
        var groupConfig = ServiceGroupConfiguration(services: services, logger: logger)
        groupConfig.gracefulShutdownSignals = [.sigterm, .sigint]
        let group = ServiceGroup(configuration: groupConfig)
        logger.notice("telematicsd started", metadata: [
            "vehicle.vin": "\(profile.vin)", "can.source": "\(config.source)",
            "can.dbc": "\(config.dbcPath)", "can.messages": "\(setup.database.messages.count)",
            "control.socket": "\(config.controlSocket)",
        ])
        do {
            try await group.run()
        } catch {
            logger.error("service group ended with an error", metadata: ["error": "\(error)"])
        }
        logger.notice("telematicsd stopped")
    }

    /// What systemd shows as the unit's status: the bus, the backend link, the eCall.
    static func statusLine(bus: VehicleBusService, outbox: OutboxService, eCall: ECallService) -> String {
        let b = bus.busReport()
        // What the unit is doing, not counters: systemd shows the line, and it is sent when it changes.
        var line = "CAN \(b["activity"]?.stringValue ?? "?")"
        let o = outbox.report()
        if let e = o["error"]?.stringValue {
            line += "; outbox unavailable (\(e))"
        } else {
            let waiting = o["waiting"]?.objectValue?.reduce(0.0) { $0 + ($1.1.numberValue ?? 0) } ?? 0
            line += "; outbox \(Int(waiting)) waiting"
        }
        if let link = o["backend"] {
            line += link["connected"]?.boolValue == true ? ", backend connected" : ", backend unreachable"
        }
        line += "; eCall \(eCall.phaseNow)"
        return line
    }

    /// Reads the configuration again (SIGHUP). An invalid file changes nothing; a valid one
    /// changes what can change at run time, and the log says which sections need a restart.
    /// Returns nil when applied, otherwise why not.
    static func reloadConfiguration(path: String, running: RunningConfiguration, logLevelFixed: Bool, logger: Logger,
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
            JournalLogHandler.level = level
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
    func report() -> JSON {
        let c = value.withLock { $0 }
        return .object([
            ("log.level", .string(c.logLevel.rawValue)), ("backend.state-interval-ms", .number(Double(c.stateIntervalMs))),
            ("backend.state-heartbeat-s", .number(Double(c.stateHeartbeatSeconds))),
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
            LoopMonitor.shared.injectHang(loop)
            return .object([("ok", .bool(true))])
        case .status:
            let (state, busReport) = bus.report()
            var o: [(String, JSON)] = [("ok", .bool(true)), ("vehicle", profile.json), ("bus", busReport)]
            if let privacy { o.append(("privacy", .string(privacy.current.rawValue))) }
            if let registration { o.append(("registration", registration.current.json)) }
            if let capabilities { o.append(("capabilities", capabilities.current())) }
            if let eCall { o.append(("ecall", eCall.report())) }
            if let outbox { o.append(("outbox", outbox.report())) }
            if let supervisor { o.append(("health", supervisor.report())) }
            if let running { o.append(("configuration", running.report())) }
            if let gnss {
                let (g, p) = gnss.report()
                o.append(("gnss", g))
                o.append(("parking", p))
            } else {
                o.append(("gnss", .object([("fitted", .bool(false))])))
            }
            o.append(("state", state))
            return .object(o)
        case .eCall(let action):
            guard let eCall else { return failure("the eCall service is not running") }
            switch action {
            case .test:
                eCall.requestTest()
                return .object([("ok", .bool(true))])
            case .cancel:
                return eCall.requestCancel()
            case .status:
                return .object([("ok", .bool(true)), ("ecall", eCall.report())])
            }
        case .factoryReset:
            guard let reset else { return failure("the factory reset is not available") }
            return reset.perform()
        case .register(let code):
            guard let registration else { return failure("registration is not available") }
            return registration.register(code: code)
        case .createAccount(let email, let password, let spin):
            guard let registration else { return failure("registration is not available") }
            return registration.createAccount(email: email, password: password, spin: spin)
        case .addCar(let email, let password, let accepted):
            guard let registration else { return failure("registration is not available") }
            return registration.addCarAndRegister(email: email, password: password, acceptedTerms: accepted)
        case .renewLicence(let package, let years):
            guard let registration else { return failure("registration is not available") }
            return registration.renew(package: package, years: years)
        case .privacy(let mode):
            guard let privacy else { return failure("the privacy setting is not available") }
            if let mode { privacy.set(mode) }
            return .object([("ok", .bool(true)), ("privacy", .string(privacy.current.rawValue))])
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
