import Testing
@testable import TelematicsCore

func bytes(_ hex: String) -> [UInt8] {
    var out: [UInt8] = []
    var it = hex.makeIterator()
    while let a = it.next(), let b = it.next() { out.append(UInt8(String([a, b]), radix: 16)!) }
    return out
}

@Suite("MSD (EN 15722)")
struct MSDTests {
    /// EN 15722:2020 Annex A.3, the standard's own example.
    static let standardExample = "0324101A01C614A2873C52ABA870010010089AF166285C59A4C86408FE29C16C01054010F010"

    static var example: MSD {
        var p = [Bool](repeating: false, count: 7)
        p[0] = true
        p[4] = true
        return MSD(
            messageIdentifier: 1, automaticActivation: true, testCall: false, positionCanBeTrusted: true,
            vehicleType: 0, vin: "ECALLEXAMPLE02020", propulsion: p, timestamp: 1_579_992_331,
            latitude: 187_996_428, longitude: 18_859_320, direction: 45,
            recentLocationN1: .init(latitude: 0, longitude: 10), recentLocationN2: .init(latitude: 0, longitude: 30),
            numberOfOccupants: 2
        )
    }

    @Test("encodes the standard's example byte for byte")
    func encodesStandardExample() throws {
        let encoded = try Self.example.encode()
        #expect(hexBytes(encoded) == Self.standardExample)
        #expect(encoded.count == 38)
    }

    @Test("decodes the standard's example to every field")
    func decodesStandardExample() throws {
        let msd = try MSD.decode(bytes(Self.standardExample))
        #expect(msd == Self.example)
    }

    @Test("decodes the published v2 vectors, canonical and all-seven-flags propulsion")
    func decodesVersion2() throws {
        let a = try MSD.decode(bytes("02251C0680E30A51439E2955D43800800437F80A3105669023F8A71166932185B004150043C040"))
        #expect(a.version == 2 && a.vin == "ECALLEXAMPLE02013" && a.automaticActivation && a.positionCanBeTrusted)
        #expect(a.vehicleType == 0 && a.propulsion == [true, false, false, false, false, false, false])
        #expect(a.timestamp == 1_367_878_452 && a.latitude == 18_859_320 && a.longitude == 187_996_428)
        #expect(a.direction == 45 && a.recentLocationN1 == .init(latitude: 0, longitude: 10))
        #expect(a.recentLocationN2 == .init(latitude: 0, longitude: 30) && a.numberOfOccupants == 2)
        let b = try MSD.decode(bytes("02251C0680E30A51439E2955D43800800837F80C9FD707F09A94BDD30E55E080000001FFFFE040"))
        #expect(b.vin == "ECALLEXAMPLE02023" && b.propulsion == [true, false, false, false, false, false, false])
        #expect(b.timestamp == 1_694_414_911 && b.latitude == 81_044_974 && b.longitude == 410_169_092)
        #expect(b.direction == 0)
        #expect(b.recentLocationN1 == .init(latitude: -512, longitude: -512))
        #expect(b.recentLocationN2 == .init(latitude: 511, longitude: 511))
        #expect(b.numberOfOccupants == 2)
    }

    @Test("round-trips optional additional data, an unknown position and direction, no occupants")
    func roundTrips() throws {
        var m = Self.example
        m.additionalData = .init(oid: [1, 4, 1, 300], data: [0xDE, 0xAD, 0xBE, 0xEF])
        m.latitude = MSD.unknownCoordinate
        m.longitude = MSD.unknownCoordinate
        m.positionCanBeTrusted = false
        m.direction = nil
        m.numberOfOccupants = nil
        m.messageIdentifier = 2
        m.testCall = true
        m.vehicleType = 22
        let decoded = try MSD.decode(try m.encode())
        #expect(decoded == m)
        #expect(decoded.positionIsUnknown)
    }

    @Test("the 140-octet limit holds: the largest additional data fits, more is refused")
    func sizeLimit() throws {
        var m = Self.example
        m.additionalData = .init(oid: [1], data: [UInt8](repeating: 0xAA, count: 94))
        let encoded = try m.encode()
        #expect(encoded.count <= 140)
        #expect(try MSD.decode(encoded) == m)
        m.additionalData = .init(oid: [1], data: [UInt8](repeating: 0xAA, count: 95))
        #expect(throws: MSDError(field: "optionalAdditionalData.data", "95 octets; at most 94")) { try m.encode() }
    }

    static let invalid: [(String, @Sendable (inout MSD) -> Void)] = [
        ("vin", { $0.vin = "ECALLEXAMPLE0202O" }),
        ("vin", { $0.vin = "SHORT" }),
        ("vehicleDirection", { $0.direction = 180 }),
        ("vehicleDirection", { $0.direction = 254 }),
        ("recentVehicleLocationN1.latitudeDelta", { $0.recentLocationN1 = .init(latitude: 512, longitude: 0) }),
        ("recentVehicleLocationN2.longitudeDelta", { $0.recentLocationN2 = .init(latitude: 0, longitude: -513) }),
        ("recentVehicleLocationN1", { $0.recentLocationN1 = nil }),
        ("latitude", { $0.latitude = 324_000_001 }),
        ("longitude", { $0.longitude = -648_000_001 }),
        ("longitude", { $0.longitude = MSD.unknownCoordinate }),
        ("positionCanBeTrusted", { $0.latitude = MSD.unknownCoordinate; $0.longitude = MSD.unknownCoordinate }),
        ("messageIdentifier", { $0.messageIdentifier = 256 }),
        ("numberOfOccupants", { $0.numberOfOccupants = 300 }),
        ("vehicleType", { $0.vehicleType = 23 }),
        ("propulsion", { $0.propulsion = [true] }),
    ]

    @Test("invalid values are refused with an error that names the field", arguments: invalid)
    func refusesInvalid(_ field: String, _ change: @Sendable (inout MSD) -> Void) {
        var m = Self.example
        change(&m)
        do {
            _ = try m.encode()
            Issue.record("encoded an invalid MSD")
        } catch {
            #expect(error.field == field, "\(error)")
        }
    }

    @Test("a decoder refuses version 1, a bad direction, a short message and a wrong length")
    func decoderRefuses() {
        var v1 = bytes(Self.standardExample)
        v1[0] = 1
        #expect(throws: MSDError.self) { try MSD.decode(v1) }
        #expect((try? MSD.decode(v1)) == nil)
        do { _ = try MSD.decode(v1) } catch { #expect(error.field == "msdVersion") }
        var m = Self.example
        m.direction = 200
        do { _ = try MSD.decode(try m.encodeUnchecked()); Issue.record("accepted direction 200") } catch {
            #expect(error.field == "vehicleDirection")
        }
        var encoded = try! Self.example.encode()
        encoded.removeLast()
        do { _ = try MSD.decode(encoded); Issue.record("accepted a short message") } catch {
            #expect(error.field == "msd length")
        }
    }
}

@Suite("MSD as JSON")
struct MSDJSONTests {
    @Test("the JSON form reads back to the same MSD, additional data included")
    func roundTrip() throws {
        var m = MSDTests.example
        m.additionalData = .init(oid: [1, 4, 1], data: [1, 2, 3])
        let text = m.json.text
        #expect(try MSD(json: try JSON.parse(text)) == m)
        #expect(m.json["timestampUTC"] == .string("2020-01-25T22:45:31Z"))
        #expect(m.json["vehicleLocation"]?["latitudeDegrees"] == .number(52.22123))
    }

    @Test("degrees may replace milliarcseconds; unknown keys and bad types name the field")
    func input() throws {
        let base = #"{"control":{"automaticActivation":false,"testCall":true,"positionCanBeTrusted":false},"vehicleIdentificationNumber":"VSSZZZKLZNR012345","timestamp":1,"#
        let m = try MSD(json: try JSON.parse(base + #""vehicleLocation":{"latitudeDegrees":48.3003333,"longitudeDegrees":-3.5}}"#))
        #expect(m.latitude == 173_881_200 && m.longitude == -12_600_000)
        #expect(m.direction == nil && m.messageIdentifier == 1 && m.version == 3)
        let unknown = try MSD(json: try JSON.parse(base + #""vehicleLocation":{"unknown":true}}"#))
        #expect(unknown.positionIsUnknown)
        do { _ = try MSD(json: try JSON.parse(base + #""vehicleLocation":{"unknown":true},"colour":"red"}"#)); Issue.record("accepted") } catch let e as MSDError {
            #expect(e.field == "colour")
        }
        do { _ = try MSD(json: try JSON.parse(base + #""vehicleLocation":{"positionLatitude":"north"}}"#)); Issue.record("accepted") } catch let e as MSDError {
            #expect(e.field == "vehicleLocation.positionLatitude")
        }
    }

    @Test("UTC text for Unix seconds", arguments: [
        (Int64(0), "1970-01-01T00:00:00Z"), (1_367_878_452, "2013-05-06T22:14:12Z"),
        (4_294_967_295, "2106-02-07T06:28:15Z"), (951_782_400, "2000-02-29T00:00:00Z"),
    ])
    func utc(_ seconds: Int64, _ text: String) {
        #expect(utcText(seconds) == text)
    }
}
