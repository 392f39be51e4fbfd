#if canImport(Glibc)
import Glibc
#endif
import CRoutino
import Synchronization
import TelematicsCore

/// A route as the online services answer it.
public struct Route: Sendable, Equatable {
    /// Metres and seconds, free flow (the engine's own figures).
    public var distanceM: Double
    public var durationS: Double
    /// Every point, from the start to the destination.
    public var geometry: [GeoPoint]
    public var manoeuvres: [Manoeuvre]

    public struct Manoeuvre: Sendable, Equatable {
        public var at: GeoPoint
        /// Metres from the start.
        public var distanceM: Double
        /// What to do there and what follows, in the request's language (the engine's words).
        public var instruction: String
        public var then: String
        /// Degrees to turn (negative: left).
        public var turn: Int
    }
}

/// Routes by car on a Routino database (planetsplitter's output for the map's extract), with
/// Debian's profiles and translations. Routino keeps its profiles, translations and error
/// number in globals: every call goes through one lock, and one Router is made per process.
public final class Router: Sendable {
    private struct Engine: @unchecked Sendable {
        let database: OpaquePointer
        let profile: OpaquePointer
    }
    private let engine: Mutex<Engine>

    public static let profiles = "/usr/share/routino/profiles.xml"
    public static let translations = "/usr/share/routino/translations.xml"

    /// Opens `directory/prefix-*.mem`; the error says what is missing.
    public init(directory: String, prefix: String) throws(NaviError) {
        guard tcu_routino_check_api() == ROUTINO_ERROR_NONE else { throw NaviError("engine", "libroutino's API is not the one this was built for") }
        guard let db = Routino_LoadDatabase(directory, prefix) else {
            throw NaviError("engine", "no Routino database '\(prefix)' in \(directory) (error \(tcu_routino_errno())): run hw/maps/build-map")
        }
        guard Routino_ParseXMLProfiles(Self.profiles) == 0, Routino_ParseXMLTranslations(Self.translations) == 0 else {
            Routino_UnloadDatabase(db)
            throw NaviError("engine", "cannot read Routino's profiles or translations in /usr/share/routino (error \(tcu_routino_errno()))")
        }
        guard let profile = Routino_GetProfile("motorcar"), Routino_ValidateProfile(db, profile) == ROUTINO_ERROR_NONE else {
            Routino_UnloadDatabase(db)
            throw NaviError("engine", "Routino's motorcar profile does not fit the database (error \(tcu_routino_errno()))")
        }
        engine = Mutex(Engine(database: db, profile: profile))
    }

    /// The quickest route by car; `language` is Routino's (fr, en, ...), English when it has none.
    public func route(from a: GeoPoint, to b: GeoPoint, language: String) throws(NaviError) -> Route {
        let result: Result<Route, NaviError> = engine.withLock { e in
            let db = e.database, profile = e.profile
            guard let translation = Routino_GetTranslation(language) ?? Routino_GetTranslation("en") else {
                return .failure(NaviError("engine", "no translation in Routino's translations"))
            }
            guard let start = Routino_FindWaypoint(db, profile, a.latitude, a.longitude) else {
                return .failure(NaviError("noRoad", "no road near the start (\(a))"))
            }
            defer { free(UnsafeMutableRawPointer(start)) }
            guard let end = Routino_FindWaypoint(db, profile, b.latitude, b.longitude) else {
                return .failure(NaviError("noRoad", "no road near the destination (\(b))"))
            }
            defer { free(UnsafeMutableRawPointer(end)) }
            var points: [OpaquePointer?] = [start, end]
            guard let output = Routino_CalculateRoute(db, profile, translation, &points, 2,
                                                      ROUTINO_ROUTE_QUICKEST | ROUTINO_ROUTE_LIST_HTML_ALL, nil) else {
                return .failure(NaviError("noRoute", "no road links \(a) to \(b) on the map"))
            }
            defer { Routino_DeleteRoute(output) }
            return .success(Self.read(output))
        }
        return try result.get()
    }

    /// Routino's output list: positions in radians, cumulative kilometres and minutes, and the
    /// translated descriptions at the points worth a word.
    static func read(_ first: UnsafeMutablePointer<Routino_Output>) -> Route {
        let degrees = 180 / Double.pi
        var route = Route(distanceM: 0, durationS: 0, geometry: [], manoeuvres: [])
        var p: UnsafeMutablePointer<Routino_Output>? = first
        while let o = p?.pointee {
            let at = GeoPoint(latitude: Double(o.lat) * degrees, longitude: Double(o.lon) * degrees)
            route.geometry.append(at)
            route.distanceM = Double(o.dist) * 1000
            route.durationS = Double(o.time) * 60
            if let d1 = o.desc1 {
                route.manoeuvres.append(.init(at: at, distanceM: Double(o.dist) * 1000, instruction: String(cString: d1),
                                              then: o.desc2.map { String(cString: $0) } ?? "", turn: Int(o.turn)))
            }
            p = o.next
        }
        return route
    }
}

/// A refusal from the online services: a code the head unit shows and the reason.
public struct NaviError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: String
    public let message: String
    public init(_ code: String, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { "\(code): \(message)" }
}
