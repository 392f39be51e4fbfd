import Testing
@testable import TelematicsCore

@Suite("JSON")
struct JSONTests {
    @Test("parses and prints back the same value")
    func roundTrip() throws {
        let text = #"{"a":[1,2.5,-3e-7,true,false,null],"b":"x\"y\\z\n\u00e9\ud83d\ude97","c":{}}"#
        let v = try JSON.parse(text)
        #expect(v["a"]?.arrayValue?.count == 6)
        #expect(v["b"]?.stringValue == "x\"y\\z\né🚗")
        #expect(try JSON.parse(v.text) == v)
    }

    @Test("numbers print as integers when integral, shortest otherwise")
    func numbers() {
        #expect(JSON.format(12) == "12")
        #expect(JSON.format(-0.5) == "-0.5")
        #expect(JSON.format(0.1 + 0.2) == "0.30000000000000004")
        #expect(JSON.format(.nan) == "null")
    }

    static let bad: [(String, String)] = [
        ("{", "expected a string key"), ("[1,]", "expected a JSON value"), ("01", "leading zeros"),
        ("{\"a\" 1}", "expected ':'"), ("\"abc", "string is not closed"), ("1 2", "unexpected text"),
        ("tru", "expected true"),
    ]

    @Test("rejects invalid JSON with the position", arguments: bad)
    func rejects(_ text: String, _ message: String) {
        do {
            _ = try JSON.parse(text)
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.message.contains(message), "\(error)")
            #expect(error.line == 1 && error.column != nil)
        }
    }
}

@Suite("Vehicle profile")
struct VehicleProfileTests {
    @Test("the project's vehicle profile is valid")
    func profile() throws {
        let p = try VehicleProfile.parse(ProjectFiles.profile)
        #expect(p.vin.value == "VSSZZZKLZNR012345" && p.vin.wmi == "VSS")
        #expect(p.model == "Leon" && p.country == "ES" && p.propulsion == [.petrol] && p.category == "M1")
        #expect(p.equipment["navigation"] == "true")
    }

    static let badProfiles: [(String, String)] = [
        ("[vehicle]\nvin = VSSZZZKLZNR01234\n", "a VIN has 17 characters"),
        ("[vehicle]\nvin = VSSZZZKLZNR0I2345\n", "character 13 ('I') is not allowed"),
        ("[vehicle]\nvin = VSSZZZKLZNR012345\nmodel-year = 2022\nbuild-date = 2021-02-30\n", "expected a date YYYY-MM-DD"),
        ("[vehicle]\nvin = VSSZZZKLZNR012345\nmodel-year = 2022\nbuild-date = 2021-02-03\ncountry = es\n", "two-letter country code"),
        ("[vehicle]\nvin = VSSZZZKLZNR012345\nmodel-year = 2022\nbuild-date = 2021-02-03\ncountry = ES\npropulsion = steam\n", "unknown propulsion 'steam'"),
        ("[vehicle]\ncolour = red\n", "vehicle.colour: unknown key"),
    ]

    @Test("invalid profiles are rejected naming the key", arguments: badProfiles)
    func invalidProfiles(_ text: String, _ message: String) {
        do {
            _ = try VehicleProfile.parse(text, source: "p.conf")
            Issue.record("accepted \(text)")
        } catch {
            #expect(error.description.contains(message), "\(error)")
        }
    }
}
