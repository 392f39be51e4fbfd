import OnlineServices
import TelematicsCore

/// What the backend does with each message a car publishes (`vehicles/{vin}/...`): stores its
/// state blocks, events and results once (BackendStore), answers its interactive requests
/// (registration, the in-car account assistant, licence renewal) signed with the backend's
/// key, and confirms a factory reset's deletion. Runs on the MQTT thread only; `tcu-backend
/// serve` publishes what `handle` returns. Every payload is outside input: whatever it holds,
/// the answer is a refusal that says why, never a trap (a fuzz target holds it to that).
public final class CarMessages {
    /// A message for the broker.
    public typealias Publication = (topic: String, body: JSON)

    let portal: Portal
    let store: BackendStore
    let note: (String) -> Void
    /// A car's account requests (creating accounts hashes passwords, slow on purpose): at most
    /// 5 a minute per car, so that a flood neither fills the portal nor stalls the MQTT thread.
    var accountRequests = RollingLimit(limit: 5, windowMs: 60_000)

    /// Told when alerts were stored (the app API's live streams wake on it).
    let alerted: () -> Void
    /// The Online infotainment services, when the backend serves a map.
    let navi: NaviService?

    public init(portal: Portal, store: BackendStore, note: @escaping (String) -> Void, navi: NaviService? = nil, alerted: @escaping () -> Void = {}) {
        self.portal = portal
        self.store = store
        self.note = note
        self.navi = navi
        self.alerted = alerted
    }

    /// The licence notices due at `nowMs` (AlertRules.licenceCheck on every registered car's
    /// licence); `tcu-backend serve` calls it once a minute. Returns how many were raised.
    @discardableResult
    public func checkLicences(nowMs: Int64) -> Int {
        var raised = 0
        do {
            for (vin, end) in try portal.licenceEnds() {
                raised += try store.raiseAlerts(vin: vin, nowMs: nowMs) { $0.licenceCheck(expiresAtMs: end, nowMs: nowMs) }
            }
        } catch {
            note("cannot check the licences: \(error)")
        }
        if raised > 0 { alerted() }
        return raised
    }

    /// The database could not be reached: the message was not stored, and must not be
    /// acknowledged (the broker gives it again).
    public struct StorageUnavailable: Error, CustomStringConvertible {
        public var description: String
    }

    /// What to publish in answer to one message from the broker (often nothing). Throws when
    /// the message could not be stored; a message that is not the protocol's is refused with a
    /// note (and counts as handled: sending it again would change nothing).
    public func handle(topic: String, payload: [UInt8], nowMs: Int64) throws(StorageUnavailable) -> [Publication] {
        try handle([(topic, payload)], nowMs: nowMs)
    }

    /// The messages of one read from the broker, in their order: the cars' messages stored
    /// together (BackendStore's batch: all or none, one round trip on a server), the
    /// interactive requests answered between them. Throws when they could not be stored: none
    /// may then be acknowledged.
    public func handle(_ batch: [(topic: String, payload: [UInt8])], nowMs: Int64) throws(StorageUnavailable) -> [Publication] {
        var replies: [Publication] = []
        var run: [(topic: String, payload: String)] = []
        for (topic, payload) in batch {
            // The backend's own messages to the cars (commands, answers) come back through
            // vehicles/#: they are not the cars' messages.
            if topic.hasSuffix("/commands") || topic.hasSuffix("/response") { continue }
            let parts = topic.split(separator: "/")
            if parts.count == 4, parts[0] == "vehicles", parts[3] == "request" {
                replies += try store(run, nowMs: nowMs)
                run.removeAll()
                if let reply = interactiveReply(topic: topic, payload: payload, nowMs: nowMs) { replies.append(reply) }
                continue
            }
            run.append((topic, String(decoding: payload, as: UTF8.self)))
            // A request (a deletion of the car's data) ends the run: the car's next messages
            // must find it deleted.
            if parts.count == 3, parts[2] == "requests" {
                replies += try store(run, nowMs: nowMs)
                run.removeAll()
            }
        }
        return try replies + store(run, nowMs: nowMs)
    }

    /// Stores a run of the cars' messages together, then does what each stored one asks.
    private func store(_ run: [(topic: String, payload: String)], nowMs: Int64) throws(StorageUnavailable) -> [Publication] {
        guard !run.isEmpty else { return [] }
        func vin(_ topic: String) -> String {
            let parts = topic.split(separator: "/")
            return parts.count > 1 ? String(parts[1]) : ""
        }
        var replies: [Publication] = []
        do {
            // A car whose data was deleted (a factory reset, or its owner's account deleted
            // in the portal) is a stranger until it is in a garage again: nothing it sends is
            // kept, neither its online status, which the link sends before any consent (it may
            // arrive just after the deletion), nor what a car still registered goes on sending.
            var strangers = Set<String>()
            for reset in try store.resetCars(among: Set(run.map { vin($0.topic) }.filter { !$0.isEmpty })) where try !portal.isInGarage(vin: reset) {
                strangers.insert(reset)
            }
            let kept = run.filter { !strangers.contains(vin($0.topic)) }
            let receipts = try store.receive(kept, receivedAtMs: nowMs)
            for (message, receipt) in zip(kept, receipts) {
                replies += followUp(receipt, topic: message.topic, payload: message.payload, vin: vin(message.topic), nowMs: nowMs)
            }
        } catch {
            throw StorageUnavailable(description: "\(error)")
        }
        return replies
    }

    /// What a stored message asks for beyond its storing: a command's result moves its request
    /// on, alerts for the car's users, the confirmation of a deletion.
    private func followUp(_ receipt: BackendStore.Receipt, topic: String, payload: String, vin: String, nowMs: Int64) -> [Publication] {
        if case .stored = receipt, let body = try? JSON.parse(payload) {
            if topic.hasSuffix("/results"), let id = body["commandId"]?.stringValue,
               let status = body["status"]?.stringValue.flatMap(RemoteCommand.Status.init(rawValue:)), status.isCarResult {
                do { try portal.commandResult(id: id, vin: vin, status: status, cause: body["cause"]?.stringValue, nowMs: nowMs) } catch {
                    note("cannot record the result of \(id): \(error)")
                }
            }
            // What the car's users are told at once (each message once: a duplicate raises nothing).
            let stream = String(topic.split(separator: "/")[2])
            if AlertRules.concerns(stream: stream, type: body["type"]?.stringValue) {
                do {
                    if try store.raiseAlerts(vin: vin, nowMs: nowMs, { $0.carMessage(stream: stream, body: body) }) > 0 { alerted() }
                } catch { note("cannot store the alerts of \(vin): \(error)") }
            }
        }
        switch receipt {
        case .rejected(let why): note("rejected a message: \(why)")
        case .dataDeleted(let requestId):
            do { try portal.forgetCar(vin: vin) } catch { note("cannot remove \(vin) from its garage: \(error)") }
            note("deleted the data of \(vin) (factory reset in the car)")
            return [("vehicles/\(vin)/reset/response", .object([("type", .string("dataDeleted")), ("requestId", .string(requestId))]))]
        default: break
        }
        return []
    }

    /// The answer to a car's interactive request (`vehicles/{vin}/{kind}/request`: a registration
    /// or a licence renewal) on `vehicles/{vin}/{kind}/response`, carrying its `requestId`; nil
    /// for any other topic.
    func interactiveReply(topic: String, payload: [UInt8], nowMs: Int64) -> Publication? {
        let portal = self.portal, note = self.note
        let parts = topic.split(separator: "/")
        guard parts.count == 4, parts[0] == "vehicles", parts[3] == "request" else { return nil }
        let vin = String(parts[1]), kind = String(parts[2])
        let handle: (JSON, Int64) throws(PortalError) -> [(String, JSON)]
        switch kind {
        case "registration":
            handle = { (r, now) throws(PortalError) in
                let e = try portal.register(
                    vin: vin, code: r["code"]?.stringValue ?? "", model: r["model"]?.stringValue ?? "",
                    built: r["buildDate"]?.stringValue ?? "", country: r["country"]?.stringValue ?? "",
                    privacy: r["privacy"]?.stringValue, navigation: r["navigation"]?.boolValue == true, nowMs: now
                )
                note("registered \(vin): \(e.user) is its primary user")
                return [("user", .string(e.user)), ("role", .string(e.role.rawValue)), ("services", .array(e.services.map { .string($0) })),
                        ("licenceExpiresAt", .number(Double(e.licenceExpiresAtMs))), ("commandKey", .string(hexBytes(e.commandKey)))]
            }
        case "account":
            // The in-car activation assistant: create the account, then log in and add the car to
            // the garage (the car registers with the code it gets back). The password is checked
            // here and never stored nor logged as it is.
            handle = { (r, now) throws(PortalError) in
                let email = r["email"]?.stringValue ?? "", password = r["password"]?.stringValue ?? ""
                switch r["action"]?.stringValue {
                case "createAccount":
                    try portal.addUser(email: email, password: password, spin: r["spin"]?.stringValue ?? "", nowMs: now)
                    note("account created from the car \(vin); its e-mail address waits for verification")
                    return [("user", .string(email.lowercased())), ("verified", .bool(false))]
                case "addCar":
                    try portal.logIn(email: email, password: password, nowMs: now)
                    let car = try portal.addCar(vin: vin, email: email, model: r["model"]?.stringValue ?? "", built: r["buildDate"]?.stringValue ?? "",
                                                country: r["country"]?.stringValue ?? "", acceptedTerms: r["acceptTerms"]?.boolValue == true, nowMs: now)
                    note("\(vin) added to a garage from the car")
                    return [("pairingCode", .string(car.code)), ("codeExpiresAt", .number(Double(car.codeExpiresAtMs)))]
                default:
                    throw PortalError("unknownAction", "an account request is createAccount or addCar")
                }
            }
        case "licence":
            handle = { (r, now) throws(PortalError) in
                // A year count from outside: anything but a small whole number is refused by renew.
                let years = r["years"]?.integer(in: -100...100).map { Int($0) } ?? 0
                let l = try portal.renew(vin: vin, package: r["package"]?.stringValue ?? "", years: years, nowMs: now)
                note("renewed the licence of \(vin): \(l.package) until \(l.expiresAtMs)")
                return l.json.objectValue ?? []
            }
        case "navi":
            let navi = self.navi
            handle = { (r, now) throws(PortalError) in try Self.naviAnswer(navi, portal: portal, vin: vin, r, nowMs: now) }
        default:
            return nil
        }
        let responseTopic = "vehicles/\(vin)/\(kind)/response"
        if kind == "account" {
            if let wait = accountRequests.wait(vin, nowMs: nowMs) {
                note("rate-limited an account request from \(vin)")
                let id = (try? JSON.parse(String(decoding: payload, as: UTF8.self)))?["requestId"]?.stringValue ?? ""
                return (responseTopic, .object([("requestId", .string(id)), ("ok", .bool(false)), ("error", .string("rateLimited")),
                                                ("message", .string("too many account requests from this car; try again later")),
                                                ("retryAfterS", .number(Double((wait + 999) / 1000)))]))
            }
            accountRequests.record(vin, nowMs: nowMs)
        }
        guard let request = try? JSON.parse(String(decoding: payload, as: UTF8.self)), let id = request["requestId"]?.stringValue else {
            note("rejected a \(kind) request from \(vin): not JSON with a requestId")
            return (responseTopic, .object([("ok", .bool(false)), ("error", .string("malformedRequest")), ("message", .string("malformed request"))]))
        }
        // Every answer is signed with the backend's key: the car takes none without its signature.
        func signed(_ answer: JSON) -> Publication {
            do { return (responseTopic, try portal.signedAnswer(answer, vin: vin, kind: kind)) } catch {
                note("cannot sign the \(kind) answer for \(vin): \(error)")
                return (responseTopic, answer)
            }
        }
        do {
            let fields = try handle(request, nowMs)
            return signed(.object([("requestId", .string(id)), ("ok", .bool(true))] + fields))
        } catch {
            note("\(kind) of \(vin) refused: \(error.code)")
            var o: [(String, JSON)] = [("requestId", .string(id)), ("ok", .bool(false)), ("error", .string(error.code)),
                                       ("message", .string(error.message))]
            if let ms = error.retryAfterMs { o.append(("retryAfterS", .number(Double((ms + 999) / 1000)))) }
            return signed(.object(o))
        }
    }
}

extension CarMessages {
    /// An Online infotainment request (`vehicles/{vin}/navi/request`: `request`, the car's
    /// `position` for its `here`, its `privacy` mode, the head unit's `language`): the licence
    /// and the privacy rule checked here again, then the services' answer. A refusal's code is
    /// a capability status code's name (missingLicence, licenceExpired, offlineMode,
    /// locationDataDisabled) or the services' own (unknownPlace, noRoute, noRoad, noIntent, ...).
    static func naviAnswer(_ navi: NaviService?, portal: Portal, vin: String, _ r: JSON, nowMs: Int64) throws(PortalError) -> [(String, JSON)] {
        let request: NaviRequest
        do { request = try NaviRequest.parse(r["request"] ?? .null) } catch { throw PortalError("malformedRequest", error.message) }
        var position: GeoPoint?
        if let p = r["position"] {
            guard let g = GeoPoint(json: p) else { throw PortalError("malformedRequest", "position needs lat within ±90 and lon within ±180") }
            position = g
        }
        let licence = try? portal.licence(vin: vin)
        if let refusal = NaviAccess.backendRefusal(services: licence?.services, licenceExpiresAtMs: licence?.expiresAtMs, nowMs: nowMs,
                                                   privacy: r["privacy"]?.stringValue.flatMap(PrivacyMode.init(rawValue:)),
                                                   request: request, carriesPosition: position != nil) {
            throw PortalError(refusal.codes.first.map { "\($0)" } ?? "refused", refusal.reason)
        }
        guard let navi else { throw PortalError("serviceUnavailable", "the backend serves no map for the online services") }
        let language = r["language"]?.stringValue == "fr" ? "fr" : "en"
        do { return try navi.answer(request, position: position, language: language) } catch { throw PortalError(error.code, error.message) }
    }
}
