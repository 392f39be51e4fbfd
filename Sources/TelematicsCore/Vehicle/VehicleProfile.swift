/// A vehicle identification number (ISO 3779): 17 characters of 0-9 and A-Z without I, O, Q.
public struct VIN: Hashable, Sendable, CustomStringConvertible {
    public let value: String

    public init(_ text: String) throws(VINError) {
        let upper = text.uppercased()
        guard upper.count == 17 else { throw VINError(text: text, "a VIN has 17 characters, this one has \(text.count)") }
        for (i, c) in upper.enumerated() {
            guard c.isASCII, c.isNumber || c.isLetter, c != "I", c != "O", c != "Q" else {
                throw VINError(text: text, "character \(i + 1) ('\(c)') is not allowed in a VIN (0-9, A-Z without I, O, Q)")
            }
        }
        value = upper
    }

    /// World manufacturer identifier (positions 1-3), e.g. VSS for SEAT.
    public var wmi: String { String(value.prefix(3)) }
    public var description: String { value }
}

public struct VINError: Error, Equatable, Sendable, CustomStringConvertible {
    public var text: String
    public var message: String
    init(text: String, _ message: String) { self.text = text; self.message = message }
    public var description: String { "invalid VIN '\(text)': \(message)" }
}

/// What the car is: identity, market and equipment, from `hw/vehicle-profile.conf`.
public struct VehicleProfile: Sendable, Equatable {
    /// Propulsion storage types as the eCall MSD (EN 15722) names them.
    public enum Propulsion: String, Sendable, CaseIterable {
        case petrol, diesel, cng, lpg, electric, hydrogen
    }

    public var vin: VIN
    public var brand: String
    public var model: String
    public var modelCode: String
    public var modelYear: Int
    /// ISO 8601 date, YYYY-MM-DD.
    public var buildDate: String
    /// ISO 3166-1 alpha-2 country of registration.
    public var country: String
    public var propulsion: [Propulsion]
    /// Vehicle category (UNECE): M1 passenger car, N1 light commercial, ...
    public var category: String
    public var equipment: [String: String]

    public static let categories = ["M1", "M2", "M3", "N1", "N2", "N3", "L1e", "L2e", "L3e", "L4e", "L5e", "L6e", "L7e"]

    public static func parse(_ text: String, source: String? = nil) throws(ParseError) -> VehicleProfile {
        let f = try KeyValueFile.parse(text, source: source)
        let known: [String: Set<String>] = [
            "vehicle": ["vin", "brand", "model", "model-code", "model-year", "build-date", "country", "propulsion", "category"],
        ]
        for e in f.entries where e.section != "equipment" {
            guard let keys = known[e.section] else {
                throw ParseError(source: source, line: e.line, "unknown section [\(e.section)]; known: vehicle, equipment")
            }
            guard keys.contains(e.key) else { throw f.error(e, "unknown key; [vehicle] knows \(keys.sorted().joined(separator: ", "))") }
        }
        let vinEntry = try f.required("vehicle", "vin")
        let vin: VIN
        do { vin = try VIN(vinEntry.value) } catch { throw f.error(vinEntry, error.description) }
        let yearEntry = try f.required("vehicle", "model-year")
        guard let year = Int(yearEntry.value), (1990...2100).contains(year) else {
            throw f.error(yearEntry, "expected a year 1990-2100, found '\(yearEntry.value)'")
        }
        let dateEntry = try f.required("vehicle", "build-date")
        guard isISODate(dateEntry.value) else { throw f.error(dateEntry, "expected a date YYYY-MM-DD, found '\(dateEntry.value)'") }
        let countryEntry = try f.required("vehicle", "country")
        guard countryEntry.value.count == 2, countryEntry.value.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
            throw f.error(countryEntry, "expected an ISO 3166 two-letter country code such as ES, found '\(countryEntry.value)'")
        }
        let propEntry = try f.required("vehicle", "propulsion")
        var propulsion: [Propulsion] = []
        for part in propEntry.value.split(separator: ",") {
            guard let p = Propulsion(rawValue: part.trimmingSpaces.lowercased()) else {
                throw f.error(propEntry, "unknown propulsion '\(part.trimmingSpaces)'; known: \(Propulsion.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            propulsion.append(p)
        }
        guard !propulsion.isEmpty else { throw f.error(propEntry, "at least one propulsion type is needed") }
        let category = f.string("vehicle", "category") ?? "M1"
        guard categories.contains(category) else {
            throw f.error(f.entry("vehicle", "category")!, "unknown category '\(category)'; known: \(categories.joined(separator: ", "))")
        }
        var equipment: [String: String] = [:]
        for e in f.entries where e.section == "equipment" { equipment[e.key] = e.value }
        return VehicleProfile(
            vin: vin, brand: f.string("vehicle", "brand") ?? "SEAT",
            model: try f.required("vehicle", "model").value,
            modelCode: f.string("vehicle", "model-code") ?? "",
            modelYear: year, buildDate: dateEntry.value, country: countryEntry.value,
            propulsion: propulsion, category: category, equipment: equipment
        )
    }

    public var json: JSON {
        .object([
            ("vin", .string(vin.value)), ("brand", .string(brand)), ("model", .string(model)),
            ("modelCode", .string(modelCode)), ("modelYear", .number(Double(modelYear))),
            ("buildDate", .string(buildDate)), ("country", .string(country)),
            ("propulsion", .array(propulsion.map { .string($0.rawValue) })), ("category", .string(category)),
            ("equipment", .object(equipment.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })),
        ])
    }
}

func isISODate(_ s: String) -> Bool {
    let parts = s.split(separator: "-", omittingEmptySubsequences: false)
    guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
          let y = Int(parts[0]), let m = Int(parts[1]), let d = Int(parts[2]) else { return false }
    let days = [31, (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
    return (1...12).contains(m) && d >= 1 && d <= days[m - 1]
}
