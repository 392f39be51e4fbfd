import Backend
import Testing
import TelematicsCore

@Suite("Reference backend store")
struct BackendStoreTests {
    let vin = "VSSZZZKLZNR012345"

    func state(_ id: String, seq: Int, block: String, captured: Int, open: Bool) -> String {
        #"{"seq":\#(seq),"sentAt":0,"id":"\#(id)","vin":"\#(vin)","type":"state","block":"\#(block)","capturedAt":\#(captured),"values":{"frontLeft":{"open":\#(open)}}}"#
    }

    @Test("a message is stored once; a re-send with the same id is counted as a duplicate; gaps are found")
    func duplicatesAndGaps() throws {
        let store = try BackendStore(path: backendDatabase())
        let topic = "vehicles/\(vin)/events"
        #expect(try store.receive(topic: topic, payload: #"{"seq":1,"id":"a","type":"opened"}"#, receivedAtMs: 1) == .stored)
        #expect(try store.receive(topic: topic, payload: #"{"seq":1,"id":"a","type":"opened"}"#, receivedAtMs: 2) == .duplicate)
        #expect(try store.receive(topic: topic, payload: #"{"seq":4,"id":"b","type":"closed"}"#, receivedAtMs: 3) == .stored)
        #expect(try store.duplicates(vin: vin) == 1)
        #expect(try store.gaps(vin: vin) == [2...3])
        #expect(try store.messages(vin: vin).count == 2)
    }

    @Test("malformed messages are rejected with the reason and store nothing")
    func rejected() throws {
        let store = try BackendStore(path: backendDatabase())
        guard case .rejected(let why) = try store.receive(topic: "vehicles/\(vin)/events", payload: "{not json", receivedAtMs: 1) else {
            Issue.record("accepted"); return
        }
        #expect(why.contains("not JSON"))
        guard case .rejected(let noID) = try store.receive(topic: "vehicles/\(vin)/events", payload: #"{"seq":1}"#, receivedAtMs: 1) else {
            Issue.record("accepted"); return
        }
        #expect(noID.contains("\"id\""))
        guard case .rejected = try store.receive(topic: "cars/x", payload: #"{"id":"a"}"#, receivedAtMs: 1) else {
            Issue.record("accepted"); return
        }
        #expect(try store.messages(vin: vin).isEmpty)
    }

    @Test("the state keeps the newest capture of each block; an older one arriving late does not replace it; a heartbeat refreshes the time received")
    func stateBlocks() throws {
        let store = try BackendStore(path: backendDatabase())
        let topic = "vehicles/\(vin)/state"
        try store.receive(topic: topic, payload: state("1", seq: 1, block: "doors", captured: 100, open: true), receivedAtMs: 1_000)
        try store.receive(topic: topic, payload: state("2", seq: 3, block: "doors", captured: 300, open: false), receivedAtMs: 2_000)
        try store.receive(topic: topic, payload: state("3", seq: 2, block: "doors", captured: 200, open: true), receivedAtMs: 3_000)
        var s = try store.state(vin: vin)
        #expect(s.count == 1 && s[0].block == "doors" && s[0].capturedAtMs == 300 && s[0].receivedAtMs == 2_000)
        #expect(try JSON.parse(s[0].values)["frontLeft"]?["open"] == .bool(false))
        try store.receive(topic: topic, payload: state("4", seq: 4, block: "doors", captured: 300, open: false), receivedAtMs: 9_000)
        s = try store.state(vin: vin)
        #expect(s[0].receivedAtMs == 9_000)
    }

    @Test("a car's request to delete its data deletes everything of it; sequence numbers count from there")
    func deleteMyData() throws {
        let store = try BackendStore(path: backendDatabase())
        try store.receive(topic: "vehicles/\(vin)/events", payload: #"{"seq":1,"id":"a","type":"opened"}"#, receivedAtMs: 1)
        try store.receive(topic: "vehicles/\(vin)/state", payload: state("s", seq: 2, block: "doors", captured: 100, open: true), receivedAtMs: 1)
        let receipt = try store.receive(topic: "vehicles/\(vin)/requests", payload: #"{"seq":5,"id":"r","type":"deleteMyData"}"#, receivedAtMs: 2)
        #expect(receipt == .dataDeleted(requestId: "r"))
        #expect(try store.messages(vin: vin).isEmpty && store.state(vin: vin).isEmpty)
        #expect(try store.gaps(vin: vin).isEmpty)
        try store.receive(topic: "vehicles/\(vin)/events", payload: #"{"seq":7,"id":"b","type":"opened"}"#, receivedAtMs: 3)
        #expect(try store.gaps(vin: vin) == [6...6])
    }

    @Test("the messages of one read are stored together, each with its receipt in order: a re-send within the batch is a duplicate, a malformed one refused, a deletion deletes what came before it")
    func batch() throws {
        let store = try BackendStore(path: backendDatabase())
        let events = "vehicles/\(vin)/events"
        let receipts = try store.receive([
            (events, #"{"seq":1,"id":"a","type":"opened"}"#),
            ("vehicles/\(vin)/connection", #"{"online":true}"#),
            (events, #"{"seq":1,"id":"a","type":"opened"}"#),
            (events, "{not json"),
            ("vehicles/\(vin)/state", state("s", seq: 2, block: "doors", captured: 100, open: true)),
            (events, #"{"seq":3,"id":"c","type":"closed"}"#),
        ], receivedAtMs: 1)
        #expect(receipts.count == 6)
        #expect(Array(receipts[0...2]) == [.stored, .stored, .duplicate])
        guard case .rejected = receipts[3] else { Issue.record("accepted: \(receipts[3])"); return }
        #expect(Array(receipts[4...5]) == [.stored, .stored])
        #expect(try store.messages(vin: vin).map(\.seq) == [1, 2, 3])
        #expect(try store.duplicates(vin: vin) == 1 && store.state(vin: vin).count == 1 && store.connection(vin: vin) != nil)
        // A deletion among them: what came before it in the batch goes with the rest.
        let other = try store.receive([
            (events, #"{"seq":4,"id":"d","type":"opened"}"#),
            ("vehicles/\(vin)/requests", #"{"seq":5,"id":"r","type":"deleteMyData"}"#),
            (events, #"{"seq":6,"id":"e","type":"closed"}"#),
        ], receivedAtMs: 2)
        #expect(other == [.stored, .dataDeleted(requestId: "r"), .stored])
        #expect(try store.messages(vin: vin).map(\.seq) == [6] && store.wasReset(vin: vin))
        #expect(try store.resetCars(among: [vin, "VSSZZZKLZNR000001"]) == [vin])
        #expect(try store.receive([], receivedAtMs: 3).isEmpty)
    }
}
