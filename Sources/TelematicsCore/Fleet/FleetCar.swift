/// One car of a fleet, as a value: its day (parked, a trip now and then: unlock, door, ignition,
/// drive, park, lock), the messages a real unit sends for it (the same streams, types and
/// blocks as `telematicsd`: events, state blocks, the parking position, service requests, the
/// eCall report), and its registration and privacy (what may leave the car: BackendConsent).
/// No IO, no clock: the fleet's loop calls `advance` with the time and the car's motion (from
/// a SUMO trajectory, or the car's own drive when there is none), and sends what comes back.
/// The car's eCall machine is not here: it runs on the fleet's eCall line, apart from the
/// broker connections, as a unit's does (FleetECallLine). Its registration with the backend
/// (the pairing code's handshake) and the remote commands it carries out are in
/// FleetCar+Remote.swift.
public struct FleetCar: Sendable {
    public enum Phase: Sendable, Equatable {
        case parked
        /// On a trip until this instant (fleet ms).
        case driving(until: Int64)
    }

    /// Where the car is and how fast it goes, from outside (a trajectory).
    public struct Motion: Sendable, Equatable {
        public var latitude: Double
        public var longitude: Double
        public var speedKmh: Double
        public init(latitude: Double, longitude: Double, speedKmh: Double) {
            self.latitude = latitude
            self.longitude = longitude
            self.speedKmh = speedKmh
        }
    }

    /// What the shell does for the car after `advance` or an event.
    public enum Output: Sendable, Equatable {
        /// Into the car's outbox stream (already allowed by its registration and privacy).
        case message(OutboxMessage)
        /// Keep the car's registration (a registration's answer, a command's counter used):
        /// durably, in the same commit as the messages before it.
        case registration(Registration)
        /// The owner asks for a remote command from the app (the remote-command scenario).
        case appCommand(RemoteCommand.Action, targetTemperature: Double?)
        /// The registration was refused (the backend's answer), for the fleet's log.
        case registrationRefused(RegistrationReply.Refusal)
    }

    public let spec: FleetPlan.Car
    public private(set) var phase: Phase = .parked
    public internal(set) var registration: Registration
    /// The central lock (a parked car is locked) and the climatisation, as remote commands see them.
    public internal(set) var locked = true
    public internal(set) var climatisationOn = false
    /// The registration's request on its way (the pairing code's handshake).
    var pairing: RegistrationMachine?
    /// Remote commands being carried out, each done at its instant (fleet ms).
    var executing: [(command: RemoteCommand, doneAtMs: Int64)] = []
    var wakeUps = WakeUpBudget(perDay: 10)
    /// Kilometres, and the fuel (or charge) level in percent.
    public private(set) var odometerKm: Double
    public private(set) var fuelPercent: Double
    public private(set) var position: (latitude: Double, longitude: Double)
    public private(set) var speedKmh = 0.0
    private var nextTripAtMs: Int64
    private var nextDrivingReportAtMs: Int64 = .max
    private var nextHeartbeatAtMs: Int64
    private var lastAdvanceMs: Int64
    private var pendingScenarios: [(FleetPlan.Scenario, atMs: Int64)]
    private var rng: UInt64
    private let tripMs: Int64
    private let plan: Behaviour

    /// The fleet-wide behaviour the cars share.
    public struct Behaviour: Sendable {
        public var drivingIntervalMs: Int64
        public var heartbeatMs: Int64
        public var tripsPerHour: Int
        public var tripMinutes: Int = 15
        /// The trips come from outside (a SUMO trajectory): the car drives while `advance` is
        /// given a motion, and parks when it is given none.
        public var tripsFromTrajectory = false
        public init(drivingIntervalMs: Int64, heartbeatMs: Int64, tripsPerHour: Int) {
            self.drivingIntervalMs = drivingIntervalMs
            self.heartbeatMs = heartbeatMs
            self.tripsPerHour = tripsPerHour
        }
        public init(_ p: FleetPlan) {
            self.init(drivingIntervalMs: Int64(p.drivingIntervalMs), heartbeatMs: Int64(p.heartbeatMs), tripsPerHour: p.tripsPerHour)
        }
    }

    /// The car at `startMs` (fleet time, UTC ms): parked, its first trip drawn in the next
    /// hour, its scenarios at their drawn seconds after the start. `registration`: the one the
    /// car kept (or an empty one for a car that registers with a pairing code); nil: the one its
    /// licence state stands for.
    public init(spec: FleetPlan.Car, behaviour: Behaviour, startMs: Int64, home: (latitude: Double, longitude: Double),
                registration kept: Registration? = nil) {
        self.spec = spec
        plan = behaviour
        // Its own stream of draws: the VIN hashed (FNV-1a) and mixed, so that no two cars'
        // SplitMix64 sequences run into each other (their message ids are unique).
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in spec.vin.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        h = (h ^ (h >> 33)) &* 0xFF51_AFD7_ED55_8CCD
        rng = h ^ (h >> 33)
        registration = kept ?? Self.registration(for: spec.licence, nowMs: startMs)
        odometerKm = 0
        fuelPercent = 0
        position = home
        tripMs = Int64(behaviour.tripMinutes) * 60_000
        lastAdvanceMs = startMs
        pendingScenarios = spec.scenarios.map { ($0.0, startMs + Int64($0.atSecond) * 1_000) }.sorted { $0.atMs < $1.atMs }
        nextTripAtMs = .max
        nextHeartbeatAtMs = startMs
        odometerKm = Double(1_000 + draw() % 80_000)
        fuelPercent = Double(20 + draw() % 80)
        if behaviour.tripsPerHour > 0, !behaviour.tripsFromTrajectory {
            // A car already on the road at the start, as many as trips fill the hour; the others
            // leave at a drawn time within the mean gap between trips.
            let gapMs = 3_600_000 / Int64(behaviour.tripsPerHour)
            let onTheRoad = min(tripMs, gapMs) * 1_000 / gapMs
            if Int64(draw() % 1_000) < onTheRoad {
                nextTripAtMs = startMs
            } else {
                nextTripAtMs = startMs + Int64(draw() % UInt64(max(1, gapMs)))
            }
        }
    }

    /// The registration its licence state stands for: registered by a primary user with every
    /// service, the licence running (or run out a month ago), or never registered.
    public static func registration(for licence: FleetPlan.Licence, nowMs: Int64) -> Registration {
        var r = Registration()
        guard licence != .unregistered else { return r }
        r.status = .completed
        r.user = "fleet"
        r.role = .primary
        r.registeredAtMs = nowMs - 86_400_000
        r.services = Capabilities.all
        r.licenceExpiresAtMs = licence == .active ? Capabilities.farFutureMs : nowMs - 30 * 86_400_000
        return r
    }

    /// The next instant `advance` has work (fleet ms).
    public var nextDueMs: Int64 {
        var due = min(nextTripAtMs, nextHeartbeatAtMs, nextDrivingReportAtMs)
        if case .driving(let until) = phase { due = min(due, until) }
        if let s = pendingScenarios.first { due = min(due, s.atMs) }
        if let c = executing.first { due = min(due, c.doneAtMs) }
        return due
    }

    /// Whether the car is on a trip.
    public var isDriving: Bool { if case .driving = phase { true } else { false } }

    /// Moves the car to `nowMs`: trips begin and end, reports fall due, scenarios happen.
    /// `motion`: where a trajectory puts the car now (nil: the car's own drive; with trips from
    /// a trajectory, nil is parked).
    public mutating func advance(to nowMs: Int64, motion: Motion? = nil, into out: inout [Output]) {
        let elapsed = max(0, nowMs - lastAdvanceMs)
        lastAdvanceMs = nowMs
        if plan.tripsFromTrajectory {
            if motion != nil, phase == .parked { beginTrip(at: nowMs, into: &out) }
            if motion == nil, isDriving { endTrip(at: nowMs, into: &out) }
        }
        if case .driving = phase { move(elapsedMs: elapsed, motion: motion) }
        if case .driving(let until) = phase, nowMs >= until { endTrip(at: nowMs, into: &out) }
        if phase == .parked, nowMs >= nextTripAtMs { beginTrip(at: nowMs, into: &out) }
        if case .driving = phase, nowMs >= nextDrivingReportAtMs {
            nextDrivingReportAtMs = nowMs + plan.drivingIntervalMs
            state("driving", .object([("speed", .number(rounded(speedKmh))), ("direction", .string(speedKmh > 0 ? "forward" : "standstill"))]),
                  at: nowMs, into: &out)
        }
        if nowMs >= nextHeartbeatAtMs {
            nextHeartbeatAtMs = nowMs + plan.heartbeatMs
            cluster(at: nowMs, into: &out)
        }
        while let s = pendingScenarios.first, s.atMs <= nowMs {
            pendingScenarios.removeFirst()
            happen(s.0, at: nowMs, into: &out)
        }
        while let c = executing.first, c.doneAtMs <= nowMs {
            executing.removeFirst()
            finish(c.command, at: nowMs, into: &out)
        }
    }

    /// A call of the car's eCall ended: its report goes to the backend for a registered car
    /// (the call itself asked for nothing).
    public mutating func eCallEnded(_ report: ECallReport, nowMs: Int64, into out: inout [Output]) {
        emit(report.outboxMessage(vin: spec.vin, id: id(nowMs), nowMs: nowMs), into: &out)
    }

    // MARK: - The day

    private mutating func beginTrip(at now: Int64, into out: inout [Output]) {
        let length = tripMs / 2 + Int64(draw() % UInt64(max(1, tripMs)))
        phase = .driving(until: plan.tripsFromTrajectory ? .max : now + length)
        locked = false
        event("lockStateChanged", "locks.central", .string("unlocked"), at: now, into: &out)
        event("opened", "doors.frontLeft.open", .bool(true), at: now, into: &out)
        event("closed", "doors.frontLeft.open", .bool(false), at: now, into: &out)
        doors(locked: false, at: now, into: &out)
        event("ignitionOn", "ignition.on", .bool(true), at: now, into: &out)
        speedKmh = 0
        // The first report within the interval, at the car's own moment: cars that leave
        // together do not report in step.
        nextDrivingReportAtMs = now + Int64(draw() % UInt64(max(1, plan.drivingIntervalMs)))
        nextTripAtMs = .max
    }

    private mutating func endTrip(at now: Int64, into out: inout [Output]) {
        phase = .parked
        speedKmh = 0
        nextDrivingReportAtMs = .max
        state("driving", .object([("speed", .number(0)), ("direction", .string("standstill"))]), at: now, into: &out)
        event("ignitionOff", "ignition.on", .bool(false), at: now, into: &out)
        // The parking position: only "share my position" says where; "use my position" says
        // there is one to keep to itself (as the unit's GNSS service does).
        let shared = spec.privacy == .shareMyPosition
        var m = stateMessage(block: "parking", values: shared ? .object([
            ("latitude", .number(position.latitude)), ("longitude", .number(position.longitude)),
            ("parkedAt", .number(Double(now))),
        ]) : .null, capturedAtMs: now, vin: spec.vin, id: id(now))
        m.carriesPosition = shared
        emit(m, into: &out, service: "parkingPosition")
        cluster(at: now, into: &out)
        locked = true
        event("lockStateChanged", "locks.central", .string("locked"), at: now, into: &out)
        doors(locked: true, at: now, into: &out)
        if plan.tripsPerHour > 0, !plan.tripsFromTrajectory {
            let gap = 3_600_000 / Int64(plan.tripsPerHour)
            nextTripAtMs = now + gap / 2 + Int64(draw() % UInt64(max(1, gap)))
        }
    }

    private mutating func move(elapsedMs: Int64, motion: Motion?) {
        if let motion {
            position = (motion.latitude, motion.longitude)
            speedKmh = max(0, min(300, motion.speedKmh.isFinite ? motion.speedKmh : 0))
        } else {
            // Its own drive: town speeds, heading with the car's number.
            speedKmh = Double(30 + draw() % 40)
            let metres = speedKmh / 3.6 * Double(elapsedMs) / 1_000
            let heading = Double(spec.index % 360) * .pi / 180
            position.latitude += metres * cosine(heading) / 111_320
            position.longitude += metres * Geodesy.sine(heading) / 60_000
        }
        let km = speedKmh * Double(elapsedMs) / 3_600_000
        odometerKm += km
        fuelPercent = max(5, fuelPercent - km * 0.08)
    }

    private mutating func happen(_ s: FleetPlan.Scenario, at now: Int64, into out: inout [Output]) {
        switch s {
        case .crash:
            // The airbag line's (FleetECallLine): it fires at this time on its own thread.
            break
        case .theft:
            let id = id(now)
            emit(OutboxMessage(id: id, stream: "alarms", priority: .theftAlarm, capturedAtMs: now, payload: JSON.object([
                ("id", .string(id)), ("vin", .string(spec.vin)), ("type", .string("alarmTriggered")),
                ("quantity", .string("alarm.triggered")), ("value", .bool(true)), ("capturedAt", .number(Double(now))),
            ]).text), into: &out, service: "alerts")
        case .button:
            // The breakdown call: a safety service, sent while the car is registered (it may
            // not leave the car when privacy is offline: the shell keeps offline cars off the link).
            guard registration.status == .completed else { return }
            let shared = spec.privacy == .shareMyPosition
            let id = id(now)
            var m = OutboxMessage(id: id, stream: "services", priority: .commandResult, capturedAtMs: now, payload: JSON.object([
                ("id", .string(id)), ("vin", .string(spec.vin)), ("type", .string("serviceRequest")), ("service", .string("breakdown")),
                ("position", shared ? .object([("latitude", .number(position.latitude)), ("longitude", .number(position.longitude)),
                                                ("trusted", .bool(true))]) : .null),
                ("odometer", .number(rounded(odometerKm))), ("capturedAt", .number(Double(now))),
            ]).text)
            m.carriesPosition = shared
            emit(m, into: &out)
        case .remoteCommand:
            // The owner, in the app: lock it (did I?), find it (honk and flash), or warm it up.
            // A car registered with the backend, by its primary user: only such a car has the
            // key commands are signed with (one registered by its plan is in no garage: it has
            // no owner to ask). A car whose licence runs and whose registration is not done yet
            // (its pairing code's handshake on its way) is asked a second later.
            if registration.status != .completed, spec.licence == .active {
                pendingScenarios.append((s, now + 1_000))
                pendingScenarios.sort { $0.atMs < $1.atMs }
                return
            }
            guard registration.status == .completed, registration.role == .primary, registration.commandKey != nil else { return }
            let actions: [RemoteCommand.Action] = [.lock, .honkAndFlash, .climatisationStart]
            let a = actions[Int(draw() % UInt64(actions.count))]
            out.append(.appCommand(a, targetTemperature: a == .climatisationStart ? 21.5 : nil))
        }
    }

    // MARK: - Messages

    /// A new message id, from the car's own draws.
    mutating func id(_ now: Int64) -> String { messageID(unixMs: now, using: &self) }

    mutating func event(_ type: String, _ quantity: String, _ value: JSON, at now: Int64, into out: inout [Output]) {
        let id = id(now)
        emit(OutboxMessage(id: id, stream: "events", priority: .event, capturedAtMs: now, payload: JSON.object([
            ("id", .string(id)), ("vin", .string(spec.vin)), ("type", .string(type)),
            ("quantity", .string(quantity)), ("value", value), ("capturedAt", .number(Double(now))),
        ]).text), into: &out)
    }

    mutating func state(_ block: String, _ values: JSON, at now: Int64, into out: inout [Output]) {
        emit(stateMessage(block: block, values: values, capturedAtMs: now, vin: spec.vin, id: id(now)), into: &out)
    }

    mutating func doors(locked: Bool, at now: Int64, into out: inout [Output]) {
        let door = JSON.object([("open", .bool(false)), ("locked", .bool(locked))])
        state("doors", .object(["frontLeft", "frontRight", "rearLeft", "rearRight", "hood", "trunk"].map { ($0, door) }), at: now, into: &out)
    }

    mutating func cluster(at now: Int64, into out: inout [Output]) {
        state("cluster", .object([("odometer", .number(rounded(odometerKm))), ("fuelLevel", .number(rounded(fuelPercent))),
                                  ("range", .number(rounded(fuelPercent * 6)))]), at: now, into: &out)
    }

    /// Hands a message on when the car's registration lets it out (and, for `service`, its
    /// licence covers it); "use my position" keeps positions in.
    func emit(_ m: OutboxMessage, into out: inout [Output], service: String? = nil) {
        guard BackendConsent.verdict(for: m, registration: registration, nowMs: m.capturedAtMs) == .allowed else { return }
        if let service, !registration.allows(service, nowMs: m.capturedAtMs) { return }
        guard spec.privacy.allows(m) else { return }
        out.append(.message(m))
    }

    private func rounded(_ v: Double) -> Double { (v * 10).rounded() / 10 }
}

extension FleetCar: RandomNumberGenerator {
    /// The car's own draws (SplitMix64): its trips and message ids repeat for a seed.
    public mutating func next() -> UInt64 { draw() }

    mutating func draw() -> UInt64 {
        rng &+= 0x9E37_79B9_7F4A_7C15
        var z = rng
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
