@testable import UnitConfiguration
import Testing
@testable import TelematicsCore

@Suite("Configuration file")
struct ConfigurationFileTests {
    let good = """
    # bench
    [can]
    source = socketcan:vcan0
    dbc = vehicle.dbc
    silence-timeout-ms = 500   # half a second

    [vehicle]
    profile = /etc/telematicsd/profile.conf

    [control]
    socket = "/run/tcu/control.sock"

    [log]
    level = debug
    """

    @Test("a valid file gives typed values with paths taken from its folder")
    func valid() throws {
        let c = try DaemonConfiguration.parse(good, source: "/etc/t.conf", baseDirectory: "/etc/telematicsd")
        #expect(c.source == .socketCAN(interface: "vcan0"))
        #expect(c.dbcPath == "/etc/telematicsd/vehicle.dbc")
        #expect(c.profilePath == "/etc/telematicsd/profile.conf")
        #expect(c.controlSocket == "/run/tcu/control.sock")
        #expect(c.silenceTimeoutMs == 500)
        #expect(c.logLevel == .debug)
    }

    static let bad: [(String, String)] = [
        ("[can]\nsource = socketcan:vcan0\ndbc = x\n[vehicle]\nprofile = p\n[can2]\nx = 1\n", "t.conf:7: unknown section [can2]"),
        ("[can]\nsourc = socketcan:vcan0\n", "t.conf:2: can.sourc: unknown key"),
        ("[can]\nsource = serial:/dev/ttyS0\ndbc = x\n[vehicle]\nprofile = p\n", "t.conf:2: can.source: expected socketcan:IFACE"),
        ("[can]\nsource = socketcan:averyveryverylongname\ndbc = x\n[vehicle]\nprofile = p\n", "at most 15 characters"),
        ("[can]\nsource = socketcan:vcan0\n[vehicle]\nprofile = p\n", "can.dbc is required"),
        ("[can]\nsource = socketcan:vcan0\ndbc = x\nsilence-timeout-ms = 5\n[vehicle]\nprofile = p\n", "t.conf:4: can.silence-timeout-ms: 5 is outside 100...3600000"),
        ("[can]\nsource = socketcan:vcan0\ndbc = x\nreplay = fast\n[vehicle]\nprofile = p\n", "t.conf:4: can.replay: only applies to a candump: source"),
        ("[can]\nsource = candump:x.log\ndbc = x\nloop = maybe\n[vehicle]\nprofile = p\n", "can.loop: expected true or false, found 'maybe'"),
        ("[can]\nsource = socketcan:vcan0\nsource = socketcan:vcan1\n", "t.conf:3:1: key 'can.source' is set twice"),
        ("[can]\nsource = socketcan:vcan0\ndbc = x\n[vehicle]\nprofile = p\n[backend]\nkeepalive-s = 2\n",
         "t.conf:7: backend.keepalive-s: 2 is outside 5...600"),
        ("[can]\nsource = socketcan:vcan0\ndbc = x\n[vehicle]\nprofile = p\n[backend]\nstate-heartbeat-s = 1\n",
         "t.conf:7: backend.state-heartbeat-s: 1 is outside 10...86400"),
        ("[can]\nsource = socketcan:vcan0\ndbc = x\n[vehicle]\nprofile = p\n[outbox]\ndisk-reserve-bytes = lots\n",
         "t.conf:7: outbox.disk-reserve-bytes"),
        ("[can]\nsource = socketcan:vcan0\ndbc = x\n[vehicle]\nprofile = p\n[privacy]\nmode = loud\n",
         "t.conf:7: privacy.mode: expected share, use or offline, found 'loud'"),
        ("[can]\nsource = socketcan:vcan0\ndbc = x\n[vehicle]\nprofile = p\n[gnss]\ngpsd = localhost\n",
         "t.conf:7: gnss.gpsd: expected HOST:PORT"),
        ("[can]\nsource = socketcan:vcan0\ndbc = x\nfollow = true\n[vehicle]\nprofile = p\n", "t.conf:4: can.follow: only applies to a candump: source"),
        ("[can]\nsource = socketcan:vcan0\ndbc = x\n[vehicle]\nprofile = p\n[backend]\nanswer-key = 1234\n",
         "t.conf:7: backend.answer-key: expected the backend's public key: 64 hex digits (tcu-backend keys prints it)"),
        ("[can]\nsource = logbus:\ndbc = x\n[vehicle]\nprofile = p\n", "t.conf:2: can.source: expected socketcan:IFACE"),
        ("[can\n", "t.conf:1:1: section header"),
        ("just words\n", "expected 'key = value'"),
    ]

    @Test("invalid files are rejected naming the line and the key", arguments: bad)
    func invalid(_ text: String, _ message: String) {
        do {
            _ = try DaemonConfiguration.parse(text, source: "t.conf")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.contains(message), "\(error)")
        }
    }
}
