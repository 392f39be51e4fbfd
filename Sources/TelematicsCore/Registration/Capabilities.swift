/// What each connected service can do right now, and why not, as the real service reports it:
/// `isEnabled`, the date it expires and the status codes that say why it is off. Published in
/// the `capabilities` state block; apps and backends show the codes to the user.
public struct Capability: Sendable, Equatable {
    /// The service's status codes (the real service's numbers).
    public enum Code: Int, Sendable, Comparable {
        case offlineMode = 1005
        case locationDataDisabled = 1013
        case licenceInactive = 2001
        case licenceExpired = 2002
        case missingLicence = 2003
        case insufficientRights = 3003

        public static func < (a: Code, b: Code) -> Bool { a.rawValue < b.rawValue }

        /// By its name (a refusal's `error`): missingLicence, offlineMode, ...
        public static func named(_ name: String) -> Code? {
            [Code.offlineMode, .locationDataDisabled, .licenceInactive, .licenceExpired, .missingLicence, .insufficientRights]
                .first { "\($0)" == name }
        }
    }

    public var id: String
    public var isEnabled: Bool { codes.isEmpty }
    /// UTC milliseconds; safety services carry a far-future date.
    public var expiresAtMs: Int64?
    public var codes: [Code]

    public var json: JSON {
        var o: [(String, JSON)] = [("id", .string(id)), ("isEnabled", .bool(isEnabled))]
        if let expiresAtMs { o.append(("expirationDate", .number(Double(expiresAtMs)))) }
        o.append(("statusCodes", .array(codes.map { .number(Double($0.rawValue)) })))
        return .object(o)
    }
}

public enum Capabilities {
    /// The one service the law requires is the public emergency call (eCall): it works without
    /// registration or licence and expires far in the future (9999-12-31). The breakdown call
    /// is one of the "Safety & Service" functions of the licence, like the others: "if you do
    /// not register and fully activate SEAT CONNECT, you can only use the services required by
    /// law (the public emergency call)" (the product page).
    public static let farFutureMs: Int64 = 253_402_214_400_000
    /// The services that send or use the car's position.
    public static let positional: Set<String> = ["parkingPosition"]
    /// Remote functions: only the primary user may use them.
    public static let remote: Set<String> = ["remoteLockUnlock", "remoteClimatisation", "honkAndFlash"]
    /// Every service the unit knows, in the order they are reported.
    public static let all = ["emergencyCall", "breakdownCall", "serviceScheduling", "vehicleStatus", "parkingPosition",
                             "remoteLockUnlock", "remoteClimatisation", "honkAndFlash", "alerts", "onlineNavigation",
                             "infotainmentApps"]

    /// The capabilities for a registration, a privacy level and a time. The eCall is always
    /// enabled: nothing here can switch it off.
    public static func evaluate(_ r: Registration, privacy: PrivacyMode, nowMs: Int64) -> [Capability] {
        all.map { id in
            if id == "emergencyCall" { return Capability(id: id, expiresAtMs: farFutureMs, codes: []) }
            var codes: [Capability.Code] = []
            if r.status != .completed || !r.services.contains(id) {
                codes.append(r.status == .inactive ? .licenceInactive : .missingLicence)
            } else if let end = r.licenceExpiresAtMs, end <= nowMs {
                codes.append(.licenceExpired)
            }
            if remote.contains(id), r.status == .completed, let role = r.role, role != .primary {
                codes.append(.insufficientRights)
            }
            switch privacy {
            case .offline: codes.append(.offlineMode)
            case .useMyPosition where positional.contains(id): codes.append(.locationDataDisabled)
            default: break
            }
            return Capability(id: id, expiresAtMs: r.status == .completed ? r.licenceExpiresAtMs : nil, codes: codes.sorted())
        }
    }

    /// The `capabilities` state block.
    public static func json(_ list: [Capability]) -> JSON {
        .object(list.map { ($0.id, $0.json) })
    }
}
