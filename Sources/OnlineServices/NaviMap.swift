import Platform
import TelematicsCore

/// A POI of the map: a fuel station or a parking place.
public struct POI: Sendable, Equatable {
    public var id: String
    public var kind: POIKind
    public var name: String?
    public var address: String?
    public var at: GeoPoint
}

/// A name a destination may be given: a street, a named place or POI, an address.
public struct Place: Sendable, Equatable {
    public var name: String
    public var kind: String
    public var at: GeoPoint
    let folded: String
}

/// Fuel prices per station, euros per litre, in the shape of a public price service's answer
/// (Tankerkönig's list: `{"ok": true, "stations": [{"id", "name", "brand", "lat", "lng",
/// "isOpen", "e5", "e10", "diesel"}]}`); hw/maps/build-map writes deterministic ones.
public struct FuelPrice: Sendable, Equatable {
    public var e5: Double?
    public var e10: Double?
    public var diesel: Double?
    public var isOpen: Bool

    public var json: JSON {
        var o: [(String, JSON)] = [("isOpen", .bool(isOpen))]
        for (k, v) in [("e5", e5), ("e10", e10), ("diesel", diesel)] { if let v { o.append((k, .number(v))) } }
        return .object(o)
    }
}

/// The online services' map: the routing engine on the extract, its POIs and names, the
/// traffic records (DATEX II) and the fuel prices, all read from one directory that
/// hw/maps/build-map wrote. Each file is outside input: a bad one is refused with its name and why.
public final class NaviMap: Sendable {
    public let router: Router
    public let pois: [POI]
    public let places: [Place]
    public let traffic: [TrafficRecord]
    public let prices: [String: FuelPrice]

    public init(directory: String) throws(NaviError) {
        let stamp = try Self.json(directory, "MAP")
        guard let prefix = stamp["prefix"]?.stringValue, !prefix.isEmpty, prefix.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw NaviError("map", "\(directory)/MAP names no database prefix")
        }
        router = try Router(directory: directory, prefix: prefix)
        var pois: [POI] = []
        for (i, p) in (try Self.json(directory, "pois.json")["pois"]?.arrayValue ?? []).enumerated() {
            guard let id = p["id"]?.stringValue, let kind = p["kind"]?.stringValue.flatMap(POIKind.init(rawValue:)),
                  let at = GeoPoint(json: p) else { throw NaviError("map", "pois.json: POI \(i + 1) needs an id, a kind (fuel or parking), lat and lon") }
            pois.append(POI(id: id, kind: kind, name: p["name"]?.stringValue, address: p["address"]?.stringValue, at: at))
        }
        self.pois = pois
        var places: [Place] = []
        for (i, p) in (try Self.json(directory, "places.json")["places"]?.arrayValue ?? []).enumerated() {
            guard let name = p["name"]?.stringValue, let at = GeoPoint(json: p) else {
                throw NaviError("map", "places.json: place \(i + 1) needs a name, lat and lon")
            }
            places.append(Place(name: name, kind: p["kind"]?.stringValue ?? "place", at: at, folded: foldedForSearch(name)))
        }
        self.places = places
        let trafficPath = "\(directory)/traffic.xml"
        do {
            traffic = try DATEXII.parse(Array(try readTextFile(trafficPath).utf8))
        } catch let e as NaviError {
            throw NaviError(e.code, "\(trafficPath): \(e.message)")
        } catch {
            throw NaviError("map", "cannot read \(trafficPath): \(error)")
        }
        var prices: [String: FuelPrice] = [:]
        for s in (try Self.json(directory, "fuel-prices.json")["stations"]?.arrayValue ?? []) {
            guard let id = s["id"]?.stringValue else { continue }
            func price(_ k: String) -> Double? { s[k]?.numberValue.flatMap { $0.isFinite && $0 > 0 && $0 < 100 ? $0 : nil } }
            prices[id] = FuelPrice(e5: price("e5"), e10: price("e10"), diesel: price("diesel"), isOpen: s["isOpen"]?.boolValue ?? true)
        }
        self.prices = prices
    }

    static func json(_ directory: String, _ name: String) throws(NaviError) -> JSON {
        let path = "\(directory)/\(name)"
        let text: String
        do { text = try readTextFile(path) } catch { throw NaviError("map", "cannot read \(path): \(error) (hw/maps/build-map writes it)") }
        do { return try JSON.parse(text) } catch { throw NaviError("map", "\(path): \(error)") }
    }

    /// A place by name: the exact name first (case and accents aside), then names that start
    /// with it, then names that hold it; addresses before POIs before streets.
    public func place(named name: String) throws(NaviError) -> Place {
        let q = foldedForSearch(name)
        guard !q.isEmpty else { throw NaviError("unknownPlace", "an empty name") }
        let rank: (Place) -> Int = { p in p.kind == "address" ? 0 : p.kind == "street" ? 2 : 1 }
        for matches in [{ (p: Place) in p.folded == q }, { (p: Place) in p.folded.hasPrefix(q) }, { (p: Place) in p.folded.contains(q) }] {
            let found = places.filter(matches).sorted { (rank($0), $0.name) < (rank($1), $1.name) }
            if let first = found.first { return first }
        }
        throw NaviError("unknownPlace", "no place called '\(name)' on the map")
    }

    /// The POIs of a kind by distance from `at` (metres), nearest first.
    public func nearest(_ kind: POIKind, to at: GeoPoint, limit: Int) -> [(poi: POI, distanceM: Double)] {
        Array(pois.filter { $0.kind == kind }.map { ($0, Geodesy.distance(at, $0.at)) }.sorted { $0.1 < $1.1 }.prefix(limit))
    }

    /// The records that lie on a route (within `toleranceM` of one of its segments).
    public func traffic(on geometry: [GeoPoint], toleranceM: Double = 25) -> [TrafficRecord] {
        traffic.filter { r in
            if geometry.count == 1 { return Geodesy.distance(r.at, geometry[0]) <= toleranceM }
            return zip(geometry, geometry.dropFirst()).contains { Geodesy.distance(r.at, toSegment: $0, $1) <= toleranceM }
        }
    }
}
