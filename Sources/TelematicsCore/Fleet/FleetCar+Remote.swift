/// A fleet car's registration with the backend and its remote commands, as a unit's: the
/// pairing code's handshake through the core's RegistrationMachine (the backend's answer gives
/// the car its user, licence and command key), and each command checked by the core's
/// CommandVerifier and RemoteExecution, then carried out by the simulated car. The shell (the
/// fleet's loop) sends the request, checks the answer's signature (CarCrypto) and delivers the
/// commands the broker brings; everything decided is here, with a table test.
extension FleetCar {
    /// How long a simulated car takes to carry out a command (the request frame, the ECU's
    /// work, the status frames): drawn per command in this range (ms).
    public static let executionMs: ClosedRange<Int64> = 800...2_500

    /// Whether the car still has to register with its pairing code (it has none of the
    /// backend's answer yet, and no request on its way).
    public var needsRegistration: Bool { registration.status != .completed && pairing == nil }

    /// The owner typed the pairing code (on the car's first connection): the registration
    /// request to send on `vehicles/{vin}/registration/request`, or nil when none may go (a
    /// request is on its way, the code is malformed, no key to check the answer, privacy
    /// offline, the wrong-code lock).
    public mutating func registrationRequest(code: String, canCheckAnswers: Bool, nowMs: Int64) -> (requestId: String, body: JSON)? {
        var m = RegistrationMachine(registration)
        let requestId = id(nowMs)
        let conditions = RegistrationMachine.Conditions(canCheckAnswers: canCheckAnswers, connects: spec.privacy.connects)
        guard case .sendRequest = m.codeEntered(code, requestId: requestId, conditions: conditions, nowMs: nowMs) else { return nil }
        pairing = m
        registration = m.registration
        return (requestId, .object([
            ("requestId", .string(requestId)), ("vin", .string(spec.vin)), ("code", .string(code)), ("model", .string(spec.model)),
            ("buildDate", .string(spec.buildDate)), ("country", .string(spec.country)), ("privacy", .string(spec.privacy.rawValue)),
            ("navigation", .bool(false)),
        ]))
    }

    /// The backend's answer on `vehicles/{vin}/registration/response`; `authentic`: its
    /// signature is the backend's (the shell checked it). An accepted answer registers the car
    /// (kept: `.registration`); a refusal is kept (a wrong code counts) and told.
    public mutating func registrationAnswered(_ answer: JSON, authentic: Bool, nowMs: Int64, into out: inout [Output]) {
        guard var m = pairing, let requestId = answer["requestId"]?.stringValue else { return }
        let action = authentic ? m.answered(requestId: requestId, RegistrationAnswer(json: answer), nowMs: nowMs)
            : m.answerNotAuthentic(requestId: requestId)
        switch action {
        case .storeAndGrant(let r, _):
            registration = r
            pairing = nil
            out.append(.registration(r))
        case .storeAndRefuse(let r, let refusal):
            registration = r
            pairing = nil
            out.append(.registration(r))
            out.append(.registrationRefused(refusal))
        case .refuse(let refusal):
            registration = m.registration
            pairing = nil
            out.append(.registrationRefused(refusal))
        case .doNothing, .sendRequest:
            // Another request's answer (a late one): the one on its way still waits.
            break
        }
    }

    /// The connection went before the registration's answer came: the code is typed again on
    /// the next connection.
    public mutating func registrationUnanswered() {
        pairing = nil
    }

    /// A command from `vehicles/{vin}/commands`, as the unit's RemoteCommandService takes it:
    /// refused with a `failed` result and its cause (nothing runs), or its counter used (kept
    /// before it runs: `.registration`), `inProgress`, and carried out by the simulated car,
    /// whose result comes when `advance` reaches its end. `mac`: HMAC-SHA256 (CarCrypto).
    public mutating func command(_ payload: [UInt8], nowMs: Int64, mac: (_ key: [UInt8], _ message: [UInt8]) -> [UInt8],
                                 into out: inout [Output]) {
        guard let json = try? JSON.parse(String(decoding: payload, as: UTF8.self)) else { return }
        let command: RemoteCommand
        switch RemoteCommand.parse(json) {
        case .failure(let m):
            if let id = json["id"]?.stringValue {
                result(id, json["action"]?.stringValue ?? "?", "failed", cause: "malformed: \(m.field)", at: nowMs, into: &out)
            }
            return
        case .success(let c):
            command = c
        }
        if let rejection = CommandVerifier.verify(command, vin: spec.vin, key: registration.commandKey, lastCounter: registration.lastCommandCounter,
                                                  nowMs: nowMs, registration: registration, privacy: spec.privacy, mac: mac) {
            // A command for another car is not this car's to answer.
            if rejection != .wrongVehicle { result(command.id, command.action.rawValue, "failed", cause: rejection.cause, at: nowMs, into: &out) }
            return
        }
        var m = RegistrationMachine(registration)
        registration = m.commandCounterUsed(command.counter)
        out.append(.registration(registration))
        if let refusal = RemoteExecution.refusal(command.action, car: executionView) {
            result(command.id, command.action.rawValue, "failed", cause: refusal.rawValue, at: nowMs, into: &out)
            return
        }
        result(command.id, command.action.rawValue, "inProgress", at: nowMs, into: &out)
        let span = UInt64(Self.executionMs.upperBound - Self.executionMs.lowerBound + 1)
        let done = nowMs + Self.executionMs.lowerBound + Int64(draw() % span)
        executing.append((command, done))
        executing.sort { $0.doneAtMs < $1.doneAtMs }
    }

    /// What the remote decisions see of the simulated car: its speed, ignition (on while it
    /// drives), doors shut, a healthy 12 V battery, the lock and the climatisation.
    public var executionView: RemoteExecution.Car {
        RemoteExecution.Car(speedKmh: speedKmh, ignitionOn: isDriving, anyDoorOpen: false, batteryVolts: 12.6,
                            centralLock: locked ? 1 : 0, hazardLights: false, climatisationState: climatisationOn ? 1 : 0)
    }

    /// A command's end: the simulated car did it (its state changes and what a unit sends
    /// about them), or, when it started driving meanwhile, could not.
    mutating func finish(_ c: RemoteCommand, at now: Int64, into out: inout [Output]) {
        if let refusal = RemoteExecution.refusal(c.action, car: executionView) {
            result(c.id, c.action.rawValue, "failed", cause: refusal.rawValue, at: now, into: &out)
            return
        }
        switch c.action {
        case .lock, .unlock:
            locked = c.action == .lock
            event("lockStateChanged", "locks.central", .string(locked ? "locked" : "unlocked"), at: now, into: &out)
            doors(locked: locked, at: now, into: &out)
        case .climatisationStart, .climatisationStop:
            climatisationOn = c.action == .climatisationStart
            // The unit's `climate` block (its DBC's labels): heating to the target, 30 minutes.
            state("climate", .object([("climatisation", .string(climatisationOn ? "Heating" : "Off")),
                                      ("targetTemperature", c.targetTemperature.map { .number($0) } ?? .null),
                                      ("remainingMinutes", .number(climatisationOn ? 30 : 0))]), at: now, into: &out)
        case .honkAndFlash, .flash:
            break
        case .wakeUp:
            guard wakeUps.take(nowMs: now) else {
                result(c.id, c.action.rawValue, "failed", cause: "wakeUpBudgetExhausted", at: now, into: &out)
                return
            }
            cluster(at: now, into: &out)
            doors(locked: locked, at: now, into: &out)
        }
        result(c.id, c.action.rawValue, "successful", at: now, into: &out)
    }

    /// A command's result on the car's `results` stream, as the unit sends it.
    mutating func result(_ commandId: String, _ action: String, _ status: String, cause: String? = nil, at now: Int64,
                         into out: inout [Output]) {
        emit(RemoteCommand.resultMessage(commandId: commandId, action: action, status: status, cause: cause, vin: spec.vin,
                                         id: id(now), nowMs: now), into: &out)
    }
}
