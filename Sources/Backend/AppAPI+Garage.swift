import TelematicsCore

/// The garage over the app API (docs/openapi.yaml), what the portal's CLI (`tcu-backend garage`,
/// `licence`) does for a bench: a user's cars with their enrolment, licence and privacy level;
/// a car added by VIN (the compatibility checks) for its pairing code, removed, shared; its
/// licence shown and renewed at the page's prices. Only the car's primary user changes it.
extension AppAPI {
    func garage(_ r: Request, parts: [String], portal: Portal, email: String, nowMs: Int64) -> Response {
        let rest = Array(parts.dropFirst(2))
        do {
            switch (r.method, rest.count) {
            case ("GET", 0):
                let cars = try portal.garage(email: email, nowMs: nowMs).map { car -> JSON in
                    var o = car.json.objectValue ?? []
                    if let l = try? portal.licence(vin: car.vin) { o.append(("licence", l.json)) }
                    if let level = privacyLevel(vin: car.vin) { o.append(("privacy", .string(level))) }
                    return .object(o)
                }
                return Response(200, .object([("cars", .array(cars))]))
            case ("POST", 0):
                guard case .object? = r.json, let vin = r.json?["vin"]?.stringValue, let model = r.json?["model"]?.stringValue,
                      let built = r.json?["built"]?.stringValue, let country = r.json?["country"]?.stringValue else {
                    return Self.error(400, "badRequest", "the body is {\"vin\", \"model\", \"built\" (YYYY-MM or YYYY-MM-DD), \"country\" (two letters), \"acceptTerms\": true}")
                }
                let car = try portal.addCar(vin: vin, email: email, model: model, built: built, country: country,
                                            acceptedTerms: r.json?["acceptTerms"]?.boolValue == true, nowMs: nowMs)
                return Response(201, car.json, headers: [("Location", "/v1/garage/\(car.vin)")])
            case ("DELETE", 1):
                try portal.removeCar(vin: rest[0], email: email)
                return Response(204)
            case ("GET", 2) where rest[1] == "users":
                try requirePrimary(portal, email: email, vin: rest[0])
                return Response(200, .object([("users", .array(try portal.users(vin: rest[0]).map(\.json)))]))
            case ("POST", 2) where rest[1] == "users":
                guard let other = r.json?["email"]?.stringValue, let roleName = r.json?["role"]?.stringValue else {
                    return Self.error(400, "badRequest", "the body is {\"email\": the account to share with, \"role\": \"secondary\" or \"guest\"}")
                }
                let role = try Portal.sharedRole(roleName)
                try portal.share(vin: rest[0], owner: email, with: other, role: role, nowMs: nowMs)
                return Response(201, .object([("vin", .string(rest[0])), ("user", .string(other.lowercased())), ("role", .string(role.rawValue))]))
            case ("GET", 2) where rest[1] == "licence":
                try requirePrimary(portal, email: email, vin: rest[0])
                return Response(200, try portal.licence(vin: rest[0]).json)
            case ("POST", 2) where rest[1] == "licence":
                try requirePrimary(portal, email: email, vin: rest[0])
                guard let package = r.json?["package"]?.stringValue, let years = r.json?["years"]?.integer(in: 1...2) else {
                    return Self.error(400, "badRequest", "the body is {\"package\": \"radio\" or \"navi\", \"years\": 1 or 2}")
                }
                return Response(200, try portal.renew(vin: rest[0], package: package, years: Int(years), nowMs: nowMs).json)
            default:
                return Self.error(404, "notFound", "the garage is GET and POST /v1/garage, DELETE /v1/garage/{vin}, "
                                  + "GET and POST /v1/garage/{vin}/users and /v1/garage/{vin}/licence")
            }
        } catch { return Self.refusal(error) }
    }

    private func requirePrimary(_ portal: Portal, email: String, vin: String) throws(PortalError) {
        guard try portal.role(of: email, vin: vin) == .primary else {
            throw PortalError("insufficientRights", "only the primary user of \(vin) manages it")
        }
    }

    /// The car's privacy level as its last capabilities block shows it: offline when a service
    /// is off for `offlineMode`, useMyPosition when one is off for `locationDataDisabled`,
    /// shareMyPosition otherwise; nil before the car reported.
    func privacyLevel(vin: String) -> String? {
        guard let blocks = try? BackendStore(path: storePath).state(vin: vin),
              let caps = blocks.first(where: { $0.block == "capabilities" }).flatMap({ try? JSON.parse($0.values) })?.objectValue else {
            return nil
        }
        let codes = Set(caps.flatMap { $0.1["statusCodes"]?.arrayValue?.compactMap(\.numberValue) ?? [] })
        if codes.contains(Double(Capability.Code.offlineMode.rawValue)) { return PrivacyMode.offline.rawValue }
        if codes.contains(Double(Capability.Code.locationDataDisabled.rawValue)) { return PrivacyMode.useMyPosition.rawValue }
        return PrivacyMode.shareMyPosition.rawValue
    }
}
