/// Where a navigation request starts, ends or searches around: the car's own position (which
/// the car fills in only where its privacy mode lets the position leave it), coordinates, or a
/// name the backend looks up (an address, a street, a place or a POI).
public enum NaviPlace: Sendable, Equatable {
    case here
    case coordinates(GeoPoint)
    case named(String)

    /// From what the head unit or `tcuctl` was given: "here", "LAT,LON" or a name.
    public init?(text: String) {
        let t = String(text.drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
        if t.isEmpty || t.count > NaviRequest.maximumTextLength { return nil }
        if t.lowercased() == "here" || t.lowercased() == "ici" {
            self = .here
        } else if let p = GeoPoint.parse(Substring(t).filter { $0 != " " }[...]) {
            self = .coordinates(p)
        } else if t.contains(",") && t.allSatisfy({ $0.isNumber || ",.- +".contains($0) }) {
            return nil  // numbers that are not coordinates
        } else {
            self = .named(t)
        }
    }

    public var json: JSON {
        switch self {
        case .here: .string("here")
        case .coordinates(let p): p.json
        case .named(let n): .object([("name", .string(n))])
        }
    }

    init(json: JSON?) throws(NaviRequestError) {
        if json?.stringValue == "here" {
            self = .here
        } else if let name = json?["name"]?.stringValue {
            guard !name.isEmpty, name.count <= NaviRequest.maximumTextLength else { throw .init("a place's name is empty or over \(NaviRequest.maximumTextLength) characters") }
            self = .named(name)
        } else if json?["lat"] != nil || json?["lon"] != nil {
            guard let p = GeoPoint(json: json) else { throw .init("coordinates need a latitude within ±90 and a longitude within ±180") }
            self = .coordinates(p)
        } else {
            throw .init("a place is \"here\", {\"lat\", \"lon\"} or {\"name\"}")
        }
    }
}

/// The kinds of POI the online services find.
public enum POIKind: String, Sendable, CaseIterable {
    case fuel, parking
}

/// One request of the Online infotainment services (the Navi package), as the car sends it to
/// the backend (`vehicles/{vin}/navi/request`): answered or refused at once, never queued.
public enum NaviRequest: Sendable, Equatable {
    /// A route, with its distance, duration (traffic included), geometry and manoeuvres.
    case route(from: NaviPlace, to: NaviPlace)
    /// The nearest POIs of a kind (fuel stations come with their prices; `cheapest` orders
    /// the nearby ones by price).
    case nearest(POIKind, near: NaviPlace, cheapest: Bool)
    /// The traffic records (DATEX II) within `radiusM` of a place.
    case traffic(near: NaviPlace, radiusM: Int)
    /// A sentence for the natural-language voice control (text stands in for speech), with the
    /// car's position when it may leave the car (nil: the intents that need none are answered).
    case say(String, near: NaviPlace?)

    public static let maximumTextLength = 200
    public static let radiusRange = 100...50_000

    /// The places it names (the car fills in `here`).
    public var places: [NaviPlace] {
        switch self {
        case .route(let a, let b): [a, b]
        case .nearest(_, let p, _), .traffic(let p, _): [p]
        case .say(_, let p): p.map { [$0] } ?? []
        }
    }

    /// Whether it cannot be answered without the car's position (a sentence can: only its
    /// intents that need the position are refused).
    public var needsPosition: Bool {
        if case .say = self { return false }
        return places.contains(.here)
    }

    /// The same request without the car's position: a sentence loses its `here`.
    public var withoutPosition: NaviRequest {
        if case .say(let s, let p) = self, p == .here { return .say(s, near: nil) }
        return self
    }

    public var action: String {
        switch self {
        case .route: "route"
        case .nearest: "nearest"
        case .traffic: "traffic"
        case .say: "say"
        }
    }

    public var json: JSON {
        var o: [(String, JSON)] = [("action", .string(action))]
        switch self {
        case .route(let a, let b): o += [("from", a.json), ("to", b.json)]
        case .nearest(let k, let p, let c): o += [("kind", .string(k.rawValue)), ("near", p.json), ("cheapest", .bool(c))]
        case .traffic(let p, let r): o += [("near", p.json), ("radiusM", .number(Double(r)))]
        case .say(let s, let p): o += [("text", .string(s))] + (p.map { [("near", $0.json)] } ?? [])
        }
        return .object(o)
    }

    /// A request from outside (the control socket, or the car at the backend).
    public static func parse(_ j: JSON) throws(NaviRequestError) -> NaviRequest {
        switch j["action"]?.stringValue {
        case "route":
            return .route(from: try NaviPlace(json: j["from"] ?? .string("here")), to: try NaviPlace(json: j["to"]))
        case "nearest":
            guard let k = j["kind"]?.stringValue.flatMap(POIKind.init(rawValue:)) else { throw .init("kind is fuel or parking") }
            return .nearest(k, near: try NaviPlace(json: j["near"] ?? .string("here")), cheapest: j["cheapest"]?.boolValue == true)
        case "traffic":
            let r = j["radiusM"].map { $0.integer(in: Int64(radiusRange.lowerBound)...Int64(radiusRange.upperBound)) } ?? 5_000
            guard let r else { throw .init("radiusM is a whole number of metres from \(radiusRange.lowerBound) to \(radiusRange.upperBound)") }
            return .traffic(near: try NaviPlace(json: j["near"] ?? .string("here")), radiusM: Int(r))
        case "say":
            guard let t = j["text"]?.stringValue, !t.isEmpty, t.count <= maximumTextLength else {
                throw .init("text is a sentence of 1 to \(maximumTextLength) characters")
            }
            return .say(t, near: try j["near"].map { v throws(NaviRequestError) in try NaviPlace(json: v) })
        case let other:
            throw .init("unknown action '\(other ?? "")': route, nearest, traffic or say")
        }
    }
}

public struct NaviRequestError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
