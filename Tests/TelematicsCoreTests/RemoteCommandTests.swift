import Testing
@testable import TelematicsCore

@Suite("Remote commands: parsing and verification in the car")
struct RemoteCommandTests {
    let vin = "VSSZZZKLZNR012345"
    let key: [UInt8] = Array(repeating: 7, count: 32)
    let now: Int64 = 1_764_000_000_000

    /// A stand-in MAC for the verifier's logic (the real HMAC-SHA256 is the adapters').
    static func mac(_ key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        for (i, b) in message.enumerated() { out[i % 32] = out[i % 32] &+ (b ^ key[i % key.count]) }
        return out
    }

    func registration(licenceEnd: Int64? = nil) -> Registration {
        var r = Registration()
        r.status = .completed
        r.role = .primary
        r.services = Capabilities.all
        r.licenceExpiresAtMs = licenceEnd ?? now + 86_400_000
        return r
    }

    func signed(_ action: RemoteCommand.Action = .lock, counter: Int64 = 5, expires: Int64? = nil, role: UserRole = .primary,
                vin: String? = nil) -> RemoteCommand {
        var c = RemoteCommand(id: "c1", vin: vin ?? self.vin, action: action, counter: counter, issuedAtMs: now - 1_000,
                              expiresAtMs: expires ?? now + 60_000, user: "ana@example.com", role: role)
        c.signature = hexBytes(Self.mac(key, Array(c.signedText.utf8)))
        return c
    }

    func verify(_ c: RemoteCommand, last: Int64 = 4, registration r: Registration? = nil, privacy: PrivacyMode = .shareMyPosition,
                key: [UInt8]? = nil) -> CommandRejection? {
        CommandVerifier.verify(c, vin: vin, key: key ?? self.key, lastCounter: last, nowMs: now, registration: r ?? registration(),
                               privacy: privacy, mac: Self.mac)
    }

    @Test func aGoodCommandPassesAndSurvivesItsJSON() throws {
        let c = signed()
        #expect(verify(c) == nil)
        let back = try RemoteCommand.parse(c.json).get()
        #expect(back == c && verify(back) == nil)
    }

    @Test func eachCheckHasItsRejection() {
        #expect(verify(signed(vin: "VSSZZZKLZNR099999")) == .wrongVehicle)
        #expect(verify(signed(), key: []) == .notProvisioned)
        var forged = signed()
        forged.action = .unlock
        #expect(verify(forged) == .badSignature)
        #expect(verify(signed(), key: Array(repeating: 8, count: 32)) == .badSignature)
        #expect(verify(signed(expires: now)) == .expired)
        #expect(verify(signed(counter: 4)) == .replayed && verify(signed(counter: 3)) == .replayed)
        #expect(verify(signed(), registration: registration(licenceEnd: now - 1)) == .serviceUnavailable([.licenceExpired]))
        #expect(verify(signed(), registration: Registration()) == .serviceUnavailable([.missingLicence]))
        #expect(verify(signed(role: .secondary)) == .serviceUnavailable([.insufficientRights]))
        #expect(verify(signed(), privacy: .offline)?.cause == "privacyOffline")
        // Issued too far in the future for the car's clock: refused like an expired one.
        var ahead = RemoteCommand(id: "c2", vin: vin, action: .lock, counter: 9, issuedAtMs: now + 600_000, expiresAtMs: now + 660_000,
                                  user: "ana@example.com", role: .primary)
        ahead.signature = hexBytes(Self.mac(key, Array(ahead.signedText.utf8)))
        #expect(verify(ahead) == .expired)
    }

    @Test func malformedCommandsNameTheField() {
        var j = signed().json
        guard case .object(var o) = j else { return }
        o.removeAll { $0.0 == "counter" }
        j = .object(o)
        #expect(RemoteCommand.parse(j).failureField == "counter")
        var clima = signed(.climatisationStart).json
        #expect(RemoteCommand.parse(clima).failureField == "targetTemperature")
        if case .object(var p) = clima { p.append(("targetTemperature", .number(21.5))); clima = .object(p) }
        #expect(RemoteCommand.parse(clima).failureField == nil)
    }

    @Test("target temperatures: 16 to 30 °C in 0.5 steps", arguments: [(16.0, true), (30.0, true), (21.5, true), (15.5, false), (30.5, false), (21.3, false)])
    func temperatures(t: Double, ok: Bool) {
        #expect(RemoteCommand.isValidTargetTemperature(t) == ok)
    }
}

extension Result where Success == RemoteCommand, Failure == CommandRejection.Malformed {
    var failureField: String? { if case .failure(let m) = self { m.field } else { nil } }
}
