/// Whether the car sends an Online infotainment request, and with what: the service's
/// capability (the Navi licence: `onlineNavigation`), the privacy mode and the position decide.
/// The backend checks the licence and the position rule again (`backendRefusal`).
public enum NaviAccess {
    public enum Decision: Sendable, Equatable {
        /// Send this, with the car's position where it may leave the car (its `here`).
        case send(NaviRequest, position: GeoPoint?)
        /// Refused in the car: the status codes (the capability's numbers) and why.
        case refuse(codes: [Capability.Code], reason: String)
    }

    /// The capability that the Online infotainment services stand on.
    public static let capability = "onlineNavigation"

    public static func decide(_ request: NaviRequest, capability: Capability?, privacy: PrivacyMode, position: GeoPoint?) -> Decision {
        if privacy == .offline {
            return .refuse(codes: [.offlineMode], reason: "the privacy mode is offline: no data leaves the car but the emergency call")
        }
        guard let capability else {
            return .refuse(codes: [.missingLicence], reason: "the car has no Online infotainment service (the Navi package)")
        }
        if !capability.isEnabled {
            return .refuse(codes: capability.codes, reason: reason(capability.codes))
        }
        let mayShare = privacy == .shareMyPosition
        if request.needsPosition {
            guard mayShare else {
                return .refuse(codes: [.locationDataDisabled],
                               reason: "the privacy mode 'use my position' keeps the car's position in the car: name a place instead of 'here'")
            }
            guard let position else { return .refuse(codes: [], reason: "the car has no position yet (no GNSS fix)") }
            return .send(request, position: position)
        }
        if mayShare, let position { return .send(request, position: position) }
        return .send(request.withoutPosition, position: nil)
    }

    /// The backend's own check of a request from `vin`: nil when it may be answered, else the
    /// codes and why (the licence as the portal holds it, and a position sent against the
    /// privacy mode the car last reported).
    public static func backendRefusal(services: [String]?, licenceExpiresAtMs: Int64?, nowMs: Int64, privacy: PrivacyMode?,
                                      request: NaviRequest, carriesPosition: Bool) -> (codes: [Capability.Code], reason: String)? {
        guard let services else { return ([.missingLicence], "the car is not registered") }
        guard services.contains(capability) else { return ([.missingLicence], reason([.missingLicence])) }
        if let end = licenceExpiresAtMs, end <= nowMs { return ([.licenceExpired], reason([.licenceExpired])) }
        if privacy == .offline { return ([.offlineMode], "the car's privacy mode is offline") }
        if carriesPosition, privacy == .useMyPosition {
            return ([.locationDataDisabled], "the car's privacy mode keeps its position in the car; the request carried one")
        }
        return nil
    }

    static func reason(_ codes: [Capability.Code]) -> String {
        switch codes.first {
        case .missingLicence?: "no licence for Online infotainment (the SEAT CONNECT Navi package)"
        case .licenceExpired?: "the Navi package's licence has expired"
        case .licenceInactive?: "the licence is not active yet (registration not completed)"
        case .offlineMode?: "the privacy mode is offline"
        case .locationDataDisabled?: "the privacy mode keeps the car's position in the car"
        case .insufficientRights?: "this user may not use the service"
        case nil: "the service is not available"
        }
    }
}
