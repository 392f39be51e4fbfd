import CCurl
#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization
import TelematicsCore

/// The fleet's owners in their app, for the remote-command scenario: each command a car's
/// owner asks for goes through the backend's app API over HTTP (libcurl), as a phone's app
/// sends it: log in (POST /v1/login, once, again when the session ends), the S-PIN for the
/// actions that need it (POST /v1/vehicles/{vin}/spin/verify: a security token), the action
/// (POST /v1/vehicles/{vin}/actions/{action}: 202 and a request id), then its status
/// (GET /v1/vehicles/{vin}/requests/{id}) until the car's result or its expiry. On its own
/// thread: the broker connections' loop never waits for HTTP. The figures say what came of
/// each and how long from the backend's 202 to the final status the app saw.
public final class FleetApp: Sendable {
    /// Where the app API is, and the fleet owner's account (one account owns the fleet's
    /// registered cars: `tcu-backend garage import`).
    public struct Settings: Sendable {
        /// The app API's base, http://HOST:PORT.
        public var url: String
        public var login: String
        public var password: String
        public var spin: String
        /// How often the app asks for a pending command's status (ms).
        public var pollMs: Int64 = 1_000

        public init(url: String, login: String, password: String, spin: String) {
            self.url = url
            self.login = login
            self.password = password
            self.spin = spin
        }

        /// Reads the account from a file of three lines: the login, the password, the S-PIN
        /// (kept out of the command line, which every local user can read).
        public static func read(url: String, credentials path: String) throws(SystemError) -> Settings {
            let lines = try readTextFile(path).split(separator: "\n", omittingEmptySubsequences: false).map { String($0).trimmingSpaces }
            guard lines.count >= 3, !lines[0].isEmpty, !lines[1].isEmpty, lines[2].count == 4, lines[2].allSatisfy(\.isNumber) else {
                throw SystemError(.invalidInput, "\(path): expected three lines: the login, the password, the 4-digit S-PIN")
            }
            guard url.hasPrefix("http://") || url.hasPrefix("https://") else {
                throw SystemError(.invalidInput, "--app-url: expected http://HOST:PORT or https://..., found '\(url)'")
            }
            return Settings(url: String(url.reversed().drop { $0 == "/" }.reversed()), login: lines[0], password: lines[1], spin: lines[2])
        }
    }

    /// What came of the owners' commands.
    public struct Figures: Sendable, Equatable {
        /// Asked by the owners, taken by the backend (202), and how they ended.
        public var asked = 0
        public var accepted = 0
        public var successful = 0
        /// The car's failures and the backend's refusals, by cause (the API's error code).
        public var failed: [String: Int] = [:]
        public var timedOut = 0
        /// Still on their way when the fleet stopped.
        public var unfinished = 0
        /// From the backend's 202 to the final status the app saw (ms), each command.
        public var latenciesMs: [Int64] = []

        public var json: JSON {
            var o: [(String, JSON)] = [
                ("asked", .number(Double(asked))), ("accepted", .number(Double(accepted))), ("successful", .number(Double(successful))),
                ("timedOut", .number(Double(timedOut))), ("unfinished", .number(Double(unfinished))),
                ("failed", .object(failed.sorted { $0.key < $1.key }.map { ($0.key, .number(Double($0.value))) })),
            ]
            if !latenciesMs.isEmpty {
                let sorted = latenciesMs.sorted()
                func pct(_ p: Int) -> JSON { .number(Double(sorted[min(sorted.count - 1, sorted.count * p / 100)])) }
                o.append(("latencyMs", .object([("p50", pct(50)), ("p99", pct(99)), ("max", .number(Double(sorted.last!)))])))
            }
            return .object(o)
        }
    }

    private struct Ask: Sendable {
        var vin: String
        var action: RemoteCommand.Action
        var targetTemperature: Double?
    }

    /// The API's error code for a command it did not take.
    private struct Refused: Error {
        var code: String
    }

    private struct Pending {
        var vin: String
        var id: String
        var acceptedMs: Int64
    }

    private let settings: Settings
    private let clocks: Clocks
    private let log: @Sendable (String) -> Void
    private let asks = Mutex<[Ask]>([])
    private let figures = Mutex(Figures())
    private let stopping = StopSignal()
    private let thread: Mutex<DedicatedThread?> = Mutex(nil)

    private static let initialised: Bool = { curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK }()

    public init(settings: Settings, clocks: Clocks = .system, log: @escaping @Sendable (String) -> Void) {
        self.settings = settings
        self.clocks = clocks
        self.log = log
        _ = Self.initialised
        let t = DedicatedThread(name: "fleet-app") { [self] in run() }
        thread.withLock { $0 = t }
    }

    /// The owner of `vin` asks for `action` (from the fleet's loop).
    public func ask(vin: String, _ action: RemoteCommand.Action, targetTemperature: Double?) {
        asks.withLock { $0.append(Ask(vin: vin, action: action, targetTemperature: targetTemperature)) }
    }

    public var current: Figures { figures.withLock { $0 } }

    /// Whether every command asked for has ended (the fleet's end waits for them).
    public var idle: Bool {
        asks.withLock { $0.isEmpty } && figures.withLock { $0.asked == $0.successful + $0.failed.values.reduce(0, +) + $0.timedOut }
    }

    /// Stops at once: what is still on its way is counted unfinished.
    public func stop() {
        stopping.set()
        thread.withLock { t in t?.join(); t = nil }
    }

    // MARK: - The app's thread

    private var nowMs: Int64 { clocks.monotonicMs }

    private func run() {
        guard let curl = curl_easy_init() else {
            log("fleet app: libcurl cannot start; the owners send no commands")
            return
        }
        defer { curl_easy_cleanup(curl) }
        var http = HTTP(curl: curl, base: settings.url)
        var session: String?
        var pending: [Pending] = []
        while !stopping.isSet {
            for a in asks.withLock({ q in defer { q.removeAll() }; return q }) {
                figures.withLock { $0.asked += 1 }
                switch send(a, http: &http, session: &session) {
                case .success(let id):
                    figures.withLock { $0.accepted += 1 }
                    pending.append(Pending(vin: a.vin, id: id, acceptedMs: nowMs))
                case .failure(let refused):
                    figures.withLock { $0.failed[refused.code, default: 0] += 1 }
                }
            }
            var still: [Pending] = []
            for p in pending {
                guard let token = session else { still.append(p); continue }
                let r = http.request("GET", "/v1/vehicles/\(p.vin)/requests/\(p.id)", token: token)
                guard r.code == 200, let status = r.body?["status"]?.stringValue.flatMap(RemoteCommand.Status.init(rawValue:)) else {
                    if r.code == 401 { session = nil }
                    still.append(p)
                    continue
                }
                switch status {
                case .queued, .inProgress:
                    still.append(p)
                case .successful:
                    figures.withLock { $0.successful += 1; $0.latenciesMs.append(nowMs - p.acceptedMs) }
                case .failed:
                    let cause = r.body?["cause"]?.stringValue ?? "failed"
                    figures.withLock { $0.failed[cause, default: 0] += 1; $0.latenciesMs.append(nowMs - p.acceptedMs) }
                case .timedOut:
                    figures.withLock { $0.timedOut += 1 }
                }
            }
            pending = still
            _ = stopping.wait(timeoutMs: settings.pollMs)
        }
        let left = asks.withLock { $0.count }
        figures.withLock { $0.unfinished = pending.count + left }
    }

    /// One command as the app sends it: the request id, or the API's error code.
    private func send(_ a: Ask, http: inout HTTP, session: inout String?) -> Result<String, Refused> {
        for _ in 0..<2 {
            if session == nil {
                let r = http.request("POST", "/v1/login", json: .object([("login", .string(settings.login)), ("password", .string(settings.password))]))
                guard r.code == 200, let t = r.body?["token"]?.stringValue else {
                    log("fleet app: cannot log in as the fleet's owner: \(r.error)")
                    return .failure(Refused(code: r.errorCode))
                }
                session = t
            }
            guard let token = session else { continue }
            var body: [(String, JSON)] = []
            if a.action.needsSPIN {
                let v = http.request("POST", "/v1/vehicles/\(a.vin)/spin/verify", token: token, json: .object([("spin", .string(settings.spin))]))
                if v.code == 401 { session = nil; continue }
                guard v.code == 200, let s = v.body?["securityToken"]?.stringValue else { return .failure(Refused(code: v.errorCode)) }
                body.append(("securityToken", .string(s)))
            }
            if let t = a.targetTemperature { body.append(("targetTemperature", .number(t))) }
            let r = http.request("POST", "/v1/vehicles/\(a.vin)/actions/\(a.action.pathName)", token: token, json: .object(body))
            if r.code == 401 { session = nil; continue }
            guard r.code == 202, let id = r.body?["requestId"]?.stringValue else { return .failure(Refused(code: r.errorCode)) }
            return .success(id)
        }
        return .failure(Refused(code: "unauthorized"))
    }
}

/// One libcurl handle (its connection kept alive between requests): JSON in, JSON out.
private struct HTTP {
    let curl: UnsafeMutableRawPointer
    let base: String

    struct Reply {
        var code: Int
        var body: JSON?
        var error: String
        /// The API's error code (its body's `error`), or what went wrong on the way.
        var errorCode: String { body?["error"]?.stringValue ?? (code == 0 ? "appUnreachable" : "http\(code)") }
    }

    final class Sink {
        var bytes: [UInt8] = []
    }

    mutating func request(_ method: String, _ path: String, token: String? = nil, json: JSON? = nil) -> Reply {
        let sink = Sink()
        var headers: UnsafeMutablePointer<curl_slist>? = curl_slist_append(nil, "Content-Type: application/json")
        if let token { headers = curl_slist_append(headers, "Authorization: Bearer \(token)") }
        defer { curl_slist_free_all(headers) }
        let writer: ccurl_write_fn = { data, size, count, context in
            guard let data, let context else { return 0 }
            let sink = Unmanaged<Sink>.fromOpaque(context).takeUnretainedValue()
            let n = size * count
            // A reply is small; past 1 MiB it is not the app API's.
            guard sink.bytes.count + n <= 1 << 20 else { return 0 }
            data.withMemoryRebound(to: UInt8.self, capacity: n) { sink.bytes.append(contentsOf: UnsafeBufferPointer(start: $0, count: n)) }
            return n
        }
        let body = json?.text ?? ""
        let rc = body.withCString { text -> CURLcode in
            let set = [
                ccurl_set_string(curl, CURLOPT_URL, base + path),
                ccurl_set_string(curl, CURLOPT_CUSTOMREQUEST, method),
                ccurl_set_long(curl, CURLOPT_HTTPGET, method == "GET" ? 1 : 0),
                method == "GET" ? CURLE_OK : ccurl_set_string(curl, CURLOPT_POSTFIELDS, text),
                ccurl_set_list(curl, CURLOPT_HTTPHEADER, headers),
                ccurl_set_long(curl, CURLOPT_NOSIGNAL, 1),
                ccurl_set_long(curl, CURLOPT_CONNECTTIMEOUT, 10),
                ccurl_set_long(curl, CURLOPT_TIMEOUT, 30),
                ccurl_set_writer(curl, writer, Unmanaged.passUnretained(sink).toOpaque()),
            ]
            if let bad = set.first(where: { $0 != CURLE_OK }) { return bad }
            return curl_easy_perform(curl)
        }
        guard rc == CURLE_OK else { return Reply(code: 0, body: nil, error: String(cString: curl_easy_strerror(rc))) }
        var code = 0
        _ = ccurl_response_code(curl, &code)
        let parsed = try? JSON.parse(String(decoding: sink.bytes, as: UTF8.self))
        return Reply(code: code, body: parsed, error: parsed?["message"]?.stringValue ?? "HTTP \(code)")
    }
}
