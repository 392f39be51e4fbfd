#if canImport(Glibc)
import Glibc
#endif
import UnitConfiguration
import Platform
import Synchronization
import Testing
import TelematicsCore
@testable import TelematicsDaemon

@Suite("Supervision: sd_notify, loop health, reload")
struct SupervisionTests {
    @Test func notifyAddressesArePathsOrAbstractNames() {
        #expect(UnixDatagramSender.Address("/run/systemd/notify")?.path == Array("/run/systemd/notify".utf8))
        #expect(UnixDatagramSender.Address("@tcu")?.path == [0] + Array("tcu".utf8))
        #expect(UnixDatagramSender.Address("relative/path") == nil)
        #expect(UnixDatagramSender.Address("@") == nil)
        #expect(UnixDatagramSender.Address("/" + String(repeating: "x", count: 200)) == nil)
    }

    @Test func withoutNotifySocketNothingIsSentAndThereIsNoWatchdog() {
        let n = SystemdNotifier(socket: nil, watchdogMicroseconds: 2_000_000)
        #expect(!n.isActive && n.watchdogMicroseconds == nil && !n.notify("READY=1"))
    }

    @Test func notificationsArriveAsOneDatagramEach() throws {
        let dir = tempDir()
        let path = dir + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in for (i, b) in path.utf8.enumerated() { raw[i] = b } }
        let bound = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        try #require(bound == 0)
        let n = SystemdNotifier(socket: path, watchdogMicroseconds: 4_000_000)
        #expect(n.watchdogMicroseconds == 4_000_000)
        #expect(n.notify("READY=1", "STATUS=up"))
        #expect(n.notify("WATCHDOG=1"))
        var buffer = [UInt8](repeating: 0, count: 256)
        let first = recv(fd, &buffer, buffer.count, 0)
        #expect(String(decoding: buffer[..<first], as: UTF8.self) == "READY=1\nSTATUS=up")
        let second = recv(fd, &buffer, buffer.count, 0)
        #expect(String(decoding: buffer[..<second], as: UTF8.self) == "WATCHDOG=1")
    }

    @Test func aLoopIsStalledOnlyAfterTheSilence() {
        let now = Atomic<Int64>(1_000)
        let m = LoopMonitor(clock: { now.load(ordering: .relaxed) })
        now.store(2_500, ordering: .relaxed)
        #expect(m.stalled(silenceMs: 2_000).isEmpty)
        m.beat(.canReader)
        m.beat(.outbox)
        m.beat(.eCall)
        now.store(3_001 + 1_000, ordering: .relaxed)
        // control last beat at 1 000 (its start): 3 001 ms of silence.
        #expect(m.stalled(silenceMs: 2_000) == [.control])
        m.turn(.control, stop: StopSignal())
        #expect(m.stalled(silenceMs: 2_000).isEmpty)
    }

    @Test func anInjectedHangHoldsTheLoopUntilTheStop() {
        let now = Atomic<Int64>(0)
        let m = LoopMonitor(clock: { now.load(ordering: .relaxed) })
        m.injectHang(.outbox)
        #expect(m.mustHang(.outbox) && !m.mustHang(.canReader))
        let stop = StopSignal()
        let returned = OneShot<Bool>()
        let t = DedicatedThread(name: "hung-loop") {
            m.turn(.outbox, stop: stop)
            returned.give(true)
        }
        // Held: not returned while there is no stop (a correct loop cannot return here at all).
        #expect(returned.wait(timeoutMs: 20) == nil)
        stop.set()
        #expect(returned.wait(timeoutMs: 60_000) == true)
        t.join()
    }

    @Test func aReloadSaysWhatItChangesAndWhatNeedsARestart() throws {
        let base = "[can]\nsource = socketcan:vcan0\ndbc = a.dbc\n[vehicle]\nprofile = p.conf\n"
        let old = try DaemonConfiguration.parse(base)
        let new = try DaemonConfiguration.parse(base + "[log]\nlevel = debug\n[backend]\nstate-interval-ms = 250\nwindow = 8\n[ecall]\nt2-ms = 1000\n")
        #expect(old.reloadableChanges(to: new) == ["log.level", "backend.state-interval-ms"])
        #expect(old.sectionsNeedingRestart(for: new) == ["backend", "ecall"])
        let onlyReloadable = try DaemonConfiguration.parse(base + "[log]\nlevel = error\n")
        #expect(old.sectionsNeedingRestart(for: onlyReloadable).isEmpty)
        #expect(old.reloadableChanges(to: old).isEmpty && old.sectionsNeedingRestart(for: old).isEmpty)
    }
}

@Suite("Logs for journald")
struct JournalLogTests {
    @Test func metadataKeysBecomeJournalFieldNames() {
        #expect(JournalLogHandler.journalFieldName("can.id") == "CAN_ID")
        #expect(JournalLogHandler.journalFieldName("ecall.graceMs") == "ECALL_GRACEMS")
        #expect(JournalLogHandler.journalFieldName("_private") == "PRIVATE")
        #expect(JournalLogHandler.journalFieldName("1st") == "F1ST")
        #expect(JournalLogHandler.journalFieldName("mqtt-topic/x") == "MQTT_TOPIC_X")
    }

    @Test func aRecordIsOneNativeDatagramAndMultilineValuesCarryTheirLength() {
        let r = LogRecord(priority: 4, level: "warning", message: "link down", fields: [("mqtt.reason", "a\nb")])
        let bytes = JournalLogHandler.journalDatagram(r, identifier: "telematicsd")
        let head = Array("MESSAGE=link down\nPRIORITY=4\nSYSLOG_IDENTIFIER=telematicsd\nMQTT_REASON\n".utf8)
        #expect(Array(bytes.prefix(head.count)) == head)
        #expect(Array(bytes.dropFirst(head.count)) == [3, 0, 0, 0, 0, 0, 0, 0] + Array("a\nb\n".utf8))
    }

    @Test func asALineTheRecordKeepsItsPriorityPrefixAndQuotesValuesWithSpaces() {
        let r = LogRecord(priority: 5, level: "notice", message: "ready", fields: [("a.b", "x y"), ("c", "1")])
        #expect(JournalLogHandler.line(r, journal: true) == "<5>ready a.b=\"x y\" c=1\n")
        #expect(JournalLogHandler.line(r, journal: false) == "NOTICE ready a.b=\"x y\" c=1\n")
    }
}
