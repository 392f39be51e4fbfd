/// The car around the telematics unit: every ECU of the DBC other than the unit, as one value.
///
/// Overview: the shell (`tcu-car`) owns one `SimulatedVehicle` and, on its own clock, calls
/// `advance(to:)` (the physics: speed, route, odometer, fuel, cabin temperature, battery,
/// timeouts, the bus going to sleep), `apply(_:)` for a live or scripted command,
/// `receive(_:)` for a frame the unit sent (its body and climate requests), and
/// `dueFrames(at:)` for the frames to put on the bus now: each cyclic message at its
/// `GenMsgCycleTime` with its rolling counter and checksum, and at once any message whose
/// content a command or a request changed (an event). What happened is kept as `SimEvent`s
/// for the log, the scenario goldens and the control socket. Time is milliseconds on the
/// simulation's monotonic clock; nothing here reads a clock or does IO.
public struct SimulatedVehicle: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// The bus sleeps this long after the car was last used (ignition off, nothing running).
        public var sleepAfterMs: Int64 = 60_000
        /// Where the car stands at the start.
        public var position = GeoPoint(latitude: 41.3874, longitude: 2.1686)
        public var heading = 0.0
        public init() {}
    }

    public var ignition = IgnitionModel()
    public var body = BodyController()
    public var climate = ClimateController()
    public var powertrain = PowertrainModel()
    public var cluster = ClusterModel()
    public var airbag = AirbagModel()
    public var roof = RoofConsoleModel()
    public var battery = BatteryModel()

    public private(set) var position: GeoPoint
    public private(set) var heading: Double
    /// Waypoints still ahead, and the cruising speed on them.
    public private(set) var route: [GeoPoint] = []
    public private(set) var routeKmh = 50.0
    public private(set) var gnssTunnel = false
    public private(set) var gnssDrift = false
    public private(set) var faults: Set<SimFault> = []
    public private(set) var awake = true
    public private(set) var now: Int64 = 0
    public private(set) var ignoredRequests = 0
    /// How many times the car reached the end of a route.
    public private(set) var arrivals = 0
    public let configuration: Configuration
    /// The messages of the DBC this car sends, and those it does not model.
    public let plan: [PlannedMessage]
    public let unmodelled: [String]

    /// How long after arriving the unit's requests are carried out, and those waiting.
    public private(set) var answerDelayMs: Int64 = 0
    private var delayed: [(due: Int64, request: UnitRequest)] = []
    private var lastActivity: Int64 = 0
    private var events: [SimEvent] = []
    private var requests: [UnitRequest] = []
    private var lastRequestCounter: [String: Int] = [:]
    private var pendingEvents: Set<Int> = []
    private var lastValues: [[String: Double]?]
    private var counters: [Int]
    private var nextDue: [Int64]
    private var wasLow = false
    private let database: DBCDatabase

    /// A message this car sends: its DBC index, cycle, sender, and its counter and checksum signals.
    public struct PlannedMessage: Sendable {
        public var index: Int
        public var name: String
        public var cycleMs: Int64
        public var sender: String
        public var counterSignal: String?
        public var checksumSignal: DBCSignal?
        /// The message's signals in layout order, for encoding without looking names up per
        /// frame (a multiplexed message takes SignalCodec.encode instead: its layout varies).
        var signals: [DBCSignal]
    }

    /// The messages of `hw/vehicle.dbc` the models fill.
    public static let modelled: Set<String> = [
        "Airbag_01", "Seat_Occupancy", "ESP_Speed", "Terminal_Status", "Door_Status", "Window_Status", "Light_Status",
        "Climate_Status", "Cluster_Info", "Alarm_Status", "Roof_Module_Buttons", "Battery_12V",
    ]
    /// The node whose frames the car receives and answers (never sent by the car).
    public static let unitNode = "TCU"

    public init(database: DBCDatabase, configuration: Configuration = Configuration()) {
        self.database = database
        self.configuration = configuration
        position = configuration.position
        heading = configuration.heading
        var plan: [PlannedMessage] = []
        var unmodelled: [String] = []
        // In arbitration order (the lowest identifier first), as a real bus delivers frames
        // that are due at the same moment.
        let byPriority = database.messages.indices.sorted {
            (database.messages[$0].id, $0) < (database.messages[$1].id, $1)
        }
        for i in byPriority where database.messages[i].sender != Self.unitNode {
            let m = database.messages[i]
            guard Self.modelled.contains(m.name) else { unmodelled.append(m.name); continue }
            let counter = m.signals.first { $0.name.hasSuffix("_Counter") && $0.multiplexer == nil }
            let checksum = m.signals.first {
                $0.name.hasSuffix("_Checksum") && $0.length == 8 && $0.startBit % 8 == 0 && $0.byteOrder == .littleEndian
            }
            plan.append(PlannedMessage(index: i, name: m.name, cycleMs: Int64(max(0, m.cycleTimeMs ?? 0)), sender: m.sender,
                                       counterSignal: counter?.name, checksumSignal: checksum, signals: m.signals))
        }
        self.plan = plan
        self.unmodelled = unmodelled
        lastValues = Array(repeating: nil, count: plan.count)
        counters = Array(repeating: 0, count: plan.count)
        nextDue = Array(repeating: 0, count: plan.count)
        // Parked, locked-ready: the driver's seat empty, the engine cold.
        climate.cabinTemperature = climate.outsideTemperature
    }

    // MARK: Events out

    /// Takes what happened since the last call.
    public mutating func takeEvents() -> [SimEvent] {
        defer { events.removeAll() }
        return events
    }

    /// Takes the unit's requests received since the last call (for scenario triggers).
    public mutating func takeRequests() -> [UnitRequest] {
        defer { requests.removeAll() }
        return requests
    }

    private mutating func note(_ ecu: String, _ text: String) {
        events.append(SimEvent(atMs: now, ecu: ecu, text: text))
    }

    private mutating func record(_ ecu: String, _ what: String, _ outcome: ECUOutcome) {
        switch outcome {
        case .unchanged: break
        case .done: note(ecu, what)
        case .refused(let r): note(ecu, "\(what) refused (\(r))")
        case .alarmTriggered(let s): note(ecu, what); note("alarm", "triggered (\(s))")
        case .ended(let r): note(ecu, "\(what): ended (\(r))")
        }
    }

    private mutating func used() {
        lastActivity = now
        if !awake {
            awake = true
            // Every cyclic message goes out at once on waking, then at its cycle.
            for i in nextDue.indices { nextDue[i] = now }
            note("bus", "awake")
        }
    }

    // MARK: Commands

    /// Carries out a live or scripted command now; the outcome says whether the car did it.
    @discardableResult
    public mutating func apply(_ command: CarCommand) -> ECUOutcome {
        let moving = powertrain.moving
        let outcome: ECUOutcome
        var what = ""
        var ecu = "body"
        switch command {
        case .open(let o):
            what = "\(o.rawValue) opened"
            outcome = body.opened(o, at: now)
        case .close(let o):
            what = "\(o.rawValue) closed"
            outcome = body.closed(o)
        case .closeAll:
            what = "all closed"
            outcome = body.closedAll()
        case .lock(let s):
            what = "locked (\(s))"
            outcome = body.lockRequested(s, at: now)
            if case .done = outcome, body.alarmArmed { what += ", alarm armed" }
        case .unlock(let s):
            what = "unlocked (\(s))"
            outcome = body.unlockRequested(s)
        case .window(let w, let p):
            what = "window \(w.rawValue) \(Geodesy.fixed(p, 0)) %"
            outcome = body.windowMoved(w, percent: p)
        case .sunroof(let p):
            what = "sunroof \(Geodesy.fixed(p, 0)) %"
            outcome = body.sunroofMoved(percent: p)
        case .lights(let s):
            what = "light switch \(s)"
            outcome = body.lightSwitchTurned(s)
        case .hazard(let on):
            what = "hazard lights \(on ? "on" : "off")"
            outcome = body.hazardSwitched(on)
        case .key(let inserted):
            ecu = "ignition"
            what = inserted ? "key in" : "key out"
            outcome = inserted ? ignition.keyInserted() : ignition.keyRemoved(moving: moving)
        case .ignition(let on):
            ecu = "ignition"
            what = on ? "ignition on" : "ignition off"
            outcome = on ? ignition.ignitionSwitchedOn() : ignition.ignitionSwitchedOff(moving: moving)
        case .engine(let start):
            ecu = "ignition"
            what = start ? "engine started" : "engine stopped"
            outcome = start ? ignition.engineStartRequested(at: now, batteryFlat: battery.flat) : ignition.engineStopRequested(moving: moving)
        case .drive(let to, let kmh, let reverse):
            ecu = "esp"
            if !ignition.engineRunning {
                outcome = .refused("engineOff")
                what = "drive"
                break
            }
            if let to {
                route = [to]
                routeKmh = kmh ?? routeKmh
                what = "driving to \(to) at \(Geodesy.fixed(routeKmh, 0)) km/h"
                outcome = powertrain.targetSet(routeKmh)
            } else {
                route = []
                what = "speed \(Geodesy.fixed(kmh ?? 0, 0)) km/h\(reverse ? " reverse" : "")"
                outcome = powertrain.targetSet(kmh ?? 0, reverse: reverse)
            }
        case .route(let points, let kmh):
            ecu = "esp"
            if !ignition.engineRunning { outcome = .refused("engineOff"); what = "route"; break }
            guard !points.isEmpty else { outcome = .refused("emptyRoute"); what = "route"; break }
            route = points
            routeKmh = kmh ?? routeKmh
            what = "route of \(points.count) waypoints at \(Geodesy.fixed(routeKmh, 0)) km/h"
            outcome = powertrain.targetSet(routeKmh)
        case .routeFile:
            // The shell loads the file and applies `.route`.
            ecu = "esp"
            what = "route file"
            outcome = .refused("routeNotLoaded")
        case .stop:
            ecu = "esp"
            route = []
            what = "braking to a stop"
            outcome = powertrain.targetSet(0)
        case .place(let p, let h):
            ecu = "gnss"
            if moving { outcome = .refused("vehicleMoving"); what = "place"; break }
            position = p
            if let h { heading = h }
            route = []
            what = "placed at \(p)"
            outcome = .done
        case .crash(let d, let s, let dv):
            ecu = "airbag"
            what = "crash \(Self.describe(d)) severity \(s)"
            outcome = airbag.crashed(d, severity: s, deltaV: dv)
            if case .done = outcome {
                powertrain.crashed()
                route = []
                if airbag.warningLamp { what += ", airbags deployed" }
            }
        case .clearCrash:
            ecu = "airbag"
            what = "crash cleared"
            outcome = airbag.crashCleared()
        case .seat(let s, let o, let b):
            ecu = "airbag"
            what = "seat \(s.rawValue) \(o ? "occupied" : "empty")\(o ? (b ? ", belted" : ", unbelted") : "")"
            outcome = airbag.seatChanged(s, occupied: o, belted: b)
        case .press(let b, let hold):
            ecu = "roof"
            what = "\(b.rawValue) pressed"
            outcome = roof.buttonPressed(b, holdMs: hold, at: now)
        case .release(let b):
            ecu = "roof"
            what = "\(b.rawValue) released"
            outcome = roof.buttonReleased(b, at: now)
        case .climateTarget(let t):
            ecu = "climate"
            what = "target \(Geodesy.fixed(t, 1)) °C"
            outcome = climate.targetSet(t)
        case .climateFan(let f):
            ecu = "climate"
            what = "fan \(f)"
            outcome = climate.fanSet(f)
        case .climateAC(let on):
            ecu = "climate"
            what = "AC \(on ? "on" : "off")"
            outcome = climate.acSwitched(on)
        case .windowHeating(let on):
            ecu = "climate"
            what = "window heating \(on ? "on" : "off")"
            outcome = climate.windowHeatingSwitched(on)
        case .outsideTemperature(let t):
            ecu = "climate"
            what = "outside \(Geodesy.fixed(t, 1)) °C"
            outcome = climate.temperaturesSet(outside: t)
        case .cabinTemperature(let t):
            ecu = "climate"
            what = "cabin \(Geodesy.fixed(t, 1)) °C"
            outcome = climate.temperaturesSet(cabin: t)
        case .battery(let soc):
            ecu = "battery"
            what = "charge \(Geodesy.fixed(soc, 0)) %"
            outcome = battery.drained(toPercent: soc)
        case .fuel(let p):
            ecu = "cluster"
            what = "fuel \(Geodesy.fixed(p, 0)) %"
            outcome = cluster.refuelled(percent: p)
        case .gnss(let g):
            ecu = "gnss"
            switch g {
            case .fix: what = "fix"; outcome = gnssTunnel ? .done : .unchanged; gnssTunnel = false
            case .tunnel: what = "no fix (tunnel)"; outcome = gnssTunnel ? .unchanged : .done; gnssTunnel = true
            case .drift(let on): what = "drift \(on ? "on" : "off")"; outcome = gnssDrift == on ? .unchanged : .done; gnssDrift = on
            }
        case .fault(let f):
            ecu = "fault"
            what = "\(f) on"
            outcome = faults.insert(f).inserted ? .done : .unchanged
        case .clearFaults:
            ecu = "fault"
            what = "cleared"
            outcome = faults.isEmpty ? .unchanged : .done
            faults.removeAll()
        case .request(let r):
            return unitRequested(r)
        case .answerDelay(let ms):
            ecu = "bus"
            what = "answer delay \(ms) ms"
            outcome = answerDelayMs == ms ? .unchanged : .done
            answerDelayMs = ms
        case .wake:
            ecu = "bus"
            what = "wake"
            outcome = awake ? .unchanged : .done
        }
        record(ecu, what, outcome)
        if outcome != .unchanged { used() }
        syncIgnition()
        markChanges()
        return outcome
    }

    static func describe(_ d: CrashDirections) -> String {
        var parts: [String] = []
        if d.contains(.front) { parts.append("front") }
        if d.contains(.sideLeft) { parts.append("side-left") }
        if d.contains(.sideRight) { parts.append("side-right") }
        if d.contains(.rear) { parts.append("rear") }
        if d.contains(.rollover) { parts.append("rollover") }
        return parts.joined(separator: "+")
    }

    /// Tells the body, the climate and the battery what the terminals now say.
    private mutating func syncIgnition() {
        _ = body.ignitionChanged(on: ignition.ignitionOn)
        let c = climate.ignitionChanged(on: ignition.ignitionOn, engine: ignition.engineRunning)
        if case .ended = c { record("climate", "remote climatisation", c) }
        battery.engineRunning = ignition.engineRunning
    }

    // MARK: The unit's requests

    /// A frame from the bus: the unit's body or climate request is checked (checksum, a fresh
    /// counter) and carried out; other frames are ignored. Nil when the frame is not a request.
    @discardableResult
    public mutating func receive(_ frame: CANFrame) -> ECUOutcome? {
        guard !frame.isError, !frame.isRemote, let mi = database.messageIndex(id: frame.id, isExtended: frame.isExtended) else { return nil }
        let m = database.messages[mi]
        guard m.name == "TCU_Body_Request" || m.name == "TCU_Clima_Request" else { return nil }
        let ecu = m.name == "TCU_Body_Request" ? "body" : "climate"
        guard frame.data.count >= m.length else {
            ignoredRequests += 1
            note(ecu, "\(m.name) ignored (\(frame.data.count) bytes, expected \(m.length))")
            return .refused("shortFrame")
        }
        var decoded: [String: Double] = [:]
        for s in SignalCodec.decode(m, data: frame.data) { decoded[m.signals[s.index].name] = s.value }
        if let cs = m.signals.first(where: { $0.name.hasSuffix("_Checksum") }) {
            let expected = xorChecksum(frame.data, checksumByte: cs.startBit / 8)
            guard UInt8(exactly: decoded[cs.name] ?? -1) == expected else {
                ignoredRequests += 1
                note(ecu, "\(m.name) ignored (wrong checksum)")
                return .refused("wrongChecksum")
            }
        }
        if let counterName = m.signals.first(where: { $0.name.hasSuffix("_Counter") })?.name, let c = decoded[counterName] {
            let counter = Int(c)
            // The same counter as the last request is a repeated (stale) frame: ignored.
            if lastRequestCounter[m.name] == counter {
                ignoredRequests += 1
                note(ecu, "\(m.name) ignored (stale counter \(counter))")
                return .refused("staleCounter")
            }
            lastRequestCounter[m.name] = counter
        }
        let request: UnitRequest?
        if m.name == "TCU_Body_Request" {
            let seconds = Int(decoded["Honk_Flash_Duration"] ?? 0)
            switch Int(decoded["Body_Request"] ?? 0) {
            case 1: request = .lock
            case 2: request = .unlock
            case 3: request = .honkAndFlash(seconds: seconds)
            case 4: request = .flash(seconds: seconds)
            case 5: request = .unlockTrunk
            default: request = nil
            }
        } else {
            switch Int(decoded["Clima_Request"] ?? 0) {
            case 1:
                request = .climatisationStart(target: decoded["Clima_Target_Temperature"] ?? 22, minutes: Int(decoded["Clima_Duration"] ?? 0),
                                              windowHeating: (decoded["Clima_Window_Heating"] ?? 0) != 0)
            case 2: request = .climatisationStop
            default: request = nil
            }
        }
        guard let request else {
            note(ecu, "\(m.name) with no request")
            return .unchanged
        }
        return unitRequested(request)
    }

    /// Takes a request from the unit (received on the bus, or played by a scenario): carried out
    /// now, or after the answer delay.
    private mutating func unitRequested(_ r: UnitRequest) -> ECUOutcome {
        requests.append(r)
        used()
        guard answerDelayMs == 0 else {
            delayed.append((now + answerDelayMs, r))
            note("bus", "unit request \(r) taken, answered in \(answerDelayMs) ms")
            return .unchanged
        }
        return carryOut(r)
    }

    private mutating func carryOut(_ r: UnitRequest) -> ECUOutcome {
        let outcome: ECUOutcome
        let ecu: String
        switch r {
        case .lock, .unlock, .honkAndFlash, .flash, .unlockTrunk:
            ecu = "body"
            if faults.contains(.silentBody) {
                note(ecu, "unit request \(r) ignored (silent body controller)")
                return .refused("silent")
            }
            switch r {
            case .lock: outcome = body.lockRequested(.telematics, at: now)
            case .unlock: outcome = body.unlockRequested(.telematics)
            case .honkAndFlash(let s): outcome = powertrain.moving ? .refused("vehicleMoving") : body.honkAndFlashRequested(seconds: s, honk: true, at: now)
            case .flash(let s): outcome = powertrain.moving ? .refused("vehicleMoving") : body.honkAndFlashRequested(seconds: s, honk: false, at: now)
            default: outcome = body.open.contains(.trunk) ? .unchanged : .done
            }
        case .climatisationStart(let t, let m, let w):
            ecu = "climate"
            outcome = climate.remoteStartRequested(target: t, minutes: m, windowHeating: w, batteryLow: battery.low, at: now)
        case .climatisationStop:
            ecu = "climate"
            outcome = climate.remoteStopRequested()
        }
        let what = "unit request \(r)"
        switch outcome {
        case .unchanged: note(ecu, "\(what): already so")
        case .ended: note(ecu, "\(what): remote climatisation stopped")
        default: record(ecu, what, outcome)
        }
        markChanges()
        return outcome
    }

    // MARK: Time

    /// The physics up to `t`, in steps of at most 100 ms.
    public mutating func advance(to t: Int64) {
        while now < t {
            let step = min(100, t - now)
            tick(dtMs: step)
        }
    }

    private mutating func tick(dtMs: Int64) {
        now += dtMs
        while let first = delayed.first, first.due <= now {
            delayed.removeFirst()
            used()
            _ = carryOut(first.request)
        }
        let siren = body.alarmSoundingUntil != nil, flashing = body.flashUntil != nil
        if body.tick(at: now) == .done {
            if siren, body.alarmSoundingUntil == nil { note("alarm", "siren stopped after 30 s (still armed)") }
            if flashing, body.flashUntil == nil { note("body", "honk and flash ended") }
        }
        _ = roof.tick(at: now)
        // Speed, route and the distance travelled.
        if !route.isEmpty, ignition.engineRunning {
            let remaining = routeRemainingMetres
            let v = powertrain.speedKmh / 3.6
            let braking = v * v / (2 * PowertrainModel.maxAcceleration) + 2
            powertrain.targetKmh = remaining <= braking ? 0 : routeKmh
        }
        let km = powertrain.tick(dtMs: dtMs, engineRunning: ignition.engineRunning)
        if km > 0 {
            cluster.travelled(km: km)
            moveAlong(metres: km * 1_000, dtMs: dtMs)
        } else {
            powertrain.yawRate = 0
        }
        if !route.isEmpty, powertrain.speedKmh < 0.1, powertrain.targetKmh == 0, ignition.engineRunning,
           routeRemainingMetres <= 3 {
            position = route.last!
            route = []
            arrivals += 1
            note("esp", "arrived at \(position)")
        }
        cluster.timePassed(ms: dtMs)
        // Auto-lock from 15 km/h, doors closed (the driver is inside: the alarm stays off).
        if powertrain.speedKmh > 15, !body.locked, !body.anyDoorOpen, ignition.ignitionOn {
            record("body", "locked (autoLock)", body.lockRequested(.autoLock, at: now))
        }
        let c = climate.tick(dtMs: dtMs, at: now)
        if case .ended = c { record("climate", "remote climatisation", c) }
        battery.tick(dtMs: dtMs, loadAmps: loadAmps)
        if battery.low != wasLow {
            wasLow = battery.low
            note("battery", battery.low ? "low (\(Geodesy.fixed(battery.stateOfCharge, 0)) %)" : "charged again")
            if battery.low { let c = climate.batteryWentLow(); if case .ended = c { record("climate", "remote climatisation", c) } }
        }
        if awake, canSleep, now - lastActivity >= configuration.sleepAfterMs {
            awake = false
            note("bus", "asleep")
        }
        if !canSleep { lastActivity = now }
    }

    /// Whether nothing keeps the car awake (its bus may sleep once idle long enough).
    public var canSleep: Bool {
        !ignition.ignitionOn && !ignition.keyPresent && !climate.remoteRunning && !body.hazardOn(at: now) && !body.honking(at: now)
            && roof.pressedUntil.isEmpty && powertrain.speedKmh < 0.1 && delayed.isEmpty
    }

    /// The current drawn from the 12 V battery, amperes.
    public var loadAmps: Double {
        var a = awake ? 3.0 : 0.05
        if ignition.ignitionOn { a += 15 }
        if climate.remoteRunning { a += 25 }
        if body.hazardOn(at: now) { a += 6 }
        if body.honking(at: now) { a += 4 }
        return a
    }

    public var routeRemainingMetres: Double {
        guard let first = route.first else { return 0 }
        var d = Geodesy.distance(position, first)
        for i in route.indices.dropFirst() { d += Geodesy.distance(route[i - 1], route[i]) }
        return d
    }

    private mutating func moveAlong(metres: Double, dtMs: Int64) {
        let before = heading
        var left = metres * (powertrain.reverse ? -1 : 1)
        if route.isEmpty {
            position = Geodesy.move(position, heading: heading, metres: left)
        }
        while left > 0, let next = route.first {
            let d = Geodesy.distance(position, next)
            if d > 0.01 { heading = Geodesy.bearing(position, next) }
            if left < d {
                position = Geodesy.advance(from: position, toward: next, metres: left)
                left = 0
            } else {
                position = next
                left -= d
                if route.count > 1 { route.removeFirst() } else { left = 0 }
            }
        }
        var turn = heading - before
        if turn > 180 { turn -= 360 } else if turn < -180 { turn += 360 }
        powertrain.yawRate = min(81.91, max(-81.92, turn / (Double(dtMs) / 1_000)))
    }

    // MARK: Frames

    /// When the next cyclic frame is due (never earlier than now).
    public var nextFrameDueMs: Int64 {
        guard awake else { return Int64.max }
        return plan.indices.reduce(Int64.max) { m, i in plan[i].cycleMs > 0 ? min(m, nextDue[i]) : m }
    }

    /// The frames to send at `t` (after `advance(to: t)`): cyclic messages that are due, and
    /// changed messages at once; nothing while the bus sleeps or from a dead node.
    public mutating func dueFrames(at t: Int64) -> [CANFrame] {
        guard awake else { pendingEvents.removeAll(); return [] }
        var out: [CANFrame] = []
        for i in plan.indices {
            let p = plan[i]
            let cyclicDue = p.cycleMs > 0 && nextDue[i] <= t
            guard cyclicDue || pendingEvents.contains(i) else { continue }
            if cyclicDue {
                nextDue[i] += p.cycleMs
                // Far behind (a stalled shell): start the cycle again from now, no burst.
                if nextDue[i] <= t { nextDue[i] = t + p.cycleMs }
            }
            if faults.contains(.dead(p.sender)) { continue }
            if let f = frame(i) { out.append(f) }
        }
        pendingEvents.removeAll()
        return out
    }

    /// The event rule: every message whose content a command or request changed goes out now.
    private mutating func markChanges() {
        for i in plan.indices where database.messages[plan[i].index].isMultiplexed == false {
            let v = values(plan[i].name, page: 0)
            if lastValues[i] != v { pendingEvents.insert(i) }
        }
    }

    private mutating func frame(_ i: Int) -> CANFrame? {
        let p = plan[i]
        let m = database.messages[p.index]
        var page = 0
        if m.isMultiplexed {
            page = cluster.page
            cluster.page = (cluster.page + 1) % 3
        }
        var v = values(p.name, page: page)
        lastValues[i] = m.isMultiplexed ? nil : v
        if let c = p.counterSignal {
            v[c] = Double(counters[i])
            counters[i] = (counters[i] + 1) % 16
        }
        func clamp(_ s: DBCSignal, _ value: Double) -> Double {
            s.hasRange ? min(s.maximum, max(s.minimum, value)) : value
        }
        var data: [UInt8]
        if m.isMultiplexed {
            var clamped: [String: Double] = [:]
            for s in p.signals { if let value = v[s.name] { clamped[s.name] = clamp(s, value) } }
            guard let encoded = try? SignalCodec.encode(m, values: clamped, missingAsZero: true) else { return nil }
            data = encoded
        } else {
            // The models fill every signal they know with a value in its range; a signal they
            // do not fill stays zero, as SignalCodec.encode(missingAsZero:) leaves it.
            data = [UInt8](repeating: 0, count: m.length)
            for s in p.signals {
                guard let value = v[s.name] else { continue }
                guard let bits = try? SignalCodec.encodeBits(s, physical: clamp(s, value)) else { return nil }
                SignalCodec.insert(s, bits: bits, into: &data)
            }
        }
        if let cs = p.checksumSignal {
            var sum = xorChecksum(data, checksumByte: cs.startBit / 8)
            if faults.contains(.wrongChecksums) { sum ^= 0xFF }
            data[cs.startBit / 8] = sum
        }
        return CANFrame(id: m.id, data: data, isExtended: m.isExtended, isFD: m.isFD)
    }

    private static func flag(_ b: Bool) -> Double { b ? 1 : 0 }

    /// The physical values of a message from the models' state (counters and checksums aside).
    func values(_ name: String, page: Int) -> [String: Double] {
        let f = Self.flag
        switch name {
        case "Airbag_01":
            return [
                "Crash_Detected": f(airbag.crashDetected), "Crash_Severity": Double(airbag.severity),
                "Crash_Front": f(airbag.directions.contains(.front)), "Crash_Side_Left": f(airbag.directions.contains(.sideLeft)),
                "Crash_Side_Right": f(airbag.directions.contains(.sideRight)), "Crash_Rear": f(airbag.directions.contains(.rear)),
                "Crash_Rollover": f(airbag.directions.contains(.rollover)), "Airbag_Deployed_Driver": f(airbag.deployedDriver),
                "Airbag_Deployed_Passenger": f(airbag.deployedPassenger), "Airbag_Deployed_Side": f(airbag.deployedSide),
                "Airbag_Warning_Lamp": f(airbag.warningLamp), "Crash_Delta_V": airbag.deltaVKmh,
            ]
        case "Seat_Occupancy":
            var v: [String: Double] = [:]
            for (seat, suffix) in [(Seat.driver, "Driver"), (.passenger, "Passenger"), (.rearLeft, "Rear_Left"),
                                   (.rearCenter, "Rear_Center"), (.rearRight, "Rear_Right")] {
                v["Occupied_" + suffix] = f(airbag.occupied.contains(seat))
                v["Belt_" + suffix] = f(airbag.belted.contains(seat))
            }
            return v
        case "ESP_Speed":
            return ["Vehicle_Speed": powertrain.speedKmh, "Driving_Direction": Double(powertrain.direction),
                    "Longitudinal_Accel": powertrain.accelerationMs2, "Yaw_Rate": powertrain.yawRate]
        case "Terminal_Status":
            let cranking = ignition.starterEngaged(at: now)
            return ["Terminal_S": f(ignition.keyPresent), "Terminal_15": f(ignition.ignitionOn),
                    "Terminal_X": f(ignition.ignitionOn && !cranking), "Terminal_50": f(cranking),
                    "Engine_Running": f(ignition.engineRunning && !cranking)]
        case "Door_Status":
            let l = f(body.locked)
            return [
                "Door_FL_Open": f(body.open.contains(.frontLeft)), "Door_FR_Open": f(body.open.contains(.frontRight)),
                "Door_RL_Open": f(body.open.contains(.rearLeft)), "Door_RR_Open": f(body.open.contains(.rearRight)),
                "Hood_Open": f(body.open.contains(.hood)), "Trunk_Open": f(body.open.contains(.trunk)),
                "Door_FL_Locked": l, "Door_FR_Locked": l, "Door_RL_Locked": l, "Door_RR_Locked": l,
                "Hood_Locked": f(!body.open.contains(.hood)), "Trunk_Locked": f(body.locked && !body.open.contains(.trunk)),
                "Central_Lock_State": l, "Lock_Source": Double(body.lockSource.rawValue),
            ]
        case "Window_Status":
            return ["Window_FL_Position": body.window(.frontLeft), "Window_FR_Position": body.window(.frontRight),
                    "Window_RL_Position": body.window(.rearLeft), "Window_RR_Position": body.window(.rearRight),
                    "Sunroof_Position": body.sunroof, "Sunroof_State": body.sunroof > 0 ? 1 : 0]
        case "Light_Status":
            let s = body.lightSwitch
            let low = s == .lowBeam || s == .fog || (s == .auto && ignition.ignitionOn)
            return ["Parking_Light": f(s == .parking || low), "Low_Beam": f(low), "High_Beam": 0,
                    "Hazard_Lights": f(body.hazardOn(at: now)), "Fog_Light_Front": f(s == .fog), "Fog_Light_Rear": 0,
                    "Turn_Left": 0, "Turn_Right": 0, "Daytime_Running_Light": f(ignition.ignitionOn && !low),
                    "Light_Switch_Position": Double(s.rawValue)]
        case "Climate_Status":
            return ["AC_On": f(climate.acOn), "Recirculation": f(climate.recirculation), "Auto_Mode": f(climate.autoMode),
                    "Fan_Level": Double(climate.remoteRunning ? max(3, climate.fanLevel) : climate.fanLevel),
                    "Target_Temperature": climate.targetTemperature, "Cabin_Temperature": climate.cabinTemperature,
                    "Outside_Temperature": climate.outsideTemperature, "Window_Heating_Front": f(climate.windowHeatingFront),
                    "Window_Heating_Rear": f(climate.windowHeatingRear), "Climatisation_State": Double(climate.mode.rawValue),
                    "Climatisation_Remaining": Double(climate.remainingMinutes(at: now)),
                    "Climatisation_Source": Double(climate.remoteRunning ? ClimateController.Source.remote.rawValue : 0)]
        case "Cluster_Info":
            switch page {
            case 1:
                return ["Cluster_Page": 1, "Inspection_Due_Days": climbDown(cluster.inspectionDays),
                        "Inspection_Due_Distance": (cluster.inspectionKm / 10).rounded(.down) * 10,
                        "Service_Due_Now": f(cluster.inspectionDays <= 0 || cluster.inspectionKm <= 0)]
            case 2:
                return ["Cluster_Page": 2, "Oil_Service_Due_Days": climbDown(cluster.oilDays),
                        "Oil_Service_Due_Distance": (cluster.oilKm / 10).rounded(.down) * 10]
            default:
                return ["Cluster_Page": 0, "Odometer": powertrain.odometerKm.rounded(.down), "Fuel_Level": cluster.fuelPercent,
                        "Fuel_Range": cluster.rangeKm.rounded(.down), "Fuel_Reserve_Warning": f(cluster.reserveWarning)]
            }
        case "Alarm_Status":
            return ["Alarm_Armed": f(body.alarmArmed), "Alarm_Triggered": f(body.alarmSounding(at: now)),
                    "Alarm_Source": Double(body.alarmSource.rawValue), "Alarm_Mode": body.alarmArmed ? 1 : 0]
        case "Roof_Module_Buttons":
            return ["SOS_Button": f(roof.pressed(.sos, at: now)), "Breakdown_Button": f(roof.pressed(.breakdown, at: now)),
                    "Service_Button": f(roof.pressed(.service, at: now)), "Scheduling_Button": f(roof.pressed(.scheduling, at: now))]
        case "Battery_12V":
            return ["Battery_Voltage": battery.voltage, "Battery_SoC": battery.stateOfCharge.rounded(),
                    "Battery_Low_Warning": f(battery.low)]
        default:
            return [:]
        }
    }

    /// A cluster shows whole days left until a whole day has passed.
    private func climbDown(_ days: Double) -> Double { days.rounded(.up) }
}

/// Something the simulated car did, for its log, the scenario goldens and the control socket.
public struct SimEvent: Sendable, Equatable, CustomStringConvertible {
    public var atMs: Int64
    public var ecu: String
    public var text: String

    public var description: String {
        "\(Geodesy.fixed(Double(atMs) / 1_000, 3)) \(ecu): \(text)"
    }
}

/// The XOR of the bytes before the checksum's byte: the DBC's checksum rule ("XOR of bytes 0
/// to N"), shared by the unit's requests and the car's status frames.
public func xorChecksum(_ data: [UInt8], checksumByte: Int) -> UInt8 {
    data.prefix(max(0, checksumByte)).reduce(UInt8(0), ^)
}
