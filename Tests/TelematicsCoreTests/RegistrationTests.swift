import Testing
@testable import TelematicsCore

@Suite("Registration")
struct RegistrationTests {
    @Test("a pairing code is exactly 8 digits", arguments: [("12345678", true), ("1234567", false), ("123456789", false),
                                                             ("1234567a", false), (" 2345678", false), ("１２３４５６７８", false)])
    func codes(text: String, valid: Bool) {
        #expect(isPairingCode(text) == valid)
    }

    @Test("three wrong codes are free, then the lock doubles from 30 s up to an hour; success clears it")
    func limiter() {
        var g = GuessLimiter()
        g.wrongCode(nowMs: 0)
        g.wrongCode(nowMs: 0)
        #expect(g.lockedFor(nowMs: 0) == nil)
        g.wrongCode(nowMs: 1_000)
        #expect(g.lockedFor(nowMs: 1_000) == 30_000)
        #expect(g.lockedFor(nowMs: 31_000) == nil)
        g.wrongCode(nowMs: 31_000)
        #expect(g.lockedFor(nowMs: 31_000) == 60_000)
        for _ in 0..<20 { g.wrongCode(nowMs: 100_000) }
        #expect(g.lockedFor(nowMs: 100_000) == 3_600_000)
        g.succeeded()
        #expect(g.lockedFor(nowMs: 100_000) == nil && g.failures == 0)
    }

    @Test("the registration is stored and read back; a damaged file is an error that says why")
    func file() throws {
        var r = Registration()
        r.status = .completed
        r.user = "ana@example.com"
        r.role = .primary
        r.registeredAtMs = 1_764_000_000_000
        r.services = ["emergencyCall", "parkingPosition"]
        r.licenceExpiresAtMs = 1_795_536_000_000
        r.limiter = GuessLimiter(failures: 1)
        #expect(try Registration.parse(r.json.text, source: "registration.json") == r)
        #expect(throws: ParseError.self) { try Registration.parse(#"{"status":"maybe"}"#, source: "registration.json") }
    }

    @Test("a remote service works only for a registered car whose unexpired licence has it")
    func licence() {
        var r = Registration()
        #expect(!r.allows("parkingPosition", nowMs: 0))
        r.status = .completed
        r.services = ["parkingPosition"]
        r.licenceExpiresAtMs = 1_000
        #expect(r.allows("parkingPosition", nowMs: 999))
        #expect(!r.allows("parkingPosition", nowMs: 1_000))
        #expect(!r.allows("remoteLockUnlock", nowMs: 0))
    }

    @Test("every failure has advice; only wrong codes count as guesses")
    func advice() {
        for f in RegistrationFailure.allCases { #expect(!f.advice.isEmpty) }
        #expect(RegistrationFailure.allCases.filter(\.isWrongCode) == [.codeUnknown, .codeForAnotherVehicle])
    }
}

@Suite("Capabilities and their status codes")
struct CapabilityTests {
    func registered(role: UserRole = .primary, licenceEnd: Int64 = 2_000) -> Registration {
        var r = Registration()
        r.status = .completed
        r.role = role
        r.services = ["vehicleStatus", "parkingPosition", "remoteLockUnlock", "alerts"]
        r.licenceExpiresAtMs = licenceEnd
        return r
    }

    func codes(_ list: [Capability], _ id: String) -> [Int] { list.first { $0.id == id }!.codes.map(\.rawValue) }

    @Test func theEmergencyCallIsAlwaysEnabled() {
        for privacy in [PrivacyMode.shareMyPosition, .useMyPosition, .offline] {
            for r in [Registration(), registered(licenceEnd: 0), registered(role: .guest)] {
                let e = Capabilities.evaluate(r, privacy: privacy, nowMs: 1_000).first { $0.id == "emergencyCall" }!
                #expect(e.isEnabled && e.expiresAtMs == Capabilities.farFutureMs)
            }
        }
    }

    @Test func aCarWithoutRegistrationOrWithoutTheServiceMissesTheLicence() {
        let none = Capabilities.evaluate(Registration(), privacy: .shareMyPosition, nowMs: 1_000)
        // Without registration only the eCall the law requires: the breakdown call is licensed.
        #expect(codes(none, "remoteLockUnlock") == [2003] && codes(none, "breakdownCall") == [2003])
        #expect(codes(none, "emergencyCall") == [])
        let some = Capabilities.evaluate(registered(), privacy: .shareMyPosition, nowMs: 1_000)
        #expect(codes(some, "remoteLockUnlock") == [] && codes(some, "onlineNavigation") == [2003])
        #expect(some.first { $0.id == "remoteLockUnlock" }!.expiresAtMs == 2_000)
    }

    @Test func anExpiredLicenceStopsEveryServiceButTheECall() {
        let list = Capabilities.evaluate(registered(licenceEnd: 2_000), privacy: .shareMyPosition, nowMs: 2_000)
        #expect(codes(list, "remoteLockUnlock") == [2002] && codes(list, "vehicleStatus") == [2002])
        #expect(codes(list, "emergencyCall") == [])
        var withBreakdown = registered(licenceEnd: 2_000)
        withBreakdown.services.append("breakdownCall")
        #expect(codes(Capabilities.evaluate(withBreakdown, privacy: .shareMyPosition, nowMs: 2_000), "breakdownCall") == [2002])
        #expect(codes(Capabilities.evaluate(withBreakdown, privacy: .shareMyPosition, nowMs: 1_999), "breakdownCall") == [])
        var inactive = registered()
        inactive.status = .inactive
        #expect(codes(Capabilities.evaluate(inactive, privacy: .shareMyPosition, nowMs: 0), "alerts") == [2001])
    }

    @Test func privacyAndRoleAddTheirCodes() {
        let use = Capabilities.evaluate(registered(), privacy: .useMyPosition, nowMs: 1_000)
        #expect(codes(use, "parkingPosition") == [1013] && codes(use, "vehicleStatus") == [])
        let offline = Capabilities.evaluate(registered(licenceEnd: 500), privacy: .offline, nowMs: 1_000)
        #expect(codes(offline, "vehicleStatus") == [1005, 2002] && codes(offline, "emergencyCall") == [])
        let guest = Capabilities.evaluate(registered(role: .guest), privacy: .shareMyPosition, nowMs: 1_000)
        #expect(codes(guest, "remoteLockUnlock") == [3003] && codes(guest, "vehicleStatus") == [])
        #expect(!registered(role: .secondary).allows("remoteLockUnlock", nowMs: 1_000))
        #expect(registered(role: .secondary).allows("vehicleStatus", nowMs: 1_000))
    }
}

@Suite("What may leave the car for the backend")
struct BackendConsentTests {
    typealias V = BackendConsent.Verdict

    static func registration(_ status: Registration.Status, licenceEnd: Int64 = 2_000,
                             services: [String] = ["vehicleStatus", "parkingPosition", "alerts"]) -> Registration {
        var r = Registration()
        r.status = status
        r.role = status == .notStarted ? nil : .primary
        r.services = status == .notStarted ? [] : services
        r.licenceExpiresAtMs = status == .notStarted ? nil : licenceEnd
        return r
    }

    static func message(_ stream: String, key: String? = nil) -> OutboxMessage {
        OutboxMessage(id: "m", stream: stream, priority: .event, coalesceKey: key, capturedAtMs: 0, payload: "{}")
    }

    // Rows: what the unit sends; columns: never registered, a code tried that failed a later
    // check, registered with a running licence, the same at its end, inactive, registered
    // without the alerts service. Nothing leaves before the owner registered and accepted the
    // terms but the link's own requests; afterwards each service's messages only while its
    // licence runs; the eCall's report and the services' status need the consent only.
    static let states: [Registration] = [
        registration(.notStarted), registration(.started), registration(.completed), registration(.completed, licenceEnd: 1_000),
        registration(.inactive), registration(.completed, services: ["vehicleStatus", "parkingPosition"]),
    ]
    static let table: [(OutboxMessage, [V])] = [
        (message("requests"), [.allowed, .allowed, .allowed, .allowed, .allowed, .allowed]),
        (message("state", key: "state.doors"),
         [.notRegistered, .notRegistered, .allowed, .licence("vehicleStatus"), .licence("vehicleStatus"), .allowed]),
        (message("state", key: "state.parking"),
         [.notRegistered, .notRegistered, .allowed, .licence("parkingPosition"), .licence("parkingPosition"), .allowed]),
        (message("state", key: "state.capabilities"), [.notRegistered, .notRegistered, .allowed, .allowed, .allowed, .allowed]),
        (message("events"), [.notRegistered, .notRegistered, .allowed, .licence("vehicleStatus"), .licence("vehicleStatus"), .allowed]),
        (message("alarms"), [.notRegistered, .notRegistered, .allowed, .licence("alerts"), .licence("alerts"), .licence("alerts")]),
        (message("ecall"), [.notRegistered, .notRegistered, .allowed, .allowed, .allowed, .allowed]),
        (message("results"), [.notRegistered, .notRegistered, .allowed, .allowed, .allowed, .allowed]),
        (message("services"), [.notRegistered, .notRegistered, .allowed, .allowed, .allowed, .allowed]),
        // A stream with no rule never leaves: a new one must be given its rule here.
        (message("somethingNew"), [.unknownStream, .unknownStream, .unknownStream, .unknownStream, .unknownStream, .unknownStream]),
    ]

    @Test("every stream against every registration state")
    func everyStreamAgainstEveryState() {
        for (m, expected) in Self.table {
            for (r, want) in zip(Self.states, expected) {
                #expect(BackendConsent.verdict(for: m, registration: r, nowMs: 1_500) == want,
                        "\(m.stream) \(m.coalesceKey ?? "") with \(r.status)")
            }
        }
    }
}
