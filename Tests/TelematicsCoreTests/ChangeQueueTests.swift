import Testing
@testable import TelematicsCore

@Suite("Change queue between the CAN reader and the event service")
struct ChangeQueueTests {
    /// A change of `q` to `on`, numbered by its time (ms) so that tests can tell them apart.
    func change(_ q: VehicleQuantity, _ n: Int64, on: Bool = true) -> VehicleStateChange {
        VehicleStateChange(quantity: q, old: .flag(!on), new: .flag(on), at: Timestamp(nanoseconds: n * 1_000_000))
    }

    func numbers(_ changes: [VehicleStateChange]) -> [Int64] { changes.map { $0.at.nanoseconds / 1_000_000 } }

    @Test("within its capacity it keeps everything, and drain gives arrival order and empties it")
    func keepsOrder() {
        var q = ChangeQueue(capacity: 8, kept: [.alarmTriggered])
        #expect(q.push([change(.doorFrontLeftOpen, 1), change(.alarmTriggered, 2)]) == nil)
        #expect(q.push([change(.centralLock, 3)]) == nil)
        let (out, notice) = q.drain()
        #expect(numbers(out) == [1, 2, 3])
        #expect(notice == nil && q.count == 0 && q.drain().changes.isEmpty)
    }

    /// What the queue holds when it is full (capacity 3) × what arrives: what is left, in order.
    static let overflows: [(held: [VehicleQuantity], arriving: VehicleQuantity, left: [Int64])] = [
        ([.doorFrontLeftOpen, .alarmTriggered, .centralLock], .trunkOpen, [2, 3, 4]),
        ([.alarmTriggered, .doorFrontLeftOpen, .centralLock], .trunkOpen, [1, 3, 4]),
        ([.alarmTriggered, .alarmTriggered, .doorFrontLeftOpen], .trunkOpen, [1, 2, 4]),
        ([.alarmTriggered, .alarmTriggered, .doorFrontLeftOpen], .alarmTriggered, [1, 2, 4]),
        ([.alarmTriggered, .alarmTriggered, .alarmTriggered], .trunkOpen, [1, 2, 3]),
        ([.alarmTriggered, .alarmTriggered, .alarmTriggered], .alarmTriggered, [2, 3, 4]),
    ]

    @Test("beyond its capacity the oldest ordinary change goes; an alarm only when nothing else is left",
          arguments: overflows)
    func overflow(_ held: [VehicleQuantity], _ arriving: VehicleQuantity, _ left: [Int64]) {
        var q = ChangeQueue(capacity: 3, kept: [.alarmTriggered])
        for (i, h) in held.enumerated() { #expect(q.push([change(h, Int64(i + 1))]) == nil) }
        #expect(q.push([change(arriving, 4)]) == .burstStarted)
        #expect(q.count == 3)
        #expect(numbers(q.drain().changes) == left)
    }

    @Test("a burst is told once when it starts and once, with its counts by quantity, at the first quiet drain")
    func burstNotices() {
        var q = ChangeQueue(capacity: 2, kept: [.alarmTriggered])
        #expect(q.push([change(.doorFrontLeftOpen, 1), change(.alarmTriggered, 2)]) == nil)
        #expect(q.push([change(.doorFrontLeftOpen, 3)]) == .burstStarted)
        #expect(q.push([change(.trunkOpen, 4)]) == nil)  // the same burst: told once
        // Still dropping since the last drain: the burst goes on.
        #expect(numbers(q.drain().changes) == [2, 4])
        #expect(q.push([change(.trunkOpen, 5), change(.trunkOpen, 6), change(.trunkOpen, 7)]) == nil)
        #expect(q.drain().notice == nil)
        #expect(q.push([change(.centralLock, 8)]) == nil)
        #expect(q.drain().notice == .burstEnded(dropped: [.doorFrontLeftOpen: 2, .trunkOpen: 1]))
        #expect(q.drain().notice == nil)
        #expect(q.dropped == [.doorFrontLeftOpen: 2, .trunkOpen: 1])
    }

    @Test("a flood that nobody drains stays within the capacity and keeps every alarm it can")
    func floodWithoutDrain() {
        var q = ChangeQueue(capacity: 100, kept: [.alarmTriggered])
        var most = 0
        for i in 0..<50_000 {
            _ = q.push([change(i % 1000 == 0 ? .alarmTriggered : .doorFrontLeftOpen, Int64(i), on: i % 2 == 0)])
            most = max(most, q.count)
        }
        #expect(most == 100)
        let out = q.drain().changes
        #expect(out.count == 100)
        #expect(out.filter { $0.quantity == .alarmTriggered }.count == 50)
        #expect(numbers(out).last == 49_999)
        #expect(numbers(out) == numbers(out).sorted())
        #expect(q.dropped[.doorFrontLeftOpen] == 49_900)
    }
}
