import TelematicsCore

extension CarRegistration {
    /// An Online infotainment request from the head unit: decided in the car first (the Navi
    /// licence's capability, the privacy mode, the position: NaviAccess), then sent at once as an
    /// interactive request (`vehicles/{vin}/navi/request`, never queued) and the backend's answer
    /// taken only with its signature. The reply is what the head unit shows: the answer's
    /// fields, or `ok: false` with the refusal's code, status codes and reason.
    public func navi(_ request: NaviRequest, language: VoiceLanguage, position: GeoPoint?) -> JSON {
        let now = clocks.wallMs
        let mode = privacy.current
        let capability = Capabilities.evaluate(current, privacy: mode, nowMs: now).first { $0.id == NaviAccess.capability }
        func refused(_ code: String, _ codes: [Capability.Code], _ message: String) -> JSON {
            logger.notice("online infotainment request refused", metadata: ["navi.action": "\(request.action)", "navi.error": "\(code)"])
            return .object([("ok", .bool(false)), ("error", .string(code)), ("statusCodes", .array(codes.map { .number(Double($0.rawValue)) })),
                            ("message", .string(message))])
        }
        let send: NaviRequest, carPosition: GeoPoint?
        switch NaviAccess.decide(request, capability: capability, privacy: mode, position: position) {
        case .refuse(let codes, let reason):
            return refused(codes.first.map { "\($0)" } ?? "noPosition", codes, reason)
        case .send(let r, let p):
            send = r
            carPosition = p
        }
        guard answerKey != nil else { return refused("noBackendKey", [], "the car has no backend key to check answers with") }
        let requestId = messageID(unixMs: now)
        var body: [(String, JSON)] = [("requestId", .string(requestId)), ("vin", .string(profile.vin.value)), ("request", send.json),
                                      ("privacy", .string(mode.rawValue)), ("language", .string(language.rawValue))]
        if let carPosition { body.append(("position", carPosition.json)) }
        switch outbox.interact(suffix: "navi", body: .object(body), requestId: requestId, timeoutMs: timeoutMs) {
        case .noConnection:
            return refused("noConnection", [], "no connection to the backend: the online services answer only when the car is online")
        case .timeout:
            return refused("noAnswer", [], "the backend did not answer within \(timeoutMs) ms")
        case .answer(let a):
            guard authentic(a, kind: "navi") else {
                logger.warning("an answer without the backend's signature was refused", metadata: ["request.kind": "navi"])
                return refused("notAuthentic", [], "the answer did not carry the backend's signature")
            }
            guard a["ok"]?.boolValue == true else {
                let code = a["error"]?.stringValue ?? "refused"
                let codes = Capability.Code.named(code).map { [$0] } ?? []
                return refused(code, codes, a["message"]?.stringValue ?? "refused by the backend")
            }
            let fields = (a.objectValue ?? []).filter { !["requestId", "signature", "ok"].contains($0.0) }
            return .object([("ok", .bool(true)), ("action", .string(send.action))] + fields)
        }
    }
}
