import TelematicsCore

/// The Online infotainment services' answers (the backend side of `vehicles/{vin}/navi`):
/// routes with traffic, the nearest parking and fuel stations with their prices, the traffic
/// around a place, and the voice control's intents. Pure over the map: the licence and privacy
/// checks come before (NaviAccess.backendRefusal).
public struct NaviService: Sendable {
    public let map: NaviMap
    /// How many POIs an answer lists.
    public static let listed = 5

    public init(map: NaviMap) { self.map = map }

    /// The answer's fields; `position` is the car's (its `here`), `language` the head unit's.
    public func answer(_ request: NaviRequest, position: GeoPoint?, language: String) throws(NaviError) -> [(String, JSON)] {
        switch request {
        case .route(let from, let to):
            let a = try resolve(from, position), b = try resolve(to, position)
            return [("route", try route(from: a, to: b, language: language))]
        case .nearest(let kind, let near, let cheapest):
            let at = try resolve(near, position)
            return [("near", at.json), ("results", .array(nearest(kind, at: at, cheapest: cheapest).map(\.json)))]
        case .traffic(let near, let radius):
            let at = try resolve(near, position)
            return [("near", at.json), ("records", .array(traffic(near: at, radiusM: Double(radius))))]
        case .say(let text, let near):
            return try say(text, position: try near.map { p throws(NaviError) in try resolve(p, position) })
        }
    }

    func resolve(_ place: NaviPlace, _ position: GeoPoint?) throws(NaviError) -> Resolved {
        switch place {
        case .here:
            guard let position else { throw NaviError("locationDataDisabled", "the request names the car's position but carries none") }
            return Resolved(at: position, name: nil)
        case .coordinates(let p): return Resolved(at: p, name: nil)
        case .named(let n):
            let p = try map.place(named: n)
            return Resolved(at: p.at, name: p.name)
        }
    }

    struct Resolved {
        var at: GeoPoint
        var name: String?
        var json: JSON {
            if let name { return .object([("name", .string(name)), ("lat", .number(at.latitude)), ("lon", .number(at.longitude))]) }
            return at.json
        }
    }

    /// The engine's route, with the traffic records on it added to its duration.
    func route(from a: Resolved, to b: Resolved, language: String) throws(NaviError) -> JSON {
        let r = try map.router.route(from: a.at, to: b.at, language: language)
        let records = map.traffic(on: r.geometry)
        let delay = records.reduce(0) { $0 + $1.delayS }
        return .object([
            ("from", a.json), ("to", b.json),
            ("distanceM", .number(rounded(r.distanceM))), ("durationS", .number(rounded(r.durationS + Double(delay)))),
            ("freeFlowDurationS", .number(rounded(r.durationS))), ("trafficDelayS", .number(Double(delay))),
            ("traffic", .array(records.map(\.json))),
            ("geometry", .array(r.geometry.map { .array([.number($0.latitude), .number($0.longitude)]) })),
            ("manoeuvres", .array(r.manoeuvres.map { m in
                .object([("at", m.at.json), ("distanceM", .number(rounded(m.distanceM))), ("instruction", .string(m.instruction)),
                         ("then", .string(m.then)), ("turn", .number(Double(m.turn)))])
            })),
        ])
    }

    struct Found {
        var poi: POI
        var distanceM: Double
        var price: FuelPrice?
        var json: JSON {
            var o: [(String, JSON)] = [("id", .string(poi.id)), ("kind", .string(poi.kind.rawValue))]
            if let n = poi.name { o.append(("name", .string(n))) }
            if let a = poi.address { o.append(("address", .string(a))) }
            o += [("lat", .number(poi.at.latitude)), ("lon", .number(poi.at.longitude)), ("distanceM", .number(rounded(distanceM)))]
            if let price { o.append(("prices", price.json)) }
            return .object(o)
        }
    }

    /// The nearest POIs; `cheapest` orders the nearest ones by their E10 price (unknown last).
    func nearest(_ kind: POIKind, at: Resolved, cheapest: Bool) -> [Found] {
        var found = map.nearest(kind, to: at.at, limit: Self.listed).map { Found(poi: $0.poi, distanceM: $0.distanceM, price: map.prices[$0.poi.id]) }
        if cheapest {
            found.sort { ($0.price?.e10 ?? .infinity, $0.distanceM) < ($1.price?.e10 ?? .infinity, $1.distanceM) }
        }
        return found
    }

    func traffic(near at: Resolved, radiusM: Double) -> [JSON] {
        map.traffic.map { ($0, Geodesy.distance(at.at, $0.at)) }.filter { $0.1 <= radiusM }.sorted { $0.1 < $1.1 }.map { r, d in
            var o = r.json.objectValue ?? []
            o.append(("distanceM", .number(rounded(d))))
            return .object(o)
        }
    }

    /// A sentence: its intent, what the head unit shows, and the navigation's result.
    func say(_ text: String, position: Resolved?) throws(NaviError) -> [(String, JSON)] {
        guard let (intent, language) = VoiceIntent.parse(text) else {
            throw NaviError("noIntent", VoiceIntent.language(of: text) == .fr
                            ? "« \(text) » : rien à faire pour la navigation, l'audio ou les médias"
                            : "'\(text)': nothing to do for navigation, audio or media")
        }
        var out: [(String, JSON)] = [("intent", intent.json), ("language", .string(language.rawValue)),
                                     ("display", .string(intent.display(language: language)))]
        guard intent.needsPosition else { return out }
        guard let here = position else {
            throw NaviError("noPosition", language == .fr
                            ? "« \(text) » a besoin de la position de la voiture, que la demande ne porte pas (mode de confidentialité, ou pas de position)"
                            : "'\(text)' needs the car's position, which the request does not carry (its privacy mode, or no fix)")
        }
        switch intent {
        case .navigate(let place):
            out.append(("route", try route(from: here, to: try resolve(place, here.at), language: language.rawValue)))
        case .navigateNearest(let kind, let cheapest):
            let found = nearest(kind, at: here, cheapest: cheapest)
            guard let target = found.first else { throw NaviError("nothingNearby", "no \(kind.rawValue) on the map") }
            out.append(("results", .array(found.map(\.json))))
            out.append(("route", try route(from: here, to: Resolved(at: target.poi.at, name: target.poi.name), language: language.rawValue)))
        case .findNearest(let kind, let cheapest):
            out.append(("results", .array(nearest(kind, at: here, cheapest: cheapest).map(\.json))))
        case .traffic:
            out.append(("records", .array(traffic(near: here, radiusM: 5_000))))
        case .playRadio, .volume, .media:
            break
        }
        return out
    }
}

/// To the metre or the second, and to a tenth for what is smaller: answers stay readable.
func rounded(_ x: Double) -> Double { (x * 10).rounded() / 10 }
