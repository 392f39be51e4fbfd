import Testing
@testable import TelematicsCore

@Suite("Online infotainment: the voice control's intents, the access rules, the requests")
struct NavigationTests {
    /// Sentences and what they mean, in French and English.
    static let sentences: [(String, VoiceIntent?, VoiceLanguage)] = [
        ("trouve une station-service pas chère", .findNearest(.fuel, cheapest: true), .fr),
        ("Trouve un parking", .findNearest(.parking, cheapest: false), .fr),
        ("find a cheap gas station", .findNearest(.fuel, cheapest: true), .en),
        ("navigate to the nearest parking", .navigateNearest(.parking, cheapest: false), .en),
        ("emmène-moi à la station essence la moins chère", .navigateNearest(.fuel, cheapest: true), .fr),
        ("navigate to Tikankatu 11", .navigate(.named("Tikankatu 11")), .en),
        ("Emmène-moi à Suurniitynkatu 1", .navigate(.named("Suurniitynkatu 1")), .fr),
        ("take me to 60.52,26.95", .navigate(.coordinates(GeoPoint(latitude: 60.52, longitude: 26.95))), .en),
        ("play radio FIP", .playRadio("FIP"), .en),
        ("mets la radio France Inter", .playRadio("FRANCE INTER"), .fr),
        ("play Nova radio", .playRadio("NOVA"), .en),
        ("volume 12", .volume(12), .en),
        ("mets le volume à 7", .volume(7), .fr),
        ("volume 99", nil, .en),
        ("next track", .media(.next), .en),
        ("chanson précédente", .media(.previous), .fr),
        ("pause", .media(.pause), .en),
        ("reprends la musique", .media(.resume), .fr),
        ("info trafic", .traffic, .fr),
        ("how is the traffic", .traffic, .en),
        ("bonjour", nil, .en),
        ("", nil, .en),
        ("navigate to", nil, .en),
        ("radio", nil, .en),
    ]

    @Test("each sentence of the table gives its intent (or none) and its language")
    func intents() {
        for (sentence, intent, language) in Self.sentences {
            let got = VoiceIntent.parse(sentence)
            #expect(got?.intent == intent, "\(sentence)")
            if let got { #expect(got.language == language, "\(sentence)") }
        }
    }

    @Test("a destination keeps its accents and case; the search folds them")
    func destination() {
        #expect(VoiceIntent.parse("navigue vers Kärnä Päätie")?.intent == .navigate(.named("Kärnä Päätie")))
        #expect(foldedForSearch("  Kärnä,  PÄÄTIE ") == "karna paatie")
    }

    static let licensed = Capability(id: "onlineNavigation", expiresAtMs: 1, codes: [])
    static let here = GeoPoint(latitude: 60.52, longitude: 26.94)

    /// privacy × capability × position × request → decision, row by row.
    @Test("the car's decision, state by event")
    func access() {
        let route = NaviRequest.route(from: .here, to: .named("Tikankatu"))
        let named = NaviRequest.route(from: .named("Tikankatu"), to: .named("Kangaskatu"))
        let say = NaviRequest.say("volume 3", near: .here)
        let noLicence = Capability(id: "onlineNavigation", expiresAtMs: nil, codes: [.missingLicence])
        let expired = Capability(id: "onlineNavigation", expiresAtMs: 1, codes: [.licenceExpired])
        typealias Row = (PrivacyMode, Capability?, GeoPoint?, NaviRequest, NaviAccess.Decision)
        let rows: [Row] = [
            (.shareMyPosition, Self.licensed, Self.here, route, .send(route, position: Self.here)),
            (.shareMyPosition, Self.licensed, nil, route, .refuse(codes: [], reason: "the car has no position yet (no GNSS fix)")),
            (.shareMyPosition, Self.licensed, Self.here, named, .send(named, position: Self.here)),
            (.shareMyPosition, Self.licensed, nil, named, .send(named, position: nil)),
            (.useMyPosition, Self.licensed, Self.here, named, .send(named, position: nil)),
            (.useMyPosition, Self.licensed, Self.here, say, .send(.say("volume 3", near: nil), position: nil)),
            (.shareMyPosition, Self.licensed, Self.here, say, .send(say, position: Self.here)),
            (.offline, Self.licensed, Self.here, named, .refuse(codes: [.offlineMode], reason: "the privacy mode is offline: no data leaves the car but the emergency call")),
            (.shareMyPosition, noLicence, Self.here, named, .refuse(codes: [.missingLicence], reason: NaviAccess.reason([.missingLicence]))),
            (.shareMyPosition, expired, Self.here, say, .refuse(codes: [.licenceExpired], reason: NaviAccess.reason([.licenceExpired]))),
            (.shareMyPosition, nil, Self.here, named, .refuse(codes: [.missingLicence], reason: "the car has no Online infotainment service (the Navi package)")),
        ]
        for (privacy, capability, position, request, expected) in rows {
            #expect(NaviAccess.decide(request, capability: capability, privacy: privacy, position: position) == expected,
                    "\(privacy) \(String(describing: capability?.codes)) \(position != nil) \(request.action)")
        }
        if case .refuse(let codes, _) = NaviAccess.decide(route, capability: Self.licensed, privacy: .useMyPosition, position: Self.here) {
            #expect(codes == [.locationDataDisabled])
        } else {
            Issue.record("'here' under use-my-position must be refused")
        }
    }

    @Test("the backend refuses what the licence or the privacy rule does not allow")
    func backend() {
        let r = NaviRequest.nearest(.fuel, near: .here, cheapest: false)
        #expect(NaviAccess.backendRefusal(services: nil, licenceExpiresAtMs: nil, nowMs: 10, privacy: .shareMyPosition, request: r, carriesPosition: true)?.codes == [.missingLicence])
        #expect(NaviAccess.backendRefusal(services: ["vehicleStatus"], licenceExpiresAtMs: 20, nowMs: 10, privacy: .shareMyPosition, request: r, carriesPosition: true)?.codes == [.missingLicence])
        #expect(NaviAccess.backendRefusal(services: ["onlineNavigation"], licenceExpiresAtMs: 10, nowMs: 10, privacy: .shareMyPosition, request: r, carriesPosition: true)?.codes == [.licenceExpired])
        #expect(NaviAccess.backendRefusal(services: ["onlineNavigation"], licenceExpiresAtMs: 20, nowMs: 10, privacy: .useMyPosition, request: r, carriesPosition: true)?.codes == [.locationDataDisabled])
        #expect(NaviAccess.backendRefusal(services: ["onlineNavigation"], licenceExpiresAtMs: 20, nowMs: 10, privacy: .shareMyPosition, request: r, carriesPosition: true) == nil)
    }

    @Test("requests from outside are refused with what is wrong; good ones read back")
    func requests() throws {
        let good: [NaviRequest] = [.route(from: .here, to: .named("Tikankatu")), .nearest(.parking, near: .coordinates(Self.here), cheapest: false),
                                   .traffic(near: .named("Karhula"), radiusM: 2_000), .say("volume 3", near: nil)]
        for r in good { #expect(try NaviRequest.parse(r.json) == r) }
        let bad: [(String, String)] = [
            (#"{"action":"fly"}"#, "unknown action 'fly'"),
            (#"{"action":"route","to":{"lat":1e300,"lon":0}}"#, "coordinates need a latitude"),
            (#"{"action":"nearest","kind":"hotel"}"#, "kind is fuel or parking"),
            (#"{"action":"traffic","radiusM":1e300}"#, "radiusM is a whole number"),
            (#"{"action":"say","text":""}"#, "text is a sentence"),
            (#"{"action":"route","to":{"name":""}}"#, "a place's name is empty"),
        ]
        for (text, message) in bad {
            #expect(throws: NaviRequestError.self, "\(text)") { try NaviRequest.parse(try JSON.parse(text)) }
            do { _ = try NaviRequest.parse(try JSON.parse(text)) } catch let e as NaviRequestError { #expect(e.message.hasPrefix(message), "\(e.message)") }
        }
        #expect(NaviPlace(text: "91,0") == nil && NaviPlace(text: "here") == .here && NaviPlace(text: "60.5, 26.9") == .coordinates(GeoPoint(latitude: 60.5, longitude: 26.9)))
    }
}
