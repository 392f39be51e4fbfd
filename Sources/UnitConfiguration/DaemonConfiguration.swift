import TelematicsCore

/// The daemon's configuration, validated: every error names the key and the line.
public struct DaemonConfiguration: Sendable, Equatable {
    /// Where frames come from.
    public enum CANSource: Sendable, Equatable, CustomStringConvertible {
        /// A SocketCAN interface (can0, vcan0).
        case socketCAN(interface: String)
        /// A `candump -l` log, replayed.
        case candumpLog(path: String)
        /// The software bus shared with the simulated car (`tcu-car --bus logbus:DIR`) on a
        /// host without kernel CAN: two candump logs in DIR, each side appending to its own
        /// and following the other's.
        case logBus(directory: String)

        public static func parse(_ text: String) -> CANSource? {
            if text.hasPrefix("socketcan:") {
                let iface = String(text.dropFirst("socketcan:".count))
                // IFNAMSIZ is 16 including the terminating NUL.
                guard !iface.isEmpty, iface.utf8.count < 16, !iface.contains("/"), !iface.contains(" ") else { return nil }
                return .socketCAN(interface: iface)
            }
            if text.hasPrefix("candump:") {
                let path = String(text.dropFirst("candump:".count))
                return path.isEmpty ? nil : .candumpLog(path: path)
            }
            if text.hasPrefix("logbus:") {
                let dir = String(text.dropFirst("logbus:".count))
                return dir.isEmpty ? nil : .logBus(directory: dir)
            }
            return nil
        }

        /// A live bus (no replay options apply).
        public var isLive: Bool {
            if case .candumpLog = self { return false }
            return true
        }

        public var description: String {
            switch self {
            case .socketCAN(let i): "socketcan:\(i)"
            case .candumpLog(let p): "candump:\(p)"
            case .logBus(let d): "logbus:\(d)"
            }
        }
    }

    public enum ReplaySpeed: String, Sendable, Equatable {
        /// Frames are released at the gaps the log recorded.
        case original
        /// As fast as the daemon can take them; the log's own clock drives staleness.
        case fast
    }

    public enum LogLevel: String, Sendable, Equatable, CaseIterable {
        case trace, debug, info, notice, warning, error, critical
    }

    public var source: CANSource
    public var dbcPath: String
    public var profilePath: String
    public var replay: ReplaySpeed = .original
    public var replayLoop = false
    /// Read a candump log live as it grows (`tail -f`): frames appended after the start by
    /// another program (`candump -L can0 >> FILE` on a remote bus, or a test) arrive as they
    /// are written; what the file held before is skipped.
    public var follow = false
    /// Stop the daemon when a replayed log ends (for benches and tests).
    public var exitAtEndOfLog = false
    public var silenceTimeoutMs: Int64 = 2000
    public var transmitStatus = true
    /// Where `tcuctl` reaches the daemon.
    public var controlSocket: String
    /// Lets the control socket make a main loop hang, to test the watchdog. Never on a real unit.
    public var faultInjection = false
    public var logLevel: LogLevel = .info
    /// Optional candump log of every frame the daemon transmits (any source).
    public var transmitLogPath: String?
    /// The eCall's link to the network (simulator): `HOST:PORT`.
    public var eCallLink = Endpoint(host: "127.0.0.1", port: 5061)
    /// How the eCall reaches the network: the circuit-switched link, NG-eCall over SIP, or SIP
    /// first with the circuit-switched link when IMS is not available.
    public enum ECallTransportChoice: String, Sendable, Equatable {
        case circuitSwitched = "circuit-switched", ng, ngFirst = "ng-first"
    }
    public var eCallTransport = ECallTransportChoice.circuitSwitched
    /// NG-eCall: the SIP user agent's local address (UDP), where the PSAP's call-back comes.
    public var eCallSIPLocal = Endpoint(host: "127.0.0.1", port: 5070)
    /// NG-eCall: the outbound proxy (P-CSCF, or an emergency routing proxy), `sip:HOST:PORT`.
    public var eCallSIPProxy: String?
    /// NG-eCall: the domain of the unit's address of record, `sip:VIN@DOMAIN`.
    public var eCallSIPDomain = "ecall.invalid"
    /// NG-eCall: where a test call goes (it carries the MSD, to a non-emergency URI).
    public var eCallSIPTestURI = "sip:ecall-test@ecall.invalid"
    /// NG-eCall: how often the proxy is asked whether the network is there.
    public var eCallSIPProbeIntervalMs: Int64 = 5_000
    /// NG-eCall: a call whose PSAP sends no voice for this long has dropped (0: never).
    public var eCallSIPMediaTimeoutMs: Int64 = 10_000
    /// The eCall journal (resume after a crash of the daemon); kept in the state directory.
    public var eCallJournal = "/var/lib/telematicsd/ecall.journal"
    public var eCall = ECallConfiguration()
    /// A stop during an eCall waits this long for the call to end.
    public var eCallShutdownGraceMs: Int64 = 60_000
    /// The eCall thread's SCHED_FIFO priority (0: the normal policy).
    public var eCallRealtimePriority: Int64 = 10
    /// The durable outbox (SQLite) and its size bound.
    public var outboxPath = "/var/lib/telematicsd/outbox.db"
    public var outboxMaximumBytes: Int64 = 64 << 20
    /// Free space kept on the outbox's file system (nil: a quarter of it, at most 2 MiB).
    public var outboxDiskReserveBytes: Int64?
    /// The backend's MQTT broker, `HOST:PORT`; nil: nothing is sent (the outbox keeps all).
    public var broker: Endpoint?
    public var brokerKeepaliveSeconds: Int64 = 10
    /// QoS 1 messages in flight at once.
    public var brokerWindow: Int64 = 64
    public var tlsCA: String?
    public var tlsCertificate: String?
    public var tlsKey: String?
    /// The backend's Ed25519 public key (32 bytes): the registration and licence answers the
    /// car acts on must carry its signature (`tcu-backend keys` prints it).
    public var answerKey: [UInt8]?
    /// gpsd, `HOST:PORT`; nil: the unit has no GNSS (the eCall sends "position unknown").
    public var gpsd: Endpoint?
    /// The fix filter (the configuration's defaults: a direction needs 5 km/h, beyond 360 km/h a jump is an outlier).
    public var gnssFilter: GNSSFilter.Configuration = {
        var f = GNSSFilter.Configuration()
        f.minimumSpeedForDirection = 5 / 3.6
        f.maximumPlausibleSpeed = 360 / 3.6
        return f
    }()
    /// The parking position, kept across restarts.
    public var parkingFile = "/var/lib/telematicsd/parking.json"
    /// The privacy level until the user chooses one in the car.
    public var privacy = PrivacyMode.shareMyPosition
    /// Where the car's settings (the user's privacy choice) are kept.
    public var settingsFile = "/var/lib/telematicsd/settings.json"
    /// The car's registration (enrolment) and its wrong-code lock.
    public var registrationFile = "/var/lib/telematicsd/registration.json"
    /// How long the car waits for the backend's answer to a pairing code.
    public var registrationTimeoutMs: Int64 = 10_000
    /// A changed state block is sent at most this often.
    public var stateIntervalMs: Int64 = 1_000
    /// Every block is sent again this often, changed or not.
    public var stateHeartbeatSeconds: Int64 = 900
    /// How long a remote command waits for the status frames to confirm it.
    public var remoteConfirmTimeoutMs: Int64 = 10_000
    /// Remote wake-ups the car takes per UTC day (each costs the 12 V battery).
    public var wakeUpsPerDay: Int64 = 10

    /// The sections and their keys, from the table (the unknown-key error lists them).
    public static var knownKeys: [String: Set<String>] {
        var known: [String: Set<String>] = [:]
        for k in keys { known[k.section, default: []].insert(k.name) }
        return known
    }

    /// Parses and validates; relative paths are taken from `baseDirectory` (the file's folder).
    public static func parse(_ text: String, source: String? = nil, baseDirectory: String = ".") throws(ParseError) -> DaemonConfiguration {
        let f = try KeyValueFile.parse(text, source: source)
        let table = keys
        try f.checkKnown(knownKeys)
        for k in table where k.required { _ = try f.required(k.section, k.name) }
        let reader = ConfigurationReader(file: f, baseDirectory: baseDirectory)
        var c = defaults
        for k in table {
            if let e = f.entry(k.section, k.name) { try k.apply(&c, e, reader) }
        }
        // What holds between keys.
        if (c.tlsCertificate == nil) != (c.tlsKey == nil) {
            throw f.error(f.entry("backend", "tls-cert") ?? f.entry("backend", "tls-key")!, "tls-cert and tls-key go together")
        }
        if c.eCallTransport != .circuitSwitched, c.eCallSIPProxy == nil {
            throw f.error(f.entry("ecall", "transport")!, "transport = \(c.eCallTransport.rawValue) needs sip-proxy (the SIP URI of the outbound proxy)")
        }
        if c.replayLoop, c.exitAtEndOfLog {
            throw f.error(f.entry("can", "loop")!, "loop and exit-at-end cannot both be true")
        }
        if c.follow, c.replayLoop || c.exitAtEndOfLog {
            throw f.error(f.entry("can", "follow")!, "follow never reaches the end: not with loop or exit-at-end")
        }
        if c.source.isLive,
           let e = f.entry("can", "replay") ?? f.entry("can", "loop") ?? f.entry("can", "exit-at-end") ?? f.entry("can", "follow") {
            // transmit-log applies to both sources; these only to a log.
            throw f.error(e, "only applies to a candump: source")
        }
        return c
    }
}

// MARK: - Reload

extension DaemonConfiguration {
    /// What a reload (SIGHUP) changes in a running daemon; everything else needs a restart.
    public static var reloadableKeys: [String] { keys.filter(\.reloadable).map(\.id) }

    /// The reloadable keys whose values differ in `new`.
    public func reloadableChanges(to new: DaemonConfiguration) -> [String] {
        Self.keys.filter { $0.reloadable && !$0.same(self, new) }.map(\.id)
    }

    /// Takes `new`'s reloadable values, all but those named in `except`; the rest stays as it runs.
    public mutating func takeReloadableValues(from new: DaemonConfiguration, except: Set<String> = []) {
        for k in Self.keys where k.reloadable && !except.contains(k.id) { k.take(&self, new) }
    }

    /// The sections of `new` with changes that only a restart applies, in the table's order.
    public func sectionsNeedingRestart(for new: DaemonConfiguration) -> [String] {
        let table = Self.keys
        var a = self
        // The reloadable values take no part in the comparison.
        for k in table where k.reloadable { k.take(&a, new) }
        var sections: [String] = []
        for k in table where !k.same(a, new) && !sections.contains(k.section) { sections.append(k.section) }
        // Anything the table does not cover still counts: a new field must not slip through a reload.
        if sections.isEmpty, a != new { sections.append("(other)") }
        return sections
    }
}
