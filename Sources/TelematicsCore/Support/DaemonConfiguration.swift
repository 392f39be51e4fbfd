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
    public var eCallLink = "127.0.0.1:5061"
    /// The eCall journal (resume after a crash of the daemon); kept in the state directory.
    public var eCallJournal = "/var/lib/telematicsd/ecall.journal"
    public var eCall = ECallConfiguration()
    /// A stop during an eCall waits this long for the call to end.
    public var eCallShutdownGraceMs: Int64 = 60_000
    /// The durable outbox (SQLite) and its size bound.
    public var outboxPath = "/var/lib/telematicsd/outbox.db"
    public var outboxMaximumBytes: Int64 = 64 << 20
    /// Free space kept on the outbox's file system (nil: a quarter of it, at most 2 MiB).
    public var outboxDiskReserveBytes: Int64?
    /// The backend's MQTT broker, `HOST:PORT`; nil: nothing is sent (the outbox keeps all).
    public var broker: String?
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
    public var gpsd: String?
    public var gnssFilter = GNSSFilter.Configuration()
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

    public static let knownKeys: [String: Set<String>] = [
        "can": ["source", "dbc", "replay", "loop", "follow", "exit-at-end", "silence-timeout-ms", "transmit-status", "transmit-log"],
        "vehicle": ["profile"],
        "control": ["socket", "fault-injection"],
        "log": ["level"],
        "outbox": ["path", "max-bytes", "disk-reserve-bytes"],
        "backend": ["broker", "keepalive-s", "window", "tls-ca", "tls-cert", "tls-key", "answer-key", "state-interval-ms", "state-heartbeat-s"],
        "privacy": ["mode", "settings-file"],
        "registration": ["file", "timeout-ms"],
        "remote": ["confirm-timeout-ms", "wake-ups-per-day"],
        "gnss": ["gpsd", "max-age-ms", "trust-radius-m", "min-speed-kmh", "max-speed-kmh", "parking-file"],
        "ecall": ["link", "journal", "t1-ms", "t2-ms", "t3-ms", "t5-ms", "t6-ms", "t7-ms", "t9-ms", "t10-ms",
                  "redial-interval-ms", "drop-redial-window-ms", "drop-redial-interval-ms", "maximum-attempts",
                  "push-mode", "ecall-only", "emergency-number", "test-number", "shutdown-grace-ms"],
    ]

    /// Parses and validates; relative paths are taken from `baseDirectory` (the file's folder).
    public static func parse(_ text: String, source: String? = nil, baseDirectory: String = ".") throws(ParseError) -> DaemonConfiguration {
        let f = try KeyValueFile.parse(text, source: source)
        try f.checkKnown(knownKeys)
        func path(_ v: String) -> String {
            v.hasPrefix("/") ? v : (baseDirectory == "." ? v : baseDirectory + "/" + v)
        }
        let srcEntry = try f.required("can", "source")
        guard var src = CANSource.parse(srcEntry.value) else {
            throw f.error(srcEntry, "expected socketcan:IFACE (at most 15 characters), candump:FILE or logbus:DIR, found '\(srcEntry.value)'")
        }
        if case .candumpLog(let p) = src { src = .candumpLog(path: path(p)) }
        if case .logBus(let d) = src { src = .logBus(directory: path(d)) }
        let dbc = try f.required("can", "dbc")
        let profile = try f.required("vehicle", "profile")
        var c = DaemonConfiguration(
            source: src, dbcPath: path(dbc.value), profilePath: path(profile.value),
            controlSocket: path(f.string("control", "socket") ?? "/run/telematicsd/control.sock")
        )
        c.faultInjection = try f.bool("control", "fault-injection", default: false)
        if let e = f.entry("can", "replay") {
            guard let r = ReplaySpeed(rawValue: e.value) else { throw f.error(e, "expected original or fast, found '\(e.value)'") }
            c.replay = r
        }
        c.replayLoop = try f.bool("can", "loop", default: false)
        c.follow = try f.bool("can", "follow", default: false)
        c.exitAtEndOfLog = try f.bool("can", "exit-at-end", default: false)
        c.silenceTimeoutMs = try f.integer("can", "silence-timeout-ms", default: 2000, range: 100...3_600_000)
        c.transmitStatus = try f.bool("can", "transmit-status", default: true)
        c.transmitLogPath = f.string("can", "transmit-log").map(path)
        if let e = f.entry("log", "level") {
            guard let l = LogLevel(rawValue: e.value) else {
                throw f.error(e, "expected one of \(LogLevel.allCases.map(\.rawValue).joined(separator: ", ")), found '\(e.value)'")
            }
            c.logLevel = l
        }
        if let e = f.entry("ecall", "link") {
            let parts = e.value.split(separator: ":")
            guard parts.count >= 2, let port = UInt16(parts.last!), port > 0 else {
                throw f.error(e, "expected HOST:PORT, found '\(e.value)'")
            }
            c.eCallLink = e.value
        }
        if let j = f.string("ecall", "journal") { c.eCallJournal = path(j) }
        if let o = f.string("outbox", "path") { c.outboxPath = path(o) }
        c.outboxMaximumBytes = try f.integer("outbox", "max-bytes", default: c.outboxMaximumBytes, range: 65_536...(1 << 40))
        if f.entry("outbox", "disk-reserve-bytes") != nil {
            c.outboxDiskReserveBytes = try f.integer("outbox", "disk-reserve-bytes", default: 0, range: 0...(1 << 40))
        }
        if let e = f.entry("backend", "broker") {
            let parts = e.value.split(separator: ":")
            guard parts.count == 2, !parts[0].isEmpty, let port = Int(parts[1]), (1...65535).contains(port) else {
                throw f.error(e, "expected HOST:PORT, found '\(e.value)'")
            }
            c.broker = e.value
        }
        c.brokerKeepaliveSeconds = try f.integer("backend", "keepalive-s", default: 10, range: 5...600)
        c.brokerWindow = try f.integer("backend", "window", default: c.brokerWindow, range: 1...1000)
        c.stateIntervalMs = try f.integer("backend", "state-interval-ms", default: c.stateIntervalMs, range: 0...3_600_000)
        c.stateHeartbeatSeconds = try f.integer("backend", "state-heartbeat-s", default: c.stateHeartbeatSeconds, range: 10...86_400)
        c.tlsCA = f.string("backend", "tls-ca").map(path)
        c.tlsCertificate = f.string("backend", "tls-cert").map(path)
        c.tlsKey = f.string("backend", "tls-key").map(path)
        if let e = f.entry("backend", "answer-key") {
            guard let key = bytes(fromHex: e.value), key.count == 32 else {
                throw f.error(e, "expected the backend's public key: 64 hex digits (tcu-backend keys prints it)")
            }
            c.answerKey = key
        }
        if (c.tlsCertificate == nil) != (c.tlsKey == nil) {
            throw f.error(f.entry("backend", "tls-cert") ?? f.entry("backend", "tls-key")!, "tls-cert and tls-key go together")
        }
        if let e = f.entry("privacy", "mode") {
            guard let m = PrivacyMode(word: e.value) else { throw f.error(e, "expected share, use or offline, found '\(e.value)'") }
            c.privacy = m
        }
        if let p = f.string("privacy", "settings-file") { c.settingsFile = path(p) }
        if let p = f.string("registration", "file") { c.registrationFile = path(p) }
        c.registrationTimeoutMs = try f.integer("registration", "timeout-ms", default: c.registrationTimeoutMs, range: 100...120_000)
        c.remoteConfirmTimeoutMs = try f.integer("remote", "confirm-timeout-ms", default: c.remoteConfirmTimeoutMs, range: 100...120_000)
        c.wakeUpsPerDay = try f.integer("remote", "wake-ups-per-day", default: c.wakeUpsPerDay, range: 0...1_000)
        if let e = f.entry("gnss", "gpsd") {
            let parts = e.value.split(separator: ":")
            guard parts.count == 2, !parts[0].isEmpty, let port = Int(parts[1]), (1...65535).contains(port) else {
                throw f.error(e, "expected HOST:PORT (gpsd listens on 2947), found '\(e.value)'")
            }
            c.gpsd = e.value
        }
        c.gnssFilter.maximumAgeMs = try f.integer("gnss", "max-age-ms", default: c.gnssFilter.maximumAgeMs, range: 100...600_000)
        c.gnssFilter.trustRadiusMeters = Double(try f.integer("gnss", "trust-radius-m", default: 150, range: 1...100_000))
        c.gnssFilter.minimumSpeedForDirection = Double(try f.integer("gnss", "min-speed-kmh", default: 5, range: 0...100)) / 3.6
        c.gnssFilter.maximumPlausibleSpeed = Double(try f.integer("gnss", "max-speed-kmh", default: 360, range: 10...2_000)) / 3.6
        if let p = f.string("gnss", "parking-file") { c.parkingFile = path(p) }
        var ec = ECallConfiguration()
        ec.t1Ms = try f.integer("ecall", "t1-ms", default: ec.t1Ms, range: 0...60_000)
        ec.t2Ms = try f.integer("ecall", "t2-ms", default: ec.t2Ms, range: 1...7_200_000)
        ec.t3Ms = try f.integer("ecall", "t3-ms", default: ec.t3Ms, range: 1...60_000)
        ec.t5Ms = try f.integer("ecall", "t5-ms", default: ec.t5Ms, range: 1...60_000)
        ec.t6Ms = try f.integer("ecall", "t6-ms", default: ec.t6Ms, range: 1...60_000)
        ec.t7Ms = try f.integer("ecall", "t7-ms", default: ec.t7Ms, range: 1...120_000)
        ec.t9Ms = try f.integer("ecall", "t9-ms", default: ec.t9Ms, range: 1...86_400_000)
        ec.t10Ms = try f.integer("ecall", "t10-ms", default: ec.t10Ms, range: 1...86_400_000)
        ec.redialIntervalMs = try f.integer("ecall", "redial-interval-ms", default: ec.redialIntervalMs, range: 0...600_000)
        ec.dropRedialWindowMs = try f.integer("ecall", "drop-redial-window-ms", default: ec.dropRedialWindowMs, range: 0...600_000)
        ec.dropRedialIntervalMs = try f.integer("ecall", "drop-redial-interval-ms", default: ec.dropRedialIntervalMs, range: 0...600_000)
        if f.entry("ecall", "maximum-attempts") != nil {
            ec.maximumAttempts = Int(try f.integer("ecall", "maximum-attempts", default: 10, range: 1...1000))
        }
        ec.pushMode = try f.bool("ecall", "push-mode", default: true)
        ec.eCallOnly = try f.bool("ecall", "ecall-only", default: false)
        ec.emergencyNumber = f.string("ecall", "emergency-number") ?? ec.emergencyNumber
        ec.testNumber = f.string("ecall", "test-number") ?? ec.testNumber
        c.eCall = ec
        c.eCallShutdownGraceMs = try f.integer("ecall", "shutdown-grace-ms", default: c.eCallShutdownGraceMs, range: 0...600_000)
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
    public static let reloadableKeys = ["log.level", "backend.state-interval-ms", "backend.state-heartbeat-s"]

    /// The reloadable keys whose values differ in `new`.
    public func reloadableChanges(to new: DaemonConfiguration) -> [String] {
        var keys: [String] = []
        if logLevel != new.logLevel { keys.append("log.level") }
        if stateIntervalMs != new.stateIntervalMs { keys.append("backend.state-interval-ms") }
        if stateHeartbeatSeconds != new.stateHeartbeatSeconds { keys.append("backend.state-heartbeat-s") }
        return keys
    }

    /// The sections of `new` with changes that only a restart applies, in file order.
    public func sectionsNeedingRestart(for new: DaemonConfiguration) -> [String] {
        var a = self
        // The reloadable values take no part in the comparison.
        a.logLevel = new.logLevel
        a.stateIntervalMs = new.stateIntervalMs
        a.stateHeartbeatSeconds = new.stateHeartbeatSeconds
        let b = new
        var sections: [String] = []
        if a.source != b.source || a.dbcPath != b.dbcPath || a.replay != b.replay || a.replayLoop != b.replayLoop
            || a.follow != b.follow || a.exitAtEndOfLog != b.exitAtEndOfLog || a.silenceTimeoutMs != b.silenceTimeoutMs
            || a.transmitStatus != b.transmitStatus || a.transmitLogPath != b.transmitLogPath { sections.append("can") }
        if a.profilePath != b.profilePath { sections.append("vehicle") }
        if a.controlSocket != b.controlSocket || a.faultInjection != b.faultInjection { sections.append("control") }
        if a.outboxPath != b.outboxPath || a.outboxMaximumBytes != b.outboxMaximumBytes
            || a.outboxDiskReserveBytes != b.outboxDiskReserveBytes { sections.append("outbox") }
        if a.broker != b.broker || a.brokerKeepaliveSeconds != b.brokerKeepaliveSeconds || a.brokerWindow != b.brokerWindow
            || a.tlsCA != b.tlsCA || a.tlsCertificate != b.tlsCertificate || a.tlsKey != b.tlsKey || a.answerKey != b.answerKey { sections.append("backend") }
        if a.privacy != b.privacy || a.settingsFile != b.settingsFile { sections.append("privacy") }
        if a.registrationFile != b.registrationFile || a.registrationTimeoutMs != b.registrationTimeoutMs { sections.append("registration") }
        if a.remoteConfirmTimeoutMs != b.remoteConfirmTimeoutMs || a.wakeUpsPerDay != b.wakeUpsPerDay { sections.append("remote") }
        if a.gpsd != b.gpsd || a.gnssFilter != b.gnssFilter || a.parkingFile != b.parkingFile { sections.append("gnss") }
        if a.eCallLink != b.eCallLink || a.eCallJournal != b.eCallJournal || a.eCall != b.eCall
            || a.eCallShutdownGraceMs != b.eCallShutdownGraceMs { sections.append("ecall") }
        // Anything not covered above still counts: a new field must not slip through a reload.
        if sections.isEmpty, a != b { sections.append("(other)") }
        return sections
    }
}
