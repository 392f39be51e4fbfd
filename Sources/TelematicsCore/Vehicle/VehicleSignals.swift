/// The vehicle quantities the unit's services use, and where each comes from on the bus.
///
/// Each quantity has a dotted key (its place in the status the unit reports), a kind, and
/// the DBC message and signal that carry it. The daemon checks at start that the DBC it was
/// given has every one of them, so a wrong DBC fails loudly instead of leaving a service blind.
public struct VehicleQuantity: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A 0/1 signal.
        case flag
        /// A physical number in the signal's unit.
        case number
        /// A raw value with a name from the signal's value table.
        case choice
    }

    public let key: String
    public let kind: Kind
    public let message: String
    public let signal: String

    public init(_ key: String, _ kind: Kind, _ message: String, _ signal: String) {
        self.key = key
        self.kind = kind
        self.message = message
        self.signal = signal
    }

    public var description: String { key }

    public static func == (a: Self, b: Self) -> Bool { a.key == b.key }
    public func hash(into h: inout Hasher) { h.combine(key) }
}

extension VehicleQuantity {
    // Terminals.
    public static let ignitionOn = VehicleQuantity("ignition.on", .flag, "Terminal_Status", "Terminal_15")
    public static let keyPresent = VehicleQuantity("ignition.keyPresent", .flag, "Terminal_Status", "Terminal_S")
    public static let engineRunning = VehicleQuantity("ignition.engineRunning", .flag, "Terminal_Status", "Engine_Running")
    // Driving.
    public static let speed = VehicleQuantity("driving.speed", .number, "ESP_Speed", "Vehicle_Speed")
    public static let direction = VehicleQuantity("driving.direction", .choice, "ESP_Speed", "Driving_Direction")
    // Doors and locks.
    public static let doorFrontLeftOpen = VehicleQuantity("doors.frontLeft.open", .flag, "Door_Status", "Door_FL_Open")
    public static let doorFrontRightOpen = VehicleQuantity("doors.frontRight.open", .flag, "Door_Status", "Door_FR_Open")
    public static let doorRearLeftOpen = VehicleQuantity("doors.rearLeft.open", .flag, "Door_Status", "Door_RL_Open")
    public static let doorRearRightOpen = VehicleQuantity("doors.rearRight.open", .flag, "Door_Status", "Door_RR_Open")
    public static let hoodOpen = VehicleQuantity("doors.hood.open", .flag, "Door_Status", "Hood_Open")
    public static let trunkOpen = VehicleQuantity("doors.trunk.open", .flag, "Door_Status", "Trunk_Open")
    public static let doorFrontLeftLocked = VehicleQuantity("doors.frontLeft.locked", .flag, "Door_Status", "Door_FL_Locked")
    public static let doorFrontRightLocked = VehicleQuantity("doors.frontRight.locked", .flag, "Door_Status", "Door_FR_Locked")
    public static let doorRearLeftLocked = VehicleQuantity("doors.rearLeft.locked", .flag, "Door_Status", "Door_RL_Locked")
    public static let doorRearRightLocked = VehicleQuantity("doors.rearRight.locked", .flag, "Door_Status", "Door_RR_Locked")
    public static let hoodLocked = VehicleQuantity("doors.hood.locked", .flag, "Door_Status", "Hood_Locked")
    public static let trunkLocked = VehicleQuantity("doors.trunk.locked", .flag, "Door_Status", "Trunk_Locked")
    public static let centralLock = VehicleQuantity("locks.central", .choice, "Door_Status", "Central_Lock_State")
    public static let lockSource = VehicleQuantity("locks.source", .choice, "Door_Status", "Lock_Source")
    // Windows and sunroof.
    public static let windowFrontLeft = VehicleQuantity("windows.frontLeft", .number, "Window_Status", "Window_FL_Position")
    public static let windowFrontRight = VehicleQuantity("windows.frontRight", .number, "Window_Status", "Window_FR_Position")
    public static let windowRearLeft = VehicleQuantity("windows.rearLeft", .number, "Window_Status", "Window_RL_Position")
    public static let windowRearRight = VehicleQuantity("windows.rearRight", .number, "Window_Status", "Window_RR_Position")
    public static let sunroofPosition = VehicleQuantity("windows.sunroof", .number, "Window_Status", "Sunroof_Position")
    public static let sunroofState = VehicleQuantity("windows.sunroofState", .choice, "Window_Status", "Sunroof_State")
    // Exterior lights.
    public static let parkingLight = VehicleQuantity("lights.parking", .flag, "Light_Status", "Parking_Light")
    public static let lowBeam = VehicleQuantity("lights.lowBeam", .flag, "Light_Status", "Low_Beam")
    public static let highBeam = VehicleQuantity("lights.highBeam", .flag, "Light_Status", "High_Beam")
    public static let hazardLights = VehicleQuantity("lights.hazard", .flag, "Light_Status", "Hazard_Lights")
    public static let fogFront = VehicleQuantity("lights.fogFront", .flag, "Light_Status", "Fog_Light_Front")
    public static let fogRear = VehicleQuantity("lights.fogRear", .flag, "Light_Status", "Fog_Light_Rear")
    public static let turnLeft = VehicleQuantity("lights.turnLeft", .flag, "Light_Status", "Turn_Left")
    public static let turnRight = VehicleQuantity("lights.turnRight", .flag, "Light_Status", "Turn_Right")
    // Climate and ventilation.
    public static let fanLevel = VehicleQuantity("climate.fanLevel", .number, "Climate_Status", "Fan_Level")
    public static let airConditioning = VehicleQuantity("climate.airConditioning", .flag, "Climate_Status", "AC_On")
    public static let recirculation = VehicleQuantity("climate.recirculation", .flag, "Climate_Status", "Recirculation")
    public static let targetTemperature = VehicleQuantity("climate.targetTemperature", .number, "Climate_Status", "Target_Temperature")
    public static let cabinTemperature = VehicleQuantity("climate.cabinTemperature", .number, "Climate_Status", "Cabin_Temperature")
    public static let outsideTemperature = VehicleQuantity("climate.outsideTemperature", .number, "Climate_Status", "Outside_Temperature")
    public static let windowHeatingFront = VehicleQuantity("climate.windowHeatingFront", .flag, "Climate_Status", "Window_Heating_Front")
    public static let windowHeatingRear = VehicleQuantity("climate.windowHeatingRear", .flag, "Climate_Status", "Window_Heating_Rear")
    public static let climatisationState = VehicleQuantity("climate.climatisation", .choice, "Climate_Status", "Climatisation_State")
    public static let climatisationRemaining = VehicleQuantity("climate.remainingMinutes", .number, "Climate_Status", "Climatisation_Remaining")
    // Cluster: odometer, fuel, service.
    public static let odometer = VehicleQuantity("cluster.odometer", .number, "Cluster_Info", "Odometer")
    public static let fuelLevel = VehicleQuantity("cluster.fuelLevel", .number, "Cluster_Info", "Fuel_Level")
    public static let range = VehicleQuantity("cluster.range", .number, "Cluster_Info", "Fuel_Range")
    public static let inspectionDueDays = VehicleQuantity("service.inspectionDays", .number, "Cluster_Info", "Inspection_Due_Days")
    public static let inspectionDueDistance = VehicleQuantity("service.inspectionDistance", .number, "Cluster_Info", "Inspection_Due_Distance")
    public static let oilServiceDueDays = VehicleQuantity("service.oilDays", .number, "Cluster_Info", "Oil_Service_Due_Days")
    public static let oilServiceDueDistance = VehicleQuantity("service.oilDistance", .number, "Cluster_Info", "Oil_Service_Due_Distance")
    public static let serviceDueNow = VehicleQuantity("service.dueNow", .flag, "Cluster_Info", "Service_Due_Now")
    // Crash and occupancy.
    public static let crashDetected = VehicleQuantity("crash.detected", .flag, "Airbag_01", "Crash_Detected")
    public static let crashSeverity = VehicleQuantity("crash.severity", .choice, "Airbag_01", "Crash_Severity")
    public static let crashFront = VehicleQuantity("crash.front", .flag, "Airbag_01", "Crash_Front")
    public static let crashSideLeft = VehicleQuantity("crash.sideLeft", .flag, "Airbag_01", "Crash_Side_Left")
    public static let crashSideRight = VehicleQuantity("crash.sideRight", .flag, "Airbag_01", "Crash_Side_Right")
    public static let crashRear = VehicleQuantity("crash.rear", .flag, "Airbag_01", "Crash_Rear")
    public static let crashRollover = VehicleQuantity("crash.rollover", .flag, "Airbag_01", "Crash_Rollover")
    public static let occupiedDriver = VehicleQuantity("occupancy.driver", .flag, "Seat_Occupancy", "Occupied_Driver")
    public static let occupiedPassenger = VehicleQuantity("occupancy.passenger", .flag, "Seat_Occupancy", "Occupied_Passenger")
    public static let occupiedRearLeft = VehicleQuantity("occupancy.rearLeft", .flag, "Seat_Occupancy", "Occupied_Rear_Left")
    public static let occupiedRearCenter = VehicleQuantity("occupancy.rearCenter", .flag, "Seat_Occupancy", "Occupied_Rear_Center")
    public static let occupiedRearRight = VehicleQuantity("occupancy.rearRight", .flag, "Seat_Occupancy", "Occupied_Rear_Right")
    // Anti-theft alarm.
    public static let alarmArmed = VehicleQuantity("alarm.armed", .flag, "Alarm_Status", "Alarm_Armed")
    public static let alarmTriggered = VehicleQuantity("alarm.triggered", .flag, "Alarm_Status", "Alarm_Triggered")
    public static let alarmSource = VehicleQuantity("alarm.source", .choice, "Alarm_Status", "Alarm_Source")
    // Roof console buttons.
    public static let sosButton = VehicleQuantity("buttons.sos", .flag, "Roof_Module_Buttons", "SOS_Button")
    public static let breakdownButton = VehicleQuantity("buttons.breakdown", .flag, "Roof_Module_Buttons", "Breakdown_Button")
    public static let serviceButton = VehicleQuantity("buttons.service", .flag, "Roof_Module_Buttons", "Service_Button")
    public static let schedulingButton = VehicleQuantity("buttons.scheduling", .flag, "Roof_Module_Buttons", "Scheduling_Button")
    // 12 V battery.
    public static let batteryVoltage = VehicleQuantity("battery.voltage", .number, "Battery_12V", "Battery_Voltage")
    public static let batteryStateOfCharge = VehicleQuantity("battery.stateOfCharge", .number, "Battery_12V", "Battery_SoC")

    /// Every quantity the unit tracks, in report order.
    public static let all: [VehicleQuantity] = [
        .ignitionOn, .keyPresent, .engineRunning, .speed, .direction,
        .doorFrontLeftOpen, .doorFrontRightOpen, .doorRearLeftOpen, .doorRearRightOpen, .hoodOpen, .trunkOpen,
        .doorFrontLeftLocked, .doorFrontRightLocked, .doorRearLeftLocked, .doorRearRightLocked, .hoodLocked, .trunkLocked,
        .centralLock, .lockSource,
        .windowFrontLeft, .windowFrontRight, .windowRearLeft, .windowRearRight, .sunroofPosition, .sunroofState,
        .parkingLight, .lowBeam, .highBeam, .hazardLights, .fogFront, .fogRear, .turnLeft, .turnRight,
        .fanLevel, .airConditioning, .recirculation, .targetTemperature, .cabinTemperature, .outsideTemperature,
        .windowHeatingFront, .windowHeatingRear, .climatisationState, .climatisationRemaining,
        .odometer, .fuelLevel, .range,
        .inspectionDueDays, .inspectionDueDistance, .oilServiceDueDays, .oilServiceDueDistance, .serviceDueNow,
        .crashDetected, .crashSeverity, .crashFront, .crashSideLeft, .crashSideRight, .crashRear, .crashRollover,
        .occupiedDriver, .occupiedPassenger, .occupiedRearLeft, .occupiedRearCenter, .occupiedRearRight,
        .alarmArmed, .alarmTriggered, .alarmSource,
        .sosButton, .breakdownButton, .serviceButton, .schedulingButton,
        .batteryVoltage, .batteryStateOfCharge,
    ]
}

/// The frames the unit itself transmits, by DBC message name.
public enum TransmittedMessage {
    public static let status = "TCU_Status"
    public static let bodyRequest = "TCU_Body_Request"
    public static let climaRequest = "TCU_Clima_Request"
    public static let all = [status, bodyRequest, climaRequest]
}
