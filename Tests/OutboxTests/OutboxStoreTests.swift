#if canImport(Glibc)
import Glibc
#endif
import Testing
import TelematicsCore
@testable import Outbox

func scratch() -> String {
    var template = Array("/tmp/tcu-outbox-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) } + "/outbox.db"
}

func message(_ n: Int, _ p: OutboxPriority, stream: String = "events", key: String? = nil, size: Int = 20) -> OutboxMessage {
    OutboxMessage(id: "m\(n)", stream: stream, priority: p, coalesceKey: key, capturedAtMs: Int64(n),
                  payload: "{\"n\":\(n),\"pad\":\"" + String(repeating: "x", count: size) + "\"}")
}

@Suite("Outbox store (SQLite)")
struct OutboxStoreTests {
    @Test("messages survive closing and reopening the file, in priority then arrival order")
    func durableAndOrdered() throws {
        let path = scratch()
        let store = try OutboxStore(path: path)
        try store.append([message(1, .state, stream: "state"), message(2, .event), message(3, .eCallReport, stream: "ecall"),
                          message(4, .event), message(5, .theftAlarm, stream: "alarms")])
        store.close()
        let again = try OutboxStore(path: path)
        let next = try again.next(limit: 10)
        #expect(next.map(\.message.id) == ["m3", "m5", "m2", "m4", "m1"])
        // Sequence numbers follow the order they are first taken, without gaps.
        #expect(next.map(\.sequence) == [1, 2, 3, 4, 5])
    }

    @Test("the file is in WAL mode with synchronous=FULL")
    func pragmas() throws {
        let path = scratch()
        _ = try OutboxStore(path: path)
        let db = try SQLiteDatabase(path: path)
        let mode = try db.statement("PRAGMA journal_mode")
        _ = try mode.step()
        #expect(mode.text(0) == "wal")
        let version = try db.statement("PRAGMA user_version")
        _ = try version.step()
        #expect(version.int(0) == Int64(OutboxStore.schemaVersion))
    }

    @Test("state is coalesced while unsent; sequence numbers keep no gaps for what was replaced")
    func coalescing() throws {
        let store = try OutboxStore(path: scratch())
        try store.append([message(1, .state, stream: "state", key: "doors"), message(2, .state, stream: "state", key: "doors"),
                          message(3, .state, stream: "state", key: "climate"), message(4, .state, stream: "state", key: "doors")])
        let next = try store.next(limit: 10)
        #expect(next.map(\.message.id) == ["m3", "m4"])
        #expect(next.map(\.sequence) == [1, 2])
        #expect(try store.statistics().coalesced == 2)
        // A value already sent is not replaced: it keeps its number; the new one follows it.
        try store.append([message(5, .state, stream: "state", key: "doors")])
        #expect(try store.next(limit: 10).map(\.message.id) == ["m3", "m4", "m5"])
    }

    @Test("re-sends keep their sequence numbers; acknowledged messages are gone")
    func acknowledge() throws {
        let store = try OutboxStore(path: scratch())
        try store.append((1...5).map { message($0, .event) })
        let first = try store.next(limit: 2)
        #expect(first.map(\.sequence) == [1, 2])
        let more = try store.next(limit: 10, excluding: Set(first.map(\.message.id)))
        #expect(more.map(\.sequence) == [3, 4, 5])
        try store.acknowledge(["m1", "m3"])
        #expect(try store.next(limit: 10).map(\.sequence) == [2, 4, 5])
        #expect(try store.statistics().messages[.event] == 3)
    }

    @Test("a duplicate id is stored once")
    func duplicates() throws {
        let store = try OutboxStore(path: scratch())
        try store.append([message(1, .event), message(1, .event)])
        #expect(try store.next(limit: 10).count == 1)
    }

    @Test("when full, the lowest priority and oldest go first; eCall reports and alarms never")
    func eviction() throws {
        let store = try OutboxStore(path: scratch(), maximumBytes: 2_000)
        try store.append([message(1, .eCallReport, stream: "ecall", size: 300), message(2, .theftAlarm, stream: "alarms", size: 300)])
        try store.append((10..<20).map { message($0, .event, size: 100) })
        try store.append((20..<30).map { message($0, .state, stream: "state", key: "k\($0)", size: 100) })
        let s = try store.statistics()
        #expect(s.bytes <= 2_000)
        #expect(s.messages[.eCallReport] == 1 && s.messages[.theftAlarm] == 1)
        #expect((s.evicted[.state] ?? 0) > 0)
        // State went before any event.
        #expect(s.evicted[.event] == nil || s.messages[.state] == nil)
        // Non-evictable messages alone may exceed the bound: they are kept.
        let tiny = try OutboxStore(path: scratch(), maximumBytes: 100)
        try tiny.append([message(1, .eCallReport, stream: "ecall", size: 500), message(2, .event, size: 10)])
        #expect(try tiny.next(limit: 10).map(\.message.id) == ["m1"])
        #expect(try tiny.statistics().evicted[.event] == 1)
    }

    @Test("a damaged database is moved aside, never deleted, and the outbox starts afresh")
    func corruption() throws {
        let path = scratch()
        let garbage = "this is not a database, this is a tailgate" + String(repeating: "!", count: 4000)
        let f = fopen(path, "w")!
        fputs(garbage, f)
        fclose(f)
        let store = try OutboxStore(path: path)
        let aside = try #require(store.movedAside)
        #expect(access(aside, F_OK) == 0)
        try store.append([message(1, .event)])
        #expect(try store.next(limit: 1).count == 1)
    }

    @Test("a file from a newer version is refused with a clear error")
    func newerSchema() throws {
        let path = scratch()
        let db = try SQLiteDatabase(path: path)
        try db.exec("PRAGMA user_version = 99")
        db.close()
        #expect(throws: OutboxError.self) { try OutboxStore(path: path) }
        do { _ = try OutboxStore(path: path) } catch { #expect(error.description.contains("newer version (schema 99")) }
    }

    @Test("a version 1 file migrates forward and keeps its messages and sequence numbers")
    func migratesFromVersion1() throws {
        let path = scratch()
        let db = try SQLiteDatabase(path: path)
        try db.exec("""
            PRAGMA journal_mode=WAL;
            CREATE TABLE messages(position INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, stream TEXT NOT NULL,
                priority INTEGER NOT NULL, coalesce_key TEXT, captured_at INTEGER NOT NULL, payload TEXT NOT NULL,
                size INTEGER NOT NULL, sequence INTEGER);
            CREATE INDEX messages_order ON messages(priority, position);
            CREATE INDEX messages_coalesce ON messages(coalesce_key) WHERE coalesce_key IS NOT NULL;
            CREATE TABLE counters(name TEXT PRIMARY KEY, value INTEGER NOT NULL);
            INSERT INTO counters VALUES ('next_sequence', 8), ('bytes', 100), ('coalesced', 0);
            INSERT INTO messages(id, stream, priority, captured_at, payload, size, sequence) VALUES ('old', 'events', 3, 1, '{}', 100, 7);
            INSERT INTO messages(id, stream, priority, captured_at, payload, size) VALUES ('new', 'events', 3, 2, '{}', 100);
            PRAGMA user_version = 1;
            """)
        db.close()
        let store = try OutboxStore(path: path)
        let next = try store.next(limit: 10)
        #expect(next.map(\.message.id) == ["old", "new"] && next.map(\.sequence) == [7, 8])
        #expect(next.allSatisfy { !$0.message.carriesPosition })
        try store.append([OutboxMessage(id: "p", stream: "state", priority: .state, capturedAtMs: 3, payload: "{}", carriesPosition: true)])
        #expect(try store.next(limit: 10, excluding: ["old", "new"]).first?.message.carriesPosition == true)
    }

    @Test("while positions may not be sent they stay in; when the user stops sharing them they are deleted")
    func positions() throws {
        let store = try OutboxStore(path: scratch())
        try store.append([
            OutboxMessage(id: "parking", stream: "state", priority: .state, coalesceKey: "state.parking", capturedAtMs: 1, payload: "{}",
                          carriesPosition: true),
            message(2, .event),
        ])
        #expect(try store.next(limit: 10, positions: false).map(\.message.id) == ["m2"])
        #expect(try store.discardUnsentPositions() == 1)
        #expect(try store.next(limit: 10).map(\.message.id) == ["m2"])
    }

    @Test("a factory reset empties the outbox and the sequence goes on")
    func deleteAll() throws {
        let store = try OutboxStore(path: scratch())
        try store.append([message(1, .event), message(2, .theftAlarm, stream: "alarms")])
        #expect(try store.next(limit: 1).first?.sequence == 1)
        #expect(try store.deleteAll() == 2)
        #expect(try store.statistics().bytes == 0 && store.next(limit: 10).isEmpty)
        try store.append([message(3, .event)])
        #expect(try store.next(limit: 10).first?.sequence == 2)
    }

    @Test("message ids are version-7 UUIDs: unique, in the order of their times, the time in the first 48 bits")
    func ids() {
        var seen = Set<String>()
        for _ in 0..<1000 { seen.insert(messageID(unixMs: 1_764_000_000_000)) }
        #expect(seen.count == 1000)
        let id = messageID(unixMs: 0x0192_3456_789A)
        #expect(id.count == 36)
        #expect(id.hasPrefix("01923456-789a-7"))
        let variant = Array(id)[19]
        #expect("89ab".contains(variant))
        #expect(id == id.lowercased())
        // Later times sort later, whatever the random bits.
        let times: [Int64] = [1, 1_000, 1_764_000_000_000, 1_764_000_000_001, 0xFFFF_FFFF_FFFF]
        let ids = times.map { messageID(unixMs: $0) }
        #expect(ids == ids.sorted())
        // Out of range times are clamped, never a trap.
        #expect(messageID(unixMs: -5).hasPrefix("00000000-0000-7"))
        #expect(messageID(unixMs: .max).hasPrefix("ffffffff-ffff-7"))
    }

    @Test("with a fixed generator the id is fixed: the random bits fill the rest")
    func idLayout() {
        struct Fixed: RandomNumberGenerator { mutating func next() -> UInt64 { .max } }
        var g = Fixed()
        #expect(messageID(unixMs: 0, using: &g) == "00000000-0000-7fff-bfff-ffffffffffff")
    }
}

@Suite("Outbox store on a disk that fills up")
struct OutboxDiskTests {
    @Test("below the disk reserve, low-priority messages are evicted to make room; eCall reports and alarms are kept")
    func diskReserve() throws {
        let path = scratch()
        // A reserve larger than any disk: every append finds the disk "full".
        let store = try OutboxStore(path: path, maximumBytes: 1 << 30, diskReserveBytes: 1 << 50)
        #expect(!store.isDiskLow)
        try store.append([message(1, .eCallReport, stream: "ecall"), message(2, .theftAlarm, stream: "alarms")])
        try store.append((3...40).map { message($0, .event) } + [message(41, .state, stream: "state", key: "doors")])
        #expect(store.isDiskLow)
        try store.append([message(42, .theftAlarm, stream: "alarms"), message(43, .event)])
        let s = try store.statistics()
        #expect(s.messages[.eCallReport] == 1 && s.messages[.theftAlarm] == 2)
        #expect((s.evicted[.event] ?? 0) >= 38 && s.evicted[.state] == 1)
        #expect(s.evicted[.eCallReport] == nil && s.evicted[.theftAlarm] == nil)
        #expect(try store.next(limit: 10).map(\.message.id).prefix(3) == ["m1", "m2", "m42"])
    }

    @Test("a disk with room leaves everything in place")
    func roomy() throws {
        let store = try OutboxStore(path: scratch(), maximumBytes: 1 << 30, diskReserveBytes: 0)
        try store.append((1...50).map { message($0, .state, stream: "state") })
        #expect(!store.isDiskLow)
        #expect(try store.statistics().messages[.state] == 50)
    }
}

@Suite("Outbox WAL")
struct OutboxWALTests {
    func fileSize(_ path: String) -> Int {
        var st = stat()
        return stat(path, &st) == 0 ? Int(st.st_size) : 0
    }

    @Test("the WAL is checkpointed and stays bounded while messages keep coming")
    func walBounded() throws {
        let path = scratch()
        let store = try OutboxStore(path: path, maximumBytes: 1 << 30, diskReserveBytes: 0)
        for round in 0..<40 {
            try store.append((0..<250).map { message(round * 1000 + $0, .event, size: 200) })
            _ = try store.statistics()
        }
        #expect(try store.statistics().messages[.event] == 10_000)
        #expect(fileSize(path + "-wal") <= 5 << 20, "WAL \(fileSize(path + "-wal")) bytes")
        #expect(fileSize(path) > 2 << 20)
    }
}
