/// A scenario: what happens to the simulated car, line by line (docs/vehicle-sim.md).
///
///     # A theft attempt at night
///     name    theft attempt at night
///     start   41.3874,2.1686 heading 90
///     end     after 45s
///     at 0s:                      outside-temperature 6
///     at 2s:                      lock keyFob
///     after 20s:                  open frontLeft
///     when alarm:                 close frontLeft
///     when speed > 50:            crash front severity 3
///     when unit requests lock:    open rearLeft
///
/// Lines run in order: each waits for the one before it, then for its own trigger: `at T`
/// (time since the start), `after T` (since the line before fired), or `when CONDITION`
/// (checked from then on). Conditions: `speed|cabin|outside|battery|voltage|fuel|odometer
/// > < >= <= VALUE`, `unit requests KIND`, `arrived`, `alarm`, `asleep`, `awake`.
public struct Scenario: Sendable, Equatable {
    public var name: String
    public var source: String
    public var steps: [Step]
    public var end: Trigger?
    public var sleepAfterMs: Int64?
    public var start: GeoPoint?
    public var startHeading: Double?

    public struct Step: Sendable, Equatable {
        public var line: Int
        public var trigger: Trigger
        public var command: CarCommand
    }

    public enum Trigger: Sendable, Equatable {
        case at(Int64)
        case after(Int64)
        case when(Condition)
    }

    public enum Condition: Sendable, Equatable {
        case compare(Quantity, Comparison, Double)
        case unitRequests(String)
        case arrived
        case alarm
        case asleep
        case awake
    }

    public enum Quantity: String, Sendable, CaseIterable {
        case speed, cabin, outside, battery, voltage, fuel, odometer
    }

    public enum Comparison: String, Sendable, CaseIterable {
        case greater = ">", less = "<", greaterOrEqual = ">=", lessOrEqual = "<="
        func holds(_ a: Double, _ b: Double) -> Bool {
            switch self {
            case .greater: a > b
            case .less: a < b
            case .greaterOrEqual: a >= b
            case .lessOrEqual: a <= b
            }
        }
    }

    /// Parses a scenario file; errors name the file, line and column and what was expected.
    public static func parse(_ text: String, source: String) throws(ParseError) -> Scenario {
        var s = Scenario(name: "", source: source, steps: [])
        var lineNumber = 0
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            var line = rawLine
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            while let last = line.last, last == " " || last == "\t" || last == "\r" { line = line.dropLast() }
            let lead = line.prefix { $0 == " " || $0 == "\t" }.count
            line = line.dropFirst(lead)
            if line.isEmpty { continue }
            let keyEnd = line.firstIndex { $0 == " " || $0 == "\t" || $0 == ":" } ?? line.endIndex
            let key = Words.normalise(line[..<keyEnd])
            let restStart = line[keyEnd...].firstIndex { $0 != " " && $0 != "\t" } ?? line.endIndex
            let rest = line[restStart...]
            let restColumn = lead + line.distance(from: line.startIndex, to: restStart)
            func fail(_ message: String, column: Int? = nil) -> ParseError {
                ParseError(source: source, line: lineNumber, column: column ?? (restColumn + 1), message)
            }
            switch key {
            case "name":
                guard !rest.isEmpty else { throw fail("expected the scenario's name after name") }
                s.name = String(rest)
            case "sleepafter":
                guard let ms = parseDuration(rest) else { throw fail("expected a duration (30s, 2m) after sleep-after, found '\(rest)'") }
                s.sleepAfterMs = ms
            case "start":
                var w = Words(rest, line: lineNumber, source: source, columnOffset: restColumn)
                let p = try w.raw("a position LAT,LON")
                guard let g = GeoPoint.parse(p.text) else {
                    throw fail("expected a start position as LAT,LON in degrees, found '\(p.text)'", column: p.column)
                }
                s.start = g
                if !w.atEnd {
                    _ = try w.choice("heading", [("heading", 0)])
                    s.startHeading = try w.number("a heading in degrees", in: 0...360)
                }
                try w.expectEnd()
            case "end":
                s.end = try parseTrigger(rest, line: lineNumber, source: source, column: restColumn + 1, allowWhen: true)
            case "at", "after", "when":
                guard let colon = line.firstIndex(of: ":") else {
                    throw fail("expected ':' between the trigger and the command (at 12s: lock)", column: lead + line.count + 1)
                }
                let trigger = try parseTrigger(line[..<colon], line: lineNumber, source: source, column: lead + 1, allowWhen: true)
                let after = line[line.index(after: colon)...]
                let cmdLead = after.prefix { $0 == " " || $0 == "\t" }.count
                let cmdColumn = lead + line.distance(from: line.startIndex, to: colon) + 1 + cmdLead
                let command = try CarCommand.parse(after.dropFirst(cmdLead), line: lineNumber, source: source, columnOffset: cmdColumn)
                s.steps.append(Step(line: lineNumber, trigger: trigger, command: command))
            default:
                throw ParseError(source: source, line: lineNumber, column: lead + 1,
                                 "expected name, start, end, sleep-after, or a step (at T:, after T:, when CONDITION:), found '\(line[..<keyEnd])'")
            }
        }
        guard !s.steps.isEmpty else { throw ParseError(source: source, line: max(1, lineNumber), "the scenario has no steps (at T: COMMAND)") }
        if s.name.isEmpty { s.name = source }
        return s
    }

    static func parseTrigger(_ text: Substring, line: Int, source: String, column: Int, allowWhen: Bool) throws(ParseError) -> Trigger {
        var w = Words(text, line: line, source: source, columnOffset: column - 1)
        let kind = try w.keyword("at, after or when")
        switch kind {
        case "at", "after":
            let d = try w.raw("a duration (12s, 1m30s)")
            guard let ms = parseDuration(d.text) else {
                throw ParseError(source: source, line: line, column: d.column, "expected a duration (500ms, 12s, 1m30s) after \(kind), found '\(d.text)'")
            }
            try w.expectEnd()
            return kind == "at" ? .at(ms) : .after(ms)
        case "when":
            let first = try w.raw("a condition")
            let q = Words.normalise(first.text)
            let c: Condition
            switch q {
            case "unit":
                _ = try w.choice("requests", [("requests", 0)])
                let k = try w.raw("a request kind")
                let kind = Words.normalise(k.text)
                guard let hit = UnitRequest.kinds.first(where: { Words.normalise(Substring($0)) == kind }) else {
                    throw ParseError(source: source, line: line, column: k.column,
                                     "expected a request kind (\(UnitRequest.kinds.joined(separator: ", "))), found '\(k.text)'")
                }
                c = .unitRequests(hit)
            case "arrived": c = .arrived
            case "alarm": c = .alarm
            case "asleep": c = .asleep
            case "awake": c = .awake
            default:
                guard let quantity = Quantity.allCases.first(where: { $0.rawValue == q }) else {
                    throw ParseError(source: source, line: line, column: first.column,
                                     "expected a condition (speed, cabin, outside, battery, voltage, fuel, odometer with > < >= <=; unit requests KIND; arrived; alarm; asleep; awake), found '\(first.text)'")
                }
                let op = try w.raw("a comparison (> < >= <=)")
                guard let cmp = Comparison(rawValue: String(op.text)) else {
                    throw ParseError(source: source, line: line, column: op.column, "expected a comparison (> < >= <=), found '\(op.text)'")
                }
                c = .compare(quantity, cmp, try w.number("a number", in: -1_000_000...100_000_000))
            }
            try w.expectEnd()
            return .when(c)
        default:
            throw ParseError(source: source, line: line, column: column, "expected at, after or when, found '\(kind)'")
        }
    }
}

/// Runs a scenario against a vehicle: which steps fire now (pure; the shell applies them).
public struct ScenarioRunner: Sendable {
    public let scenario: Scenario
    /// When each step fired.
    public private(set) var firedAt: [Int64?]
    public private(set) var endedAt: Int64?
    private var requestsSinceArmed: [String] = []
    private var arrivalsAtArm = 0

    public init(_ scenario: Scenario) {
        self.scenario = scenario
        firedAt = Array(repeating: nil, count: scenario.steps.count)
    }

    /// The step waiting for its trigger (every one before it has fired).
    public var current: Int? { firedAt.firstIndex { $0 == nil } }
    public var finished: Bool { endedAt != nil }

    /// The steps that fire at `now` given the vehicle's state, in order, and the requests it
    /// received since the last call. Several steps can fire at once.
    public mutating func due(at now: Int64, vehicle: SimulatedVehicle, requests: [UnitRequest]) -> [Scenario.Step] {
        requestsSinceArmed += requests.map(\.kind)
        var out: [Scenario.Step] = []
        while let i = current {
            let step = scenario.steps[i]
            let previous = i == 0 ? 0 : firedAt[i - 1]!
            guard holds(step.trigger, now: now, previous: previous, vehicle: vehicle) else { break }
            firedAt[i] = now
            requestsSinceArmed.removeAll()
            arrivalsAtArm = vehicle.arrivals
            out.append(step)
        }
        if endedAt == nil {
            let last: Int64? = firedAt.isEmpty ? nil : firedAt[firedAt.count - 1]
            let ended: Bool
            switch scenario.end {
            case nil: ended = last != nil
            case .after(let d)?: ended = last.map { now >= $0 + d } ?? false
            case .some(let t): ended = holds(t, now: now, previous: 0, vehicle: vehicle)
            }
            if ended { endedAt = now }
        }
        return out
    }

    /// The next time a timed trigger is due (for the shell's sleep), if one is waiting.
    public func nextTimedMs() -> Int64? {
        guard let i = current else { return nil }
        let previous = i == 0 ? 0 : firedAt[i - 1]!
        switch scenario.steps[i].trigger {
        case .at(let t): return t
        case .after(let d): return previous + d
        case .when: return nil
        }
    }

    private func holds(_ t: Scenario.Trigger, now: Int64, previous: Int64, vehicle v: SimulatedVehicle) -> Bool {
        switch t {
        case .at(let ms): return now >= ms
        case .after(let ms): return now >= previous + ms
        case .when(let c): return c.holds(v, requestsSince: requestsSinceArmed, arrivalsBaseline: arrivalsAtArm)
        }
    }
}

extension Scenario.Condition {
    /// Whether the condition holds for the car now, given the unit's requests and the car's
    /// arrivals since the condition was armed.
    public func holds(_ v: SimulatedVehicle, requestsSince: [String], arrivalsBaseline: Int) -> Bool {
        switch self {
        case .compare(let q, let cmp, let value):
            let x: Double
            switch q {
            case .speed: x = v.powertrain.speedKmh
            case .cabin: x = v.climate.cabinTemperature
            case .outside: x = v.climate.outsideTemperature
            case .battery: x = v.battery.stateOfCharge
            case .voltage: x = v.battery.voltage
            case .fuel: x = v.cluster.fuelPercent
            case .odometer: x = v.powertrain.odometerKm
            }
            return cmp.holds(x, value)
        case .unitRequests(let kind): return requestsSince.contains(kind)
        case .arrived: return v.arrivals > arrivalsBaseline
        case .alarm: return v.body.alarmSounding(at: v.now)
        case .asleep: return !v.awake
        case .awake: return v.awake
        }
    }

    /// Parses `speed > 50`, `unit requests lock`, `alarm`... (the part after `when`).
    public static func parse(_ text: Substring, source: String) throws(ParseError) -> Scenario.Condition {
        guard case .when(let c) = try Scenario.parseTrigger(Substring("when " + text), line: 1, source: source, column: 1, allowWhen: true) else {
            throw ParseError(source: source, line: 1, "expected a condition")
        }
        return c
    }
}

/// A route file: GPX (`trkpt`, `rtept` or `wpt` elements with `lat` and `lon`) or plain
/// `LAT,LON` lines (`#` comments). Errors name the file and line.
public enum RouteFile {
    public static func parse(_ text: String, source: String) throws(ParseError) -> [GeoPoint] {
        var points: [GeoPoint] = []
        var lineNumber = 0
        let isGPX = text.contains("<gpx")
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            if isGPX {
                var rest = raw[...]
                while let open = rest.firstRange(of: "<trkpt") ?? rest.firstRange(of: "<rtept") ?? rest.firstRange(of: "<wpt") {
                    let tail = rest[open.upperBound...]
                    let end = tail.firstIndex(of: ">") ?? tail.endIndex
                    let tag = tail[..<end]
                    guard let lat = attribute("lat", in: tag), let lon = attribute("lon", in: tag),
                          let p = GeoPoint.parse(Substring(lat + "," + lon)) else {
                        throw ParseError(source: source, line: lineNumber, "expected a point with lat and lon in degrees, found '<\(rest[open].dropFirst())\(tag)>'")
                    }
                    points.append(p)
                    rest = tail[end...]
                }
                continue
            }
            var line = raw
            if let hash = line.firstIndex(of: "#") { line = line[..<hash] }
            let trimmed = line.filter { $0 != " " && $0 != "\t" && $0 != "\r" }
            if trimmed.isEmpty { continue }
            guard let p = GeoPoint.parse(Substring(trimmed)) else {
                throw ParseError(source: source, line: lineNumber, "expected LAT,LON in degrees, found '\(trimmed)'")
            }
            points.append(p)
        }
        guard !points.isEmpty else { throw ParseError(source: source, line: max(1, lineNumber), "the route has no points") }
        return points
    }

    static func attribute(_ name: String, in tag: Substring) -> String? {
        for quote in ["\"", "'"] {
            if let r = tag.firstRange(of: " \(name)=\(quote)") {
                let after = tag[r.upperBound...]
                if let close = after.firstIndex(of: Character(quote)) { return String(after[..<close]) }
            }
        }
        return nil
    }
}

/// Plays a scenario on a simulated car without a bus, in simulated time (100 ms steps): the
/// trace of what happened and the end state. `make test` compares it with the scenario's
/// golden file.
public enum ScenarioPlayback {
    /// - Parameter routes: loads a route file named by the scenario (the shell reads files).
    public static func run(_ scenario: Scenario, database: DBCDatabase, limitMs: Int64 = 4 * 3_600_000,
                           routes: (String) throws(ParseError) -> [GeoPoint]) throws(ParseError) -> String {
        var config = SimulatedVehicle.Configuration()
        if let s = scenario.start { config.position = s }
        if let h = scenario.startHeading { config.heading = h }
        if let s = scenario.sleepAfterMs { config.sleepAfterMs = s }
        var car = SimulatedVehicle(database: database, configuration: config)
        var runner = ScenarioRunner(scenario)
        var out = "# \(scenario.name)\n"
        var t: Int64 = 0
        while !runner.finished, t <= limitMs {
            car.advance(to: t)
            _ = car.dueFrames(at: t)
            for step in runner.due(at: t, vehicle: car, requests: car.takeRequests()) {
                var command = step.command
                if case .routeFile(let path, let kmh) = command { command = .route(try routes(path), kmh: kmh) }
                // A refusal is in the car's own events.
                car.apply(command)
            }
            for e in car.takeEvents() { out += e.description + "\n" }
            t += 100
        }
        if !runner.finished {
            out += "scenario: did not end within \(limitMs / 1_000) s (waiting at line \(runner.current.map { scenario.steps[$0].line } ?? 0))\n"
        }
        for (key, value) in car.statusJSON.objectValue ?? [] { out += "end \(key): \(value.text)\n" }
        return out
    }
}
