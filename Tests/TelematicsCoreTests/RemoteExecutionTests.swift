import Testing
@testable import TelematicsCore

@Suite("Remote execution: when the car acts, what it sends, when it is done")
struct RemoteExecutionTests {
    typealias Car = RemoteExecution.Car
    static let parked = Car(speedKmh: 0, ignitionOn: false, anyDoorOpen: false, batteryVolts: 12.6)

    /// Each action × each situation of the car: the refusal (nil: the car acts).
    static let situations: [(name: String, car: Car)] = [
        ("parked", parked),
        ("moving", Car(speedKmh: 30, ignitionOn: true, batteryVolts: 14.1)),
        ("creeping at 2 km/h", Car(speedKmh: 2, ignitionOn: false, batteryVolts: 12.6)),
        ("ignition on", Car(speedKmh: 0, ignitionOn: true, batteryVolts: 14.1)),
        ("a door open", Car(speedKmh: 0, ignitionOn: false, anyDoorOpen: true, batteryVolts: 12.6)),
        ("battery low", Car(speedKmh: 30, ignitionOn: true, batteryVolts: 11.7)),
        ("nothing known", Car()),
    ]
    static let table: [RemoteCommand.Action: [RemoteExecution.Refusal?]] = [
        //                  parked  moving           creeping  ignition     door       battery      nothing
        .lock:               [nil, .vehicleMoving, nil, .ignitionOn, .doorOpen, .batteryLow, nil],
        .unlock:             [nil, .vehicleMoving, nil, nil,         nil,       .batteryLow, nil],
        .honkAndFlash:       [nil, .vehicleMoving, nil, nil,         nil,       .batteryLow, nil],
        .flash:              [nil, .vehicleMoving, nil, nil,         nil,       .batteryLow, nil],
        .climatisationStart: [nil, .ignitionOn,    nil, .ignitionOn, nil,       .batteryLow, nil],
        .climatisationStop:  [nil, nil,            nil, nil,         nil,       .batteryLow, nil],
        .wakeUp:             [nil, nil,            nil, nil,         nil,       .batteryLow, nil],
    ]

    @Test("every action in every situation: refused with the real service's cause, or done", arguments: RemoteCommand.Action.allCases)
    func refusals(_ action: RemoteCommand.Action) throws {
        let row = try #require(Self.table[action])
        for (i, s) in Self.situations.enumerated() {
            #expect(RemoteExecution.refusal(action, car: s.car) == row[i], "\(action) when \(s.name)")
        }
    }

    func command(_ action: RemoteCommand.Action, temperature: Double? = nil) -> RemoteCommand {
        RemoteCommand(id: "c", vin: "V", action: action, counter: 1, issuedAtMs: 0, expiresAtMs: 1, user: "u", role: .primary,
                      targetTemperature: temperature)
    }

    @Test("the request frames: body requests with their code and checksum, climatisation with its target; a wake-up sends nothing")
    func requests() {
        let lock = RemoteExecution.request(command(.lock), counter: 17)
        #expect(lock == .init(message: "TCU_Body_Request", signals: ["Body_Request": 1, "Body_Request_Counter": 1, "Honk_Flash_Duration": 0],
                              xorChecksum: "Body_Request_Checksum"))
        #expect(RemoteExecution.request(command(.unlock), counter: 2)?.signals["Body_Request"] == 2)
        #expect(RemoteExecution.request(command(.honkAndFlash), counter: 2)?.signals == ["Body_Request": 3, "Body_Request_Counter": 2, "Honk_Flash_Duration": 10])
        #expect(RemoteExecution.request(command(.flash), counter: 2)?.signals["Body_Request"] == 4)
        let start = RemoteExecution.request(command(.climatisationStart, temperature: 21.5), counter: 3)
        #expect(start == .init(message: "TCU_Clima_Request", signals: ["Clima_Request": 1, "Clima_Request_Counter": 3, "Clima_Target_Temperature": 21.5,
                                                                        "Clima_Duration": 30], xorChecksum: nil))
        #expect(RemoteExecution.request(command(.climatisationStop), counter: 3)?.signals["Clima_Request"] == 2)
        #expect(RemoteExecution.request(command(.climatisationStart), counter: 3)?.signals["Clima_Target_Temperature"] == 16)
        #expect(RemoteExecution.request(command(.wakeUp), counter: 3) == nil)
    }

    /// Each action × the status the frames show: confirmed or not.
    static let confirmations: [(RemoteCommand.Action, Car, Bool)] = [
        (.lock, Car(centralLock: 1), true), (.lock, Car(centralLock: 2), true), (.lock, Car(centralLock: 0), false), (.lock, Car(), false),
        (.unlock, Car(centralLock: 0), true), (.unlock, Car(centralLock: 1), false), (.unlock, Car(), false),
        (.honkAndFlash, Car(hazardLights: true), true), (.flash, Car(hazardLights: false), false), (.flash, Car(), false),
        (.climatisationStart, Car(climatisationState: 1), true), (.climatisationStart, Car(climatisationState: 0), false),
        (.climatisationStop, Car(climatisationState: 0), true), (.climatisationStop, Car(climatisationState: 3), false),
        (.climatisationStop, Car(), false), (.wakeUp, Car(), true),
    ]

    @Test("confirmation comes from the status frames' values", arguments: confirmations)
    func confirmation(_ action: RemoteCommand.Action, _ car: Car, _ done: Bool) {
        #expect(RemoteExecution.isConfirmed(action, car: car) == done)
    }

    @Test("wake-ups: so many per UTC day, counted again from the next day")
    func wakeUpBudget() {
        var b = WakeUpBudget(perDay: 2)
        let day = Int64(20_000) * 86_400_000
        let taken = [day + 1, day + 2, day + 86_399_999, day + 86_400_000].map { b.take(nowMs: $0) }
        #expect(taken == [true, true, false, true])
        var none = WakeUpBudget(perDay: 0)
        let noneTaken = none.take(nowMs: day)
        #expect(!noneTaken)
    }
}
