import ServiceLifecycle
import TelematicsCore

/// Turns vehicle state changes into events for the backend and hands them to the outbox:
/// the anti-theft alarm at alarm priority, doors, locks, ignition and climatisation as events
/// (lights, windows and ventilation go in their state blocks, sent on change).
///
/// Its feed from the bus is bounded (4096 changes, a few hundred KB; beyond it the oldest door,
/// lock, ignition and climatisation changes go, an alarm only when nothing else is left, counted
/// in `bus.changesDropped` and logged once per burst), and the outbox's memory is bounded
/// (OutboxBuffer). The work stays off the CAN reader thread: a reader held up there lets values
/// expire and loses the next change (it reads as a first value, not an event).
public struct VehicleEventService: Service {
    let changes: ChangeFeed
    let outbox: OutboxService
    let vin: String

    static let watched: Set<VehicleQuantity> = [
        .alarmTriggered, .centralLock, .ignitionOn, .climatisationState,
        .doorFrontLeftOpen, .doorFrontRightOpen, .doorRearLeftOpen, .doorRearRightOpen, .hoodOpen, .trunkOpen,
    ]

    /// Subscribe at construction: before the bus runs, so no early change is missed.
    public init(bus: VehicleBusService, outbox: OutboxService, vin: String) {
        changes = bus.changes(of: Self.watched, capacity: 4096, kept: [.alarmTriggered], for: "vehicle events")
        self.outbox = outbox
        self.vin = vin
    }

    public func run() async throws {
        for await list in changes.cancelOnGracefulShutdown() {
            outbox.submit(contentsOf: list.compactMap { Self.message(for: $0, vin: vin, id: messageID(unixMs: $0.at.nanoseconds / 1_000_000)) })
        }
    }

    /// The outbox message for one change, or nil when it is not an event (a value going stale).
    public static func message(for c: VehicleStateChange, vin: String, id: String) -> OutboxMessage? {
        guard let new = c.new else { return nil }
        // A first reading after start is state, not an event.
        guard c.old != nil else { return nil }
        let type: String
        var priority = OutboxPriority.event
        var stream = "events"
        switch c.quantity {
        case .alarmTriggered:
            guard new.flag == true else { return nil }
            type = "alarmTriggered"
            priority = .theftAlarm
            stream = "alarms"
        case .centralLock: type = "lockStateChanged"
        case .climatisationState:
            // Started (from off to heating, cooling, ...) or stopped; a change of mode is state.
            let on = (new.raw ?? 0) != 0, was = (c.old?.raw ?? 0) != 0
            guard on != was else { return nil }
            type = on ? "climatisationStarted" : "climatisationStopped"
        case .ignitionOn: type = new.flag == true ? "ignitionOn" : "ignitionOff"
        default: type = new.flag == true ? "opened" : "closed"
        }
        let body = JSON.object([
            ("id", .string(id)), ("vin", .string(vin)), ("type", .string(type)),
            ("quantity", .string(c.quantity.key)), ("value", new.json),
            ("capturedAt", .number(Double(c.at.nanoseconds / 1_000_000))),
        ])
        return OutboxMessage(id: id, stream: stream, priority: priority, capturedAtMs: c.at.nanoseconds / 1_000_000, payload: body.text)
    }

}
