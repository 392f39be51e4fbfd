import Crypto
import CryptoExtras
import Outbox
import TelematicsCore

/// Remote commands: the S-PIN and its lock, a command issued signed with the car's key, its
/// status as the car reports it; the backend's own key, which signs the answers the car acts on.
extension Portal {
    /// Checks the user's S-PIN: a wrong one answers with the tries left; after three the
    /// S-PIN is locked from 30 s, doubling up to an hour.
    public func verifySPIN(email: String, spin: String, nowMs: Int64) throws(PortalError) {
        let key = try Self.accountKey(email)
        let limiter: GuessLimiter
        switch try reserveTry("spin_attempts", "email", key, nowMs: nowMs) {
        case .locked(let left):
            throw PortalError("spinLocked", "the S-PIN is locked after wrong tries; try again in \((left + 999) / 1000) s", retryAfterMs: left)
        case .reserved(let l): limiter = l
        }
        guard try checkSPIN(email: key, spin: spin) else {
            let left = max(0, GuessLimiter.freeTries - limiter.failures)
            if let wait = limiter.lockedFor(nowMs: nowMs) {
                throw PortalError("spinLocked", "wrong S-PIN; it is locked for \((wait + 999) / 1000) s", retryAfterMs: wait)
            }
            var e = PortalError("wrongSPIN", "wrong S-PIN; \(left) \(left == 1 ? "try" : "tries") left")
            e.remainingTries = left
            throw e
        }
        try run("DELETE FROM spin_attempts WHERE email = ?", [.text(key)])
    }

    /// The actions that need the S-PIN (RemoteCommand.Action.needsSPIN).
    public static let spinActions = Set(RemoteCommand.Action.allCases.filter(\.needsSPIN))

    /// A remote command for the car, signed with its key: the user must be one of the car's
    /// users (the car itself refuses remote functions to anyone but the primary user, and the
    /// backend says so first), with the S-PIN where the action needs it, and with no command
    /// of the same type still pending. Recorded as `queued`.
    /// How a request shows the user's S-PIN: not at all, the S-PIN itself (checked here, after
    /// the user's rights), or an app's short-lived security token (checked when it was issued).
    public enum SPINProof: Sendable, Equatable {
        case none, spin(String), securityToken
    }

    public func issueCommand(vin: String, user: String, spin: SPINProof, action: RemoteCommand.Action, targetTemperature: Double?,
                             ttlMs: Int64, nowMs: Int64) throws(PortalError) -> RemoteCommand {
        guard let role = try role(of: user, vin: vin) else {
            throw PortalError("insufficientRights", "\(user) is not a user of \(vin)")
        }
        guard role.hasRemoteFunctions else { throw PortalError("insufficientRights", "only the primary user has remote functions (\(user) is \(role.rawValue))") }
        // The request's own values first: a malformed request costs no S-PIN try.
        if action == .climatisationStart, !RemoteCommand.isValidTargetTemperature(targetTemperature ?? 0) {
            throw PortalError("invalidTemperature", "the target temperature is 16 to 30 °C in 0.5 steps")
        }
        try requireLicence(vin: vin, service: action.service, nowMs: nowMs)
        if Self.spinActions.contains(action) {
            switch spin {
            case .none: throw PortalError("spinRequired", "\(action.rawValue) needs the S-PIN")
            case .spin(let pin): try verifySPIN(email: user, spin: pin, nowMs: nowMs)
            case .securityToken: break
            }
        }
        // The pending check, the counter's step and the command's row in one immediate
        // transaction: two requests at once (the app API serves them in parallel) never get the
        // same counter (the car would refuse the second as replayed) nor both pass the check.
        let result: Result<RemoteCommand, PortalError>
        do {
            result = try db.transaction { () throws(OutboxError) -> Result<RemoteCommand, PortalError> in
                let pending = try db.query("SELECT id FROM commands WHERE vin = ? AND action = ? AND status IN ('queued', 'inProgress') AND expires_at > ?",
                                           [.text(vin), .text(action.rawValue), .int(nowMs)]) { $0.text(0) }
                if let other = pending.first { return .failure(PortalError("requestPending", "a \(action.rawValue) request is still pending (\(other))")) }
                let keys = try db.query("SELECT key, counter FROM command_keys WHERE vin = ?", [.text(vin)]) { ($0.text(0), $0.int(1)) }
                guard let (hex, counter) = keys.first, let key = bytes(fromHex: hex), !key.isEmpty else {
                    return .failure(PortalError("notRegistered", "\(vin) has no command key: register it first"))
                }
                var c = RemoteCommand(id: messageID(unixMs: nowMs), vin: vin, action: action, counter: counter + 1, issuedAtMs: nowMs,
                                      expiresAtMs: nowMs + ttlMs, user: user.lowercased(), role: role,
                                      targetTemperature: action == .climatisationStart ? targetTemperature : nil)
                c.signature = Self.sign(c, key: key)
                try db.run("UPDATE command_keys SET counter = ? WHERE vin = ?", [.int(counter + 1), .text(vin)])
                try db.run("INSERT INTO commands(id, vin, action, \"user\", status, expires_at, created_at, updated_at, body) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
                           [.text(c.id), .text(vin), .text(action.rawValue), .text(c.user), .int(c.expiresAtMs), .int(nowMs), .int(nowMs), .text(c.json.text)])
                return .success(c)
            }
        } catch { throw PortalError("storage", "\(error)") }
        let c = try result.get()
        return c
    }

    /// HMAC-SHA256 of the command's signed text with the car's key, in hex.
    /// The backend's Ed25519 key for the answers cars act on (registration, licence): made on
    /// first use and kept in the database; cars are installed with its public half
    /// (`tcu-backend keys`, `[backend] answer-key`).
    public func answerKey() throws(PortalError) -> Curve25519.Signing.PrivateKey {
        func stored() throws(PortalError) -> Curve25519.Signing.PrivateKey? {
            let rows = try query("SELECT value FROM backend_keys WHERE name = 'answers'", [], { $0.text(0) })
            return rows.first.flatMap { bytes(fromHex: $0) }.flatMap { try? Curve25519.Signing.PrivateKey(rawRepresentation: $0) }
        }
        if let key = try stored() { return key }
        let key = Curve25519.Signing.PrivateKey()
        try run("INSERT INTO backend_keys(name, value) VALUES ('answers', ?) ON CONFLICT DO NOTHING", [.text(hexBytes(Array(key.rawRepresentation)))])
        // Another process may have made one first: the stored key is the one.
        guard let kept = try stored() else { throw PortalError("storage", "cannot keep the answer key") }
        return kept
    }

    /// An answer for a car, signed: the signature covers `AnswerSignature.signedText` of the
    /// answer without its signature (docs/protocol.md, "Signed answers").
    public func signedAnswer(_ answer: JSON, vin: String, kind: String) throws(PortalError) -> JSON {
        let key = try answerKey()
        guard let signature = try? key.signature(for: Array(AnswerSignature.signedText(answer, vin: vin, kind: kind).utf8)) else {
            throw PortalError("storage", "cannot sign the answer")
        }
        return .object((answer.objectValue ?? []) + [("signature", .string(hexBytes(Array(signature))))])
    }

    public static func sign(_ c: RemoteCommand, key: [UInt8]) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Array(c.signedText.utf8), using: SymmetricKey(data: key))
        return hexBytes(Array(mac))
    }

    /// A result from the car (`inProgress`, `successful`, `failed`); a later status never goes back.
    /// A car's result moves its command on; only the car the command was for can (the VIN of
    /// the topic it came on), so another car's result for it changes nothing.
    public func commandResult(id: String, vin: String, status: RemoteCommand.Status, cause: String?, nowMs: Int64) throws(PortalError) {
        // From queued to anything; from inProgress to an end only; never back.
        try run("""
            UPDATE commands SET status = ?, cause = ?, updated_at = ? WHERE id = ? AND vin = ?
            AND (status = 'queued' OR (status = 'inProgress' AND ? = 1))
            """, [.text(status.rawValue), cause.map { .text($0) } ?? .null, .int(nowMs), .text(id), .text(vin), .int(status.isFinal ? 1 : 0)])
    }

    public struct CommandStatus: Sendable, Equatable {
        public var id: String
        public var action: String
        public var status: RemoteCommand.Status
        public var cause: String?
        public var json: JSON {
            var o: [(String, JSON)] = [("id", .string(id)), ("action", .string(action)), ("status", .string(status.rawValue))]
            if let cause { o.append(("cause", .string(cause))) }
            return .object(o)
        }
    }

    /// A command's status; with `vin`, only a command for that car (an app asks through the car's
    /// path, and one car's user must not read another car's requests).
    public func commandStatus(id: String, vin: String? = nil, nowMs: Int64) throws(PortalError) -> CommandStatus {
        let rows = try query("SELECT action, status, cause, expires_at FROM commands WHERE id = ? AND vin = coalesce(?, vin)",
                             [.text(id), vin.map { .text($0) } ?? .null]) {
            ($0.text(0), $0.text(1), $0.isNull(2) ? nil : $0.text(2), $0.int(3))
        }
        guard let (action, status, cause, expires) = rows.first else { throw PortalError("unknownRequest", "no request \(id)") }
        // A command the car never finished before it expired has timed out.
        let stored = RemoteCommand.Status(rawValue: status) ?? .failed
        return CommandStatus(id: id, action: action, status: stored.isFinal || expires > nowMs ? stored : .timedOut, cause: cause)
    }
}
