/// The Minimum Set of Data of an eCall (EN 15722:2020), with its ASN.1 PER unaligned codec.
///
/// Encodes msdVersion 3 (what an in-vehicle system sends) and decodes versions 2 and 3.
/// Written by hand from the ASN.1 layout: every field is checked against its range and an
/// invalid one is rejected with an `MSDError` that names it.
public struct MSD: Equatable, Sendable {
    /// ASN.1 `VehicleType`: the root values, indexed from 0 as PER encodes them. v2 has the
    /// first 13; v3 adds 10.
    public static let vehicleTypes = [
        "passengerVehicleClassM1", "busesAndCoachesClassM2", "busesAndCoachesClassM3",
        "lightCommercialVehiclesClassN1", "heavyDutyVehiclesClassN2", "heavyDutyVehiclesClassN3",
        "motorcyclesClassL1e", "motorcyclesClassL2e", "motorcyclesClassL3e", "motorcyclesClassL4e",
        "motorcyclesClassL5e", "motorcyclesClassL6e", "motorcyclesClassL7e",
        "trailersClassO", "agriVehiclesClassR", "agriVehiclesClassS", "agriVehiclesClassT",
        "offRoadVehiclesG", "specialPurposeMotorCaravanClassSA", "specialPurposeArmouredVehicleClassSB",
        "specialPurposeAmbulanceClassSC", "specialPurposeHearseClassSD", "otherVehicleClass",
    ]

    /// The seven propulsion storage flags, in ASN.1 order.
    public static let propulsionNames = [
        "gasolineTankPresent", "dieselTankPresent", "compressedNaturalGas", "liquidPropaneGas",
        "electricEnergyStorage", "hydrogenStorage", "otherStorage",
    ]

    /// The VIN alphabet of the MSD: each character is sent as its 6-bit index here.
    static let vinAlphabet = Array("0123456789ABCDEFGHJKLMNPRSTUVWXYZ")

    /// "Position unknown" for both latitude and longitude.
    public static let unknownCoordinate: Int32 = 2_147_483_647

    /// The whole encoded message may not exceed 140 octets.
    public static let maximumOctets = 140
    /// Optional additional data may not exceed 94 octets.
    public static let maximumAdditionalDataOctets = 94

    public struct LocationDelta: Equatable, Sendable {
        /// Units of 100 milliarcseconds, -512...511.
        public var latitude: Int
        public var longitude: Int
        public init(latitude: Int, longitude: Int) {
            self.latitude = latitude
            self.longitude = longitude
        }
    }

    public struct AdditionalData: Equatable, Sendable {
        /// RELATIVE-OID arcs, e.g. [1, 4, 1].
        public var oid: [UInt64]
        public var data: [UInt8]
        public init(oid: [UInt64], data: [UInt8]) {
            self.oid = oid
            self.data = data
        }
    }

    public var version: Int = 3
    public var messageIdentifier: Int = 1
    public var automaticActivation: Bool
    public var testCall: Bool
    public var positionCanBeTrusted: Bool
    /// Index into `vehicleTypes` (0: M1).
    public var vehicleType: Int
    /// True when the vehicle type came as an extension value (only from a decoder).
    public var vehicleTypeIsExtension = false
    public var vin: String
    /// The seven storage flags, in `propulsionNames` order.
    public var propulsion: [Bool]
    /// UTC seconds when the MSD was first generated.
    public var timestamp: UInt32
    /// Milliarcseconds (WGS-84); `unknownCoordinate` for both when there is no position.
    public var latitude: Int32
    public var longitude: Int32
    /// 0...179 in 2° steps clockwise from north; nil when unknown (sent as 255).
    public var direction: Int?
    /// Mandatory in v3, optional in v2.
    public var recentLocationN1: LocationDelta?
    public var recentLocationN2: LocationDelta?
    /// nil when unknown (the field is left out).
    public var numberOfOccupants: Int?
    public var additionalData: AdditionalData?

    public init(
        messageIdentifier: Int = 1, automaticActivation: Bool, testCall: Bool, positionCanBeTrusted: Bool,
        vehicleType: Int = 0, vin: String, propulsion: [Bool], timestamp: UInt32,
        latitude: Int32, longitude: Int32, direction: Int?,
        recentLocationN1: LocationDelta? = LocationDelta(latitude: 0, longitude: 0),
        recentLocationN2: LocationDelta? = LocationDelta(latitude: 0, longitude: 0),
        numberOfOccupants: Int? = nil, additionalData: AdditionalData? = nil
    ) {
        self.messageIdentifier = messageIdentifier
        self.automaticActivation = automaticActivation
        self.testCall = testCall
        self.positionCanBeTrusted = positionCanBeTrusted
        self.vehicleType = vehicleType
        self.vin = vin
        self.propulsion = propulsion
        self.timestamp = timestamp
        self.latitude = latitude
        self.longitude = longitude
        self.direction = direction
        self.recentLocationN1 = recentLocationN1
        self.recentLocationN2 = recentLocationN2
        self.numberOfOccupants = numberOfOccupants
        self.additionalData = additionalData
    }

    /// True when the message carries no position.
    public var positionIsUnknown: Bool { latitude == Self.unknownCoordinate && longitude == Self.unknownCoordinate }

    // MARK: - Validation

    /// Checks every field against EN 15722; the error names the first bad field.
    /// `forEncoding` adds the rules an encoder must keep but a decoder reads past
    /// (a trusted flag on an unknown position).
    public func validate(forEncoding: Bool = true) throws(MSDError) {
        guard version == 2 || version == 3 else { throw MSDError(field: "msdVersion", "version \(version) is not supported (2 or 3; version 1 is withdrawn)") }
        guard (0...255).contains(messageIdentifier) else { throw MSDError(field: "messageIdentifier", "\(messageIdentifier) is outside 0...255") }
        let types = version == 3 ? 23 : 13
        guard vehicleTypeIsExtension || (0..<types).contains(vehicleType) else {
            throw MSDError(field: "vehicleType", "index \(vehicleType) is not a v\(version) vehicle type (0...\(types - 1))")
        }
        guard vin.count == 17 else { throw MSDError(field: "vin", "a VIN has 17 characters, this one has \(vin.count)") }
        for (i, c) in vin.enumerated() where !Self.vinAlphabet.contains(c) {
            throw MSDError(field: "vin", "character \(i + 1) ('\(c)') is not in the VIN alphabet 0-9 A-H J-N P R-Z")
        }
        guard propulsion.count == 7 else { throw MSDError(field: "propulsion", "needs 7 flags, has \(propulsion.count)") }
        if positionIsUnknown {
            // Both "unknown": fine, and positionCanBeTrusted must then be false.
            guard !positionCanBeTrusted || !forEncoding else {
                throw MSDError(field: "positionCanBeTrusted", "cannot be true when the position is unknown")
            }
        } else {
            guard latitude != Self.unknownCoordinate, longitude != Self.unknownCoordinate else {
                throw MSDError(field: latitude == Self.unknownCoordinate ? "latitude" : "longitude", "only one coordinate is unknown; both must be")
            }
            guard (-324_000_000...324_000_000).contains(latitude) else {
                throw MSDError(field: "latitude", "\(latitude) mas is outside ±324000000 (±90°)")
            }
            guard (-648_000_000...648_000_000).contains(longitude) else {
                throw MSDError(field: "longitude", "\(longitude) mas is outside ±648000000 (±180°)")
            }
        }
        if let direction {
            guard (0...179).contains(direction) else {
                throw MSDError(field: "vehicleDirection", "\(direction) is invalid: 0...179 in 2° steps, or unknown (255); 180-254 are not allowed")
            }
        }
        for (name, delta) in [("recentVehicleLocationN1", recentLocationN1), ("recentVehicleLocationN2", recentLocationN2)] {
            guard let delta else {
                if version == 3 { throw MSDError(field: name, "is mandatory in msdVersion 3") }
                continue
            }
            guard (-512...511).contains(delta.latitude) else { throw MSDError(field: name + ".latitudeDelta", "\(delta.latitude) is outside -512...511") }
            guard (-512...511).contains(delta.longitude) else { throw MSDError(field: name + ".longitudeDelta", "\(delta.longitude) is outside -512...511") }
        }
        if let n = numberOfOccupants {
            guard (0...255).contains(n) else { throw MSDError(field: "numberOfOccupants", "\(n) is outside 0...255") }
        }
        if let oad = additionalData {
            guard !oad.oid.isEmpty else { throw MSDError(field: "optionalAdditionalData.oid", "needs at least one arc") }
            guard oad.data.count <= Self.maximumAdditionalDataOctets else {
                throw MSDError(field: "optionalAdditionalData.data", "\(oad.data.count) octets; at most \(Self.maximumAdditionalDataOctets)")
            }
        }
    }

    // MARK: - Encoding

    /// The UPER encoding (msdVersion 3 unless `version` says 2), at most 140 octets.
    public func encode() throws(MSDError) -> [UInt8] {
        try validate()
        return try encodeUnchecked()
    }

    /// The encoding without the range checks (tests use it to build invalid messages).
    func encodeUnchecked() throws(MSDError) -> [UInt8] {
        var w = BitWriter()
        w.write(false)                                   // MSDMessage extension
        w.write(additionalData != nil)                   // optionalAdditionalData present
        w.write(false)                                   // MSDStructure extension
        if version == 3 {
            w.write(numberOfOccupants != nil)
        } else {
            w.write(recentLocationN1 != nil)
            w.write(recentLocationN2 != nil)
            w.write(numberOfOccupants != nil)
        }
        w.write(UInt64(messageIdentifier), bits: 8)
        w.write(automaticActivation)
        w.write(testCall)
        w.write(positionCanBeTrusted)
        guard !vehicleTypeIsExtension else { throw MSDError(field: "vehicleType", "extension values cannot be encoded") }
        w.write(false)
        w.write(UInt64(vehicleType), bits: version == 3 ? 5 : 4)
        for c in vin { w.write(UInt64(Self.vinAlphabet.firstIndex(of: c)!), bits: 6) }
        // Canonical form: only the TRUE flags are marked present (DEFAULT FALSE).
        w.write(false)
        for flag in propulsion { w.write(flag) }
        for flag in propulsion where flag { w.write(true) }
        w.write(UInt64(timestamp), bits: 32)
        w.write(UInt64(Int64(latitude) + 2_147_483_648), bits: 32)
        w.write(UInt64(Int64(longitude) + 2_147_483_648), bits: 32)
        w.write(UInt64(direction ?? 255), bits: 8)
        for delta in [recentLocationN1, recentLocationN2] {
            guard let delta else { continue }
            w.write(UInt64(delta.latitude + 512), bits: 10)
            w.write(UInt64(delta.longitude + 512), bits: 10)
        }
        if let n = numberOfOccupants { w.write(UInt64(n), bits: 8) }
        if let oad = additionalData {
            let oid = Self.encodeRelativeOID(oad.oid)
            guard oid.count < 128 else { throw MSDError(field: "optionalAdditionalData.oid", "too long") }
            w.write(UInt64(oid.count), bits: 8)
            w.writeBytes(oid)
            w.write(UInt64(oad.data.count), bits: 8)
            w.writeBytes(oad.data)
        }
        w.pad()
        let inner = w.bytes
        var out: [UInt8] = [UInt8(version)]
        if inner.count < 128 {
            out.append(UInt8(inner.count))
        } else {
            out.append(0x80 | UInt8(inner.count >> 8))
            out.append(UInt8(inner.count & 0xFF))
        }
        out += inner
        guard out.count <= Self.maximumOctets else {
            throw MSDError(field: "msd", "the encoded message is \(out.count) octets; at most \(Self.maximumOctets)")
        }
        return out
    }

    static func encodeRelativeOID(_ arcs: [UInt64]) -> [UInt8] {
        var out: [UInt8] = []
        for arc in arcs {
            var chunk: [UInt8] = [UInt8(arc & 0x7F)]
            var v = arc >> 7
            while v > 0 {
                chunk.insert(UInt8(v & 0x7F) | 0x80, at: 0)
                v >>= 7
            }
            out += chunk
        }
        return out
    }

    // MARK: - Decoding

    /// Decodes msdVersion 2 or 3. Every field is range-checked as for encoding.
    public static func decode(_ bytes: [UInt8]) throws(MSDError) -> MSD {
        guard bytes.count <= maximumOctets else {
            throw MSDError(field: "msd", "\(bytes.count) octets; an MSD is at most \(maximumOctets)")
        }
        var outer = BitReader(bytes)
        let version = Int(try outer.read(8, "msdVersion"))
        guard version == 2 || version == 3 else {
            throw MSDError(field: "msdVersion", "version \(version) is not supported (2 or 3; version 1 is withdrawn)")
        }
        var length = Int(try outer.read(8, "msd length"))
        if length & 0x80 != 0 {
            guard length & 0x40 == 0 else { throw MSDError(field: "msd length", "fragmented lengths are not used by an MSD") }
            length = (length & 0x3F) << 8 | Int(try outer.read(8, "msd length"))
        }
        let headerBytes = outer.position / 8
        guard bytes.count - headerBytes == length else {
            throw MSDError(field: "msd length", "says \(length) octets follow, \(bytes.count - headerBytes) do")
        }
        var r = BitReader(Array(bytes[headerBytes...]))
        guard !(try r.flag("MSDMessage extension")) else {
            throw MSDError(field: "MSDMessage extension", "extension additions are not known to this decoder")
        }
        let hasOAD = try r.flag("optionalAdditionalData present")
        guard !(try r.flag("MSDStructure extension")) else {
            throw MSDError(field: "MSDStructure extension", "extension additions are not known to this decoder")
        }
        var hasN1 = true, hasN2 = true
        if version == 2 {
            hasN1 = try r.flag("recentVehicleLocationN1 present")
            hasN2 = try r.flag("recentVehicleLocationN2 present")
        }
        let hasOccupants = try r.flag(version == 3 ? "numberOfOccupants present" : "numberOfPassengers present")
        let messageIdentifier = Int(try r.read(8, "messageIdentifier"))
        let automatic = try r.flag("automaticActivation")
        let test = try r.flag("testCall")
        let trusted = try r.flag("positionCanBeTrusted")
        let typeExtended = try r.flag("vehicleType extension")
        var vehicleType: Int
        if typeExtended {
            // Normally small non-negative whole number.
            if try r.flag("vehicleType") {
                throw MSDError(field: "vehicleType", "an extension index of 64 or more is not a vehicle type")
            }
            vehicleType = Int(try r.read(6, "vehicleType"))
        } else {
            vehicleType = Int(try r.read(version == 3 ? 5 : 4, "vehicleType"))
        }
        var vin = ""
        for i in 0..<17 {
            let index = Int(try r.read(6, "vin"))
            guard index < vinAlphabet.count else {
                throw MSDError(field: "vin", "character \(i + 1) has index \(index), outside the 33-character VIN alphabet")
            }
            vin.append(vinAlphabet[index])
        }
        guard !(try r.flag("propulsion extension")) else {
            throw MSDError(field: "propulsion extension", "extension additions are not known to this decoder")
        }
        var present: [Bool] = []
        for name in propulsionNames { present.append(try r.flag(name + " present")) }
        var propulsion: [Bool] = []
        for (i, p) in present.enumerated() { propulsion.append(p ? try r.flag(propulsionNames[i]) : false) }
        let timestamp = UInt32(try r.read(32, "timestamp"))
        let latitude = Int32(Int64(try r.read(32, "latitude")) - 2_147_483_648)
        let longitude = Int32(Int64(try r.read(32, "longitude")) - 2_147_483_648)
        let direction = Int(try r.read(8, "vehicleDirection"))
        func delta(_ name: String) throws(MSDError) -> LocationDelta {
            let lat = Int(try r.read(10, name + ".latitudeDelta")) - 512
            let lon = Int(try r.read(10, name + ".longitudeDelta")) - 512
            return LocationDelta(latitude: lat, longitude: lon)
        }
        let n1 = hasN1 ? try delta("recentVehicleLocationN1") : nil
        let n2 = hasN2 ? try delta("recentVehicleLocationN2") : nil
        let occupants = hasOccupants ? Int(try r.read(8, version == 3 ? "numberOfOccupants" : "numberOfPassengers")) : nil
        var oad: AdditionalData?
        if hasOAD {
            let oidLength = Int(try r.read(8, "optionalAdditionalData.oid length"))
            let oidBytes = try r.readBytes(oidLength, "optionalAdditionalData.oid")
            let dataLength = Int(try r.read(8, "optionalAdditionalData.data length"))
            let data = try r.readBytes(dataLength, "optionalAdditionalData.data")
            oad = AdditionalData(oid: try decodeRelativeOID(oidBytes), data: data)
        }
        guard r.remaining < 8 else {
            throw MSDError(field: "msd", "\(r.remaining / 8) octets left over after the last field")
        }
        var msd = MSD(
            messageIdentifier: messageIdentifier, automaticActivation: automatic, testCall: test,
            positionCanBeTrusted: trusted, vehicleType: vehicleType, vin: vin, propulsion: propulsion,
            timestamp: timestamp, latitude: latitude, longitude: longitude,
            direction: direction == 255 ? nil : direction, recentLocationN1: n1, recentLocationN2: n2,
            numberOfOccupants: occupants, additionalData: oad
        )
        msd.version = version
        msd.vehicleTypeIsExtension = typeExtended
        try msd.validate(forEncoding: false)
        return msd
    }

    static func decodeRelativeOID(_ bytes: [UInt8]) throws(MSDError) -> [UInt64] {
        var arcs: [UInt64] = []
        var v: UInt64 = 0
        var inArc = false
        for b in bytes {
            guard v >> 57 == 0 else { throw MSDError(field: "optionalAdditionalData.oid", "an arc is too large") }
            v = v << 7 | UInt64(b & 0x7F)
            inArc = true
            if b & 0x80 == 0 { arcs.append(v); v = 0; inArc = false }
        }
        guard !inArc, !arcs.isEmpty else { throw MSDError(field: "optionalAdditionalData.oid", "is not a complete RELATIVE-OID") }
        return arcs
    }
}

/// An MSD field that is invalid, named as in EN 15722.
public struct MSDError: Error, Equatable, Sendable, CustomStringConvertible {
    public var field: String
    public var message: String
    public init(field: String, _ message: String) {
        self.field = field
        self.message = message
    }
    public var description: String { "\(field): \(message)" }
}
