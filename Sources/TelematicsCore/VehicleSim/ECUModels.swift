/// The electronic control units of the simulated car, one pure state machine each.
///
/// Overview: every model is a value with one method per event, named for what happened; each
/// returns an `ECUOutcome` saying whether the unit acted, refused (with the reason a real
/// controller has), or saw nothing to do. Time enters as an argument (milliseconds on the
/// simulation's monotonic clock); nothing here reads a clock, does IO or logs. The vehicle
/// (`SimulatedVehicle`) owns one of each, feeds them, and turns their state into frames.

/// What an ECU did with an event.
public enum ECUOutcome: Sendable, Equatable, CustomStringConvertible {
    /// It acted: the state changed.
    case done
    /// Nothing to do: the state already was so.
    case unchanged
    /// A real controller would refuse this now; the reason is the wire cause (`doorOpen`).
    case refused(String)
    /// The anti-theft alarm went off (a door, the hood or the trunk opened while armed).
    case alarmTriggered(AlarmSource)
    /// A running function ended (remote climatisation: `duration`, `ignitionOn`, `batteryLow`).
    case ended(String)

    public var description: String {
        switch self {
        case .done: "done"
        case .unchanged: "unchanged"
        case .refused(let r): "refused (\(r))"
        case .alarmTriggered(let s): "alarm triggered (\(s))"
        case .ended(let r): "ended (\(r))"
        }
    }
}

/// An opening of the body: the four doors, the hood and the trunk.
public enum Opening: String, Sendable, CaseIterable, Hashable {
    case frontLeft, frontRight, rearLeft, rearRight, hood, trunk

    public var isDoor: Bool { self != .hood && self != .trunk }
}

public enum WindowPosition: String, Sendable, CaseIterable, Hashable {
    case frontLeft, frontRight, rearLeft, rearRight
}

/// What caused the last central locking action (the DBC's Lock_Source).
public enum LockSource: Int, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0, keyFob = 1, keyless = 2, doorHandle = 3, telematics = 4, autoLock = 5
    public var description: String {
        switch self {
        case .none: "none"
        case .keyFob: "keyFob"
        case .keyless: "keyless"
        case .doorHandle: "doorHandle"
        case .telematics: "telematics"
        case .autoLock: "autoLock"
        }
    }
}

/// What set the anti-theft alarm off (the DBC's Alarm_Source).
public enum AlarmSource: Int, Sendable, CustomStringConvertible {
    case none = 0, door = 1, hood = 2, trunk = 3, interiorMotion = 4, tilt = 5, glassBreak = 6, towing = 7, powerLoss = 8
    public var description: String {
        switch self {
        case .none: "none"
        case .door: "door"
        case .hood: "hood"
        case .trunk: "trunk"
        case .interiorMotion: "interiorMotion"
        case .tilt: "tilt"
        case .glassBreak: "glassBreak"
        case .towing: "towing"
        case .powerLoss: "powerLoss"
        }
    }
}

/// The light switch (the DBC's Light_Switch_Position).
public enum LightSwitch: Int, Sendable, CaseIterable {
    case off = 0, auto = 1, parking = 2, lowBeam = 3, fog = 4
}

// MARK: - Terminals

/// The terminal (Klemme) logic of the BCM: key present (S), ignition (15), starter (50),
/// engine running. A keyless car: switching the ignition on finds the key inside.
public struct IgnitionModel: Sendable, Equatable {
    public var keyPresent = false
    public var ignitionOn = false
    public var engineRunning = false
    /// The starter turns until then (terminal 50).
    public var starterUntil: Int64?

    public init() {}

    public static let crankingMs: Int64 = 800

    public func starterEngaged(at now: Int64) -> Bool { starterUntil.map { now < $0 } ?? false }

    public mutating func keyInserted() -> ECUOutcome {
        guard !keyPresent else { return .unchanged }
        keyPresent = true
        return .done
    }

    /// Taking the key out switches the ignition off, but not while the car moves.
    public mutating func keyRemoved(moving: Bool) -> ECUOutcome {
        guard keyPresent else { return .unchanged }
        if moving { return .refused("vehicleMoving") }
        keyPresent = false
        ignitionOn = false
        engineRunning = false
        return .done
    }

    public mutating func ignitionSwitchedOn() -> ECUOutcome {
        guard !ignitionOn else { return .unchanged }
        keyPresent = true
        ignitionOn = true
        return .done
    }

    public mutating func ignitionSwitchedOff(moving: Bool) -> ECUOutcome {
        guard ignitionOn else { return .unchanged }
        if moving { return .refused("vehicleMoving") }
        ignitionOn = false
        engineRunning = false
        return .done
    }

    /// Starting cranks for `crankingMs` (terminal 50) and switches the ignition on first.
    public mutating func engineStartRequested(at now: Int64, batteryFlat: Bool) -> ECUOutcome {
        guard !engineRunning else { return .unchanged }
        if batteryFlat { return .refused("batteryLow") }
        keyPresent = true
        ignitionOn = true
        engineRunning = true
        starterUntil = now + Self.crankingMs
        return .done
    }

    public mutating func engineStopRequested(moving: Bool) -> ECUOutcome {
        guard engineRunning else { return .unchanged }
        if moving { return .refused("vehicleMoving") }
        engineRunning = false
        return .done
    }
}

// MARK: - Body

/// The body control module: doors, hood, trunk, windows, sunroof, central locking with its
/// source, lights, hazard lights, honk and flash, and the anti-theft alarm.
///
/// Rules (docs/vehicle-sim.md): locking is refused while a door is open (`doorOpen`); locking
/// with the ignition off arms the alarm; an opening while armed sets it off for
/// `alarmSoundMs` (30 s, the limit of UN ECE R116), with the hazard lights flashing; unlocking
/// disarms and silences it. Honk and flash runs 1 to 30 s (10 s when asked for 0).
public struct BodyController: Sendable, Equatable {
    public var open: Set<Opening> = []
    public var locked = false
    public var lockSource = LockSource.none
    public var windows: [WindowPosition: Double] = [:]
    public var sunroof = 0.0
    public var lightSwitch = LightSwitch.auto
    public var hazardSwitch = false
    public var flashUntil: Int64?
    public var honkUntil: Int64?
    public var alarmArmed = false
    public var alarmSoundingUntil: Int64?
    public var alarmSource = AlarmSource.none
    public var ignitionOn = false

    public static let alarmSoundMs: Int64 = 30_000
    public static let defaultHonkFlashSeconds = 10

    public init() {}

    public func window(_ w: WindowPosition) -> Double { windows[w] ?? 0 }
    public func alarmSounding(at now: Int64) -> Bool { alarmSoundingUntil.map { now < $0 } ?? false }
    public func hazardOn(at now: Int64) -> Bool {
        hazardSwitch || (flashUntil.map { now < $0 } ?? false) || alarmSounding(at: now)
    }
    public func honking(at now: Int64) -> Bool { (honkUntil.map { now < $0 } ?? false) || alarmSounding(at: now) }
    public var anyDoorOpen: Bool { open.contains { $0.isDoor } }

    public mutating func opened(_ o: Opening, at now: Int64) -> ECUOutcome {
        guard !open.contains(o) else { return .unchanged }
        open.insert(o)
        // Opened while armed: a forced door (a key or the app would have unlocked first).
        guard alarmArmed, !alarmSounding(at: now) else { return .done }
        alarmSource = o == .hood ? .hood : o == .trunk ? .trunk : .door
        alarmSoundingUntil = now + Self.alarmSoundMs
        return .alarmTriggered(alarmSource)
    }

    public mutating func closed(_ o: Opening) -> ECUOutcome {
        open.remove(o) == nil ? .unchanged : .done
    }

    public mutating func closedAll() -> ECUOutcome {
        guard !open.isEmpty else { return .unchanged }
        open.removeAll()
        return .done
    }

    public mutating func lockRequested(_ source: LockSource, at now: Int64) -> ECUOutcome {
        if anyDoorOpen { return .refused("doorOpen") }
        let arms = !ignitionOn
        if locked, lockSource == source, alarmArmed == arms { return .unchanged }
        locked = true
        lockSource = source
        if arms && !alarmArmed {
            alarmArmed = true
            alarmSource = .none
        }
        return .done
    }

    public mutating func unlockRequested(_ source: LockSource) -> ECUOutcome {
        if !locked && !alarmArmed && alarmSoundingUntil == nil { return .unchanged }
        locked = false
        lockSource = source
        alarmArmed = false
        alarmSoundingUntil = nil
        return .done
    }

    /// Honk and flash (or flash only) for `seconds` (0: the default of 10 s; at most 30).
    public mutating func honkAndFlashRequested(seconds: Int, honk: Bool, at now: Int64) -> ECUOutcome {
        let s = seconds <= 0 ? Self.defaultHonkFlashSeconds : min(seconds, 30)
        flashUntil = now + Int64(s) * 1_000
        honkUntil = honk ? flashUntil : nil
        return .done
    }

    public mutating func hazardSwitched(_ on: Bool) -> ECUOutcome {
        guard hazardSwitch != on else { return .unchanged }
        hazardSwitch = on
        return .done
    }

    public mutating func windowMoved(_ w: WindowPosition, percent: Double) -> ECUOutcome {
        let p = min(100, max(0, percent))
        guard window(w) != p else { return .unchanged }
        windows[w] = p
        return .done
    }

    public mutating func sunroofMoved(percent: Double) -> ECUOutcome {
        let p = min(100, max(0, percent))
        guard sunroof != p else { return .unchanged }
        sunroof = p
        return .done
    }

    public mutating func lightSwitchTurned(_ s: LightSwitch) -> ECUOutcome {
        guard lightSwitch != s else { return .unchanged }
        lightSwitch = s
        return .done
    }

    public mutating func ignitionChanged(on: Bool) -> ECUOutcome {
        guard ignitionOn != on else { return .unchanged }
        ignitionOn = on
        // The driver is inside with the key: the alarm stands down.
        if on { alarmArmed = false; alarmSoundingUntil = nil }
        return .done
    }

    /// Ends what timed out: the siren after 30 s (the alarm stays armed), honk and flash.
    public mutating func tick(at now: Int64) -> ECUOutcome {
        var changed = false
        if let u = alarmSoundingUntil, now >= u { alarmSoundingUntil = nil; changed = true }
        if let u = flashUntil, now >= u { flashUntil = nil; changed = true }
        if let u = honkUntil, now >= u { honkUntil = nil; changed = true }
        return changed ? .done : .unchanged
    }
}

// MARK: - Climate

/// The Climatronic: target temperature, fan, AC, window heating, and the stationary (remote)
/// climatisation. The cabin temperature moves toward the target while the climate runs (time
/// constant `hvacTimeConstantS`) and always leaks toward the outside (`leakTimeConstantS`).
///
/// Rules: a remote start is refused with the ignition on (`ignitionOn`) or a low 12 V battery
/// (`batteryLow`); a remote climatisation ends at its duration (`duration`), when the ignition
/// comes on (`ignitionOn`), or when the battery runs low (`batteryLow`).
public struct ClimateController: Sendable, Equatable {
    public enum Mode: Int, Sendable { case off = 0, heating = 1, cooling = 2, ventilation = 3, windowHeating = 4 }
    public enum Source: Int, Sendable { case none = 0, cabin = 1, remote = 2, timer = 3 }

    public var targetTemperature = 20.0
    public var fanLevel = 0
    public var acOn = false
    public var autoMode = true
    public var recirculation = false
    public var windowHeatingFront = false
    public var windowHeatingRear = false
    public var cabinTemperature = 20.0
    public var outsideTemperature = 15.0
    /// A remote climatisation runs until then.
    public var remoteUntil: Int64?
    public var ignitionOn = false
    public var engineRunning = false

    /// 8 minutes: an auxiliary heater takes a winter cabin from -5 to about 13 °C in 10 minutes.
    public static let hvacTimeConstantS = 480.0
    /// 45 minutes: a parked cabin drifts to the outside temperature within a few hours.
    public static let leakTimeConstantS = 2_700.0

    public init() {}

    public var remoteRunning: Bool { remoteUntil != nil }
    /// The climate works on the cabin: a remote climatisation, or the engine running with a fan.
    public var conditioning: Bool { remoteRunning || (engineRunning && (autoMode || fanLevel > 0)) }

    public var mode: Mode {
        guard remoteRunning else { return .off }
        if targetTemperature > cabinTemperature + 0.5 { return .heating }
        if targetTemperature < cabinTemperature - 0.5 { return .cooling }
        return .ventilation
    }
    public var source: Source { remoteRunning ? .remote : (conditioning ? .cabin : .none) }

    public func remainingMinutes(at now: Int64) -> Int {
        guard let u = remoteUntil, u > now else { return 0 }
        return Int((u - now + 59_999) / 60_000)
    }

    public mutating func remoteStartRequested(target: Double, minutes: Int, windowHeating: Bool, batteryLow: Bool,
                                              at now: Int64) -> ECUOutcome {
        if ignitionOn { return .refused("ignitionOn") }
        if batteryLow { return .refused("batteryLow") }
        targetTemperature = min(30, max(16, (target * 2).rounded() / 2))
        windowHeatingFront = windowHeating
        windowHeatingRear = windowHeating
        remoteUntil = now + Int64(minutes <= 0 ? 10 : min(minutes, 60)) * 60_000
        return .done
    }

    public mutating func remoteStopRequested() -> ECUOutcome {
        guard remoteRunning else { return .unchanged }
        endRemote()
        return .ended("stopped")
    }

    public mutating func targetSet(_ t: Double) -> ECUOutcome {
        let v = min(30, max(16, (t * 2).rounded() / 2))
        guard v != targetTemperature else { return .unchanged }
        targetTemperature = v
        return .done
    }

    /// The fan turned by hand (auto mode off).
    public mutating func fanSet(_ level: Int) -> ECUOutcome {
        let l = min(7, max(0, level))
        guard l != fanLevel || autoMode else { return .unchanged }
        fanLevel = l
        autoMode = false
        return .done
    }

    public mutating func acSwitched(_ on: Bool) -> ECUOutcome {
        guard acOn != on else { return .unchanged }
        acOn = on
        return .done
    }

    public mutating func windowHeatingSwitched(_ on: Bool) -> ECUOutcome {
        guard windowHeatingFront != on || windowHeatingRear != on else { return .unchanged }
        windowHeatingFront = on
        windowHeatingRear = on
        return .done
    }

    /// The world: the outside temperature changed, or the cabin was found at a temperature.
    public mutating func temperaturesSet(outside: Double? = nil, cabin: Double? = nil) -> ECUOutcome {
        let before = (outsideTemperature, cabinTemperature)
        if let outside { outsideTemperature = outside }
        if let cabin { cabinTemperature = cabin }
        return before == (outsideTemperature, cabinTemperature) ? .unchanged : .done
    }

    public mutating func ignitionChanged(on: Bool, engine: Bool) -> ECUOutcome {
        let was = (ignitionOn, engineRunning)
        ignitionOn = on
        engineRunning = engine
        if on, remoteRunning {
            endRemote()
            return .ended("ignitionOn")
        }
        return was == (on, engine) ? .unchanged : .done
    }

    public mutating func batteryWentLow() -> ECUOutcome {
        guard remoteRunning else { return .unchanged }
        endRemote()
        return .ended("batteryLow")
    }

    /// Advances the cabin temperature by `dtMs` and ends a remote climatisation at its time.
    public mutating func tick(dtMs: Int64, at now: Int64) -> ECUOutcome {
        let dt = Double(max(0, dtMs)) / 1_000
        if conditioning {
            cabinTemperature += (targetTemperature - cabinTemperature) * min(1, dt / Self.hvacTimeConstantS)
        }
        cabinTemperature += (outsideTemperature - cabinTemperature) * min(1, dt / Self.leakTimeConstantS)
        if let u = remoteUntil, now >= u {
            endRemote()
            return .ended("duration")
        }
        return .unchanged
    }

    private mutating func endRemote() {
        remoteUntil = nil
        windowHeatingFront = false
        windowHeatingRear = false
    }
}

// MARK: - ESP / powertrain

/// Speed with plausible acceleration (at most `maxAcceleration` up, `maxDeceleration` down),
/// the driving direction and the odometer integrated from the speed.
public struct PowertrainModel: Sendable, Equatable {
    public var speedKmh = 0.0
    public var targetKmh = 0.0
    public var reverse = false
    public var accelerationMs2 = 0.0
    public var yawRate = 0.0
    /// A three-year-old car.
    public var odometerKm = 23_817.0

    public static let maxAcceleration = 2.5
    public static let maxDeceleration = 3.5
    public static let maxSpeedKmh = 250.0

    public init() {}

    /// 0 standstill, 1 forward, 2 reverse (the DBC's Driving_Direction).
    public var direction: Int { speedKmh < 0.1 ? 0 : (reverse ? 2 : 1) }
    public var moving: Bool { speedKmh > 2 }

    public mutating func targetSet(_ kmh: Double, reverse r: Bool = false) -> ECUOutcome {
        let t = min(Self.maxSpeedKmh, max(0, kmh))
        guard t != targetKmh || r != reverse else { return .unchanged }
        // Changing direction needs a stop first: the target applies once at standstill.
        if r != reverse, speedKmh >= 0.1 { targetKmh = 0; return .refused("vehicleMoving") }
        reverse = r
        targetKmh = t
        return .done
    }

    /// A crash stops the car at once.
    public mutating func crashed() {
        speedKmh = 0
        targetKmh = 0
        accelerationMs2 = 0
    }

    /// Advances by `dtMs`: the speed toward the target within the limits; the distance
    /// travelled (km) is returned and added to the odometer. With the engine off, the target is 0.
    public mutating func tick(dtMs: Int64, engineRunning: Bool) -> Double {
        let dt = Double(max(0, dtMs)) / 1_000
        guard dt > 0 else { return 0 }
        if !engineRunning { targetKmh = 0 }
        let v0 = speedKmh / 3.6
        let vt = targetKmh / 3.6
        var v1 = v0
        if vt > v0 { v1 = min(vt, v0 + Self.maxAcceleration * dt) }
        if vt < v0 { v1 = max(vt, v0 - Self.maxDeceleration * dt) }
        accelerationMs2 = (v1 - v0) / dt
        speedKmh = v1 * 3.6
        let km = (v0 + v1) / 2 * dt / 1_000
        odometerKm += km
        return km
    }
}

// MARK: - Instrument cluster

/// Fuel level and range falling with the distance; inspection and oil service counting down
/// in days and kilometres.
public struct ClusterModel: Sendable, Equatable {
    public var fuelPercent = 62.0
    public var tankLitres = 50.0
    public var consumptionPer100Km = 6.5
    public var inspectionDays = 412.0
    public var inspectionKm = 18_400.0
    public var oilDays = 201.0
    public var oilKm = 9_100.0
    /// The page of the multiplexed Cluster_Info sent next (0 odometer and fuel, 1, 2).
    public var page = 0

    public init() {}

    public var rangeKm: Double { fuelPercent / 100 * tankLitres / consumptionPer100Km * 100 }
    public var reserveWarning: Bool { fuelPercent < 10 }

    public mutating func travelled(km: Double) {
        fuelPercent = max(0, fuelPercent - km * consumptionPer100Km / 100 / tankLitres * 100)
        inspectionKm -= km
        oilKm -= km
    }

    public mutating func timePassed(ms: Int64) {
        let days = Double(ms) / 86_400_000
        inspectionDays -= days
        oilDays -= days
    }

    public mutating func refuelled(percent: Double) -> ECUOutcome {
        let p = min(100, max(0, percent))
        guard p != fuelPercent else { return .unchanged }
        fuelPercent = p
        return .done
    }
}

// MARK: - Airbag

public enum Seat: String, Sendable, CaseIterable, Hashable {
    case driver, passenger, rearLeft, rearCenter, rearRight
}

/// The directions of a crash pulse (the DBC's Crash_Front, _Side_Left, _Side_Right, _Rear, _Rollover).
public struct CrashDirections: OptionSet, Sendable, Hashable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let front = CrashDirections(rawValue: 1)
    public static let sideLeft = CrashDirections(rawValue: 2)
    public static let sideRight = CrashDirections(rawValue: 4)
    public static let rear = CrashDirections(rawValue: 8)
    public static let rollover = CrashDirections(rawValue: 16)
}

/// The airbag control unit: crash detection latched for the whole event, severity and
/// direction, the airbags it deployed, seat occupancy and belts.
///
/// Rules: severity 2 (medium) or more deploys the airbags facing the crash (front: driver,
/// and passenger when the seat is occupied; side or rollover: the side airbags) and lights
/// the warning lamp; the crash stays latched until a workshop clears it (`crashCleared`).
public struct AirbagModel: Sendable, Equatable {
    public var crashDetected = false
    public var severity = 0
    public var directions: CrashDirections = []
    public var deltaVKmh = 0.0
    public var deployedDriver = false
    public var deployedPassenger = false
    public var deployedSide = false
    public var occupied: Set<Seat> = []
    public var belted: Set<Seat> = []

    public init() {}

    public var warningLamp: Bool { deployedDriver || deployedPassenger || deployedSide }

    public mutating func crashed(_ d: CrashDirections, severity s: Int, deltaV: Double?) -> ECUOutcome {
        let sev = min(4, max(1, s))
        if crashDetected, sev <= severity, directions.isSuperset(of: d) { return .unchanged }
        crashDetected = true
        severity = max(severity, sev)
        directions.formUnion(d)
        // The pulse's velocity change, when not given: a plausible one for the severity.
        deltaVKmh = max(deltaVKmh, min(127.5, deltaV ?? [0, 8, 20, 45, 60][sev]))
        if severity >= 2 {
            if directions.contains(.front) {
                deployedDriver = true
                if occupied.contains(.passenger) { deployedPassenger = true }
            }
            if !directions.isDisjoint(with: [.sideLeft, .sideRight, .rollover]) { deployedSide = true }
        }
        return .done
    }

    public mutating func crashCleared() -> ECUOutcome {
        guard crashDetected || warningLamp else { return .unchanged }
        let seats = (occupied, belted)
        self = AirbagModel()
        (occupied, belted) = seats
        return .done
    }

    public mutating func seatChanged(_ s: Seat, occupied o: Bool, belted b: Bool) -> ECUOutcome {
        guard occupied.contains(s) != o || belted.contains(s) != b else { return .unchanged }
        if o { occupied.insert(s) } else { occupied.remove(s) }
        if b { belted.insert(s) } else { belted.remove(s) }
        return .done
    }
}

// MARK: - Roof console

public enum RoofButton: String, Sendable, CaseIterable, Hashable {
    case sos, breakdown, service, scheduling
}

/// The roof console's buttons: a press holds a button down until its release time.
public struct RoofConsoleModel: Sendable, Equatable {
    public var pressedUntil: [RoofButton: Int64] = [:]

    public init() {}

    public static let shortPressMs: Int64 = 300

    public func pressed(_ b: RoofButton, at now: Int64) -> Bool { pressedUntil[b].map { now < $0 } ?? false }

    /// A press held for `holdMs` (a short press by default).
    public mutating func buttonPressed(_ b: RoofButton, holdMs: Int64?, at now: Int64) -> ECUOutcome {
        let wasPressed = pressed(b, at: now)
        pressedUntil[b] = now + max(1, holdMs ?? Self.shortPressMs)
        return wasPressed ? .unchanged : .done
    }

    public mutating func buttonReleased(_ b: RoofButton, at now: Int64) -> ECUOutcome {
        guard pressed(b, at: now) else { return .unchanged }
        pressedUntil[b] = nil
        return .done
    }

    public mutating func tick(at now: Int64) -> ECUOutcome {
        let before = pressedUntil.count
        pressedUntil = pressedUntil.filter { now < $0.value }
        return before == pressedUntil.count ? .unchanged : .done
    }
}

// MARK: - 12 V battery

/// The 12 V battery: its charge falls with the consumers on (a sleeping car draws little, an
/// ignition or a remote climatisation a lot) and rises while the engine runs; the voltage
/// follows the state of charge at rest and the alternator's 14.2 V while charging.
public struct BatteryModel: Sendable, Equatable {
    public var stateOfCharge = 85.0
    public var capacityAh = 60.0
    public var engineRunning = false

    /// Below this the BMS warns and the car stops comfort consumers (remote climatisation).
    public static let lowSoC = 30.0
    /// Below this the starter cannot turn the engine.
    public static let flatSoC = 8.0

    public init() {}

    public var voltage: Double {
        engineRunning ? 14.2 : 11.6 + 0.011 * stateOfCharge
    }
    public var low: Bool { stateOfCharge < Self.lowSoC }
    public var flat: Bool { stateOfCharge < Self.flatSoC }

    public mutating func drained(toPercent p: Double) -> ECUOutcome {
        let v = min(100, max(0, p))
        guard v != stateOfCharge else { return .unchanged }
        stateOfCharge = v
        return .done
    }

    /// Draws `amps` for `dtMs` (negative: charging); the alternator charges at 40 A while the
    /// engine runs.
    public mutating func tick(dtMs: Int64, loadAmps: Double) {
        let hours = Double(max(0, dtMs)) / 3_600_000
        let net = loadAmps - (engineRunning ? 40 : 0)
        stateOfCharge = min(100, max(0, stateOfCharge - net * hours / capacityAh * 100))
    }
}
