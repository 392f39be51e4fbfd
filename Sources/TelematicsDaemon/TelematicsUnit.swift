import UnitConfiguration
import Control
import ECallLink
import ECallSIP
import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// One car's connectivity unit, whole: its bus, eCall, outbox and backend link, GNSS,
/// registration, remote commands, control socket and supervision, built from a loaded setup.
/// Nothing in it is the process's (no shared monitor, log level or signal handling), so a
/// process may run as many as it wants; the daemon runs one, and routes its signals to it.
public final class TelematicsUnit: Sendable {
    private let group: ServiceGroup
    private let eCall: ECallService
    private let supervisor: Supervisor
    private let channel: any CANChannel
    private let logger: Logger
    private let startedMetadata: Logger.Metadata

    /// Builds every service (the CAN interface opened, the control socket bound); `run` starts them.
    /// `logLevelFixed`: the level came from the command line, and a reload leaves it alone.
    /// `eCallThread`: where the eCall's loop runs (nil: the cooperative pool); units may share one.
    /// `clocks`: every service's time (a test may move it).
    public init(_ setup: LoadedSetup, log: LogOutput, logLevelFixed: Bool = false, eCallThread: ThreadExecutor? = nil,
                clocks: Clocks = .system) throws(StartupError) {
        let logger = log.logger(label: "telematicsd")
        if let scheduling = eCallThread?.scheduling, case .refused = scheduling {
            logger.warning("the eCall thread runs at normal priority: a loaded machine may delay a crash's call",
                           metadata: ["ecall.scheduling": "\(scheduling)"])
        }
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
            now = clocks.wall
            interfaceName = iface
        case .candumpLog(let path):
            let replay: CandumpReplayChannel
            do {
                replay = try CandumpReplayChannel(
                    path: path, realtime: config.replay == .original && !config.follow, loop: config.replayLoop, follow: config.follow,
                    clocks: clocks
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
            now = clocks.wall
        }
        // The car's main loops beat here; the supervisor feeds systemd's watchdog from it.
        let monitor = LoopMonitor(clock: { clocks.monotonicMs })
        let bus = VehicleBusService(
            channel: channel, tracker: setup.tracker, now: now, logger: logger,
            exitAtEndOfLog: config.exitAtEndOfLog, interfaceName: interfaceName, transmitLog: transmitLog, monitor: monitor
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
            logger: logger, uplink: uplink, monitor: monitor, clocks: clocks
        )
        let privacy = PrivacySetting(path: config.settingsFile, initial: config.privacy, logger: logger)
        privacy.observe { outbox.setPrivacy($0) }
        let registration = CarRegistration(path: config.registrationFile, timeoutMs: config.registrationTimeoutMs, outbox: outbox,
                                           privacy: privacy, profile: profile, logger: logger, answerKey: config.answerKey, clocks: clocks)
        // Nothing for the backend before the owner registered the car and accepted the terms,
        // then each service's messages only while its licence runs (BackendConsent).
        outbox.gate { m in BackendConsent.verdict(for: m, registration: registration.current, nowMs: clocks.wallMs) }
        let events = VehicleEventService(bus: bus, outbox: outbox, vin: profile.vin.value)
        let vin = profile.vin.value
        let eCall = ECallService(
            configuration: config.eCall, linkEndpoint: config.eCallLink, bus: bus, profile: profile,
            logger: logger, monotonic: { clocks.monotonicMs },
            utcNow: { UInt32(clamping: clocks.wallMs / 1_000) },
            journalPath: config.eCallJournal, transport: Self.eCallTransport(config, vin: profile.vin.value),
            gnssFitted: config.gpsd != nil, shutdownGraceMs: config.eCallShutdownGraceMs,
            monitor: monitor, executor: eCallThread,
            onReport: { report in
                // To the backend only for a registered car (and where privacy lets it out); the
                // call itself asked for nothing.
                let now = clocks.wallMs
                let m = report.outboxMessage(vin: vin, id: messageID(unixMs: now), nowMs: now)
                guard BackendConsent.verdict(for: m, registration: registration.current, nowMs: now) == .allowed else {
                    logger.info("the eCall report stays in the car: it is not registered")
                    return
                }
                outbox.submit(m)
            }
        )
        var gnss: GNSSService?
        if let gpsd = config.gpsd {
            var g = GNSSService.Configuration(host: gpsd.host, port: "\(gpsd.port)", parkingFile: config.parkingFile)
            g.filter = config.gnssFilter
            gnss = GNSSService(
                configuration: g, bus: bus, logger: logger, clocks: clocks, eCallPositions: { eCall.record($0) },
                onParking: { position in
                    let now = clocks.wallMs
                    // A remote service: only for a registered car whose licence has it.
                    guard registration.current.allows("parkingPosition", nowMs: now) else { return }
                    // "Use my position": the backend hears there is none to tell.
                    let shared = privacy.current == .shareMyPosition ? position : nil
                    var m = stateMessage(block: "parking", values: shared?.json ?? .null,
                                         capturedAtMs: shared.map { $0.parkedAt.nanoseconds / 1_000_000 } ?? now,
                                         vin: vin, id: messageID(unixMs: now))
                    m.carriesPosition = shared != nil
                    outbox.submit(m)
                }
            )
        }
        let stateService = VehicleStateService(bus: bus, outbox: outbox, vin: vin, minimumIntervalMs: config.stateIntervalMs,
                                               heartbeatMs: config.stateHeartbeatSeconds * 1_000, now: clocks.monotonic)
        let capabilities = CapabilityService(registration: registration, privacy: privacy, outbox: outbox, vin: vin, clocks: clocks)
        let remote = RemoteCommandService(bus: bus, registration: registration, privacy: privacy, outbox: outbox, vin: vin,
                                          logger: logger, confirmTimeoutMs: config.remoteConfirmTimeoutMs,
                                          wakeUpsPerDay: config.wakeUpsPerDay, onWakeUp: {
                                              stateService.resendAll()
                                              capabilities.resend()
                                          }, clocks: clocks)
        outbox.onCommand { remote.receive($0) }
        let buttons = ServiceButtonService(bus: bus, outbox: outbox, registration: registration, privacy: privacy, gnss: gnss,
                                           vin: vin, logger: logger, clocks: clocks)
        registration.onGranted {
            // Registered, or the licence renewed: the backend gets the whole state now.
            stateService.resendAll()
            capabilities.resend()
        }
        privacy.observe(initially: false) { [gnss] mode in
            // A new level: the parking block says what may now be said; back online, the
            // backend gets the whole state again, for a registered car (a factory reset puts
            // the level back after it forgot the registration: nothing goes after the deletion).
            gnss?.resendParking()
            if mode.connects, registration.current.status == .completed {
                stateService.resendAll()
                capabilities.resend()
            }
        }
        let notifier = SystemdNotifier()
        let running = RunningConfiguration(config)
        let supervisor = Supervisor(notifier: notifier, monitor: monitor, logger: logger, clocks: clocks, hooks: .init(
            isReady: { outbox.hasTriedToOpen },
            status: { Daemon.statusLine(bus: bus, outbox: outbox, eCall: eCall) },
            probe: { eCall.probe() },
            reload: {
                Daemon.reloadConfiguration(path: setup.configPath, running: running, logLevelFixed: logLevelFixed, log: log, logger: logger) { new in
                    stateService.setIntervals(minimumIntervalMs: new.stateIntervalMs, heartbeatMs: new.stateHeartbeatSeconds * 1_000)
                }
            }
        ))
        let control: ControlServer
        do {
            let reset = FactoryReset(registration: registration, gnss: gnss, privacy: privacy, configuredPrivacy: config.privacy,
                                     outbox: outbox, state: stateService, vin: vin, logger: logger, clocks: clocks)
            control = try ControlServer(path: config.controlSocket, logger: logger, turn: { monitor.turn(.control, stop: $0) }) { [gnss] request in
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
        group = ServiceGroup(configuration: ServiceGroupConfiguration(services: services, logger: logger))
        self.eCall = eCall
        self.supervisor = supervisor
        self.channel = channel
        self.logger = logger
        startedMetadata = [
            "vehicle.vin": "\(profile.vin)", "can.source": "\(config.source)",
            "can.dbc": "\(config.dbcPath)", "can.messages": "\(setup.database.messages.count)",
            "control.socket": "\(config.controlSocket)",
            "ecall.scheduling": "\(eCallThread?.scheduling.description ?? "cooperative pool")",
        ]
    }

    /// Runs the services until a stop (or the end of a replayed log when configured).
    public func run() async {
        logger.notice("telematicsd started", metadata: startedMetadata)
        do {
            try await group.run()
        } catch {
            logger.error("service group ended with an error", metadata: ["error": "\(error)"])
        }
        logger.notice("telematicsd stopped")
    }

    /// Stops gracefully: an eCall in progress is finished first (within its grace time). A stop
    /// asked before `run` is remembered: the services start and stop at once.
    public func stop(reason: String) {
        logger.notice("stopping: \(reason)")
        Task { await group.triggerGracefulShutdown() }
    }

    /// A second stop: a call that holds the stop ends now (its journal keeps it).
    public func hurry() { eCall.stopNow() }

    /// Reads the configuration again (SIGHUP).
    public func reload() { supervisor.reload() }

    /// Gives up a unit that will never run: the CAN interface is closed.
    public func abandon() { channel.close() }

    /// The eCall's way to the network, as `[ecall] transport` says.
    static func eCallTransport(_ c: DaemonConfiguration, vin: String)
        -> (@escaping @Sendable (ECallLinkEvent) -> Void) -> any ECallTransport {
        let link = c.eCallLink
        let cs: (@escaping @Sendable (ECallLinkEvent) -> Void) -> any ECallTransport = {
            ECallLinkClient(endpoint: link, vin: vin, deliver: $0)
        }
        guard let proxy = c.eCallSIPProxy, c.eCallTransport != .circuitSwitched else { return cs }
        let settings = SIPSettings(local: c.eCallSIPLocal, proxy: proxy, domain: c.eCallSIPDomain, testURI: c.eCallSIPTestURI,
                                   probeIntervalMs: c.eCallSIPProbeIntervalMs, mediaTimeoutMs: c.eCallSIPMediaTimeoutMs,
                                   realtimePriority: c.eCallRealtimePriority > 0 ? Int32(c.eCallRealtimePriority) : nil)
        let ng: (@escaping @Sendable (ECallLinkEvent) -> Void) -> any ECallTransport = {
            SIPECallTransport(settings: settings, vin: vin, deliver: $0)
        }
        switch c.eCallTransport {
        case .circuitSwitched: return cs
        case .ng: return ng
        case .ngFirst: return { FallbackECallTransport(deliver: $0, primary: ng, secondary: cs) }
        }
    }
}
