@testable import Outbox
import Testing
import TelematicsCore

@Suite("The fleet's outbox: one file, a stream per car, numbered without gaps, durable across restarts")
struct FleetOutboxStoreTests {
    static let vins = ["VSSZZZKLZNR000001", "VSSZZZKLZNR000002", "VSSZZZKLZNR000003"]

    static func message(_ text: String, priority: OutboxPriority = .event) -> OutboxMessage {
        OutboxMessage(id: text, stream: "events", priority: priority, capturedAtMs: 1, payload: "{\"id\":\"\(text)\"}")
    }

    @Test("each car numbers its own messages from 1; acknowledged ones leave; a restart goes on from where it was")
    func numbering() throws {
        let path = scratch()
        do {
            let store = try FleetOutboxStore(path: path, vins: Self.vins)
            let got = try store.commit(appending: [(0, Self.message("a")), (2, Self.message("b")), (0, Self.message("c"))], acknowledged: [])
            #expect(got == [0, 2])
            #expect(store.lastSequence == [2, 0, 1])
            #expect(try store.take(slot: 0, after: 0, limit: 10).map(\.seq) == [1, 2])
            #expect(try store.take(slot: 0, after: 1, limit: 10).map(\.id) == ["c"])
            try store.commit(appending: [], acknowledged: [(0, 1)])
            #expect(try store.waiting()[0]?.first == 2)
            store.close()
        }
        let again = try FleetOutboxStore(path: path, vins: Self.vins)
        #expect(again.lastSequence == [2, 0, 1])
        #expect(try again.waiting().mapValues(\.count) == [0: 1, 2: 1])
        try again.commit(appending: [(0, Self.message("d"))], acknowledged: [])
        #expect(try again.take(slot: 0, after: 0, limit: 10).map(\.seq) == [2, 3])
    }

    @Test("a car's registration is kept with its turn's messages and read back on the next run; a version-1 file gains the column")
    func registrations() throws {
        let path = scratch()
        do {
            // A version-1 file, as the fleet of the last release left it.
            let db = try SQLiteDatabase(path: path)
            try db.exec("""
                CREATE TABLE cars(slot INTEGER PRIMARY KEY, vin TEXT NOT NULL UNIQUE, last_seq INTEGER NOT NULL);
                CREATE TABLE messages(slot INTEGER NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, stream TEXT NOT NULL,
                    priority INTEGER NOT NULL, captured_at INTEGER NOT NULL, payload TEXT NOT NULL, PRIMARY KEY(slot, seq)) WITHOUT ROWID;
                INSERT INTO cars VALUES (0, 'VSSZZZKLZNR000001', 1), (1, 'VSSZZZKLZNR000002', 0), (2, 'VSSZZZKLZNR000003', 0);
                INSERT INTO messages VALUES (0, 1, 'a', 'events', 3, 1, '{}');
                PRAGMA user_version = 1;
                """)
            db.close()
        }
        do {
            let store = try FleetOutboxStore(path: path, vins: Self.vins)
            #expect(store.registrations.isEmpty)
            #expect(try store.waiting()[0]?.count == 1)
            try store.commit(appending: [(1, Self.message("b"))], acknowledged: [], registrations: [1: #"{"status":"completed"}"#])
            store.close()
        }
        let again = try FleetOutboxStore(path: path, vins: Self.vins)
        #expect(again.registrations == [1: #"{"status":"completed"}"#])
        #expect(again.lastSequence == [1, 1, 0])
    }

    @Test("a file written for another fleet or shard is refused, not mixed")
    func otherFleet() throws {
        let path = scratch()
        _ = try FleetOutboxStore(path: path, vins: Self.vins)
        #expect(throws: OutboxError.self) { try FleetOutboxStore(path: path, vins: ["VSSZZZKLZNR000009"] + Self.vins.dropFirst()) }
        do {
            _ = try FleetOutboxStore(path: path, vins: Array(Self.vins.prefix(2)))
            Issue.record("a shard with fewer cars opened the file")
        } catch {
            #expect(error.message.contains("its car 2 is VSSZZZKLZNR000003, this shard's is no car"))
        }
    }

    @Test("full: a state or event message is refused before it is numbered (no gap); an eCall report is kept")
    func full() throws {
        let store = try FleetOutboxStore(path: scratch(), vins: Self.vins, maximumBytes: 20)
        try store.commit(appending: [(1, Self.message("one")), (1, Self.message("two")), (1, Self.message("ecall", priority: .eCallReport))],
                         acknowledged: [])
        #expect(store.refused == 1)
        #expect(try store.take(slot: 1, after: 0, limit: 10).map(\.id) == ["one", "ecall"])
        #expect(try store.take(slot: 1, after: 0, limit: 10).map(\.seq) == [1, 2])
    }
}
