/// What a person, a test or a scenario can do to the simulated car: the one grammar of
/// `tcu-car`'s live control and of the scenario files' actions.
///
///     door open frontLeft         open hood          close all
///     lock [keyFob|keyless|doorHandle|telematics]    unlock [...]
///     window frontLeft 40         sunroof 100        lights off|auto|parking|lowBeam|fog
///     hazard on|off               key in|out         ignition on|off    engine start|stop
///     drive [to LAT,LON] [speed KMH] [reverse]       route FILE [speed KMH]     stop
///     place LAT,LON [heading DEG]
///     crash front|side-left|side-right|rear|rollover... [severity 1-4] [delta-v KMH]
///     crash clear                 seat driver|passenger|... occupied|empty [belted|unbelted]
///     press sos|breakdown|service|scheduling [for DURATION]      release sos
///     climate target 21.5 | fan 0-7 | ac on|off | window-heating on|off
///     outside-temperature -4      cabin-temperature 30    battery 20 (% charge)    fuel 40 (%)
///     gnss fix|tunnel|drift on|off
///     fault silent-body|wrong-checksums|dead NODE|clear
///     request lock|unlock|honk|flash|clima-start [TEMP]|clima-stop   (a unit request, as on the bus)
///     answer-delay DURATION       (the controllers answer the unit's requests this much later)
///     wake
///
/// Words are case-insensitive and may start with `--` (`crash --front --severity 3`).
public enum CarCommand: Sendable, Equatable {
    case open(Opening)
    case close(Opening)
    /// Every door, the hood and the trunk closed.
    case closeAll
    case lock(LockSource)
    case unlock(LockSource)
    case window(WindowPosition, Double)
    case sunroof(Double)
    case lights(LightSwitch)
    case hazard(Bool)
    case key(Bool)
    case ignition(Bool)
    case engine(Bool)
    case drive(to: GeoPoint?, kmh: Double?, reverse: Bool)
    /// A route file (GPX or `LAT,LON` lines), loaded by the shell into `route`.
    case routeFile(String, kmh: Double?)
    case route([GeoPoint], kmh: Double?)
    case stop
    case place(GeoPoint, heading: Double?)
    case crash(CrashDirections, severity: Int, deltaV: Double?)
    case clearCrash
    case seat(Seat, occupied: Bool, belted: Bool)
    case press(RoofButton, holdMs: Int64?)
    case release(RoofButton)
    case climateTarget(Double)
    case climateFan(Int)
    case climateAC(Bool)
    case windowHeating(Bool)
    case outsideTemperature(Double)
    case cabinTemperature(Double)
    case battery(Double)
    case fuel(Double)
    case gnss(GNSSCondition)
    case fault(SimFault)
    case clearFaults
    case request(UnitRequest)
    /// The body and climate controllers carry out the unit's requests this long after they
    /// arrive (a real car takes from a second to minutes); 0 at once.
    case answerDelay(Int64)
    case wake
}

/// What the simulated receiver sees of the sky.
public enum GNSSCondition: Sendable, Equatable {
    /// A normal fix.
    case fix
    /// No fix at all (a tunnel, an underground car park).
    case tunnel
    /// A parked car's small wander (a few metres) around its position, on or off.
    case drift(Bool)
}

/// A misbehaving car, for tests.
public enum SimFault: Sendable, Hashable, CustomStringConvertible {
    /// The body controller ignores the unit's requests (sends its status as usual).
    case silentBody
    /// Every checksummed message goes out with a wrong checksum.
    case wrongChecksums
    /// A node of the DBC sends nothing at all.
    case dead(String)

    public var description: String {
        switch self {
        case .silentBody: "silent-body"
        case .wrongChecksums: "wrong-checksums"
        case .dead(let n): "dead \(n)"
        }
    }
}

/// A request the telematics unit sends the car (TCU_Body_Request, TCU_Clima_Request).
public enum UnitRequest: Sendable, Equatable, CustomStringConvertible {
    case lock, unlock, honkAndFlash(seconds: Int), flash(seconds: Int), unlockTrunk
    case climatisationStart(target: Double, minutes: Int, windowHeating: Bool)
    case climatisationStop

    /// The word scenarios use for it (`when unit requests lock`).
    public var kind: String {
        switch self {
        case .lock: "lock"
        case .unlock: "unlock"
        case .honkAndFlash: "honk"
        case .flash: "flash"
        case .unlockTrunk: "unlock-trunk"
        case .climatisationStart: "clima-start"
        case .climatisationStop: "clima-stop"
        }
    }

    public static let kinds = ["lock", "unlock", "honk", "flash", "unlock-trunk", "clima-start", "clima-stop"]

    public var description: String {
        switch self {
        case .honkAndFlash(let s), .flash(let s): "\(kind) \(s) s"
        case .climatisationStart(let t, let m, let w): "clima-start \(Geodesy.fixed(t, 1)) °C \(m) min\(w ? " window-heating" : "")"
        default: kind
        }
    }
}

// MARK: - Parsing

/// Splits a line into words (`--` prefixes dropped), each with its 1-based column.
struct Words {
    var items: [(text: Substring, column: Int)] = []
    var index = 0
    let line: Int
    let source: String?
    let full: Substring

    init(_ text: Substring, line: Int, source: String?, columnOffset: Int = 0) {
        self.line = line
        self.source = source
        self.full = text
        var col = columnOffset + 1
        var start: Substring.Index?
        var startCol = 0
        for i in text.indices {
            let isSpace = text[i] == " " || text[i] == "\t"
            if isSpace {
                if let s = start { items.append((text[s..<i], startCol)); start = nil }
            } else if start == nil {
                start = i
                startCol = col
            }
            col += 1
        }
        if let s = start { items.append((text[s...], startCol)) }
        items = items.map { w in
            var t = w.text
            while t.hasPrefix("-"), t.count > 2, t.dropFirst().hasPrefix("-") { t = t.dropFirst(2) }
            return (t, w.column)
        }
    }

    var atEnd: Bool { index >= items.count }
    var endColumn: Int { (items.last.map { $0.column + $0.text.count } ?? 1) }

    func error(_ message: String, at column: Int? = nil) -> ParseError {
        ParseError(source: source, line: line, column: column ?? (index < items.count ? items[index].column : endColumn), message)
    }

    /// The next word, lowercased with `-` and `_` removed (for keywords and names).
    mutating func keyword(_ expected: String) throws(ParseError) -> String {
        guard index < items.count else { throw error("expected \(expected) at the end of the line") }
        defer { index += 1 }
        return Self.normalise(items[index].text)
    }

    func peekKeyword() -> String? { index < items.count ? Self.normalise(items[index].text) : nil }

    mutating func raw(_ expected: String) throws(ParseError) -> (text: Substring, column: Int) {
        guard index < items.count else { throw error("expected \(expected) at the end of the line") }
        defer { index += 1 }
        return items[index]
    }

    static func normalise(_ s: Substring) -> String {
        String(s.lowercased().filter { $0 != "-" && $0 != "_" })
    }

    /// A finite number within `range` (never trapping on huge or odd input).
    mutating func number(_ what: String, in range: ClosedRange<Double>) throws(ParseError) -> Double {
        let w = try raw(what)
        guard let v = Double(w.text), v.isFinite else {
            throw ParseError(source: source, line: line, column: w.column, "expected \(what), found '\(w.text)'")
        }
        guard range.contains(v) else {
            throw ParseError(source: source, line: line, column: w.column,
                             "\(what) must be from \(Geodesy.fixed(range.lowerBound, 1)) to \(Geodesy.fixed(range.upperBound, 1)), found \(w.text)")
        }
        return v
    }

    mutating func onOff(_ what: String) throws(ParseError) -> Bool {
        let col = index < items.count ? items[index].column : endColumn
        switch try keyword("on or off for \(what)") {
        case "on", "true", "yes": return true
        case "off", "false", "no": return false
        case let w: throw ParseError(source: source, line: line, column: col, "expected on or off for \(what), found '\(w)'")
        }
    }

    mutating func choice<T>(_ what: String, _ table: [(String, T)]) throws(ParseError) -> T {
        let col = index < items.count ? items[index].column : endColumn
        let w = try keyword(what)
        if let hit = table.first(where: { Self.normalise(Substring($0.0)) == w }) { return hit.1 }
        throw ParseError(source: source, line: line, column: col,
                         "expected \(what) (\(table.map(\.0).joined(separator: ", "))), found '\(items[index - 1].text)'")
    }

    func expectEnd() throws(ParseError) {
        guard atEnd else { throw error("unexpected '\(items[index].text)' at the end of the command") }
    }
}

extension CarCommand {
    static let openings: [(String, Opening)] = Opening.allCases.map { ($0.rawValue, $0) }
    static let seats: [(String, Seat)] = Seat.allCases.map { ($0.rawValue, $0) }
    static let buttons: [(String, RoofButton)] = RoofButton.allCases.map { ($0.rawValue, $0) }
    static let lockSources: [(String, LockSource)] = [("keyFob", .keyFob), ("keyless", .keyless), ("doorHandle", .doorHandle),
                                                      ("telematics", .telematics), ("autoLock", .autoLock)]

    /// Parses one command; errors name the source, line and column and what was expected.
    public static func parse(_ text: Substring, line: Int = 1, source: String? = nil, columnOffset: Int = 0) throws(ParseError) -> CarCommand {
        var w = Words(text, line: line, source: source, columnOffset: columnOffset)
        guard !w.atEnd else { throw w.error("expected a command (door, lock, drive, crash, press, ...)") }
        let verbColumn = w.items[0].column
        let verb = try w.keyword("a command")
        let c: CarCommand
        switch verb {
        case "door", "open", "close":
            var opening = verb
            if verb == "door" { opening = try w.choice("open or close", [("open", "open"), ("close", "close")]) }
            if opening == "close", w.peekKeyword() == "all" {
                w.index += 1
                try w.expectEnd()
                return .closeAll
            }
            let o = try w.choice("a door", openings)
            c = opening == "open" ? .open(o) : .close(o)
        case "lock", "unlock":
            let src = w.atEnd ? LockSource.keyFob : try w.choice("a lock source", lockSources)
            c = verb == "lock" ? .lock(src) : .unlock(src)
        case "window":
            let win = try w.choice("a window", WindowPosition.allCases.map { ($0.rawValue, $0) })
            c = .window(win, try w.number("a window opening in %", in: 0...100))
        case "sunroof": c = .sunroof(try w.number("a sunroof opening in %", in: 0...100))
        case "lights":
            c = .lights(try w.choice("a light switch position", [("off", .off), ("auto", .auto), ("parking", .parking),
                                                                ("lowBeam", .lowBeam), ("fog", LightSwitch.fog)]))
        case "hazard": c = .hazard(try w.onOff("the hazard lights"))
        case "key": c = .key(try w.choice("in or out", [("in", true), ("out", false)]))
        case "ignition": c = .ignition(try w.onOff("the ignition"))
        case "engine": c = .engine(try w.choice("start or stop", [("start", true), ("stop", false), ("on", true), ("off", false)]))
        case "drive":
            var to: GeoPoint?
            var kmh: Double?
            var reverse = false
            while !w.atEnd {
                switch try w.keyword("to, speed or reverse") {
                case "to":
                    let p = try w.raw("a destination LAT,LON")
                    guard let g = GeoPoint.parse(p.text) else {
                        throw ParseError(source: source, line: line, column: p.column,
                                         "expected a destination as LAT,LON in degrees, found '\(p.text)'")
                    }
                    to = g
                case "speed", "at": kmh = try w.number("a speed in km/h", in: 0...250)
                case "reverse": reverse = true
                case let other:
                    throw ParseError(source: source, line: line, column: w.items[w.index - 1].column,
                                     "expected to LAT,LON, speed KMH or reverse after drive, found '\(other)'")
                }
            }
            if to == nil, kmh == nil { throw w.error("drive needs a destination (to LAT,LON) or a speed (speed KMH)") }
            c = .drive(to: to, kmh: kmh, reverse: reverse)
        case "route":
            let file = try w.raw("a route file (GPX, or LAT,LON lines)")
            var kmh: Double?
            if !w.atEnd {
                _ = try w.choice("speed", [("speed", 0), ("at", 0)])
                kmh = try w.number("a speed in km/h", in: 1...250)
            }
            c = .routeFile(String(file.text), kmh: kmh)
        case "stop", "brake": c = .stop
        case "place":
            let p = try w.raw("a position LAT,LON")
            guard let g = GeoPoint.parse(p.text) else {
                throw ParseError(source: source, line: line, column: p.column, "expected a position as LAT,LON in degrees, found '\(p.text)'")
            }
            var heading: Double?
            if !w.atEnd {
                _ = try w.choice("heading", [("heading", 0)])
                heading = try w.number("a heading in degrees", in: 0...360)
            }
            c = .place(g, heading: heading)
        case "crash":
            if w.peekKeyword() == "clear" { w.index += 1; c = .clearCrash; break }
            var dirs: CrashDirections = []
            var severity = 3
            var deltaV: Double?
            while !w.atEnd {
                switch try w.keyword("a crash direction, severity or delta-v") {
                case "front": dirs.insert(.front)
                case "rear": dirs.insert(.rear)
                case "sideleft", "left": dirs.insert(.sideLeft)
                case "sideright", "right": dirs.insert(.sideRight)
                case "rollover": dirs.insert(.rollover)
                case "severity": severity = Int(try w.number("a crash severity", in: 1...4))
                case "deltav": deltaV = try w.number("a delta-v in km/h", in: 0...127.5)
                case let other:
                    throw ParseError(source: source, line: line, column: w.items[w.index - 1].column,
                                     "expected front, rear, side-left, side-right, rollover, severity N or delta-v KMH, found '\(other)'")
                }
            }
            if dirs.isEmpty { dirs = .front }
            c = .crash(dirs, severity: severity, deltaV: deltaV)
        case "seat":
            let s = try w.choice("a seat", seats)
            let occupied = try w.choice("occupied or empty", [("occupied", true), ("empty", false)])
            var belted = occupied
            if !w.atEnd { belted = try w.choice("belted or unbelted", [("belted", true), ("unbelted", false)]) }
            c = .seat(s, occupied: occupied, belted: belted && occupied)
        case "press":
            let b = try w.choice("a roof button", buttons)
            var hold: Int64?
            if !w.atEnd {
                _ = try w.choice("for", [("for", 0)])
                let d = try w.raw("a duration (300ms, 2s)")
                guard let ms = parseDuration(d.text), ms > 0, ms <= 60_000 else {
                    throw ParseError(source: source, line: line, column: d.column, "expected a duration up to 60s (300ms, 2s), found '\(d.text)'")
                }
                hold = ms
            }
            c = .press(b, holdMs: hold)
        case "release": c = .release(try w.choice("a roof button", buttons))
        case "climate":
            switch try w.keyword("target, fan, ac or window-heating") {
            case "target": c = .climateTarget(try w.number("a target temperature in °C", in: 16...30))
            case "fan": c = .climateFan(Int(try w.number("a fan level", in: 0...7)))
            case "ac": c = .climateAC(try w.onOff("the air conditioning"))
            case "windowheating": c = .windowHeating(try w.onOff("the window heating"))
            case let other:
                throw ParseError(source: source, line: line, column: w.items[w.index - 1].column,
                                 "expected target, fan, ac or window-heating after climate, found '\(other)'")
            }
        case "outsidetemperature", "outside": c = .outsideTemperature(try w.number("a temperature in °C", in: -50...63.5))
        case "cabintemperature", "cabin": c = .cabinTemperature(try w.number("a temperature in °C", in: -40...85))
        case "battery": c = .battery(try w.number("a state of charge in %", in: 0...100))
        case "fuel": c = .fuel(try w.number("a fuel level in %", in: 0...100))
        case "gnss":
            switch try w.keyword("fix, tunnel or drift") {
            case "fix": c = .gnss(.fix)
            case "tunnel": c = .gnss(.tunnel)
            case "drift": c = .gnss(.drift(try w.onOff("the drift")))
            case let other:
                throw ParseError(source: source, line: line, column: w.items[w.index - 1].column, "expected fix, tunnel or drift after gnss, found '\(other)'")
            }
        case "fault":
            switch try w.keyword("silent-body, wrong-checksums, dead NODE or clear") {
            case "silentbody": c = .fault(.silentBody)
            case "wrongchecksums": c = .fault(.wrongChecksums)
            case "dead":
                let node = try w.raw("a node of the DBC (ACU, BCM, ESP, ...)")
                c = .fault(.dead(node.text.uppercased()))
            case "clear": c = .clearFaults
            case let other:
                throw ParseError(source: source, line: line, column: w.items[w.index - 1].column,
                                 "expected silent-body, wrong-checksums, dead NODE or clear after fault, found '\(other)'")
            }
        case "request":
            switch try w.keyword("lock, unlock, honk, flash, clima-start or clima-stop") {
            case "lock": c = .request(.lock)
            case "unlock": c = .request(.unlock)
            case "honk": c = .request(.honkAndFlash(seconds: 10))
            case "flash": c = .request(.flash(seconds: 10))
            case "unlocktrunk": c = .request(.unlockTrunk)
            case "climastart":
                let t = w.atEnd ? 22 : try w.number("a target temperature in °C", in: 16...30)
                c = .request(.climatisationStart(target: t, minutes: 30, windowHeating: false))
            case "climastop": c = .request(.climatisationStop)
            case let other:
                throw ParseError(source: source, line: line, column: w.items[w.index - 1].column,
                                 "expected lock, unlock, honk, flash, clima-start or clima-stop after request, found '\(other)'")
            }
        case "answerdelay":
            let d = try w.raw("a duration (0s, 2s, 500ms)")
            guard let ms = parseDuration(d.text), ms <= 600_000 else {
                throw ParseError(source: source, line: line, column: d.column, "expected a duration up to 10m (0s, 2s, 500ms), found '\(d.text)'")
            }
            c = .answerDelay(ms)
        case "wake": c = .wake
        default:
            throw ParseError(source: source, line: line, column: verbColumn,
                             "unknown command '\(w.items[0].text)' (door, lock, unlock, window, sunroof, lights, hazard, key, ignition, engine, drive, route, stop, place, crash, seat, press, release, climate, outside-temperature, cabin-temperature, battery, fuel, gnss, fault, request, answer-delay, wake)")
        }
        try w.expectEnd()
        return c
    }
}

/// `300ms`, `2s`, `1.5s`, `1m30s`, `2h`: milliseconds, or nil when malformed or over a day.
public func parseDuration(_ text: Substring) -> Int64? {
    var total = 0.0
    var number = ""
    var i = text.startIndex
    var sawUnit = false
    while i < text.endIndex {
        let ch = text[i]
        if ch.isNumber || ch == "." {
            number.append(ch)
            i = text.index(after: i)
            continue
        }
        guard let v = Double(number), v.isFinite, v >= 0 else { return nil }
        var unit = String(ch)
        let next = text.index(after: i)
        if ch == "m", next < text.endIndex, text[next] == "s" { unit = "ms"; i = next }
        switch unit {
        case "ms": total += v
        case "s": total += v * 1_000
        case "m": total += v * 60_000
        case "h": total += v * 3_600_000
        default: return nil
        }
        number = ""
        sawUnit = true
        i = text.index(after: i)
    }
    guard number.isEmpty, sawUnit, total <= 86_400_000 else { return nil }
    return Int64(total.rounded())
}
