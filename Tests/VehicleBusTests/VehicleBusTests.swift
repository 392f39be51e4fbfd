#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization
import TelematicsCore
import Testing
@testable import VehicleBus

func makeTempDir() -> String {
    var template = Array("/tmp/tcu-test-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
}

func writeFile(_ path: String, _ text: String) {
    let f = fopen(path, "w")!
    fputs(text, f)
    fclose(f)
}

@Suite("candump logs on disk")
struct CandumpLogTests {
    @Test("what the writer writes, the reader reads back frame for frame")
    func roundTrip() throws {
        let dir = makeTempDir()
        let path = dir + "/out.log"
        let frames = [
            CANFrame(id: 0x3C0, data: [0, 2, 0, 0], timestamp: Timestamp(seconds: 1700000000, nanoseconds: 1000), interface: "vcan0"),
            CANFrame(id: 0x17330110, data: [0xEE, 4], isExtended: true, timestamp: Timestamp(seconds: 1700000000, nanoseconds: 2000), interface: "vcan0"),
            CANFrame(id: 0x123, data: Array(repeating: 0xAB, count: 16), isFD: true, bitRateSwitch: true, timestamp: Timestamp(seconds: 1700000001), interface: "can1"),
            CANFrame(id: 0x5F1, data: [], isRemote: true, remoteLength: 4, timestamp: Timestamp(seconds: 1700000002), interface: "vcan0"),
            CANFrame(id: 0x40, data: [0, 0, 0, 0, 0, 0, 0, 0], isExtended: false, isError: true, timestamp: Timestamp(seconds: 1700000003), interface: "vcan0"),
        ]
        let w = try CandumpLogWriter(path: path, append: false)
        for f in frames { w.write(f) }
        w.close()
        let r = try CandumpLogReader(path: path)
        var back: [CANFrame] = []
        while let f = try r.next() { back.append(f) }
        #expect(back == frames)
        #expect(try readTextFile(path).hasPrefix("(1700000000.000001) vcan0 3C0#00020000\n"))
    }

    @Test("a malformed line names the file and line, and reading goes on after it")
    func malformedLine() throws {
        let dir = makeTempDir()
        let path = dir + "/bad.log"
        writeFile(path, "(1.000000) vcan0 123#00\n\n(2.000000) vcan0 123#0\n(3.000000) vcan0 124#01\n")
        let r = try CandumpLogReader(path: path)
        #expect(try r.next()?.id == 0x123)
        do {
            _ = try r.next()
            Issue.record("accepted")
        } catch {
            #expect(error.description.hasPrefix("\(path):3:"))
            #expect(error.message.contains("odd number of hex digits"))
        }
        #expect(try r.next()?.id == 0x124)
        #expect(try r.next() == nil)
    }

    @Test("fast replay keeps the log's clock and ends; loop replay continues the clock")
    func replay() throws {
        let dir = makeTempDir()
        let path = dir + "/r.log"
        writeFile(path, "(10.000000) vcan0 123#00\n(10.500000) vcan0 123#01\n")
        let once = try CandumpReplayChannel(path: path, realtime: false, loop: false)
        #expect(try once.receive(timeoutMs: 10)?.timestamp == Timestamp(seconds: 10))
        #expect(try once.receive(timeoutMs: 10)?.timestamp == Timestamp(seconds: 10, nanoseconds: 500_000_000))
        #expect(once.replayNow == Timestamp(seconds: 10, nanoseconds: 500_000_000))
        #expect(try once.receive(timeoutMs: 10) == nil)
        #expect(once.isExhausted)

        let looping = try CandumpReplayChannel(path: path, realtime: false, loop: true)
        var times: [Timestamp] = []
        for _ in 0..<5 { times.append(try #require(try looping.receive(timeoutMs: 10)).timestamp) }
        #expect(times == times.sorted())
        #expect(times[2] > times[1])
        #expect(!looping.isExhausted)
    }

    @Test("original timing: frames come when due, stamped with their due time; the replay's clock never passes a frame not yet taken, so a stall makes nothing stale")
    func replayCatchingUp() throws {
        let dir = makeTempDir()
        let path = dir + "/c.log"
        // 100 frames, one every 10 ms.
        var log = ""
        for i in 0..<100 {
            let ms = i % 100 * 10
            let fraction = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
            log += "(\(100 + i / 100).\(fraction)000) vcan0 583#0\(i % 2)000000\n"
        }
        writeFile(path, log)
        let monotonic = Atomic<Int64>(1_000_000_000), wall = Atomic<Int64>(1_800_000_000_000_000_000)
        let clocks = Clocks(monotonic: { Timestamp(nanoseconds: monotonic.load(ordering: .relaxed)) },
                            wall: { Timestamp(nanoseconds: wall.load(ordering: .relaxed)) })
        func advance(ms: Int64) {
            monotonic.add(ms * 1_000_000, ordering: .relaxed)
            wall.add(ms * 1_000_000, ordering: .relaxed)
        }
        let ch = try CandumpReplayChannel(path: path, realtime: true, loop: false, clocks: clocks, sleep: { _, _ in })
        let start = wall.load(ordering: .relaxed)
        #expect(try ch.receive(timeoutMs: 100)?.timestamp.nanoseconds == start)
        #expect(try ch.receive(timeoutMs: 100) == nil)  // the next is due in 10 ms
        advance(ms: 10)
        #expect(try ch.receive(timeoutMs: 100)?.timestamp.nanoseconds == start + 10_000_000)
        #expect(ch.replayNow.nanoseconds == wall.load(ordering: .relaxed))  // on time: the wall clock
        // The machine stalls for 600 ms: the frames due meanwhile come at once, each with its
        // own time, and the replay's clock is theirs, not the wall clock 600 ms ahead.
        advance(ms: 600)
        #expect(ch.replayNow.nanoseconds == start + 20_000_000)  // stopped at the frame not taken
        for i in 2...61 {
            #expect(try ch.receive(timeoutMs: 100)?.timestamp.nanoseconds == start + Int64(i) * 10_000_000)
            let nextDue = start + Int64(i + 1) * 10_000_000
            #expect(ch.replayNow.nanoseconds == min(nextDue, wall.load(ordering: .relaxed)))
        }
        #expect(try ch.receive(timeoutMs: 100) == nil)  // frame 62 is due in 10 ms: caught up
        advance(ms: 10)
        #expect(try ch.receive(timeoutMs: 100)?.timestamp.nanoseconds == start + 620_000_000)
        #expect(ch.replayNow.nanoseconds == wall.load(ordering: .relaxed))  // on time again
    }

    @Test("malformed replay lines are collected, not fatal")
    func replayMalformed() throws {
        let dir = makeTempDir()
        let path = dir + "/m.log"
        writeFile(path, "(1.0) vcan0 123#00\ngarbage\n(2.0) vcan0 123#01\n")
        let ch = try CandumpReplayChannel(path: path, realtime: false, loop: false)
        #expect(try ch.receive(timeoutMs: 10)?.data == [0])
        #expect(try ch.receive(timeoutMs: 10)?.data == [1])
        let errors = ch.takeMalformed()
        #expect(errors.count == 1 && errors[0].line == 2)
    }

    @Test("a missing log gives a clear error")
    func missingLog() {
        do {
            _ = try CandumpLogReader(path: "/nonexistent/x.log")
            Issue.record("opened")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.description.contains("/nonexistent/x.log"))
            #expect(error.description.contains("No such file"))
        }
    }
}

@Suite("SocketCAN and DBC files")
struct SocketCANTests {
    @Test("an interface that cannot be opened is reported as unavailable, with the reason")
    func missingInterface() {
        // Without kernel CAN support this fails at socket(); with it, at the interface lookup.
        do {
            _ = try SocketCANChannel(interface: "tcunone0", filters: [])
            Issue.record("opened a nonexistent interface")
        } catch {
            #expect(error.code == .unavailable)
            let text = error.description
            #expect(text.contains("does this kernel have CAN support") || text.contains("tcunone0 does not exist"), "\(text)")
        }
    }

    @Test("a DBC file with an error names the file, line and column")
    func badDBCFile() {
        let dir = makeTempDir()
        let path = dir + "/bad.dbc"
        writeFile(path, "VERSION \"\"\n\nBO_ 100 A: 8 X\n SG_ S : 0|8@1+ (1,0) [0|0 \"\" X\n")
        do {
            _ = try loadDBC(path: path)
            Issue.record("accepted")
        } catch {
            #expect(error.code == .invalidInput)
            #expect(error.description.hasPrefix("\(path):4:"))
            #expect(error.description.contains("expected ']' after the maximum"))
        }
    }

    @Test("kernel filters cover every message of the DBC with the right frame format")
    func filters() throws {
        let db = try DBCParser.parse("BO_ 100 A: 8 X\nBO_ 2147483748 B: 8 X\n")
        #expect(CANFilter.exact(for: db) == [CANFilter(id: 100, isExtended: false), CANFilter(id: 100, isExtended: true)])
    }
}
