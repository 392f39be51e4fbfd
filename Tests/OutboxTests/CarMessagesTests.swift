import Backend
import Testing

@Suite("The backend's handling of one read's messages")
struct CarMessagesTests {
    let car = "VSSZZZKLZNR012345"
    let other = "VSSZZZKLZNR054321"

    @Test("stored together in their order; the backend's own messages skipped; a car's deletion ends the run, so what it sends after it is dropped until it is in a garage again")
    func batch() throws {
        let path = backendDatabase()
        let store = try BackendStore(path: path)
        let messages = CarMessages(portal: try Portal(path: path, rounds: 1_000), store: store, note: { _ in })
        let replies = try messages.handle([
            ("vehicles/\(car)/events", Array(#"{"seq":1,"id":"a","type":"opened"}"#.utf8)),
            ("vehicles/\(car)/commands", Array(#"{"id":"x"}"#.utf8)),
            ("vehicles/\(other)/events", Array(#"{"seq":1,"id":"b","type":"opened"}"#.utf8)),
            ("vehicles/\(car)/requests", Array(#"{"seq":2,"id":"r","type":"deleteMyData"}"#.utf8)),
            ("vehicles/\(car)/events", Array(#"{"seq":3,"id":"c","type":"closed"}"#.utf8)),
            ("vehicles/\(other)/events", Array(#"{"seq":2,"id":"d","type":"closed"}"#.utf8)),
        ], nowMs: 10)
        #expect(replies.map(\.topic) == ["vehicles/\(car)/reset/response"])
        #expect(replies.first?.body["requestId"]?.stringValue == "r")
        #expect(try store.messages(vin: car).isEmpty && store.wasReset(vin: car))
        #expect(try store.messages(vin: other).map(\.seq) == [1, 2])
        // The next read: the car is still a stranger.
        _ = try messages.handle([("vehicles/\(car)/events", Array(#"{"seq":4,"id":"e","type":"opened"}"#.utf8))], nowMs: 11)
        #expect(try store.messages(vin: car).isEmpty)
    }
}
