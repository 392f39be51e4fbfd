import Logging
import Platform
import ServiceLifecycle
import TelematicsCore
import VehicleBus

/// The roof console's service buttons (the SOS button belongs to the eCall): the breakdown
/// call and customer service send a service request with the odometer and, where the privacy
/// level lets it out, the position; service scheduling sends a maintenance request with the
/// odometer and what the cluster says is due. Each goes to `vehicles/{vin}/services`.
public struct ServiceButtonService: Service {
    let changes: ChangeFeed
    let bus: VehicleBusService
    let outbox: OutboxService
    let registration: CarRegistration
    let privacy: PrivacySetting
    let gnss: GNSSService?
    let vin: String
    let logger: Logger
    let clocks: Clocks

    public init(bus: VehicleBusService, outbox: OutboxService, registration: CarRegistration, privacy: PrivacySetting,
                gnss: GNSSService?, vin: String, logger: Logger, clocks: Clocks = .system) {
        changes = bus.changes(of: [.breakdownButton, .serviceButton, .schedulingButton], for: "service buttons")
        self.bus = bus
        self.outbox = outbox
        self.registration = registration
        self.privacy = privacy
        self.gnss = gnss
        self.vin = vin
        self.logger = logger
        self.clocks = clocks
    }

    /// The request a pressed button makes, given what the car knows; nil when the service is
    /// not available (not in the licence, or privacy offline).
    public static func request(for button: VehicleQuantity, vin: String, id: String, nowMs: Int64, registration: Registration,
                               privacy: PrivacyMode, odometer: Double?, position: FilteredFix?, serviceDue: JSON) -> OutboxMessage? {
        // The breakdown call is a safety service (no licence needed); the others need theirs.
        let service = button == .breakdownButton ? "breakdownCall" : "serviceScheduling"
        let codes = Capabilities.evaluate(registration, privacy: privacy, nowMs: nowMs).first { $0.id == service }?.codes ?? []
        guard codes.isEmpty else { return nil }
        var o: [(String, JSON)] = [("id", .string(id)), ("vin", .string(vin))]
        var carriesPosition = false
        switch button {
        case .schedulingButton:
            o += [("type", .string("maintenanceRequest")), ("serviceDue", serviceDue)]
        default:
            o += [("type", .string("serviceRequest")), ("service", .string(button == .breakdownButton ? "breakdown" : "customerService"))]
            // "Use my position": the request goes without it.
            if privacy == .shareMyPosition, let p = position {
                o.append(("position", .object([("latitude", .number(p.latitude)), ("longitude", .number(p.longitude)),
                                               ("trusted", .bool(p.trusted))])))
                carriesPosition = true
            } else {
                o.append(("position", .null))
            }
        }
        o.append(("odometer", odometer.map { .number($0) } ?? .null))
        o.append(("capturedAt", .number(Double(nowMs))))
        var m = OutboxMessage(id: id, stream: "services", priority: .commandResult, capturedAtMs: nowMs, payload: JSON.object(o).text)
        m.carriesPosition = carriesPosition
        return m
    }

    public func run() async throws {
        for await list in changes.cancelOnGracefulShutdown() {
            // A press is the flag rising; the first reading after start is state, not a press.
            for c in list where c.new?.flag == true && c.old?.flag == false {
                let due = bus.stateBlock("service").values
                let m = Self.request(for: c.quantity, vin: vin, id: messageID(unixMs: clocks.wallMs), nowMs: clocks.wallMs,
                                     registration: registration.current, privacy: privacy.current,
                                     odometer: bus.value(.odometer)?.number, position: gnss?.currentFix(), serviceDue: due)
                guard let m else {
                    logger.notice("service button pressed, but the service is not available", metadata: ["button": "\(c.quantity.key)"])
                    continue
                }
                logger.notice("service button pressed: request sent", metadata: ["button": "\(c.quantity.key)"])
                outbox.submit(m)
            }
        }
    }
}
