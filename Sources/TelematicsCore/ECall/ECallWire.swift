/// The local protocol between the unit's eCall modem side and a network/PSAP simulator
/// (`tcu-psap`), modelling a circuit-switched eCall: call setup outcomes, the in-band
/// signalling of EN 16062 (INITIATION, SEND MSD, MSD, LL-ACK, AL-ACK), clear-down, an abnormal
/// drop, and the PSAP's callback. One JSON object per line each way over a TCP connection;
/// docs/ecall.md has the reference. An NG-eCall (SIP) transport would carry the same events.
public enum ECallWire: Sendable, Equatable {
    // Unit → network.
    /// Sent on connect: the unit is attached to the network.
    case hello(vin: String)
    case dial(call: Int, number: String)
    /// Push mode: the unit asks the PSAP to request the MSD.
    case initiation(call: Int)
    case msd(call: Int, messageIdentifier: Int, bytes: [UInt8])
    case hangUp(call: Int)
    /// The unit answers the PSAP's callback.
    case answer(call: Int)
    case deregister

    // Network → unit.
    case setup(call: Int, outcome: SetupOutcome)
    case sendMSD(call: Int)
    case llAck(call: Int)
    case alAck(call: Int, clearDown: Bool)
    /// The PSAP or the network cleared the call down.
    case cleared(call: Int)
    /// The connection broke (no clear-down).
    case dropped(call: Int)
    /// The PSAP calls the unit back.
    case incoming(call: Int)

    public enum SetupOutcome: String, Sendable, Equatable, CaseIterable {
        case answered, busy, noAnswer, noNetwork
    }

    public var json: JSON {
        func o(_ type: String, _ rest: [(String, JSON)] = []) -> JSON { .object([("type", .string(type))] + rest) }
        func c(_ n: Int) -> (String, JSON) { ("call", .number(Double(n))) }
        switch self {
        case .hello(let vin): return o("hello", [("vin", .string(vin))])
        case .dial(let n, let number): return o("dial", [c(n), ("number", .string(number))])
        case .initiation(let n): return o("initiation", [c(n)])
        case .msd(let n, let id, let bytes): return o("msd", [c(n), ("messageIdentifier", .number(Double(id))), ("msd", .string(hexBytes(bytes)))])
        case .hangUp(let n): return o("hangup", [c(n)])
        case .answer(let n): return o("answer", [c(n)])
        case .deregister: return o("deregister")
        case .setup(let n, let outcome): return o("setup", [c(n), ("outcome", .string(outcome.rawValue))])
        case .sendMSD(let n): return o("sendMSD", [c(n)])
        case .llAck(let n): return o("llAck", [c(n)])
        case .alAck(let n, let clearDown): return o("alAck", [c(n), ("clearDown", .bool(clearDown))])
        case .cleared(let n): return o("cleared", [c(n)])
        case .dropped(let n): return o("dropped", [c(n)])
        case .incoming(let n): return o("incoming", [c(n)])
        }
    }

    /// Parses one line; a bad line is an error that says what was wrong.
    public static func parse(_ line: String) throws(ParseError) -> ECallWire {
        let j = try JSON.parse(line)
        guard let type = j["type"]?.stringValue else { throw ParseError(line: 1, "message needs a \"type\"") }
        func call() throws(ParseError) -> Int {
            guard let c = j["call"]?.integer(in: 0...999_999_999) else {
                throw ParseError(line: 1, "\(type) needs a \"call\" number (0 to 999999999)")
            }
            return Int(c)
        }
        switch type {
        case "hello":
            guard let vin = j["vin"]?.stringValue else { throw ParseError(line: 1, "hello needs a \"vin\"") }
            return .hello(vin: vin)
        case "dial":
            guard let number = j["number"]?.stringValue else { throw ParseError(line: 1, "dial needs a \"number\"") }
            return .dial(call: try call(), number: number)
        case "initiation": return .initiation(call: try call())
        case "msd":
            // EN 15722: the message identifier is 0 to 255.
            guard let id = j["messageIdentifier"]?.integer(in: 0...255), let hexText = j["msd"]?.stringValue else {
                throw ParseError(line: 1, "msd needs \"messageIdentifier\" (0 to 255) and \"msd\" (hex)")
            }
            guard let bytes = bytes(fromHex: hexText) else { throw ParseError(line: 1, "msd is not hex") }
            return .msd(call: try call(), messageIdentifier: Int(id), bytes: bytes)
        case "hangup": return .hangUp(call: try call())
        case "answer": return .answer(call: try call())
        case "deregister": return .deregister
        case "setup":
            guard let o = j["outcome"]?.stringValue, let outcome = SetupOutcome(rawValue: o) else {
                throw ParseError(line: 1, "setup needs an \"outcome\": answered, busy, noAnswer or noNetwork")
            }
            return .setup(call: try call(), outcome: outcome)
        case "sendMSD": return .sendMSD(call: try call())
        case "llAck": return .llAck(call: try call())
        case "alAck": return .alAck(call: try call(), clearDown: j["clearDown"]?.boolValue ?? false)
        case "cleared": return .cleared(call: try call())
        case "dropped": return .dropped(call: try call())
        case "incoming": return .incoming(call: try call())
        default: throw ParseError(line: 1, "unknown message type '\(type)'")
        }
    }
}
