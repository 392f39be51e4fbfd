/// What the unit answers a request of the registration family over the control socket
/// (register with a code, renew the licence, the activation assistant's two steps), typed on
/// both sides: the daemon's `CarRegistration` makes one, `tcuctl` and the menu read its refusal
/// back; `json` is the wire form (`{"ok": true, ...}` or `{"ok": false, "error", "advice", ...}`).
public enum RegistrationReply: Sendable, Equatable {
    /// Registered, or the licence renewed: the car's registration now, and what a renewal cost.
    case done(Registration, priceEUR: Double? = nil)
    /// The account made from the car: whose, and the next step to tell the user.
    case accountCreated(user: String, next: String)
    case refused(Refusal)

    /// Why not: a stable code (a `RegistrationFailure`'s, or the backend's own), what the user
    /// reads, when to try again, and the backend's own sentence when it gave one.
    public struct Refusal: Error, Sendable, Equatable {
        public var code: String
        public var advice: String
        public var retryAfterS: Int64?
        public var detail: String?

        public init(code: String, advice: String, retryAfterS: Int64? = nil, detail: String? = nil) {
            self.code = code
            self.advice = advice
            self.retryAfterS = retryAfterS
            self.detail = detail
        }

        /// A failure the car knows, with the time left of a lock rounded up to the second.
        public init(_ failure: RegistrationFailure, retryAfterMs: Int64? = nil, detail: String? = nil) {
            self.init(code: failure.rawValue, advice: failure.advice, retryAfterS: retryAfterMs.map { ($0 + 999) / 1000 }, detail: detail)
        }

        /// One line for the user: the code, the advice, when to try again.
        public var text: String {
            code + (advice.isEmpty ? "" : ": \(advice)") + (retryAfterS.map { " (try again in \($0) s)" } ?? "")
        }

        /// The lines the car's menu shows for it, after `what` ("Registration failed").
        public func menuLines(_ what: String) -> [String] {
            ["\(what) (\(code))."] + (advice.isEmpty ? [] : [advice]) + (retryAfterS.map { ["Try again in \($0) s."] } ?? [])
        }
    }

    public var json: JSON {
        switch self {
        case .done(let registration, let price):
            var o: [(String, JSON)] = [("ok", .bool(true)), ("registration", registration.json)]
            if let price { o.append(("priceEUR", .number(price))) }
            return .object(o)
        case .accountCreated(let user, let next):
            return .object([("ok", .bool(true)), ("user", .string(user)), ("advice", .string(next))])
        case .refused(let r):
            var o: [(String, JSON)] = [("ok", .bool(false)), ("error", .string(r.code)), ("advice", .string(r.advice))]
            if let s = r.retryAfterS { o.append(("retryAfterS", .number(Double(s)))) }
            if let d = r.detail { o.append(("detail", .string(d))) }
            return .object(o)
        }
    }

    /// The refusal in a reply read off the wire; nil when it succeeded. A reply that says
    /// neither (a daemon that is not the unit) is a refusal with code `unknown`.
    public static func refusal(in reply: JSON) -> Refusal? {
        guard reply["ok"]?.boolValue != true else { return nil }
        return Refusal(code: reply["error"]?.stringValue ?? "unknown", advice: reply["advice"]?.stringValue ?? "",
                       retryAfterS: reply["retryAfterS"]?.integer(in: 0...Int64(Int32.max)), detail: reply["detail"]?.stringValue)
    }
}
