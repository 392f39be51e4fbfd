/// A request on the daemon's control socket (one JSON object per line), typed: `tcuctl` and
/// the menu build them, the daemon parses them here and nowhere else, so that every request
/// from outside is checked once, with an answer that says what was wrong.
public enum ControlRequest: Sendable, Equatable {
    case ping
    case status
    /// A test makes a main loop hang (only with `[control] fault-injection`).
    case fault(hang: String?)
    case eCall(ECallAction)
    case factoryReset
    case register(code: String)
    case createAccount(email: String, password: String, spin: String)
    case addCar(email: String, password: String, acceptedTerms: Bool)
    case renewLicence(package: String, years: Int)
    /// Sets the privacy mode, or (nil) only reads it.
    case privacy(PrivacyMode?)
    case transmit(message: String, signals: [String: Double])
    /// An Online infotainment request (the head unit's Navigation screen), answered by the
    /// backend in the head unit's language (fr or en).
    case navi(NaviRequest, language: VoiceLanguage)

    public enum ECallAction: String, Sendable, CaseIterable {
        case test, cancel, status
    }

    public static let commands = ["ping", "status", "transmit", "ecall", "privacy", "register", "renewLicence", "factoryReset", "navi"]

    /// The request a JSON object stands for, or what is wrong with it (the reply's `error`).
    public static func parse(_ request: JSON) -> Result<ControlRequest, ControlRequestError> {
        func fail(_ message: String) -> Result<ControlRequest, ControlRequestError> { .failure(ControlRequestError(message)) }
        guard let command = request["command"]?.stringValue else { return fail("request needs a \"command\" string") }
        switch command {
        case "ping": return .success(.ping)
        case "status": return .success(.status)
        case "fault": return .success(.fault(hang: request["hang"]?.stringValue))
        case "ecall":
            guard let action = request["action"]?.stringValue.flatMap(ECallAction.init(rawValue:)) else {
                return fail("ecall needs an \"action\": test, cancel or status")
            }
            return .success(.eCall(action))
        case "factoryReset":
            guard request["confirm"]?.boolValue == true else {
                return fail("a factory reset deletes the user's data: send \"confirm\": true")
            }
            return .success(.factoryReset)
        case "register":
            guard let code = request["code"]?.stringValue else { return fail("register needs a \"code\" string") }
            return .success(.register(code: code))
        case "assistant":
            // The in-car activation assistant: create the account; log in, add the car, register.
            let email = request["email"]?.stringValue ?? "", password = request["password"]?.stringValue ?? ""
            switch request["action"]?.stringValue {
            case "createAccount":
                guard let spin = request["spin"]?.stringValue else { return fail("createAccount needs \"email\", \"password\" and \"spin\"") }
                return .success(.createAccount(email: email, password: password, spin: spin))
            case "addCar":
                return .success(.addCar(email: email, password: password, acceptedTerms: request["acceptTerms"]?.boolValue == true))
            default:
                return fail("assistant needs an \"action\": createAccount or addCar")
            }
        case "renewLicence":
            guard let package = request["package"]?.stringValue, ["radio", "navi"].contains(package) else {
                return fail("renewLicence needs a \"package\": radio or navi")
            }
            guard let years = request["years"]?.integer(in: 1...2) else { return fail("renewLicence needs \"years\": 1 or 2") }
            return .success(.renewLicence(package: package, years: Int(years)))
        case "privacy":
            guard let word = request["mode"]?.stringValue else { return .success(.privacy(nil)) }
            guard let mode = PrivacyMode(word: word) else { return fail("privacy mode '\(word)': expected share, use or offline") }
            return .success(.privacy(mode))
        case "transmit":
            guard let message = request["message"]?.stringValue else { return fail("transmit needs a \"message\" name") }
            var signals: [String: Double] = [:]
            for (k, v) in request["signals"]?.objectValue ?? [] {
                guard let d = v.numberValue else { return fail("signal \(k) needs a number") }
                signals[k] = d
            }
            return .success(.transmit(message: message, signals: signals))
        case "navi":
            guard let r = request["request"] else { return fail("navi needs a \"request\" object") }
            let language = request["language"].map { $0.stringValue.flatMap(VoiceLanguage.init(rawValue:)) } ?? .en
            guard let language else { return fail("navi's \"language\" is fr or en") }
            do { return .success(.navi(try NaviRequest.parse(r), language: language)) } catch { return fail("navi: \(error.message)") }
        default:
            return fail("unknown command '\(command)'; known: \(commands.joined(separator: ", "))")
        }
    }

    /// The request as the control socket carries it.
    public var json: JSON {
        func command(_ name: String, _ rest: [(String, JSON)] = []) -> JSON { .object([("command", .string(name))] + rest) }
        switch self {
        case .ping: return command("ping")
        case .status: return command("status")
        case .fault(let hang): return command("fault", hang.map { [("hang", .string($0))] } ?? [])
        case .eCall(let a): return command("ecall", [("action", .string(a.rawValue))])
        case .factoryReset: return command("factoryReset", [("confirm", .bool(true))])
        case .register(let code): return command("register", [("code", .string(code))])
        case .createAccount(let email, let password, let spin):
            return command("assistant", [("action", .string("createAccount")), ("email", .string(email)), ("password", .string(password)),
                                         ("spin", .string(spin))])
        case .addCar(let email, let password, let accepted):
            return command("assistant", [("action", .string("addCar")), ("email", .string(email)), ("password", .string(password)),
                                         ("acceptTerms", .bool(accepted))])
        case .renewLicence(let package, let years):
            return command("renewLicence", [("package", .string(package)), ("years", .number(Double(years)))])
        case .privacy(let mode): return command("privacy", mode.map { [("mode", .string($0.rawValue))] } ?? [])
        case .transmit(let message, let signals):
            return command("transmit", [("message", .string(message)),
                                        ("signals", .object(signals.sorted { $0.key < $1.key }.map { ($0.key, .number($0.value)) }))])
        case .navi(let r, let language):
            return command("navi", [("request", r.json), ("language", .string(language.rawValue))])
        }
    }
}

/// What is wrong with a control request, as its reply says it.
public struct ControlRequestError: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}
