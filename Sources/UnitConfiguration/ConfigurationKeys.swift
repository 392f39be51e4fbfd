import TelematicsCore

/// One key of the daemon's configuration file, and the one place that says everything about it:
/// its section and name, what its value looks like, its default, whether a reload (SIGHUP)
/// applies it, what it means, and how it is read into `DaemonConfiguration`. The table
/// (`DaemonConfiguration.keys`) drives the parser, the unknown-key error, the reload's diff and
/// the man page's CONFIGURATION section (`telematicsd --config-reference`).
public struct ConfigurationKey {
    public let section: String
    public let name: String
    /// What the value looks like, for people: `HOST:PORT`, `PATH`, `true|false`, `100..3600000`.
    public let form: String
    /// The value when the key is absent, for people (nil: none, or required).
    public let defaultText: String?
    public let required: Bool
    public let reloadable: Bool
    public let summary: String
    /// A valid value that is not the default (the table test changes each key to it).
    public let example: String
    /// Reads the entry into the configuration; errors name the line and the key.
    let apply: (inout DaemonConfiguration, KeyValueFile.Entry, ConfigurationReader) throws(ParseError) -> Void
    /// Whether two configurations hold the same value for this key.
    let same: (DaemonConfiguration, DaemonConfiguration) -> Bool
    /// Copies this key's value from another configuration (a reload takes the new reloadable values).
    let take: (inout DaemonConfiguration, DaemonConfiguration) -> Void

    public var id: String { "\(section).\(name)" }
}

/// What a key's reader needs besides its entry: the file (for errors) and the folder that
/// relative paths are taken from.
public struct ConfigurationReader {
    let file: KeyValueFile
    let baseDirectory: String

    func path(_ v: String) -> String {
        v.hasPrefix("/") ? v : (baseDirectory == "." ? v : baseDirectory + "/" + v)
    }

    func error(_ e: KeyValueFile.Entry, _ message: String) -> ParseError { file.error(e, message) }

    func integer(_ e: KeyValueFile.Entry, _ range: ClosedRange<Int64>) throws(ParseError) -> Int64 { try file.integer(e, range: range) }

    func bool(_ e: KeyValueFile.Entry) throws(ParseError) -> Bool { try file.bool(e) }

    /// `HOST:PORT` with a host and a port from 1 to 65535.
    func endpoint(_ e: KeyValueFile.Entry, hint: String = "") throws(ParseError) -> Endpoint {
        guard let endpoint = Endpoint.parse(e.value) else { throw error(e, "expected HOST:PORT\(hint), found '\(e.value)'") }
        return endpoint
    }
}

extension ConfigurationKey {
    typealias Config = DaemonConfiguration

    /// A key read by `read` into the value at `kp`.
    static func key<V: Equatable>(
        _ section: String, _ name: String, _ kp: WritableKeyPath<Config, V>, form: String, default defaultText: String? = nil,
        required: Bool = false, reloadable: Bool = false, example: String, _ summary: String,
        read: @escaping (KeyValueFile.Entry, ConfigurationReader) throws(ParseError) -> V
    ) -> ConfigurationKey {
        ConfigurationKey(
            section: section, name: name, form: form, defaultText: defaultText, required: required, reloadable: reloadable, summary: summary,
            example: example,
            apply: { (c: inout Config, e: KeyValueFile.Entry, r: ConfigurationReader) throws(ParseError) in c[keyPath: kp] = try read(e, r) },
            same: { $0[keyPath: kp] == $1[keyPath: kp] },
            take: { $0[keyPath: kp] = $1[keyPath: kp] })
    }

    static func integer(_ section: String, _ name: String, _ kp: WritableKeyPath<Config, Int64>, _ range: ClosedRange<Int64>,
                        reloadable: Bool = false, _ summary: String) -> ConfigurationKey {
        let d = Config.defaults[keyPath: kp]
        return key(section, name, kp, form: "\(range.lowerBound)..\(range.upperBound)", default: "\(d)", reloadable: reloadable,
                   example: "\(d == range.upperBound ? range.lowerBound : range.upperBound)", summary) { (e, r) throws(ParseError) in try r.integer(e, range) }
    }

    static func optionalInteger(_ section: String, _ name: String, _ kp: WritableKeyPath<Config, Int64?>, _ range: ClosedRange<Int64>,
                                _ summary: String) -> ConfigurationKey {
        key(section, name, kp, form: "\(range.lowerBound)..\(range.upperBound)", example: "\(range.lowerBound)", summary) { (e, r) throws(ParseError) in
            try r.integer(e, range)
        }
    }

    static func bool(_ section: String, _ name: String, _ kp: WritableKeyPath<Config, Bool>, _ summary: String) -> ConfigurationKey {
        let d = Config.defaults[keyPath: kp]
        return key(section, name, kp, form: "true|false", default: "\(d)", example: "\(!d)", summary) { (e, r) throws(ParseError) in try r.bool(e) }
    }

    static func path(_ section: String, _ name: String, _ kp: WritableKeyPath<Config, String>, required: Bool = false,
                     _ summary: String) -> ConfigurationKey {
        let d = Config.defaults[keyPath: kp]
        return key(section, name, kp, form: "PATH", default: d.isEmpty ? nil : d, required: required, example: "/srv/example/\(name)", summary) {
            (e, r) throws(ParseError) in r.path(e.value)
        }
    }

    static func optionalPath(_ section: String, _ name: String, _ kp: WritableKeyPath<Config, String?>, _ summary: String) -> ConfigurationKey {
        key(section, name, kp, form: "PATH", example: "/srv/example/\(name)", summary) { (e, r) throws(ParseError) in r.path(e.value) }
    }

    static func string(_ section: String, _ name: String, _ kp: WritableKeyPath<Config, String>, _ summary: String) -> ConfigurationKey {
        key(section, name, kp, form: "TEXT", default: Config.defaults[keyPath: kp], example: "999", summary) { (e, _) throws(ParseError) in e.value }
    }

    /// One of a fixed set of words.
    static func choice<V: Equatable>(_ section: String, _ name: String, _ kp: WritableKeyPath<Config, V>, _ words: [(String, V)],
                                     expected: String, reloadable: Bool = false, _ summary: String) -> ConfigurationKey {
        let d = words.first { $0.1 == Config.defaults[keyPath: kp] }?.0
        let other = words.first { $0.1 != Config.defaults[keyPath: kp] }!.0
        return key(section, name, kp, form: words.map(\.0).joined(separator: "|"), default: d, reloadable: reloadable, example: other, summary) { (e, r) throws(ParseError) in
            guard let v = words.first(where: { $0.0 == e.value })?.1 else { throw r.error(e, "expected \(expected), found '\(e.value)'") }
            return v
        }
    }
}

extension DaemonConfiguration {
    /// Every value that has a default, as the daemon runs without the key.
    public static let defaults = DaemonConfiguration(
        source: .candumpLog(path: ""), dbcPath: "", profilePath: "", controlSocket: "/run/telematicsd/control.sock")

    /// Every key of the configuration file, in the order the man page lists them.
    public static var keys: [ConfigurationKey] {
        typealias K = ConfigurationKey
        let msRange: ClosedRange<Int64> = 1...60_000
        return [
            K.key("can", "source", \.source, form: "socketcan:IFACE|candump:FILE|logbus:DIR", required: true, example: "candump:/srv/example.log",
                  "Where frames come from: a SocketCAN interface, a candump log replayed, or the software bus shared with the simulated car (tcu-car) where the kernel has no CAN.") { (e, r) throws(ParseError) in
                guard let s = CANSource.parse(e.value) else {
                    throw r.error(e, "expected socketcan:IFACE (at most 15 characters), candump:FILE or logbus:DIR, found '\(e.value)'")
                }
                switch s {
                case .candumpLog(let p): return .candumpLog(path: r.path(p))
                case .logBus(let d): return .logBus(directory: r.path(d))
                case .socketCAN: return s
                }
            },
            K.path("can", "dbc", \.dbcPath, required: true, "The DBC file that decodes the bus."),
            K.choice("can", "replay", \.replay, [("original", .original), ("fast", .fast)], expected: "original or fast",
                     "A candump log's timing: as recorded, or as fast as the daemon reads (the log's clock drives staleness)."),
            K.bool("can", "loop", \.replayLoop, "Replay a candump log again from its start when it ends."),
            K.bool("can", "follow", \.follow, "Read a candump log live as it grows (tail -f); what it held before is skipped."),
            K.bool("can", "exit-at-end", \.exitAtEndOfLog, "Stop the daemon when a replayed log ends (benches and tests)."),
            K.integer("can", "silence-timeout-ms", \.silenceTimeoutMs, 100...3_600_000, "Silence before the bus is reported silent."),
            K.bool("can", "transmit-status", \.transmitStatus, "Transmit the unit's TCU_Status frame."),
            K.optionalPath("can", "transmit-log", \.transmitLogPath, "A candump log of every frame the unit transmits."),
            K.path("vehicle", "profile", \.profilePath, required: true, "The vehicle profile: VIN, model, build date, country, propulsion, equipment."),
            K.path("control", "socket", \.controlSocket, "The control socket tcuctl talks to (mode 0660)."),
            K.bool("control", "fault-injection", \.faultInjection, "Lets the control socket make a main loop hang, to test a watchdog on a bench. Never on a real unit."),
            K.choice("log", "level", \.logLevel, LogLevel.allCases.map { ($0.rawValue, $0) },
                     expected: "one of \(LogLevel.allCases.map(\.rawValue).joined(separator: ", "))", reloadable: true,
                     "The lowest level logged (as --log-level)."),
            K.path("outbox", "path", \.outboxPath, "The durable outbox (SQLite)."),
            K.integer("outbox", "max-bytes", \.outboxMaximumBytes, 65_536...(1 << 40),
                      "The outbox's size bound; beyond it the lowest-priority unsent messages are evicted, never eCall reports or alarms."),
            K.optionalInteger("outbox", "disk-reserve-bytes", \.outboxDiskReserveBytes, 0...(1 << 40),
                              "Free space kept on the outbox's file system (default: a quarter of it, at most 2 MiB)."),
            K.key("backend", "broker", \.broker, form: "HOST:PORT", example: "broker.example:8883",
                  "The backend's MQTT broker; without it nothing is sent (the outbox keeps everything).") { (e, r) throws(ParseError) in try r.endpoint(e) },
            K.integer("backend", "keepalive-s", \.brokerKeepaliveSeconds, 5...600, "MQTT keepalive."),
            K.integer("backend", "window", \.brokerWindow, 1...1000, "QoS 1 messages in flight at once."),
            K.optionalPath("backend", "tls-ca", \.tlsCA, "The CA that signed the broker's certificate."),
            K.optionalPath("backend", "tls-cert", \.tlsCertificate, "The unit's client certificate for mutual TLS (its common name is the VIN); with tls-key."),
            K.optionalPath("backend", "tls-key", \.tlsKey, "The client certificate's private key; with tls-cert."),
            K.key("backend", "answer-key", \.answerKey, form: "64 hex digits", example: String(repeating: "ab", count: 32),
                  "The backend's Ed25519 public key (tcu-backend keys prints it): registration and licence answers must carry its signature.") { (e, r) throws(ParseError) in
                guard let key = bytes(fromHex: e.value), key.count == 32 else {
                    throw r.error(e, "expected the backend's public key: 64 hex digits (tcu-backend keys prints it)")
                }
                return key
            },
            K.integer("backend", "state-interval-ms", \.stateIntervalMs, 0...3_600_000, reloadable: true, "A changed state block is sent at most this often."),
            K.integer("backend", "state-heartbeat-s", \.stateHeartbeatSeconds, 10...86_400, reloadable: true, "Every state block is sent again this often, changed or not."),
            K.key("privacy", "mode", \.privacy, form: "share|use|offline", default: "share", example: "offline",
                  "The privacy level until the user chooses one in the car.") { (e, r) throws(ParseError) in
                guard let m = PrivacyMode(word: e.value) else { throw r.error(e, "expected share, use or offline, found '\(e.value)'") }
                return m
            },
            K.path("privacy", "settings-file", \.settingsFile, "Where the user's privacy choice is kept."),
            K.path("registration", "file", \.registrationFile, "The car's enrolment (its command key and counter) and its wrong-code lock."),
            K.integer("registration", "timeout-ms", \.registrationTimeoutMs, 100...120_000, "How long the car waits for the backend's answer to an interactive request: a pairing code, a licence renewal, an online service (Navi)."),
            K.integer("remote", "confirm-timeout-ms", \.remoteConfirmTimeoutMs, 100...120_000, "How long a remote command waits for the status frames to confirm it."),
            K.integer("remote", "wake-ups-per-day", \.wakeUpsPerDay, 0...1_000, "Remote wake-ups the car takes per UTC day (each costs the 12 V battery)."),
            K.key("gnss", "gpsd", \.gpsd, form: "HOST:PORT", example: "localhost:2947",
                  "gpsd; without it the unit has no GNSS (the eCall sends \"position unknown\").") { (e, r) throws(ParseError) in
                try r.endpoint(e, hint: " (gpsd listens on 2947)")
            },
            K.integer("gnss", "max-age-ms", \.gnssFilter.maximumAgeMs, 100...600_000, "A fix older than this is not used."),
            K.key("gnss", "trust-radius-m", \.gnssFilter.trustRadiusMeters, form: "1..100000", default: "150", example: "30",
                  "A fix whose error estimate is larger is not trusted.") { (e, r) throws(ParseError) in Double(try r.integer(e, 1...100_000)) },
            K.key("gnss", "min-speed-kmh", \.gnssFilter.minimumSpeedForDirection, form: "0..100", default: "5", example: "10",
                  "Below this speed the direction of travel is kept from before.") { (e, r) throws(ParseError) in Double(try r.integer(e, 0...100)) / 3.6 },
            K.key("gnss", "max-speed-kmh", \.gnssFilter.maximumPlausibleSpeed, form: "10..2000", default: "360", example: "250",
                  "A jump that would need a higher speed is an outlier.") { (e, r) throws(ParseError) in Double(try r.integer(e, 10...2_000)) / 3.6 },
            K.path("gnss", "parking-file", \.parkingFile, "The parking position, kept across restarts."),
            K.key("ecall", "link", \.eCallLink, form: "HOST:PORT", default: "\(Self.defaults.eCallLink)", example: "192.0.2.1:5062",
                  "The eCall's own link to the network (simulator); the host an IPv4 address or localhost (no resolver on the eCall's path).") {
                (e, r) throws(ParseError) in
                guard let link = Endpoint.parse(e.value), link.isIPv4OrLocalhost else {
                    throw r.error(e, "expected an IPv4 HOST:PORT (or localhost:PORT), found '\(e.value)'")
                }
                return link
            },
            K.choice("ecall", "transport", \.eCallTransport,
                     [("circuit-switched", .circuitSwitched), ("ng", .ng), ("ng-first", .ngFirst)],
                     expected: "circuit-switched, ng or ng-first",
                     "How the eCall reaches the network: the circuit-switched link (EN 16062), NG-eCall over SIP (EN 17184, RFC 8147), or SIP first and the circuit-switched link when the IMS network does not answer."),
            K.key("ecall", "sip-local", \.eCallSIPLocal, form: "IPV4:PORT", default: "\(Self.defaults.eCallSIPLocal)", example: "127.0.0.1:5080",
                  "NG-eCall: the SIP user agent's address and UDP port (the PSAP's call-back comes here).") { (e, r) throws(ParseError) in
                guard let ep = Endpoint.parse(e.value), ep.isIPv4OrLocalhost, ep.host != "localhost" else {
                    throw r.error(e, "expected an IPv4 address and a UDP port, found '\(e.value)'")
                }
                return ep
            },
            K.key("ecall", "sip-proxy", \.eCallSIPProxy, form: "sip:IPV4:PORT", example: "sip:127.0.0.1:5060",
                  "NG-eCall: the outbound proxy every request goes through (the IMS network's P-CSCF; on a bench an emergency routing proxy or the PSAP); required for transport = ng or ng-first.") {
                (e, r) throws(ParseError) in
                guard e.value.hasPrefix("sip:"), let ep = Endpoint.parse(String(e.value.dropFirst(4))), ep.isIPv4OrLocalhost, ep.host != "localhost" else {
                    throw r.error(e, "expected sip:IPV4:PORT (no resolver on the eCall's path), found '\(e.value)'")
                }
                return e.value
            },
            K.key("ecall", "sip-domain", \.eCallSIPDomain, form: "DOMAIN", default: Self.defaults.eCallSIPDomain, example: "ims.example.net",
                  "NG-eCall: the domain of the unit's address of record (sip:VIN@DOMAIN).") { (e, r) throws(ParseError) in
                guard !e.value.isEmpty, e.value.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-") }) else {
                    throw r.error(e, "expected a domain (letters, digits, dots, hyphens), found '\(e.value)'")
                }
                return e.value
            },
            K.key("ecall", "sip-test-uri", \.eCallSIPTestURI, form: "sip:URI", default: Self.defaults.eCallSIPTestURI, example: "sip:test@192.0.2.1",
                  "NG-eCall: where a test call goes (a non-emergency URI; the call still carries the MSD).") { (e, r) throws(ParseError) in
                guard e.value.hasPrefix("sip:"), e.value.count > 4, !e.value.contains(where: { $0 == " " || $0 == "<" || $0 == ">" || $0 == "\r" || $0 == "\n" }) else {
                    throw r.error(e, "expected a sip: URI without spaces or angle brackets, found '\(e.value)'")
                }
                return e.value
            },
            K.integer("ecall", "sip-probe-interval-ms", \.eCallSIPProbeIntervalMs, 0...600_000,
                      "NG-eCall: how often the proxy is asked (OPTIONS) whether the IMS network is there; no answer at all detaches the unit (ng-first then uses the circuit-switched link). 0: never asked, attached once the SIP stack is up."),
            K.integer("ecall", "sip-media-timeout-ms", \.eCallSIPMediaTimeoutMs, 0...120_000,
                      "NG-eCall: a call whose PSAP sends no voice (RTP or RTCP) for this long, while its SDP says it sends, has dropped and is redialled (a lost bearer shows this way to the unit). 0: never."),
            K.path("ecall", "journal", \.eCallJournal, "The eCall journal: a call in progress resumes after a crash of the daemon."),
            K.integer("ecall", "t1-ms", \.eCall.t1Ms, 0...60_000, "EN 16062 T1: a manual call can be cancelled within this window (0: not at all)."),
            K.integer("ecall", "t2-ms", \.eCall.t2Ms, 1...7_200_000, "T2: the clear-down fall-back: the unit hangs up a call nobody cleared."),
            K.integer("ecall", "t3-ms", \.eCall.t3Ms, msRange, "T3: the INITIATION signal (push mode), waiting for the PSAP's SEND MSD."),
            K.integer("ecall", "t5-ms", \.eCall.t5Ms, msRange, "T5: waiting for SEND MSD."),
            K.integer("ecall", "t6-ms", \.eCall.t6Ms, msRange, "T6: waiting for the link-layer acknowledgement (AL-ACK)."),
            K.integer("ecall", "t7-ms", \.eCall.t7Ms, 1...120_000, "T7: the MSD's whole transmission."),
            K.integer("ecall", "t9-ms", \.eCall.t9Ms, 1...86_400_000, "T9: the call-back window after the call, when incoming calls are answered."),
            K.integer("ecall", "t10-ms", \.eCall.t10Ms, 1...86_400_000, "T10: an eCall-only unit stays registered this long after the call, then deregisters."),
            K.integer("ecall", "redial-interval-ms", \.eCall.redialIntervalMs, 0...600_000, "Between attempts when the call could not be set up."),
            K.integer("ecall", "drop-redial-window-ms", \.eCall.dropRedialWindowMs, 0...600_000, "A dropped call is redialled within this window."),
            K.integer("ecall", "drop-redial-interval-ms", \.eCall.dropRedialIntervalMs, 0...600_000, "Between redials after a dropped call."),
            K.key("ecall", "maximum-attempts", \.eCall.maximumAttempts, form: "1..1000", example: "10",
                  "Attempts before giving up (default: no limit within the redial rules).") { (e, r) throws(ParseError) in Int(try r.integer(e, 1...1000)) },
            K.bool("ecall", "push-mode", \.eCall.pushMode, "The unit sends the MSD without waiting for the PSAP's request."),
            K.bool("ecall", "ecall-only", \.eCall.eCallOnly, "An eCall-only unit: registered on the network only for an eCall."),
            K.string("ecall", "emergency-number", \.eCall.emergencyNumber, "The number an eCall dials."),
            K.string("ecall", "test-number", \.eCall.testNumber, "The number a test call dials."),
            K.integer("ecall", "shutdown-grace-ms", \.eCallShutdownGraceMs, 0...600_000, "A stop during an eCall waits this long for the call to end."),
            K.integer("ecall", "realtime-priority", \.eCallRealtimePriority, 0...99,
                      "The eCall thread's SCHED_FIFO priority, so that a crash is dialled at once while other work loads every core (0: the normal policy). Needs CAP_SYS_NICE or LimitRTPRIO= at least as high; refused, the eCall runs at normal priority and says so."),
        ]
    }
}

extension DaemonConfiguration {
    /// The configuration keys as the man page's CONFIGURATION section lists them (roff), from the
    /// table: `telematicsd --config-reference` prints it and `make man` puts it in telematicsd.8.
    public static var roffReference: String {
        func roff(_ t: String) -> String { t.replacing("\\", with: "\\e").replacing("-", with: "\\-") }
        var out = ""
        for k in keys {
            out += ".TP\n.B [\(k.section)] \(roff(k.name))\n"
            var facts = ["\\fI\(roff(k.form))\\fR"]
            if k.required { facts.append("required") }
            if let d = k.defaultText { facts.append("default \(roff(d))") }
            if k.reloadable { facts.append("changes on reload") }
            out += facts.joined(separator: "; ") + ".\n" + roff(k.summary) + "\n"
        }
        return out
    }
}
