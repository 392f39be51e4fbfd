import Logging
import Platform
import TelematicsCore
import VehicleBus

/// Delete user / restore factory settings: the car forgets its registration, the parking
/// position, the user's privacy choice and every queued message, then asks the backend (through
/// the outbox, never evicted) to delete the car's data. The eCall is not touched.
public struct FactoryReset: Sendable {
    let registration: CarRegistration
    let gnss: GNSSService?
    let privacy: PrivacySetting
    let configuredPrivacy: PrivacyMode
    let outbox: OutboxService
    let state: VehicleStateService?
    let vin: String
    let logger: Logger
    let clocks: Clocks

    public init(registration: CarRegistration, gnss: GNSSService?, privacy: PrivacySetting, configuredPrivacy: PrivacyMode,
                outbox: OutboxService, state: VehicleStateService? = nil, vin: String, logger: Logger, clocks: Clocks = .system) {
        self.clocks = clocks
        self.state = state
        self.registration = registration
        self.gnss = gnss
        self.privacy = privacy
        self.configuredPrivacy = configuredPrivacy
        self.outbox = outbox
        self.vin = vin
        self.logger = logger
    }

    /// Why a reset did not complete.
    public struct Failure: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    /// Resets; how many queued messages were deleted (the backend is asked to delete the rest).
    public func perform() -> Result<Int, Failure> {
        let now = clocks.wallMs
        registration.reset()
        gnss?.clearParking()
        privacy.reset(to: configuredPrivacy)
        state?.forgetPending()
        let id = messageID(unixMs: now)
        // At alarm priority: never evicted, kept until the backend has it.
        let ask = OutboxMessage(id: id, stream: "requests", priority: .theftAlarm, capturedAtMs: now, payload: JSON.object([
            ("id", .string(id)), ("vin", .string(vin)), ("type", .string("deleteMyData")), ("capturedAt", .number(Double(now))),
        ]).text)
        guard let deleted = outbox.factoryReset(then: ask) else {
            logger.error("factory reset: the outbox could not be emptied")
            return .failure(Failure(description: "the outbox could not be emptied"))
        }
        logger.notice("factory reset: registration, parking position, privacy choice and queued data deleted in the car")
        return .success(deleted)
    }
}
