/// How the car carries out a verified remote command, as pure decisions: whether it can now
/// (moving, ignition, doors, 12 V battery), the request frame it puts on the bus, when the
/// status frames show it done, and the daily wake-up budget. The shell (RemoteCommandService)
/// reads the car, transmits and waits; every choice is here, with a table test.
public enum RemoteExecution {
    /// The readings the decisions look at (nil: not available on the bus).
    public struct Car: Sendable, Equatable {
        public var speedKmh: Double?
        public var ignitionOn: Bool?
        public var anyDoorOpen = false
        public var batteryVolts: Double?
        /// The central lock's raw state: 0 unlocked, 1 locked, 2 safe-locked.
        public var centralLock: Int64?
        public var hazardLights: Bool?
        /// The climatisation's raw state: 0 off, anything else on.
        public var climatisationState: Int64?

        public init(speedKmh: Double? = nil, ignitionOn: Bool? = nil, anyDoorOpen: Bool = false, batteryVolts: Double? = nil,
                    centralLock: Int64? = nil, hazardLights: Bool? = nil, climatisationState: Int64? = nil) {
            self.speedKmh = speedKmh
            self.ignitionOn = ignitionOn
            self.anyDoorOpen = anyDoorOpen
            self.batteryVolts = batteryVolts
            self.centralLock = centralLock
            self.hazardLights = hazardLights
            self.climatisationState = climatisationState
        }
    }

    /// Why the car does not act now, as the real service reports it.
    public enum Refusal: String, Sendable, Equatable {
        case batteryLow, vehicleMoving, ignitionOn, doorOpen
    }

    /// Below this the car does not act remotely: it would not start afterwards.
    public static let minimumVolts = 11.8
    /// Above this the car is moving.
    public static let movingKmh = 2.0

    /// Why the car cannot do `action` now; nil when it can. The battery first, then in order.
    public static func refusal(_ action: RemoteCommand.Action, car: Car) -> Refusal? {
        if let v = car.batteryVolts, v < minimumVolts { return .batteryLow }
        let moving = (car.speedKmh ?? 0) > movingKmh
        let ignition = car.ignitionOn ?? false
        switch action {
        case .lock:
            if moving { return .vehicleMoving }
            if ignition { return .ignitionOn }
            if car.anyDoorOpen { return .doorOpen }
        case .unlock, .honkAndFlash, .flash:
            if moving { return .vehicleMoving }
        case .climatisationStart:
            if ignition { return .ignitionOn }
        case .climatisationStop, .wakeUp:
            break
        }
        return nil
    }

    /// A frame to transmit: the DBC message, its signals, and the signal carrying the XOR of the
    /// bytes before it (nil: no checksum).
    public struct Request: Sendable, Equatable {
        public var message: String
        public var signals: [String: Double]
        public var xorChecksum: String?
    }

    /// The request frame for `command` with the rolling `counter` (0 to 15); nil for a wake-up,
    /// which the command's arrival did already.
    public static func request(_ command: RemoteCommand, counter: Int) -> Request? {
        let c = Double(counter & 0x0F)
        switch command.action {
        case .lock, .unlock, .honkAndFlash, .flash:
            let code: Double = switch command.action {
            case .lock: 1
            case .unlock: 2
            case .honkAndFlash: 3
            default: 4
            }
            let duration: Double = command.action == .lock || command.action == .unlock ? 0 : 10
            return Request(message: "TCU_Body_Request",
                           signals: ["Body_Request": code, "Body_Request_Counter": c, "Honk_Flash_Duration": duration],
                           xorChecksum: "Body_Request_Checksum")
        case .climatisationStart, .climatisationStop:
            let start = command.action == .climatisationStart
            return Request(message: "TCU_Clima_Request", signals: [
                "Clima_Request": start ? 1 : 2, "Clima_Request_Counter": c,
                "Clima_Target_Temperature": command.targetTemperature ?? 16, "Clima_Duration": start ? 30 : 0,
            ], xorChecksum: nil)
        case .wakeUp:
            return nil
        }
    }

    /// The quantities whose changes can confirm a command.
    public static let confirmingQuantities: Set<VehicleQuantity> = [.centralLock, .hazardLights, .climatisationState]

    /// Whether the status frames show `action` done.
    public static func isConfirmed(_ action: RemoteCommand.Action, car: Car) -> Bool {
        switch action {
        case .lock: [1, 2].contains(car.centralLock ?? -1)
        case .unlock: car.centralLock == 0
        case .honkAndFlash, .flash: car.hazardLights == true
        case .climatisationStart: (car.climatisationState ?? 0) != 0
        case .climatisationStop: car.climatisationState == 0
        case .wakeUp: true
        }
    }
}

/// The remote wake-ups the car takes per UTC day: each costs the 12 V battery.
public struct WakeUpBudget: Sendable, Equatable {
    public let perDay: Int64
    public private(set) var day: Int64 = 0
    public private(set) var used: Int64 = 0

    public init(perDay: Int64) { self.perDay = perDay }

    /// Takes one wake-up at `nowMs` (UTC); false when the day's are used up.
    public mutating func take(nowMs: Int64) -> Bool {
        let today = nowMs / 86_400_000
        if today != day {
            day = today
            used = 0
        }
        guard used < perDay else { return false }
        used += 1
        return true
    }
}
