import Testing
@testable import TelematicsCore
@testable import TelematicsDaemon

@Suite("Service buttons: what each request carries")
struct ServiceButtonTests {
    let fix = FilteredFix(latitude: 41.4756, longitude: 1.9361, mode: 3, utc: nil, receivedAt: .zero, error95: 8, direction: nil,
                          speed: 0, satellites: 9, trusted: true, jump: false)

    func registered() -> Registration {
        var r = Registration()
        r.status = .completed
        r.role = .primary
        r.services = Capabilities.all
        r.licenceExpiresAtMs = 2_000_000
        return r
    }

    func request(_ b: VehicleQuantity, _ r: Registration, _ p: PrivacyMode) -> OutboxMessage? {
        ServiceButtonService.request(for: b, vin: "VSSZZZKLZNR012345", id: "m1", nowMs: 1_000, registration: r, privacy: p,
                                     odometer: 23_817, position: fix, serviceDue: .object([("dueNow", .bool(false))]))
    }

    @Test func theBreakdownCallCarriesThePositionOnlyWhereThePrivacyLevelLetsItOut() throws {
        let shared = try #require(request(.breakdownButton, registered(), .shareMyPosition))
        let body = try JSON.parse(shared.payload)
        #expect(body["service"]?.stringValue == "breakdown" && body["position"]?["latitude"]?.numberValue == 41.4756)
        #expect(shared.carriesPosition && shared.stream == "services")
        let used = try #require(request(.breakdownButton, registered(), .useMyPosition))
        #expect(try JSON.parse(used.payload)["position"] == .null && !used.carriesPosition)
        #expect(request(.breakdownButton, registered(), .offline) == nil)
    }

    @Test func everyButtonNeedsItsLicenceOnlyTheECallTheLawRequiresDoesNot() throws {
        // Without registration only the public eCall works (the product page): not the
        // breakdown call either; with an expired licence neither.
        #expect(request(.breakdownButton, Registration(), .shareMyPosition) == nil)
        var expired = registered()
        expired.licenceExpiresAtMs = 500
        #expect(request(.breakdownButton, expired, .shareMyPosition) == nil)
        #expect(request(.serviceButton, Registration(), .shareMyPosition) == nil)
        #expect(request(.schedulingButton, Registration(), .shareMyPosition) == nil)
        let due = try JSON.parse(try #require(request(.schedulingButton, registered(), .shareMyPosition)).payload)
        #expect(due["type"]?.stringValue == "maintenanceRequest" && due["odometer"]?.numberValue == 23_817 && due["position"] == nil)
    }
}
