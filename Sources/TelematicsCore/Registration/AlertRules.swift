/// Overview: which of a car's messages become alerts pushed to its users' apps (the backend
/// stores each alert once, with an increasing id that a reconnecting app resumes from).
///
/// One `AlertRules` value per car, fed the car's messages in the order the backend stores
/// them; the value carries what a rule needs to remember (the car locked or not, which openings
/// are open). Alerts:
/// - `theftAlarm`: the anti-theft alarm went off (`alarms` stream, `alarmTriggered`).
/// - `locked` / `unlocked`: the central locking changed (`lockStateChanged`); `locked` with a
///   door, the bonnet or the boot still open is followed by `openedWhileLocked` naming them
///   (the app's "your car is locked but a door is open").
/// - `commandResult`: a remote command ended (`results` stream; not its `inProgress`).
/// - `eCallPlaced`: an emergency call was placed, with its kind and ending, never a position.
/// - `licenceExpiring`: the licence ends within `licenceNoticeMs` (from `licenceCheck`, which
///   the backend calls on its own clock, once per licence end).
///
/// Pure: no IO, no clock; the time is the message's or the caller's.
public struct AlertRules: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case theftAlarm, locked, unlocked, openedWhileLocked, commandResult, eCallPlaced, licenceExpiring
    }

    /// One alert: its kind and what the app shows (JSON fields).
    public struct Alert: Sendable, Equatable {
        public var kind: Kind
        public var fields: [(String, JSON)]

        public init(_ kind: Kind, _ fields: [(String, JSON)] = []) {
            self.kind = kind
            self.fields = fields
        }

        public static func == (a: Alert, b: Alert) -> Bool {
            a.kind == b.kind && JSON.object(a.fields) == JSON.object(b.fields)
        }
    }

    /// A licence's end is announced this long before (an assumption: the product page says
    /// the owner is told before the licence runs out, not when; 30 days, as many services do).
    public static let licenceNoticeMs: Int64 = 30 * 86_400_000

    /// Whether the car is locked, as its last lock event said (nil: not known yet).
    public private(set) var locked: Bool?
    /// The openings its events last said were open (`doors.frontLeft.open`, `trunk.open`, ...).
    public private(set) var open: Set<String> = []
    /// The licence end already announced (one notice per end; a renewal moves the end).
    public private(set) var announcedLicenceEndMs: Int64?

    public init() {}

    /// Whether `carMessage` may raise an alert or change the rules' state for a message of this
    /// stream and type: the backend reads the rules' state only for those (most messages are
    /// driving state, which concerns no rule). Kept beside the switch below, which it mirrors.
    public static func concerns(stream: String, type: String?) -> Bool {
        switch (stream, type) {
        case ("alarms", "alarmTriggered"?), ("events", "lockStateChanged"?), ("events", "opened"?), ("events", "closed"?),
             ("results", "commandResult"?), ("ecall", "eCallReport"?):
            true
        default:
            false
        }
    }

    /// A message the car sent on `vehicles/{vin}/{stream}`, as stored.
    public mutating func carMessage(stream: String, body: JSON) -> [Alert] {
        let type = body["type"]?.stringValue
        switch (stream, type) {
        case ("alarms", "alarmTriggered"?):
            return [Alert(.theftAlarm, at(body))]
        case ("events", "lockStateChanged"?):
            let value = body["value"]?.stringValue
            guard value == "Locked" || value == "Unlocked" else { return [] }
            let nowLocked = value == "Locked"
            let was = locked
            locked = nowLocked
            guard was != nowLocked else { return [] }
            guard nowLocked else { return [Alert(.unlocked, at(body))] }
            var out = [Alert(.locked, at(body))]
            if !open.isEmpty {
                out.append(Alert(.openedWhileLocked, at(body) + [("open", .array(open.sorted().map { .string($0) }))]))
            }
            return out
        case ("events", "opened"?), ("events", "closed"?):
            guard let quantity = body["quantity"]?.stringValue, quantity.hasSuffix(".open") || quantity.hasSuffix("Open") else { return [] }
            if type == "opened" { open.insert(quantity) } else { open.remove(quantity) }
            return []
        case ("results", "commandResult"?):
            // The end of a command only (successful, failed, ...): not that it started.
            guard let id = body["commandId"]?.stringValue, let status = body["status"]?.stringValue,
                  status != "inProgress", status != "queued" else { return [] }
            var f: [(String, JSON)] = [("commandId", .string(id))]
            if let action = body["action"]?.stringValue { f.append(("action", .string(action))) }
            f.append(("status", .string(status)))
            if let cause = body["cause"]?.stringValue { f.append(("cause", .string(cause))) }
            return [Alert(.commandResult, f + at(body))]
        case ("ecall", "eCallReport"?):
            // What the call was, never where: the position went to the PSAP only.
            // (The call's kind as `eCallKind`: an alert's own `kind` is what it is.)
            var f: [(String, JSON)] = []
            for (key, name) in [("kind", "eCallKind"), ("ending", "ending"), ("msdAcknowledged", "msdAcknowledged")] {
                if let v = body[key] { f.append((name, v)) }
            }
            return [Alert(.eCallPlaced, f + at(body))]
        default:
            return []
        }
    }

    /// The licence's end seen at `nowMs`: a notice once it is within `licenceNoticeMs` (and not
    /// yet past), once per end.
    public mutating func licenceCheck(expiresAtMs: Int64, nowMs: Int64) -> [Alert] {
        guard expiresAtMs > nowMs, expiresAtMs - nowMs <= Self.licenceNoticeMs, announcedLicenceEndMs != expiresAtMs else { return [] }
        announcedLicenceEndMs = expiresAtMs
        let days = (expiresAtMs - nowMs + 86_399_999) / 86_400_000
        return [Alert(.licenceExpiring, [("expiresAt", .number(Double(expiresAtMs))), ("daysLeft", .number(Double(days)))])]
    }

    /// The car's time of the event, when it said.
    private func at(_ body: JSON) -> [(String, JSON)] {
        body["capturedAt"].map { [("capturedAt", $0)] } ?? []
    }

    /// The state as JSON, to keep between runs of the backend, and back.
    public var json: JSON {
        var o: [(String, JSON)] = [("open", .array(open.sorted().map { .string($0) }))]
        if let locked { o.append(("locked", .bool(locked))) }
        if let announcedLicenceEndMs { o.append(("announcedLicenceEnd", .number(Double(announcedLicenceEndMs)))) }
        return .object(o)
    }

    public init(json: JSON) {
        locked = json["locked"]?.boolValue
        open = Set(json["open"]?.arrayValue?.compactMap(\.stringValue) ?? [])
        announcedLicenceEndMs = json["announcedLicenceEnd"]?.integer(in: 0...(1 << 53))
    }
}
