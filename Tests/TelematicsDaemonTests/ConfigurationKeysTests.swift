@testable import UnitConfiguration
import Platform
import Testing
@testable import TelematicsCore

@Suite("Configuration keys: one table for the parser, the reload and the man page")
struct ConfigurationKeysTests {
    /// The required keys, a candump source (so the replay keys apply), both TLS halves (so
    /// either can change alone) and a SIP proxy (so the eCall's transport can become NG).
    static let base = """
        [can]
        source = candump:/srv/base.log
        dbc = /srv/base.dbc
        [vehicle]
        profile = /srv/base.profile
        [backend]
        tls-cert = /srv/base.crt
        tls-key = /srv/base.key
        [ecall]
        sip-proxy = sip:192.0.2.9:5060

        """

    /// `base` with one more key (or the same key changed).
    static func with(_ k: ConfigurationKey, _ value: String) -> String {
        var lines = base.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if let i = lines.firstIndex(where: { $0.hasPrefix(k.name + " = ") }), lines[..<i].last(where: { $0.hasPrefix("[") }) == "[\(k.section)]" {
            lines[i] = "\(k.name) = \(value)"
            return lines.joined(separator: "\n")
        }
        return base + "[\(k.section)]\n\(k.name) = \(value)\n"
    }

    static var keys: [ConfigurationKey] { DaemonConfiguration.keys }

    @Test("every key is named once, and the unknown-key error lists exactly the table's keys")
    func unique() {
        let ids = Self.keys.map(\.id)
        #expect(Set(ids).count == ids.count)
        #expect(DaemonConfiguration.knownKeys.values.map(\.count).reduce(0, +) == ids.count)
        #expect(DaemonConfiguration.reloadableKeys == ["log.level", "backend.state-interval-ms", "backend.state-heartbeat-s"])
    }

    @Test("every key changed to its example is read, and a reload either applies it or names its section as needing a restart",
          arguments: DaemonConfiguration.keys.map(\.id))
    func reloadCoversEveryKey(_ id: String) throws {
        let k = Self.keys.first { $0.id == id }!
        let old = try DaemonConfiguration.parse(Self.base)
        let new = try DaemonConfiguration.parse(Self.with(k, k.example))
        #expect(!k.same(old, new), "the example must differ from the base")
        #expect(old.reloadableChanges(to: new) == (k.reloadable ? [k.id] : []))
        #expect(old.sectionsNeedingRestart(for: new) == (k.reloadable ? [] : [k.section]))
    }

    @Test("every documented default is the value the daemon runs with when the key is absent",
          arguments: DaemonConfiguration.keys.filter { $0.defaultText != nil && !$0.required }.map(\.id))
    func documentedDefaults(_ id: String) throws {
        let k = Self.keys.first { $0.id == id }!
        let absent = try DaemonConfiguration.parse(Self.base)
        let written = try DaemonConfiguration.parse(Self.with(k, k.defaultText!))
        #expect(k.same(absent, written))
    }

    @Test("the man page's CONFIGURATION section is the table's (make man writes it)")
    func manPage() throws {
        let page = try readTextFile(root + "/docs/telematicsd.8")
        let begin = ".\\\" BEGIN CONFIGURATION KEYS (generated: make man)\n"
        let end = ".\\\" END CONFIGURATION KEYS\n"
        guard let b = page.range(of: begin), let e = page.range(of: end) else {
            Issue.record("docs/telematicsd.8 has no CONFIGURATION KEYS markers")
            return
        }
        #expect(String(page[b.upperBound..<e.lowerBound]) == DaemonConfiguration.roffReference)
        for k in Self.keys { #expect(page.contains(k.name.replacing("-", with: "\\-")), "\(k.id)") }
    }
}

@Suite("Endpoints, parsed once")
struct EndpointTests {
    static let cases: [(text: String, endpoint: Endpoint?, ipv4OrLocalhost: Bool)] = [
        ("127.0.0.1:1883", Endpoint(host: "127.0.0.1", port: 1883), true),
        ("tcp:localhost:5061", Endpoint(host: "localhost", port: 5061), true),
        ("broker.example:8883", Endpoint(host: "broker.example", port: 8883), false),
        ("256.1.1.1:80", Endpoint(host: "256.1.1.1", port: 80), false),
        ("1.2.3:80", Endpoint(host: "1.2.3", port: 80), false),
        ("host:0", nil, false),
        ("host:65536", nil, false),
        ("host:-1", nil, false),
        (":80", nil, false),
        ("host", nil, false),
        ("a:b:80", nil, false),
        ("[::1]:80", nil, false),
        ("my host:80", nil, false),
        ("host:1e300", nil, false),
    ]

    @Test("HOST:PORT with a port from 1 to 65535; the eCall's link takes only an IPv4 address or localhost", arguments: cases)
    func parse(_ text: String, _ endpoint: Endpoint?, _ ipv4OrLocalhost: Bool) {
        #expect(Endpoint.parse(text) == endpoint)
        #expect((Endpoint.parse(text)?.isIPv4OrLocalhost ?? false) == ipv4OrLocalhost)
    }
}
