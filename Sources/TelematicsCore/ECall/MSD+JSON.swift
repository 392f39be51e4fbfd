/// The MSD as JSON, with the field names of the ASN.1 module (EN 15722), for tools and PSAP
/// testers. Derived fields (degrees, UTC time) are added on output and ignored on input.
extension MSD {
    public var json: JSON {
        var location: [(String, JSON)] = [
            ("positionLatitude", .number(Double(latitude))),
            ("positionLongitude", .number(Double(longitude))),
        ]
        if positionIsUnknown {
            location.append(("unknown", .bool(true)))
        } else {
            location.append(("latitudeDegrees", .number(Double(latitude) / 3_600_000)))
            location.append(("longitudeDegrees", .number(Double(longitude) / 3_600_000)))
        }
        var o: [(String, JSON)] = [
            ("msdVersion", .number(Double(version))),
            ("messageIdentifier", .number(Double(messageIdentifier))),
            ("control", .object([
                ("automaticActivation", .bool(automaticActivation)),
                ("testCall", .bool(testCall)),
                ("positionCanBeTrusted", .bool(positionCanBeTrusted)),
                ("vehicleType", vehicleTypeIsExtension ? .number(Double(vehicleType)) : .string(Self.vehicleTypes[vehicleType])),
            ])),
            ("vehicleIdentificationNumber", .string(vin)),
            ("vehiclePropulsionStorageType", .object(zip(Self.propulsionNames, propulsion).map { ($0, .bool($1)) })),
            ("timestamp", .number(Double(timestamp))),
            ("timestampUTC", .string(utcText(Int64(timestamp)))),
            ("vehicleLocation", .object(location)),
            ("vehicleDirection", direction.map { .number(Double($0)) } ?? .string("unknown")),
        ]
        if let d = direction { o.append(("directionDegrees", .number(Double(d * 2)))) }
        for (name, delta) in [("recentVehicleLocationN1", recentLocationN1), ("recentVehicleLocationN2", recentLocationN2)] {
            if let delta {
                o.append((name, .object([("latitudeDelta", .number(Double(delta.latitude))), ("longitudeDelta", .number(Double(delta.longitude)))])))
            }
        }
        if let n = numberOfOccupants { o.append(("numberOfOccupants", .number(Double(n)))) }
        if let oad = additionalData {
            o.append(("optionalAdditionalData", .object([
                ("oid", .string(oad.oid.map(String.init).joined(separator: "."))),
                ("data", .string(hexBytes(oad.data))),
            ])))
        }
        return .object(o)
    }

    /// Reads the JSON form (as printed by `json`). Unknown keys are errors; latitude and
    /// longitude may be given in degrees instead of milliarcseconds.
    public init(json: JSON) throws(MSDError) {
        guard let top = json.objectValue else { throw MSDError(field: "msd", "expected a JSON object") }
        let known: Set<String> = [
            "msdVersion", "messageIdentifier", "control", "vehicleIdentificationNumber", "vehiclePropulsionStorageType",
            "timestamp", "timestampUTC", "vehicleLocation", "vehicleDirection", "directionDegrees",
            "recentVehicleLocationN1", "recentVehicleLocationN2", "numberOfOccupants", "optionalAdditionalData",
        ]
        for (k, _) in top where !known.contains(k) { throw MSDError(field: k, "is not an MSD field") }
        func int(_ v: JSON?, _ field: String, required: Bool = true) throws(MSDError) -> Int? {
            guard let v else {
                if required { throw MSDError(field: field, "is required") }
                return nil
            }
            guard let d = v.numberValue, d == d.rounded(), abs(d) < 1e12 else { throw MSDError(field: field, "expected an integer, found \(v.text)") }
            return Int(d)
        }
        func bool(_ v: JSON?, _ field: String) throws(MSDError) -> Bool {
            guard let v else { throw MSDError(field: field, "is required") }
            guard let b = v.boolValue else { throw MSDError(field: field, "expected true or false, found \(v.text)") }
            return b
        }
        let version = try int(json["msdVersion"], "msdVersion", required: false) ?? 3
        guard let control = json["control"], control.objectValue != nil else { throw MSDError(field: "control", "is required") }
        var vehicleType = 0
        if let t = control["vehicleType"] {
            if let name = t.stringValue {
                guard let i = Self.vehicleTypes.firstIndex(of: name) else {
                    throw MSDError(field: "control.vehicleType", "unknown vehicle type '\(name)'")
                }
                vehicleType = i
            } else {
                vehicleType = try int(t, "control.vehicleType")!
            }
        }
        guard let vin = json["vehicleIdentificationNumber"]?.stringValue else {
            throw MSDError(field: "vehicleIdentificationNumber", "is required (a 17-character string)")
        }
        var propulsion = [Bool](repeating: false, count: 7)
        if let p = json["vehiclePropulsionStorageType"] {
            guard let pairs = p.objectValue else { throw MSDError(field: "vehiclePropulsionStorageType", "expected an object") }
            for (k, v) in pairs {
                guard let i = Self.propulsionNames.firstIndex(of: k) else {
                    throw MSDError(field: "vehiclePropulsionStorageType.\(k)", "unknown; known: \(Self.propulsionNames.joined(separator: ", "))")
                }
                propulsion[i] = try bool(v, "vehiclePropulsionStorageType.\(k)")
            }
        }
        let timestamp = try int(json["timestamp"], "timestamp")!
        guard (0...Int(UInt32.max)).contains(timestamp) else { throw MSDError(field: "timestamp", "\(timestamp) is outside 0...4294967295") }
        guard let loc = json["vehicleLocation"], loc.objectValue != nil else { throw MSDError(field: "vehicleLocation", "is required") }
        func coordinate(_ masKey: String, _ degKey: String) throws(MSDError) -> Int32 {
            if let v = try int(loc[masKey], "vehicleLocation.\(masKey)", required: false) {
                guard let c = Int32(exactly: v) else { throw MSDError(field: "vehicleLocation.\(masKey)", "\(v) does not fit 32 bits") }
                return c
            }
            if let d = loc[degKey]?.numberValue {
                let mas = (d * 3_600_000).rounded()
                guard abs(mas) <= 648_000_000 else { throw MSDError(field: "vehicleLocation.\(degKey)", "\(d) is outside ±180°") }
                return Int32(mas)
            }
            if loc["unknown"]?.boolValue == true { return Self.unknownCoordinate }
            throw MSDError(field: "vehicleLocation.\(masKey)", "is required (or \(degKey), or \"unknown\": true)")
        }
        let latitude = try coordinate("positionLatitude", "latitudeDegrees")
        let longitude = try coordinate("positionLongitude", "longitudeDegrees")
        var direction: Int?
        if let d = json["vehicleDirection"], d.stringValue != "unknown" {
            direction = try int(d, "vehicleDirection")
            if direction == 255 { direction = nil }
        }
        func delta(_ name: String) throws(MSDError) -> LocationDelta? {
            guard let d = json[name] else { return nil }
            return LocationDelta(latitude: try int(d["latitudeDelta"], "\(name).latitudeDelta")!,
                                 longitude: try int(d["longitudeDelta"], "\(name).longitudeDelta")!)
        }
        var oad: AdditionalData?
        if let a = json["optionalAdditionalData"] {
            guard let oidText = a["oid"]?.stringValue else { throw MSDError(field: "optionalAdditionalData.oid", "is required, e.g. \"1.4.1\"") }
            var arcs: [UInt64] = []
            for part in oidText.split(separator: ".", omittingEmptySubsequences: false) {
                guard let arc = UInt64(part) else { throw MSDError(field: "optionalAdditionalData.oid", "'\(oidText)' is not dotted decimal arcs") }
                arcs.append(arc)
            }
            guard let data = bytes(fromHex: a["data"]?.stringValue ?? "") else {
                throw MSDError(field: "optionalAdditionalData.data", "is not hex")
            }
            oad = AdditionalData(oid: arcs, data: data)
        }
        self.init(
            messageIdentifier: try int(json["messageIdentifier"], "messageIdentifier", required: false) ?? 1,
            automaticActivation: try bool(control["automaticActivation"], "control.automaticActivation"),
            testCall: try bool(control["testCall"], "control.testCall"),
            positionCanBeTrusted: try bool(control["positionCanBeTrusted"], "control.positionCanBeTrusted"),
            vehicleType: vehicleType, vin: vin, propulsion: propulsion, timestamp: UInt32(timestamp),
            latitude: latitude, longitude: longitude, direction: direction,
            recentLocationN1: try delta("recentVehicleLocationN1"), recentLocationN2: try delta("recentVehicleLocationN2"),
            numberOfOccupants: try int(json["numberOfOccupants"], "numberOfOccupants", required: false),
            additionalData: oad
        )
        self.version = version
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for Unix seconds (proleptic Gregorian, UTC).
public func utcText(_ seconds: Int64) -> String {
    let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
    let secs = seconds - days * 86_400
    let (y, m, d) = civilDate(days: days)
    func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(y)-\(two(m))-\(two(d))T\(two(secs / 3600)):\(two(secs % 3600 / 60)):\(two(secs % 60))Z"
}
