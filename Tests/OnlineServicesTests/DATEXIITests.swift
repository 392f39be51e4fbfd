import Testing
@testable import OnlineServices
import TelematicsCore

@Suite("DATEX II situation publications")
struct DATEXIITests {
    static func publication(_ records: String) -> [UInt8] {
        Array("""
            <?xml version="1.0" encoding="UTF-8"?>
            <d2:payload xmlns:d2="http://datex2.eu/schema/3/d2Payload" xmlns:com="http://datex2.eu/schema/3/common"
                xmlns:sit="http://datex2.eu/schema/3/situation" xmlns:loc="http://datex2.eu/schema/3/locationReferencing"
                xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="sit:SituationPublication" modelBaseVersion="3">
              <sit:situation id="S1"><sit:overallSeverity>high</sit:overallSeverity>\(records)</sit:situation>
            </d2:payload>
            """.utf8)
    }

    static func record(_ id: String, type: String = "Accident", status: String = "active", delay: String = "120",
                       lat: String = "60.52", lon: String = "26.95") -> String {
        """
        <sit:situationRecord xsi:type="sit:\(type)" id="\(id)" version="1">
          <sit:validity><com:validityStatus>\(status)</com:validityStatus></sit:validity>
          <sit:impact><sit:delays><sit:delayTimeValue>\(delay)</sit:delayTimeValue></sit:delays></sit:impact>
          <sit:generalPublicComment><com:comment><com:values><com:value lang="en">Crash</com:value></com:values></com:comment></sit:generalPublicComment>
          <sit:locationReference xsi:type="loc:PointLocation"><loc:pointByCoordinates><loc:pointCoordinates>
            <loc:latitude>\(lat)</loc:latitude><loc:longitude>\(lon)</loc:longitude></loc:pointCoordinates></loc:pointByCoordinates></sit:locationReference>
        </sit:situationRecord>
        """
    }

    @Test("active point records are read with their type, severity, delay and comment; suspended ones are not")
    func reads() throws {
        let records = try DATEXII.parse(Self.publication(Self.record("R1") + Self.record("R2", type: "MaintenanceWorks", status: "suspended")))
        #expect(records == [TrafficRecord(id: "R1", type: "Accident", severity: "high", at: GeoPoint(latitude: 60.52, longitude: 26.95),
                                          delayS: 120, comment: "Crash")])
    }

    @Test("numbers out of range are not taken: a latitude of 1e300 drops the record, a huge delay is capped")
    func numbers() throws {
        let records = try DATEXII.parse(Self.publication(Self.record("A", lat: "1e300") + Self.record("B", delay: "1e300") + Self.record("C", delay: "nan")))
        #expect(records.map(\.id) == ["B", "C"])
        #expect(records.map(\.delayS) == [86_400, 0])
    }

    @Test("what is not a situation publication is refused with the reason")
    func refused() {
        let cases: [(String, String)] = [
            ("<d2:payload", "not well-formed XML (line"),
            ("<html><body/></html>", "expected a DATEX II SituationPublication, found <html>"),
            (#"<payload xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="x:MeasuredDataPublication"/>"#,
             "expected a DATEX II SituationPublication, found <payload> of type MeasuredDataPublication"),
            (#"<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><payload>&e;</payload>"#, ""),
        ]
        for (text, message) in cases {
            do {
                let records = try DATEXII.parse(Array(text.utf8))
                // An external entity is never fetched: nothing of it is read.
                #expect(message.isEmpty && records.isEmpty, "\(text)")
            } catch {
                #expect(!message.isEmpty && error.message.contains(message), "\(error.message)")
            }
        }
    }
}
