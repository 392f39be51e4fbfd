import Crypto
import CryptoExtras
import Outbox
import TelematicsCore

/// Licences: they belong to the car (from its first registration, the trial), the page's
/// packages and prices, renewal, and the check every licensed service makes.
extension Portal {
    /// The seed's packages: "Radio" (Safety & Service and Remote Access) and "Navi" (those, online
    /// infotainment and apps); price in euros by years.
    public static let packages: [String: (services: [String], prices: [Int: Int])] = [
        "radio": (trialServices, [1: 50, 2: 85]),
        "navi": (trialServices + naviServices, [1: 135, 2: 225]),
    ]
    /// What Navi adds to Radio: online infotainment and the apps.
    static let naviServices = ["onlineNavigation", "infotainmentApps"]

    /// A licence's services: a package's, or a trial's (`trial`: the Radio set; `trial-navi`:
    /// the Navi set, for a car with navigation).
    public static func services(of package: String) -> [String] {
        if let p = packages[package] { return p.services }
        return package == "trial-navi" ? trialServices + naviServices : trialServices
    }

    public struct Licence: Sendable, Equatable {
        public var package: String
        public var expiresAtMs: Int64
        public var services: [String]
        /// What the last renewal cost, in euros.
        public var priceEUR: Int?

        public var json: JSON {
            var o: [(String, JSON)] = [("package", .string(package)), ("licenceExpiresAt", .number(Double(expiresAtMs))),
                                       ("services", .array(services.map { .string($0) }))]
            if let priceEUR { o.append(("priceEUR", .number(Double(priceEUR)))) }
            return .object(o)
        }
    }

    /// A car's licence (it has one from its first registration on).
    public func licence(vin: String) throws(PortalError) -> Licence {
        let rows = try query("SELECT package, expires_at FROM licences WHERE vin = ?", [.text(vin)]) { ($0.text(0), $0.int(1)) }
        guard let (package, expires) = rows.first else {
            throw PortalError("notRegistered", "\(vin) has never been registered: it has no licence")
        }
        return Licence(package: package, expiresAtMs: expires, services: Self.services(of: package))
    }

    /// Refuses unless the car's licence covers `service` now: when the trial or the licence has
    /// run out, the services stop until it is renewed (the product page). The eCall asks nothing.
    public func requireLicence(vin: String, service: String, nowMs: Int64) throws(PortalError) {
        let l = try licence(vin: vin)
        guard l.services.contains(service) else {
            throw PortalError("missingLicence", "the \(l.package) licence of \(vin) does not include \(service)")
        }
        guard l.expiresAtMs > nowMs else {
            throw PortalError("licenceExpired", "the licence of \(vin) has expired: renew it to use \(service) again")
        }
    }

    /// Renews (or upgrades) a registered car's licence by 1 or 2 years, from its end or from now
    /// when it has expired.
    public func renew(vin: String, package: String, years: Int, nowMs: Int64) throws(PortalError) -> Licence {
        guard let p = Self.packages[package] else { throw PortalError("unknownPackage", "the packages are radio and navi, not '\(package)'") }
        guard let price = p.prices[years] else { throw PortalError("invalidTerm", "a licence is renewed for 1 or 2 years, not \(years)") }
        let current = try licence(vin: vin)
        // Whole calendar years from the end (or from now, when it has run out): never a day short.
        let end = addingCalendarMonths(12 * years, to: max(current.expiresAtMs, nowMs))
        try run("UPDATE licences SET package = ?, expires_at = ? WHERE vin = ?", [.text(package), .int(end), .text(vin)])
        return Licence(package: package, expiresAtMs: end, services: p.services, priceEUR: price)
    }
}
