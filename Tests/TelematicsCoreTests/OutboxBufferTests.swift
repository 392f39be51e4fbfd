import Testing
@testable import TelematicsCore

@Suite("Outbox buffer in memory")
struct OutboxBufferTests {
    func message(_ priority: OutboxPriority, _ id: String, block: String? = nil, size: Int = 40) -> OutboxMessage {
        OutboxMessage(id: id, stream: priority.name, priority: priority, coalesceKey: block.map { "state." + $0 }, capturedAtMs: 0,
                      payload: String(repeating: "x", count: size))
    }

    /// Room for about `n` messages of the default size.
    func buffer(room n: Int) -> OutboxBuffer { OutboxBuffer(limitBytes: n * (40 + 2 + OutboxBuffer.overheadBytes)) }

    @Test("a state block replaces its unsent predecessor in its place; drain gives arrival order")
    func coalescing() {
        var b = buffer(room: 100)
        _ = b.add(message(.state, "s1", block: "doors"))
        _ = b.add(message(.event, "e1"))
        _ = b.add(message(.state, "s2", block: "doors"))
        _ = b.add(message(.theftAlarm, "a1"))
        #expect(b.count == 3)
        let (out, notice) = b.drain()
        #expect(out.map(\.id) == ["s2", "e1", "a1"])
        #expect(notice == nil && b.count == 0 && b.bytes == 0)
    }

    /// Every priority the buffer may hold when it overflows × the one that arrives: what goes.
    static let evictions: [(held: [OutboxPriority], arriving: OutboxPriority, left: [String])] = [
        ([.state, .event, .commandResult, .theftAlarm, .eCallReport], .event, ["e", "r", "a", "c", "new"]),
        ([.event, .commandResult, .theftAlarm, .eCallReport], .event, ["r", "a", "c", "new"]),
        ([.commandResult, .theftAlarm, .eCallReport], .event, ["r", "a", "c"]),
        ([.theftAlarm, .eCallReport], .theftAlarm, ["c", "new"]),
        ([.eCallReport, .theftAlarm], .eCallReport, ["c", "new"]),
        ([.state, .theftAlarm], .state, ["a", "new"]),
    ]

    @Test("beyond the limit the oldest of the least important priority goes: state, then events, then results; an alarm or an eCall report only when nothing else is left",
          arguments: evictions)
    func eviction(_ held: [OutboxPriority], _ arriving: OutboxPriority, _ left: [String]) {
        var b = buffer(room: held.count)
        let ids: [OutboxPriority: String] = [.state: "s", .event: "e", .commandResult: "r", .theftAlarm: "a", .eCallReport: "c"]
        for p in held { #expect(b.add(message(p, ids[p]!, block: p == .state ? "doors" : nil)) == nil) }
        #expect(b.add(message(arriving, "new", block: arriving == .state ? "windows" : nil)) == .burstStarted)
        #expect(b.drain().messages.map(\.id).sorted() == left.sorted())
    }

    @Test("a burst is told once when it starts and once, with its count, at the first quiet drain")
    func burstNotices() {
        var b = buffer(room: 2)
        #expect(b.add(message(.event, "e1")) == nil)
        #expect(b.add(message(.event, "e2")) == nil)
        #expect(b.add(message(.event, "e3")) == .burstStarted)
        #expect(b.add(message(.event, "e4")) == nil)
        // Still dropping since the last drain: the burst goes on.
        #expect(b.drain().notice == nil)
        _ = b.add(message(.event, "e5"))
        _ = b.add(message(.state, "s1", block: "doors"))
        _ = b.add(message(.event, "e6"))
        let (out, notice) = b.drain()
        #expect(out.map(\.id) == ["e5", "e6"])
        #expect(notice == nil)
        #expect(b.drain().notice == .burstEnded(dropped: [.event: 2, .state: 1]))
        #expect(b.dropped == [.event: 2, .state: 1])
        #expect(b.add(message(.event, "e7")) == nil)
    }

    @Test("a flood keeps memory within the limit and the newest messages, in order")
    func flood() {
        var b = buffer(room: 500)
        var peak = 0
        for i in 0..<100_000 {
            _ = b.add(message(.event, "e\(i)"))
            if i % 7 == 0 { _ = b.add(message(.state, "s\(i)", block: "block\(i % 3)")) }
            peak = max(peak, b.bytes)
        }
        _ = b.add(message(.theftAlarm, "alarm"))
        #expect(peak <= b.limitBytes)
        let out = b.drain().messages
        #expect(out.last?.id == "alarm")
        let events = out.filter { $0.priority == .event }.map { Int($0.id.dropFirst())! }
        #expect(events == Array((100_000 - events.count)..<100_000))
        #expect(b.dropped[.event, default: 0] + events.count == 100_000)
    }
}
