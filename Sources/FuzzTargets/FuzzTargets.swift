#if canImport(Glibc)
import Glibc
#endif
import UnitConfiguration
import Backend
import Fleet
import OnlineServices
import TelematicsCore
import WebPortal

/// Every parser that sees outside input, as a function of arbitrary bytes. `tcu-fuzz` (built
/// by `make fuzz` with libFuzzer) calls one per run; the unit tests run every committed input
/// (`Fuzz/corpus/TARGET/`, the crashes found among them) through the same functions. A target
/// passes when nothing traps: bad input must come back as an error that says what was wrong.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// DBC files (`[can] dbc`, `tcuctl can decode --dbc`).
    case dbc
    /// candump log lines (`[can] source = FILE`, `tcuctl can decode`, the logbus).
    case candump
    /// EN 15722 MSDs from the PSAP side and the `tcuctl msd decode` command.
    case msd
    /// JSON: every MQTT, HTTP and control-socket message starts here.
    case json
    /// The daemon's configuration file.
    case config
    /// The vehicle profile.
    case profile
    /// A signed remote command as the car receives it (parse, then every check).
    case command
    /// A control-socket request line.
    case control
    /// A line of the eCall link (both ends).
    case ecallWire = "ecall-wire"
    /// A request to the backend's HTTP server (method, path, query, headers, body: what the
    /// server hands `AppAPI.handle`, or `WebPortal.handle` outside /v1), answered without a 5xx.
    case http
    /// A form body as a browser posts it to the web portal.
    case form
    /// A message a car publishes, as the backend handles it (first line: the topic).
    case mqtt
    /// The simulated car's scenario files and live commands.
    case scenario
    /// What NG-eCall reads from the PSAP's SIP messages (first line: the Content-Type, or a
    /// Call-Info value; the rest: the body): multipart bodies, EmergencyCallData.Control blocks.
    case sip
    /// The Online infotainment services' inputs: a request as the car sends it (JSON), a
    /// sentence for the voice control, a DATEX II traffic publication (the same bytes each).
    case navi
    /// A fleet file (`tcu-fleet`): what it accepts draws valid, distinct VINs in disjoint shards.
    case fleet
    /// SUMO's floating car data as the fleet reads it (`tcu-fleet run --trajectories`).
    case fcd

    /// Runs one input through the target.
    public func run(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        switch self {
        case .dbc:
            if let db = try? DBCParser.parse(text) {
                // A database that loads must decode any payload of its messages.
                for m in db.messages.prefix(8) { _ = SignalCodec.decode(m, data: Array(bytes.prefix(m.length))) }
            }
        case .candump:
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                if let frame = try? CandumpFormat.parseLogLine(line, line: i + 1) {
                    _ = CandumpFormat.formatFrame(frame)
                }
            }
        case .msd:
            if let msd = try? MSD.decode(bytes) { _ = try? msd.encode() }
        case .json:
            if let j = try? JSON.parse(text) { _ = try? JSON.parse(j.text) }
        case .config:
            _ = try? DaemonConfiguration.parse(text, source: "fuzz.conf")
        case .profile:
            _ = try? VehicleProfile.parse(text, source: "fuzz.profile")
        case .command:
            // As a fleet car takes them: a command (then carried out), and the same bytes as a
            // registration's answer while its request waits.
            var car = FuzzFleetCar.registered
            var out: [FleetCar.Output] = []
            car.command(bytes, nowMs: 1_700_000_000_000, mac: { key, message in Array((key + message).prefix(32)) }, into: &out)
            car.advance(to: 1_700_000_003_000, into: &out)
            var waiting = FuzzFleetCar.unregistered
            if waiting.registrationRequest(code: "12345678", canCheckAnswers: true, nowMs: 1_700_000_000_000) != nil,
               let answer = try? JSON.parse(text) {
                waiting.registrationAnswered(answer, authentic: true, nowMs: 1_700_000_000_000, into: &out)
            }
            guard let j = try? JSON.parse(text), case .success(let c) = RemoteCommand.parse(j) else { return }
            var registration = Registration()
            registration.status = .completed
            _ = CommandVerifier.verify(c, vin: "VSSZZZKLZNR012345", key: Array(repeating: 7, count: 32), lastCounter: 4,
                                       nowMs: 1_700_000_000_000, registration: registration, privacy: .shareMyPosition,
                                       mac: { key, message in Array((key + message).prefix(32)) })
        case .control:
            if let j = try? JSON.parse(text) { _ = ControlRequest.parse(j) }
        case .ecallWire:
            for line in text.split(separator: "\n") { _ = try? ECallWire.parse(String(line)) }
        case .http:
            var request = FuzzBackend.request(text)
            if request.headers["authorization"] == "Bearer FUZZ" { request.headers["authorization"] = "Bearer " + FuzzBackend.shared.session }
            // "Cookie: tcu_session=FUZZ" is Ana's session on the portal, and "csrf=FUZZ" in a form its token.
            if request.headers["cookie"] == "tcu_session=FUZZ" {
                request.headers["cookie"] = "tcu_session=" + FuzzBackend.shared.session
                let token = Array(("csrf=" + WebPortal.csrf(FuzzBackend.shared.session)).utf8)
                if let at = request.body.indices.first(where: { request.body[$0...].starts(with: Array("csrf=FUZZ".utf8)) }) {
                    request.body.replaceSubrange(at..<(at + 9), with: token)
                }
            }
            if WebPortal.serves(path: request.path) {
                let page = FuzzBackend.shared.web.handle(request)
                precondition(page.status < 500, "the web portal answered \(page.status) to \(text)")
                return
            }
            let answer = FuzzBackend.shared.api.handle(request)
            precondition(answer.status < 500 || answer.status == 502, "the app API answered \(answer.status) to \(text)")
        case .form:
            if let form = try? FormBody(parsing: bytes) {
                // What parses, encodes and parses back the same.
                precondition((try? FormBody(parsing: Array(form.encoded.utf8))) == form, "the form \(text) does not read back")
            }
        case .mqtt:
            let parts = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false)
            let topic = String(parts[0]), payload = parts.count > 1 ? Array(parts[1].utf8) : []
            _ = try? FuzzBackend.shared.messages.handle(topic: topic, payload: payload, nowMs: 1_700_000_000_000)
        case .sip:
            let split = bytes.firstIndex(of: 0x0A) ?? bytes.endIndex
            let type = String(decoding: bytes[..<split], as: UTF8.self)
            let body = split < bytes.endIndex ? Array(bytes[(split + 1)...]) : []
            _ = NGECall.msdReferences(callInfo: [type])
            _ = try? EmergencyCallControl.parse(body)
            guard let parts = try? MIMEMultipart.parse(body, contentType: type) else { return }
            for p in parts where p.mediaType == NGECall.controlContentType.lowercased() { _ = try? EmergencyCallControl.parse(p.body) }
            // What was read builds again and reads back the same parts.
            let b = MIMEMultipart.boundary(for: parts, base: "fuzz")
            let again = try? MIMEMultipart.parse(MIMEMultipart.build(parts, boundary: b), contentType: MIMEMultipart.contentType(boundary: b))
            precondition(!type.lowercased().hasPrefix("multipart/") || again == parts, "the parts of \(text) do not read back")
        case .navi:
            if let j = try? JSON.parse(text), let r = try? NaviRequest.parse(j) {
                precondition((try? NaviRequest.parse(r.json)) == r, "the request \(text) does not read back")
            }
            if let (intent, _) = VoiceIntent.parse(text), case .volume(let v) = intent {
                precondition(VoiceIntent.volumeRange.contains(v), "volume \(v) from \(text)")
            }
            // One folded character for one: the destination is cut from the sentence as typed.
            precondition(text.map(VoiceIntent.fold).count == text.count, "folding \(text) changed its length")
            _ = try? DATEXII.parse(bytes)
        case .fleet:
            guard let plan = try? FleetPlan.parse(text, source: "fuzz.conf") else { return }
            for i in Set([0, plan.cars / 2, plan.cars - 1]) {
                let car = plan.car(i)
                precondition((try? VIN(car.vin)) != nil, "car \(i) of \(text) has the invalid VIN \(car.vin)")
            }
            precondition(plan.car(0).vin != plan.car(plan.cars - 1).vin || plan.cars == 1, "two cars of \(text) share a VIN")
            var taken: [Range<Int>] = []
            for shard in plan.shards {
                precondition(shard.cars.lowerBound >= 0 && shard.cars.upperBound <= plan.cars, "shard \(shard.index) of \(text) leaves the fleet")
                precondition(!taken.contains { $0.overlaps(shard.cars) }, "shards of \(text) overlap")
                taken.append(shard.cars)
            }
        case .fcd:
            guard let t = try? FleetTrajectories(bytes: bytes, name: "fuzz.xml") else { return }
            // A minute of the fleet's time, looping past the end: every motion in range.
            for second in stride(from: 0.0, through: 60, by: 0.5) {
                guard (try? t.advance(to: second)) != nil else { return }
                for slot in 0..<3 {
                    if let m = t.motion(ofCar: slot) {
                        precondition((-90...90).contains(m.latitude) && (-180...180).contains(m.longitude) && (0...540).contains(m.speedKmh),
                                     "a motion out of range from \(text)")
                    }
                }
            }
        case .scenario:
            _ = try? Scenario.parse(text, source: "fuzz.scn")
            for (i, line) in text.split(separator: "\n").enumerated() { _ = try? CarCommand.parse(line, line: i + 1) }
        }
    }
}

/// One backend database for the MQTT target (a fresh file per process; a cheap hash, since
/// guessing secrets is not what is fuzzed).
final class FuzzBackend: @unchecked Sendable {
    static let shared = FuzzBackend()
    let messages: CarMessages
    let api: AppAPI
    let web: WebPortal
    /// Ana's session: an input's "Authorization: Bearer FUZZ" is sent with it.
    let session: String

    private init() {
        var template = Array("/tmp/tcu-fuzz-XXXXXX".utf8CString)
        let dir = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)) }
        let path = dir + "/backend.db"
        do {
            let portal = try Portal(path: path, rounds: 1)
            messages = CarMessages(portal: portal, store: try BackendStore(path: path), note: { _ in })
            // An account, a car and a session for the requests to reach past the log-in.
            try portal.addUser(email: "ana@example.com", password: "correct horse", spin: "4711", nowMs: 1_700_000_000_000)
            try portal.verifyEmail("ana@example.com")
            api = AppAPI(portalPath: path, storePath: path, rounds: 1, now: { 1_700_000_000_000 }, publish: { _ in true })
            let login = api.handle(AppAPI.Request(method: "POST", path: "/v1/login",
                                                  body: Array(#"{"email":"ana@example.com","password":"correct horse"}"#.utf8)))
            session = login.body?["token"]?.stringValue ?? ""
            web = WebPortal(api: api, secureCookie: false)
        } catch {
            fatalError("the fuzz target's backend database: \(error)")
        }
    }
}

extension FuzzBackend {
    /// The request in the bytes, as the server would hand it over: "METHOD TARGET" on the first
    /// line, "name: value" lines up to a blank line, then the body.
    static func request(_ text: String) -> AppAPI.Request {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let line = lines[0].split(separator: " ")
        let target = line.count > 1 ? line[1] : "/"
        let pathAndQuery = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        var query: [String: String] = [:]
        for pair in pathAndQuery.dropFirst().first?.split(separator: "&") ?? [] {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if let name = kv.first, !name.isEmpty { query[String(name)] = kv.count == 2 ? String(kv[1]) : "" }
        }
        var headers: [String: String] = [:]
        var i = 1
        while i < lines.count, !lines[i].isEmpty, lines[i] != "\r" {
            if let colon = lines[i].firstIndex(of: ":") {
                headers[lines[i][..<colon].lowercased()] = lines[i][lines[i].index(after: colon)...].trimmingSpaces
            }
            i += 1
        }
        let body = i + 1 < lines.count ? lines[(i + 1)...].joined(separator: "\n") : ""
        return AppAPI.Request(method: line.first.map(String.init) ?? "", path: String(pathAndQuery.first ?? ""), query: query,
                              headers: headers, body: Array(body.utf8))
    }
}

/// Fleet cars for the command target: one registered with a command key, one waiting to register.
enum FuzzFleetCar {
    static let spec = FleetPlan.Car(index: 0, vin: "VSSZZZKLZNR012345", model: "Leon", modelCode: "KL1", buildDate: "2022-01-10",
                                    country: "ES", licence: .active, privacy: .shareMyPosition, propulsion: .petrol, scenarios: [])
    static let behaviour = FleetCar.Behaviour(drivingIntervalMs: 2_000, heartbeatMs: 300_000, tripsPerHour: 0)
    static let registered: FleetCar = {
        var r = FleetCar.registration(for: .active, nowMs: 1_700_000_000_000)
        r.commandKey = Array(repeating: 7, count: 32)
        r.lastCommandCounter = 4
        return FleetCar(spec: spec, behaviour: behaviour, startMs: 1_700_000_000_000, home: (60.46, 26.94), registration: r)
    }()
    static let unregistered = FleetCar(spec: spec, behaviour: behaviour, startMs: 1_700_000_000_000, home: (60.46, 26.94),
                                       registration: Registration())
}
