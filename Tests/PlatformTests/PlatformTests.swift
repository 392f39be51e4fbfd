#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization
import Testing

@Suite("Platform: threads, one-shot replies, bells")
struct PlatformTests {
    @Test("a one-shot reply given before the wait is returned at once; the first answer wins")
    func oneShotGivenFirst() {
        let reply = OneShot<Int>()
        #expect(reply.give(1))
        #expect(!reply.give(2))
        #expect(reply.wait(timeoutMs: 0) == 1)
        #expect(reply.current == 1)
    }

    @Test("a one-shot wait with nobody answering ends at its deadline with nothing")
    func oneShotTimesOut() {
        #expect(OneShot<Int>().wait(timeoutMs: 0) == nil)
        #expect(OneShot<Int>().wait(timeoutMs: 5) == nil)
    }

    @Test("an answer given on another thread wakes the waiter")
    func oneShotAcrossThreads() {
        let reply = OneShot<String>()
        let t = DedicatedThread(name: "answer") { reply.give("done") }
        #expect(reply.wait(timeoutMs: 60_000) == "done")
        t.join()
    }

    @Test("an optional answer tells 'answered nothing' from 'no answer'")
    func oneShotOptional() {
        let reply = OneShot<Int?>()
        reply.give(nil)
        let got = reply.wait(timeoutMs: 0)
        #expect(got != nil && got! == nil)
    }

    @Test("a thread carries its name, as ps -L shows it (at most 15 bytes)")
    func threadName() {
        let seen = Mutex<String>("")
        let t = DedicatedThread(name: "platform-test-thread") {
            let name = (try? readTextFile("/proc/thread-self/comm")) ?? ""
            seen.withLock { $0 = String(name.prefix { $0 != "\n" }) }
        }
        t.join()
        #expect(seen.withLock { $0 } == "platform-test-t")
    }

    @Test("a task that prefers a thread executor runs on its thread: its awaits, timers and child tasks too")
    func threadExecutor() async {
        func thread() -> String { String(((try? readTextFile("/proc/thread-self/comm")) ?? "").prefix { $0 != "\n" }) }
        let executor = ThreadExecutor(name: "exec-test")
        let names = await withTaskExecutorPreference(executor) { () async -> [String] in
            var out = [thread()]
            try? await Task.sleep(for: .milliseconds(1))
            out.append(thread())
            await withTaskGroup(of: String.self) { group in
                group.addTask { thread() }
                for await name in group { out.append(name) }
            }
            return out
        }
        #expect(names == ["exec-test", "exec-test", "exec-test"])
        #expect(executor.scheduling == .normal)
        // Asked for a real-time priority: granted (root, or RLIMIT_RTPRIO) or refused with errno's words.
        switch ThreadExecutor(name: "exec-rt", realtimePriority: 1).scheduling {
        case .realtime(let p): #expect(p == 1)
        case .refused(_, let reason): #expect(!reason.isEmpty)
        case .normal: Issue.record("asked for SCHED_FIFO, got the normal policy without a reason")
        }
    }

    @Test("a listener: a Unix socket appears with its mode once it listens; the accept loop serves up to its maximum at once and refuses beyond")
    func listener() throws {
        var template = Array("/tmp/tcu-platform-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        let path = dir + "/l.sock"
        let unix = try Listener(.unix(path: path, mode: 0o660))
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o660 && access(path + ".new", F_OK) != 0)
        #expect(unix.port == nil)
        unix.close()

        let tcp = try Listener(.tcp(host: "127.0.0.1", port: 0))
        let port = try #require(tcp.port)
        #expect(port != 0)
        func connect() -> Int32 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            a.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
            let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            return rc == 0 ? fd : -1
        }
        let stop = StopSignal()
        let release = OneShot<Void>()
        let handled = OneShot<Void>(), refused = OneShot<Void>()
        let loop = DedicatedThread(name: "listener-test") {
            tcp.serve(name: "listener-conn", maximum: 1, stop: stop, refuse: { _ in refused.give(()) }) { _ in
                handled.give(())
                _ = release.wait(timeoutMs: 60_000)  // holds its place until the test lets go
            }
        }
        let first = connect(), second = connect()
        #expect(first >= 0 && second >= 0)
        #expect(handled.wait(timeoutMs: 60_000) != nil)
        #expect(refused.wait(timeoutMs: 60_000) != nil)  // the second, while the first holds the only place
        release.give(())
        stop.set()
        loop.join()
        close(first)
        close(second)
        tcp.close()
        #expect(throws: SystemError.self) { try Listener(.tcp(host: "not-an-address", port: 0)) }
    }

    @Test("a ring that came before the wait began ends it at once: none is missed")
    func bellRingBeforeWait() async {
        let bell = Bell()
        let seen = bell.rung
        bell.ring()
        await bell.wait(after: seen, timeoutMs: 60_000)
        #expect(bell.rung == seen + 1)
    }

    @Test("a wait with no ring ends at its deadline")
    func bellTimesOut() async {
        let bell = Bell()
        await bell.wait(after: bell.rung, timeoutMs: 0)
        await bell.wait(after: bell.rung, timeoutMs: 5)
        #expect(bell.rung == 0)
    }

    @Test("a ring from another thread wakes the waiter")
    func bellAcrossThreads() async {
        let bell = Bell()
        let seen = bell.rung
        let t = DedicatedThread(name: "ringer") { bell.ring() }
        await bell.wait(after: seen, timeoutMs: 60_000)
        t.join()
        #expect(bell.rung == seen + 1)
    }

    @Test("one ring wakes every waiter (the backend's live alert streams each wait on the same bell)")
    func bellWakesEveryWaiter() async {
        let bell = Bell()
        let seen = bell.rung
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<8 { group.addTask { await bell.wait(after: seen, timeoutMs: 600_000) } }
            // Each waiter either registered before the ring or sees it as already rung: all return.
            group.addTask { bell.ring() }
        }
        #expect(bell.rung == seen + 1)
    }

    @Test("a cancelled wait ends at once")
    func bellCancelled() async {
        let bell = Bell()
        let task = Task { await bell.wait(after: bell.rung, timeoutMs: 60_000) }
        task.cancel()
        await task.value
        #expect(bell.rung == 0)
    }

    @Test("a stop signal: a wait ends at its deadline without a stop, at once with one; every loop sees it")
    func stopSignal() {
        let stop = StopSignal()
        #expect(!stop.isSet && !stop.wait(timeoutMs: 0))
        let t = DedicatedThread(name: "stopper") { stop.set() }
        #expect(stop.wait(timeoutMs: 60_000))
        t.join()
        #expect(stop.isSet && stop.wait(timeoutMs: 0))
        stop.waitForever()  // returns: the stop is there
    }

    @Test("a file that grew since the last look ends the wait at once (inotify), not at its deadline")
    func fileGrowth() throws {
        let path = "/tmp/platform-file-growth-\(getpid())"
        #expect(writeFileDurably(path, "first\n"))
        defer { unlink(path) }
        let growth = FileGrowth(path: path)
        let start = monotonicNow()
        let f = try #require(fopen(path, "a"))
        fputs("second\n", f)
        fclose(f)
        growth.wait(timeoutMs: 60_000)
        #expect(monotonicNow().milliseconds(since: start) < 30_000)
    }

    @Test("a signal caught before the program routes it waits; then each comes: reload, the first stop, a later stop")
    func processSignals() throws {
        // SIGUSR1/SIGUSR2 stand in for SIGTERM/SIGHUP: the test runner keeps its own. Sent to
        // the process, as kill(1) and systemd send them, one at a time (two of a kind pending
        // at once are one signal).
        let signals = try ProcessSignals(stop: [SIGUSR1], reload: [SIGUSR2])
        kill(getpid(), SIGUSR2)
        let seen = Mutex<[ProcessSignals.Request]>([])
        let steps = [OneShot<Void>(), OneShot<Void>(), OneShot<Void>()]
        #expect(signals.route { request in
            let count = seen.withLock { $0.append(request); return $0.count }
            if count <= steps.count { steps[count - 1].give(()) }
        })
        #expect(steps[0].wait(timeoutMs: 60_000) != nil)
        kill(getpid(), SIGUSR1)
        #expect(steps[1].wait(timeoutMs: 60_000) != nil)
        kill(getpid(), SIGUSR1)
        #expect(steps[2].wait(timeoutMs: 60_000) != nil)
        #expect(seen.withLock { $0 } == [.reload, .stop(first: true), .stop(first: false)])
    }
}
