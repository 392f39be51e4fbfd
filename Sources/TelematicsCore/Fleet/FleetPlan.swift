/// A fleet of simulated cars, as its file describes it: how many, their VIN range, the mix of
/// models, countries, licences and privacy levels (percentages), the share of cars that meet
/// each scenario, and how the fleet is split into shards (one process each, on one machine or
/// one Kubernetes pod each). Pure: the same file gives the same fleet on every machine, and
/// each shard computes its own cars without the others (docs/fleet.md).
///
/// Every car is drawn independently of the others from its index, yet the mix is exact: for
/// each dimension the fleet's indices are permuted by a bijection the seed chooses, and the
/// permuted index falls in the share's band (40 % of 10 000 cars are exactly 4 000 cars).
public struct FleetPlan: Sendable, Equatable {
    /// Whether and how a car's owner registered it (what the backend may receive).
    public enum Licence: String, Sendable, CaseIterable {
        /// Registered, the licence runs: everything the privacy level lets out.
        case active
        /// Registered, the licence ran out: only what needs no licence (capabilities, eCall report).
        case expired
        /// Never registered: nothing for the backend (the eCall still works).
        case unregistered
    }

    /// Events a share of the fleet meets once during a run, at a time drawn per car.
    public enum Scenario: String, Sendable, CaseIterable {
        /// An airbag crash: the unit's eCall dials.
        case crash
        /// The alarm goes off while the car is parked and locked.
        case theft
        /// A service button (breakdown call, SOS info) is pressed.
        case button
        /// The owner sends a remote command from the app (lock, honk and flash, climatisation):
        /// through the backend's app API to the car, which carries it out and reports its result.
        /// Only cars registered with a pairing code have a key for commands (docs/fleet.md).
        case remoteCommand = "remote-command"
    }

    public struct Mix<Value: Sendable & Hashable>: Sendable, Equatable {
        /// Values with their share in thousandths of a percent (the sum is 100 000).
        public var shares: [(value: Value, milliPercent: Int)]

        public static func == (a: Mix, b: Mix) -> Bool {
            a.shares.map(\.value) == b.shares.map(\.value) && a.shares.map(\.milliPercent) == b.shares.map(\.milliPercent)
        }

        /// The value of the car whose permuted index is `p` among `n`.
        func value(at p: Int, of n: Int) -> Value {
            var cumulative = 0
            for s in shares {
                cumulative += s.milliPercent
                // Band ends at floor(cumulative × n / 100 000): exact counts, no float.
                if p < cumulative * n / 100_000 { return s.value }
            }
            return shares[shares.count - 1].value
        }
    }

    /// The cars of one shard: a range of fleet indices.
    public struct Shard: Sendable, Equatable {
        public var index: Int
        /// Fleet indices (0-based) of its cars.
        public var cars: Range<Int>
    }

    public var cars: Int
    public var wmi: String
    /// The serial (VIN positions 12-17) of car 0; car i has `firstSerial + i`.
    public var firstSerial: Int
    public var seed: UInt64
    public var models: Mix<String>
    public var countries: Mix<String>
    public var licences: Mix<Licence>
    public var privacy: Mix<PrivacyMode>
    /// The share of the fleet (thousandths of a percent) that meets each scenario.
    public var scenarios: [Scenario: Int]
    /// Seconds from a car's start in which its scenarios happen.
    public var scenarioWindowSeconds: Int
    public var shards: [Shard]
    /// How often a moving car sends its driving state (position, speed) and a parked one its
    /// heartbeat; doors and locks go when they change.
    public var drivingIntervalMs: Int
    public var heartbeatMs: Int
    /// Trips per car per hour (each: unlock, doors, ignition, drive, park, lock).
    public var tripsPerHour: Int

    /// The fleet file's sections and keys.
    public static let keys: [String: Set<String>] = [
        "fleet": ["cars", "wmi", "first-serial", "seed", "shards", "shard-ranges"],
        "models": Set(ConnectedModels.firstBuildMonth.keys.map(keyName)),
        "countries": Set(ConnectedModels.countries),
        "licences": Set(Licence.allCases.map(\.rawValue)),
        "privacy": Set(PrivacyMode.allCases.map(\.rawValue)),
        "scenarios": Set(Scenario.allCases.map(\.rawValue) + ["window-seconds"]),
        "behaviour": ["driving-interval-ms", "heartbeat-seconds", "trips-per-hour"],
    ]

    /// A model's key in the file: its name in lower case with dashes (`mii-electric`).
    public static func keyName(_ model: String) -> String {
        String(model.lowercased().map { $0 == " " ? "-" : $0 })
    }

    public static func parse(_ text: String, source: String? = nil) throws(ParseError) -> FleetPlan {
        let f = try KeyValueFile.parse(text, source: source)
        // Unknown keys first, with what each section knows (a model or country that is not
        // supported is an unknown key in its section).
        for e in f.entries {
            guard let known = keys[e.section] else {
                throw ParseError(source: source, line: e.line, "unknown section [\(e.section)]; known: \(keys.keys.sorted().joined(separator: ", "))")
            }
            guard known.contains(e.key) else {
                switch e.section {
                case "models":
                    throw f.error(e, "unknown model; the connected services support \(ConnectedModels.firstBuildMonth.keys.sorted().map(keyName).joined(separator: ", "))")
                case "countries":
                    throw f.error(e, "the connected services are not offered there; supported: \(ConnectedModels.countries.joined(separator: ", "))")
                default:
                    throw f.error(e, "unknown key; [\(e.section)] knows \(known.sorted().joined(separator: ", "))")
                }
            }
        }
        let cars = Int(try f.integer(try f.required("fleet", "cars"), range: 1...1_000_000))
        let wmi = f.string("fleet", "wmi") ?? "VSS"
        if let e = f.entry("fleet", "wmi") {
            do { _ = try VIN(wmi + "ZZZKLZNR000001") } catch { throw f.error(e, "expected a world manufacturer identifier of 3 VIN characters (VSS for SEAT), found '\(wmi)'") }
            guard wmi.count == 3 else { throw f.error(e, "expected 3 characters (VSS for SEAT), found '\(wmi)'") }
        }
        let firstSerial = Int(try f.integer("fleet", "first-serial", default: 1, range: 0...999_999))
        if firstSerial + cars - 1 > 999_999 {
            throw f.error(f.entry("fleet", "first-serial") ?? f.entry("fleet", "cars")!,
                          "\(cars) cars from serial \(firstSerial) need serials up to \(firstSerial + cars - 1); a VIN has 6 digits (999999)")
        }
        let seed = UInt64(try f.integer("fleet", "seed", default: 1, range: 0...Int64.max))
        let models = try mix(f, "models", { name in ConnectedModels.firstBuildMonth.keys.first { keyName($0) == name }! }, default: ["Leon"])
        let countries = try mix(f, "countries", { $0 }, default: ["ES"])
        let licences = try mix(f, "licences", { Licence(rawValue: $0)! }, default: [.active])
        let privacy = try mix(f, "privacy", { PrivacyMode(rawValue: $0)! }, default: [.shareMyPosition])
        var scenarios: [Scenario: Int] = [:]
        for s in Scenario.allCases {
            guard let e = f.entry("scenarios", s.rawValue) else { continue }
            scenarios[s] = try milliPercent(f, e)
        }
        let window = Int(try f.integer("scenarios", "window-seconds", default: 60, range: 1...86_400))
        let shards = try shardRanges(f, cars: cars, firstSerial: firstSerial)
        return FleetPlan(
            cars: cars, wmi: wmi, firstSerial: firstSerial, seed: seed, models: models, countries: countries, licences: licences,
            privacy: privacy, scenarios: scenarios, scenarioWindowSeconds: window, shards: shards,
            drivingIntervalMs: Int(try f.integer("behaviour", "driving-interval-ms", default: 2_000, range: 100...3_600_000)),
            heartbeatMs: Int(try f.integer("behaviour", "heartbeat-seconds", default: 300, range: 1...86_400)) * 1_000,
            tripsPerHour: Int(try f.integer("behaviour", "trips-per-hour", default: 2, range: 0...60))
        )
    }

    /// A percentage with at most three decimals, in thousandths.
    private static func milliPercent(_ f: KeyValueFile, _ e: KeyValueFile.Entry) throws(ParseError) -> Int {
        let v = e.value.hasSuffix("%") ? String(e.value.dropLast()).trimmingSpaces : e.value
        let parts = v.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        let whole = parts[0], fraction = parts.count == 2 ? parts[1] : ""
        guard !whole.isEmpty, whole.count <= 3, fraction.count <= 3, whole.allSatisfy(\.isASCII), fraction.allSatisfy(\.isASCII),
              let w = Int(whole), w >= 0, fraction.isEmpty || Int(fraction) != nil, !(parts.count == 2 && fraction.isEmpty) else {
            throw f.error(e, "expected a percentage from 0 to 100 with at most 3 decimals, found '\(e.value)'")
        }
        let milli = w * 1_000 + (fraction.isEmpty ? 0 : Int(fraction + String(repeating: "0", count: 3 - fraction.count))!)
        guard milli <= 100_000 else { throw f.error(e, "a share is at most 100 %, found '\(e.value)'") }
        return milli
    }

    private static func mix<V>(_ f: KeyValueFile, _ section: String, _ value: (String) -> V, default d: [V]) throws(ParseError) -> Mix<V> {
        let entries = f.entries.filter { $0.section == section }
        guard !entries.isEmpty else { return Mix(shares: d.map { ($0, 100_000 / d.count) }) }
        var shares: [(value: V, milliPercent: Int)] = []
        var sum = 0
        for e in entries {
            let m = try milliPercent(f, e)
            sum += m
            if m > 0 { shares.append((value(e.key), m)) }
        }
        guard sum == 100_000 else {
            let total = "\(sum / 1_000)" + (sum % 1_000 == 0 ? "" : "." + String(String(sum % 1_000 + 1_000).dropFirst()))
            throw ParseError(source: f.source, line: entries[0].line, "[\(section)]: the shares add up to \(total) %, not 100 %")
        }
        return Mix(shares: shares)
    }

    /// `shards = N` splits the fleet evenly; `shard-ranges = 1-2500, 2501-5000` names each
    /// shard's serials (they may not overlap, and must lie in the fleet's).
    private static func shardRanges(_ f: KeyValueFile, cars: Int, firstSerial: Int) throws(ParseError) -> [Shard] {
        if let e = f.entry("fleet", "shard-ranges") {
            if let s = f.entry("fleet", "shards") { throw f.error(s, "set either shards or shard-ranges, not both") }
            let last = firstSerial + cars - 1
            var out: [Shard] = []
            var serials: [ClosedRange<Int>] = []
            for (i, part) in e.value.split(separator: ",").enumerated() {
                let bounds = part.trimmingSpaces.split(separator: "-", omittingEmptySubsequences: false)
                guard bounds.count == 2, let lo = Int(bounds[0].trimmingSpaces), let hi = Int(bounds[1].trimmingSpaces), lo <= hi else {
                    throw f.error(e, "shard \(i): expected a serial range FIRST-LAST, found '\(part.trimmingSpaces)'")
                }
                guard lo >= firstSerial, hi <= last else {
                    throw f.error(e, "shard \(i): serials \(lo)-\(hi) lie outside the fleet's \(firstSerial)-\(last)")
                }
                if let other = serials.firstIndex(where: { $0.overlaps(lo...hi) }) {
                    let o = serials[other]
                    throw f.error(e, "shard \(i): serials \(lo)-\(hi) overlap shard \(other)'s \(o.lowerBound)-\(o.upperBound): a VIN would run twice")
                }
                serials.append(lo...hi)
                out.append(Shard(index: i, cars: (lo - firstSerial)..<(hi - firstSerial + 1)))
            }
            return out
        }
        let n = Int(try f.integer("fleet", "shards", default: 1, range: 1...10_000))
        guard n <= cars else { throw f.error(f.entry("fleet", "shards")!, "\(n) shards for \(cars) cars: a shard would have none") }
        // Shard i takes cars i·cars/n up to (i+1)·cars/n: sizes differ by one at most, and none is
        // empty since n ≤ cars. (Rounding every shard up instead left the last ones past the
        // fleet's end: 85 cars in 20 shards of 5. Found by the fuzzer.)
        return (0..<n).map { Shard(index: $0, cars: ($0 * cars / n)..<(($0 + 1) * cars / n)) }
    }

    // MARK: - The cars

    /// One car of the fleet, as drawn.
    public struct Car: Sendable, Equatable {
        public var index: Int
        public var vin: String
        public var model: String
        public var modelCode: String
        public var buildDate: String
        public var country: String
        public var licence: Licence
        public var privacy: PrivacyMode
        public var propulsion: VehicleProfile.Propulsion
        /// Seconds after the car's start at which each of its scenarios happens.
        public var scenarios: [(Scenario, atSecond: Int)]

        public init(index: Int, vin: String, model: String, modelCode: String, buildDate: String, country: String, licence: Licence,
                    privacy: PrivacyMode, propulsion: VehicleProfile.Propulsion, scenarios: [(Scenario, atSecond: Int)]) {
            self.index = index
            self.vin = vin
            self.model = model
            self.modelCode = modelCode
            self.buildDate = buildDate
            self.country = country
            self.licence = licence
            self.privacy = privacy
            self.propulsion = propulsion
            self.scenarios = scenarios
        }

        public static func == (a: Car, b: Car) -> Bool {
            a.index == b.index && a.vin == b.vin && a.model == b.model && a.buildDate == b.buildDate && a.country == b.country
                && a.licence == b.licence && a.privacy == b.privacy && a.scenarios.map(\.0) == b.scenarios.map(\.0)
                && a.scenarios.map(\.atSecond) == b.scenarios.map(\.atSecond)
        }
    }

    /// The shard `index` (nil when there is none).
    public func shard(_ index: Int) -> Shard? { shards.first { $0.index == index } }

    /// Car `i` of the fleet (0 ≤ i < cars).
    public func car(_ i: Int) -> Car {
        let model = models.value(at: permute(i, salt: 1), of: cars)
        let details = ConnectedModels.details[model] ?? ("KL", "", .petrol)
        // Built in one of the 48 months from the model's first month with the unit.
        let first = ConnectedModels.firstBuildMonth[model] ?? "2020-09"
        let y0 = Int(first.prefix(4)) ?? 2020, m0 = Int(first.suffix(2)) ?? 9
        let months = Int(mixed(UInt64(i), salt: 2) % 48)
        let year = y0 + (m0 - 1 + months) / 12, month = (m0 - 1 + months) % 12 + 1
        let day = 1 + Int(mixed(UInt64(i), salt: 3) % 28)
        let buildDate = "\(year)-\(month < 10 ? "0" : "")\(month)-\(day < 10 ? "0" : "")\(day)"
        let serial = firstSerial + i
        let digits = String(serial)
        let vin = wmi + "ZZZ" + details.vinCode + "Z" + Self.yearLetter(year) + "R" + String(repeating: "0", count: 6 - digits.count) + digits
        var s: [(Scenario, atSecond: Int)] = []
        for scenario in Scenario.allCases {
            guard let share = scenarios[scenario], share > 0 else { continue }
            // Its own band per scenario: exactly share × cars of the fleet meet it.
            let p = permute(i, salt: 10 + UInt64(scenario.hashIndex))
            guard p < share * cars / 100_000 else { continue }
            s.append((scenario, Int(mixed(UInt64(i), salt: 20 + UInt64(scenario.hashIndex)) % UInt64(scenarioWindowSeconds))))
        }
        return Car(index: i, vin: vin, model: model, modelCode: details.modelCode, buildDate: buildDate,
                   country: countries.value(at: permute(i, salt: 4), of: cars), licence: licences.value(at: permute(i, salt: 5), of: cars),
                   privacy: privacy.value(at: permute(i, salt: 6), of: cars), propulsion: details.propulsion, scenarios: s)
    }

    /// The model-year letter of VIN position 10 (ISO 3779; I, O, Q, U, Z and 0 are not used).
    static func yearLetter(_ year: Int) -> String {
        let letters = Array("ABCDEFGHJKLMNPRSTVWXY123456789")
        return String(letters[((year - 1980) % 30 + 30) % 30])
    }

    /// A bijection of 0..<cars chosen by the seed and the salt: p = (a·i + b) mod n with a
    /// coprime to n.
    func permute(_ i: Int, salt: UInt64) -> Int {
        let n = UInt64(cars)
        guard n > 1 else { return 0 }
        var a = mixed(seed, salt: salt) % n
        if a == 0 { a = 1 }
        while gcd(a, n) != 1 { a = a % n + 1 }
        let b = mixed(seed, salt: salt &+ 0x9E37) % n
        return Int((a.multipliedFullWidth(by: UInt64(i)).low % n &+ b) % n)
    }

    /// SplitMix64 of the seed, the value and the salt: the car's own draws.
    func mixed(_ v: UInt64, salt: UInt64) -> UInt64 {
        var z = seed &+ v &* 0x9E37_79B9_7F4A_7C15 &+ salt &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private func gcd(_ a: UInt64, _ b: UInt64) -> UInt64 {
    var (x, y) = (a, b)
    while y != 0 { (x, y) = (y, x % y) }
    return x
}

extension FleetPlan.Scenario {
    var hashIndex: Int { Self.allCases.firstIndex(of: self)! }
}
