import CSocketCAN
import Platform
import TelematicsCore

/// Interface state and bus-off recovery of a real CAN controller, through libsocketcan
/// (netlink). Virtual interfaces (vcan) have no controller: `state` answers nil for them.
public enum CANInterfaceControl {
    /// The controller's state (ISO 11898 error states).
    public enum State: String, Sendable, Equatable {
        case errorActive = "error-active"
        case errorWarning = "error-warning"
        case errorPassive = "error-passive"
        case busOff = "bus-off"
        case stopped
        case sleeping
    }

    /// The controller state, or nil when the interface has none (vcan) or cannot be asked.
    public static func state(of interface: String) -> State? {
        var raw: Int32 = 0
        guard interface.withCString({ can_get_state($0, &raw) }) == 0 else { return nil }
        switch UInt32(raw) {
        case CAN_STATE_ERROR_ACTIVE.rawValue: return .errorActive
        case CAN_STATE_ERROR_WARNING.rawValue: return .errorWarning
        case CAN_STATE_ERROR_PASSIVE.rawValue: return .errorPassive
        case CAN_STATE_BUS_OFF.rawValue: return .busOff
        case CAN_STATE_STOPPED.rawValue: return .stopped
        case CAN_STATE_SLEEPING.rawValue: return .sleeping
        default: return nil
        }
    }

    /// Restarts a controller that is bus-off. libsocketcan allows this only with
    /// `restart-ms` 0 (no automatic restart); otherwise the kernel restarts it itself.
    public static func restart(_ interface: String) throws(SystemError) {
        guard interface.withCString({ can_do_restart($0) }) == 0 else {
            throw SystemError(.io, "cannot restart \(interface) (only a bus-off controller with restart-ms 0 can be restarted)")
        }
    }

    /// The automatic bus-off restart delay in milliseconds (0: manual restart only).
    public static func restartMs(of interface: String) -> UInt32? {
        var ms: UInt32 = 0
        guard interface.withCString({ can_get_restart_ms($0, &ms) }) == 0 else { return nil }
        return ms
    }
}
