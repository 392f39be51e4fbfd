/// A remote command from an app, through the backend, to the car (`vehicles/{vin}/commands`):
/// signed by the backend with the car's own key (provisioned at registration), bound to the
/// VIN, with an expiry and a counter that only grows, so that a command cannot be forged,
/// sent to another car, kept for later or replayed.
public struct RemoteCommand: Sendable, Equatable {
    public enum Action: String, Sendable, CaseIterable {
        case lock, unlock, honkAndFlash, flash, climatisationStart, climatisationStop
        /// Wake the car for a fresh status (every block sent again); limited per day for the 12 V battery.
        case wakeUp

        /// Its name in the app API's path (`POST /v1/vehicles/{vin}/actions/{name}`).
        public var pathName: String {
            switch self {
            case .honkAndFlash: "honkandflash"
            case .climatisationStart: "climatisation-start"
            case .climatisationStop: "climatisation-stop"
            case .wakeUp: "wakeup"
            case .lock, .unlock, .flash: rawValue
            }
        }

        /// Whether the user proves the S-PIN first (the backend asks for it, an app asks the
        /// user): the product page asks it for locking and unlocking "and to control the
        /// climatisation remotely" (starting and stopping it both are).
        public var needsSPIN: Bool { self == .lock || self == .unlock || self == .climatisationStart || self == .climatisationStop }

        /// The connected service the action belongs to (its capability).
        public var service: String {
            switch self {
            case .lock, .unlock: "remoteLockUnlock"
            case .honkAndFlash, .flash: "honkAndFlash"
            case .climatisationStart, .climatisationStop: "remoteClimatisation"
            case .wakeUp: "vehicleStatus"
            }
        }
    }

    public var id: String
    public var vin: String
    public var action: Action
    /// Grows with every command the backend signs for this car.
    public var counter: Int64
    public var issuedAtMs: Int64
    public var expiresAtMs: Int64
    /// Who asked, and their role for this car (only the primary user has remote functions).
    public var user: String
    public var role: UserRole
    /// Climatisation: 16 to 30 °C in 0.5 steps.
    public var targetTemperature: Double?
    /// HMAC-SHA256 of `signedText` with the car's key, in hex (either case).
    public var signature: String

    public init(id: String, vin: String, action: Action, counter: Int64, issuedAtMs: Int64, expiresAtMs: Int64, user: String,
                role: UserRole, targetTemperature: Double? = nil, signature: String = "") {
        self.id = id
        self.vin = vin
        self.action = action
        self.counter = counter
        self.issuedAtMs = issuedAtMs
        self.expiresAtMs = expiresAtMs
        self.user = user
        self.role = role
        self.targetTemperature = targetTemperature
        self.signature = signature
    }

    /// What is signed: every field but the signature, in a fixed order (version 1).
    public var signedText: String {
        let t = targetTemperature.map { String(Int(($0 * 2).rounded())) } ?? ""
        return "tcu-command-v1|\(id)|\(vin)|\(action.rawValue)|\(counter)|\(issuedAtMs)|\(expiresAtMs)|\(user)|\(role.rawValue)|\(t)"
    }

    public var json: JSON {
        var o: [(String, JSON)] = [
            ("id", .string(id)), ("vin", .string(vin)), ("action", .string(action.rawValue)), ("counter", .number(Double(counter))),
            ("issuedAt", .number(Double(issuedAtMs))), ("expiresAt", .number(Double(expiresAtMs))), ("user", .string(user)),
            ("role", .string(role.rawValue)),
        ]
        if let targetTemperature { o.append(("targetTemperature", .number(targetTemperature))) }
        o.append(("signature", .string(signature)))
        return .object(o)
    }

    /// Reads a command; nil with what was wrong when a field is missing or malformed.
    public static func parse(_ j: JSON) -> Result<RemoteCommand, CommandRejection.Malformed> {
        func int(_ k: String) -> Int64? { j[k]?.numberValue.flatMap { $0 == $0.rounded() && abs($0) < 9e15 ? Int64($0) : nil } }
        guard let id = j["id"]?.stringValue, !id.isEmpty else { return .failure(.init(field: "id")) }
        guard let vin = j["vin"]?.stringValue else { return .failure(.init(field: "vin")) }
        guard let a = j["action"]?.stringValue, let action = Action(rawValue: a) else { return .failure(.init(field: "action")) }
        guard let counter = int("counter"), counter > 0 else { return .failure(.init(field: "counter")) }
        guard let issued = int("issuedAt") else { return .failure(.init(field: "issuedAt")) }
        guard let expires = int("expiresAt") else { return .failure(.init(field: "expiresAt")) }
        guard let user = j["user"]?.stringValue else { return .failure(.init(field: "user")) }
        guard let role = j["role"]?.stringValue.flatMap(UserRole.init(rawValue:)) else { return .failure(.init(field: "role")) }
        guard let signature = j["signature"]?.stringValue, signature.utf8.count == 64 else { return .failure(.init(field: "signature")) }
        var t: Double?
        if action == .climatisationStart {
            guard let v = j["targetTemperature"]?.numberValue, isValidTargetTemperature(v) else {
                return .failure(.init(field: "targetTemperature"))
            }
            t = v
        }
        return .success(RemoteCommand(id: id, vin: vin, action: action, counter: counter, issuedAtMs: issued, expiresAtMs: expires,
                                      user: user, role: role, targetTemperature: t, signature: signature))
    }

    /// 16 to 30 °C in 0.5 steps, as the climate control takes it.
    public static func isValidTargetTemperature(_ t: Double) -> Bool {
        t >= 16 && t <= 30 && (t * 2) == (t * 2).rounded()
    }
}

/// Why the car refused a command; nothing was executed.
public enum CommandRejection: Equatable, Sendable {
    public struct Malformed: Error, Equatable, Sendable { public var field: String }

    case malformed(field: String)
    case wrongVehicle, notProvisioned, badSignature, expired, replayed
    /// The capability's status codes (licence, privacy, rights) say no.
    case serviceUnavailable([Capability.Code])

    public var cause: String {
        switch self {
        case .malformed(let f): "malformed: \(f)"
        case .wrongVehicle: "wrongVehicle"
        case .notProvisioned: "notProvisioned"
        case .badSignature: "badSignature"
        case .expired: "expired"
        case .replayed: "replayed"
        case .serviceUnavailable(let codes):
            codes.contains(.offlineMode) ? "privacyOffline"
                : codes.contains(.insufficientRights) ? "insufficientRights"
                : codes.contains(.licenceExpired) ? "licenceExpired" : "missingLicence"
        }
    }
}

public enum CommandVerifier {
    /// How far ahead of the car's clock a command may be issued (clock skew).
    public static let maximumSkewMs: Int64 = 300_000

    /// Checks a command in the order that tells the most: the VIN, the key, the signature
    /// (`mac` computes HMAC-SHA256 with the key: the core does no cryptography itself), the
    /// time, the counter, then the service for this registration, privacy and role. Nil when
    /// the command may run.
    public static func verify(_ c: RemoteCommand, vin: String, key: [UInt8]?, lastCounter: Int64, nowMs: Int64,
                              registration: Registration, privacy: PrivacyMode,
                              mac: (_ key: [UInt8], _ message: [UInt8]) -> [UInt8]) -> CommandRejection? {
        guard c.vin == vin else { return .wrongVehicle }
        guard let key, !key.isEmpty else { return .notProvisioned }
        let expected = hexBytes(mac(key, Array(c.signedText.utf8)))
        guard constantTimeEqual(Array(expected.utf8), Array(c.signature.uppercased().utf8)) else { return .badSignature }
        guard nowMs < c.expiresAtMs, c.issuedAtMs <= nowMs + maximumSkewMs else { return .expired }
        guard c.counter > lastCounter else { return .replayed }
        var r = registration
        // The role is the one the backend signed for this user, not the car's own user's.
        r.role = c.role
        let codes = Capabilities.evaluate(r, privacy: privacy, nowMs: nowMs).first { $0.id == c.action.service }?.codes ?? [.missingLicence]
        return codes.isEmpty ? nil : .serviceUnavailable(codes)
    }

    /// Whether two byte strings are equal, in a time that does not tell where they differ (a
    /// signature here, the portal's form token).
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var d: UInt8 = 0
        for i in a.indices { d |= a[i] ^ b[i] }
        return d == 0
    }
}

extension RemoteCommand {
    /// A command's result as the car sends it (`vehicles/{vin}/results`, command-result
    /// priority): `inProgress`, then `successful` or `failed` with its cause.
    public static func resultMessage(commandId: String, action: String, status: String, cause: String? = nil, vin: String,
                                     id: String, nowMs: Int64) -> OutboxMessage {
        var o: [(String, JSON)] = [
            ("id", .string(id)), ("vin", .string(vin)), ("type", .string("commandResult")), ("commandId", .string(commandId)),
            ("action", .string(action)), ("status", .string(status)),
        ]
        if let cause { o.append(("cause", .string(cause))) }
        o.append(("capturedAt", .number(Double(nowMs))))
        return OutboxMessage(id: id, stream: "results", priority: .commandResult, capturedAtMs: nowMs, payload: JSON.object(o).text)
    }

    /// A command's status as the backend follows it: queued (signed and on its way), inProgress
    /// (the car took it and acts), successful or failed (the car's result, with its cause), or
    /// timedOut (no result before it expired).
    public enum Status: String, Sendable, CaseIterable {
        case queued, inProgress, successful, failed, timedOut

        /// The car's end of the command (successful or failed): it moves no further. (A command
        /// read as timed out may still get the car's late result.)
        public var isFinal: Bool { self == .successful || self == .failed }
        /// Still on its way or being carried out, before its expiry.
        public var isPending: Bool { self == .queued || self == .inProgress }
        /// What a car may report: that it took the command, or how it ended.
        public var isCarResult: Bool { self == .inProgress || isFinal }
    }
}
