import ArgumentParser
import Backend
import BackendHTTP
import WebPortal
import BackendLink
import Logging
import OnlineServices
import Platform
import ServiceLifecycle
import TelematicsCore

#if canImport(Glibc)
import Glibc
#endif

@main
struct TCUBackend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcu-backend",
        abstract: "The reference backend: stores what the cars send over MQTT and answers queries; the portal's accounts and garages.",
        subcommands: [Serve.self, State.self, Events.self, Gaps.self, Summary.self, Connection.self, UserCommand.self, GarageCommand.self, LicenceCommand.self,
                      RemoteCommandCLI.self, CommandStatusCLI.self, KeysCLI.self]
    )
}

struct DatabaseOption: ParsableArguments {
    @Option(help: ArgumentHelp("The backend's database: an SQLite file, or a PostgreSQL server's URL (postgresql://USER@HOST/DB, or ?host=/SOCKET/DIR for a Unix socket). A server's password comes from libpq's password file (PGPASSFILE, ~/.pgpass), never from the URL.",
                               valueName: "path-or-url"))
    var db = "tcu-backend.db"
    @Option(help: ArgumentHelp("For tests: the backend's clock runs this many days ahead (negative: behind).",
                               valueName: "days"))
    var clockOffsetDays: Int = 0

    func validate() throws {
        // A password on a command line is read by every user of the machine (ps, /proc).
        if Database.carriesPassword(db) {
            throw ValidationError("--db: the URL carries a password; put it in libpq's password file instead (PGPASSFILE or ~/.pgpass, mode 0600): docs/operations.md")
        }
    }

    /// The backend's time, UTC milliseconds.
    var nowMs: Int64 { wallClockNow().nanoseconds / 1_000_000 + Int64(clockOffsetDays) * 86_400_000 }
}

func fail(_ message: String, _ code: Int32) -> Never {
    var line = Array("tcu-backend: error: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(code)
}

/// A secret from standard input (SecretInput), or a clear error at its end.
func readSecret(_ prompt: String) -> String {
    guard let value = SecretInput.read(prompt), !value.isEmpty else {
        fail("\(prompt.lowercased()): nothing on standard input (secrets are read from it, one per line)", 64)
    }
    return value
}

func note(_ message: String) {
    var line = Array("tcu-backend: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

func openStore(_ path: String) -> BackendStore {
    do { return try BackendStore(path: path) } catch { fail(error.description, 66) }
}


struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Subscribe to vehicles/# at QoS 1 and store every message once (duplicates removed by id)."
    )

    @OptionGroup var broker: BrokerOptions
    @Option(help: "Serve the HTTP API for apps (docs/openapi.yaml, under /v1) and the web portal (every other path) on this IPv4 HOST:PORT.") var http: String?
    @Option(help: "HTTP API: reads a user may make per car and UTC day.") var dailyReadQuota = 1_000
    @Option(help: "HTTP API: actions a car takes per rolling hour.") var actionsPerHour = 20
    @Option(help: ArgumentHelp("Where the links in mails point: the web portal as a person's browser reaches it; https makes the session cookie Secure (default: http://HOST:PORT of --http).",
                               valueName: "url"))
    var publicURL: String?
    @Option(help: ArgumentHelp("Send the accounts' mails (verification, password reset) through this SMTP server: smtp://HOST:PORT, or smtps:// for TLS. Without it they wait in the database.",
                               valueName: "url"))
    var smtp: String?
    @Flag(help: "Refuse to send mail unless the SMTP server takes STARTTLS.") var smtpStarttls = false
    @Option(help: "The mails' sender.") var mailFrom = "SEAT CONNECT <no-reply@tcu-backend.invalid>"
    @Option(help: ArgumentHelp("Answer the Online infotainment services (routes, traffic, parking, fuel, voice) on the map hw/maps/build-map wrote in this directory. Without it they are refused as unavailable.",
                               valueName: "dir"))
    var map: String?
    @OptionGroup var database: DatabaseOption

    func run() async throws {
        let signals: ProcessSignals
        do { signals = try ProcessSignals(reload: []) } catch { fail(error.description, 71) }
        let endpoint = broker.endpoint()
        // The database opened (and its schema brought up to date) before anything is served.
        _ = openStore(database.db)
        _ = openPortal(database.db)
        let database = self.database
        // The map read (and refused with the reason) before anything is served.
        let navi: NaviService? = map.map { dir in
            do throws(NaviError) {
                let service = NaviService(map: try NaviMap(directory: dir))
                note("Online infotainment on the map in \(dir)")
                return service
            } catch { fail("--map: \(error.message)", 66) }
        }
        // The services, stopped in reverse order: the HTTP server first (the requests in
        // progress answered), then the mailer, then the broker's side.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        var api: AppAPI?
        var server: AppServer?
        if let http {
            let hp = http.split(separator: ":")
            guard hp.count == 2, let httpPort = UInt16(hp[1]) else { fail("--http: expected HOST:PORT", 64) }
            var limits = AppAPI.Limits()
            limits.dailyReadQuota = dailyReadQuota
            limits.actionsPerHour = actionsPerHour
            let appAPI = AppAPI(portalPath: database.db, storePath: database.db, limits: limits,
                                publicURL: publicURL ?? "http://\(http)", now: { database.nowMs },
                                publish: { publishCommand($0, via: endpoint) })
            let web = WebPortal(api: appAPI, secureCookie: (publicURL ?? "").hasPrefix("https://"))
            let host = String(hp[0]), publicURL = self.publicURL
            server = AppServer(host: host, port: Int(httpPort), api: appAPI, web: web) { port in
                note("HTTP API on \(host):\(port), the web portal at \(publicURL ?? "http://\(host):\(port)")/")
            }
            api = appAPI
        }
        let bell = api?.alertBell
        services.append(.init(service: LoopService(name: "mqtt") { stop in
            // The broker's thread has its own connections to the database.
            let messages = CarMessages(portal: openPortal(database.db), store: openStore(database.db), note: note, navi: navi, alerted: { bell?.ring() })
            ingest(messages, from: endpoint, database: database, stop: stop)
        }))
        if let smtp {
            guard smtp.hasPrefix("smtp://") || smtp.hasPrefix("smtps://") else { fail("--smtp: expected smtp://HOST:PORT or smtps://HOST:PORT", 64) }
            let mail = MailServer(url: smtp, from: mailFrom, requireTLS: smtpStarttls)
            services.append(.init(service: LoopService(name: "mailer") { stop in runMailer(mail, db: database.db, now: { database.nowMs }, stop: stop) }))
        }
        if let server { services.append(.init(service: server)) }
        var logger = Logger(label: "tcu-backend")
        logger.logLevel = .warning
        let group = ServiceGroup(configuration: .init(services: services, logger: logger))
        guard signals.route({ request in
            if case .stop(first: true) = request { Task { await group.triggerGracefulShutdown() } }
        }) else { fail("cannot start the signals thread", 71) }
        do { try await group.run() } catch { fail("\(http.map { "--http \($0): " } ?? "")\(error)", 69) }
    }
}

/// A blocking loop on a thread of its own, as one of `serve`'s services: it runs until the group
/// stops, then its stop signal is given and its thread joined.
struct LoopService: Service {
    let name: String
    let loop: @Sendable (StopSignal) -> Void

    func run() async throws {
        let stop = StopSignal()
        let thread = DedicatedThread(name: name) { loop(stop) }
        try? await gracefulShutdown()
        stop.set()
        thread.join()
    }
}

/// The broker's side of `serve`: subscribed to vehicles/# at QoS 1 with a persistent session
/// (the broker keeps the cars' messages while the backend is down), every message stored once
/// and answered where it asks (CarMessages); the licence notices once a minute. Reconnects with
/// a backoff until `stop`.
func ingest(_ messages: CarMessages, from endpoint: BrokerEndpoint, database: DatabaseOption, stop: StopSignal) {
    let client: MQTTClient
    // Each message is acknowledged once stored: a backend killed between the two gets it again.
    do { client = try endpoint.client(id: "tcu-backend", cleanSession: false, acknowledgeAfterHandling: true) } catch { fail("\(error)", 69) }
    var failures = 0
    client.onConnect = { rc in
        if rc == 0 {
            _ = client.subscribe("vehicles/#", qos: 1)
            note("connected to \(endpoint)")
        }
    }
    // Fault injection for the tests: the process ends in the middle of the N-th message, after
    // it arrived and before it is stored (what a crash or a power cut there would do).
    let exitOn = getenv("TCU_BACKEND_FAULT_EXIT_ON_MESSAGE").flatMap { Int(String(cString: $0)) }
    var received = 0
    // (A dropped connection's writes fail with EPIPE, not a signal.)
    signal(SIGPIPE, SIG_IGN)
    // The messages of one read, stored together before their acknowledgements leave.
    var batch: [(topic: String, payload: [UInt8])] = []
    client.onMessage = { topic, payload in
        received += 1
        if received == exitOn {
            note("fault injection: ending before storing message \(received)")
            _exit(70)
        }
        batch.append((topic, payload))
    }
    var storageDown = false
    let store = { () -> Bool in
        guard !batch.isEmpty else { return true }
        defer { batch.removeAll(keepingCapacity: true) }
        do {
            for reply in try messages.handle(batch, nowMs: database.nowMs) {
                _ = client.publish(topic: reply.topic, payload: Array(reply.body.text.utf8))
            }
            return true
        } catch {
            // Not stored, so not acknowledged: the connection is dropped before the queued
            // acknowledgements leave, and the broker gives the messages again (persistent
            // session) once the database is back.
            note("cannot store \(batch.count) message(s), not acknowledged (the broker sends them again): \(error)")
            storageDown = true
            return false
        }
    }
    // The licence notices, once a minute (and at the start).
    var nextLicenceCheck = Int64.min
    var connected = false
    while !stop.isSet {
        let mono = monotonicNow().nanoseconds / 1_000_000
        if mono >= nextLicenceCheck {
            messages.checkLicences(nowMs: database.nowMs)
            nextLicenceCheck = mono + 60_000
        }
        if !connected {
            if client.connect() != 0 {
                failures += 1
                // Backoff, cut short by a stop.
                stop.wait(timeoutMs: Int64(min(2_000, 100 * (1 << min(failures, 5)))))
                continue
            }
            connected = true
            failures = 0
        }
        if client.loop(timeoutMs: 100, readingUpTo: ingestBatchLimit, beforeWriting: store) != 0 {
            connected = false
            if storageDown {
                // The database again in a moment: the broker holds the messages meanwhile.
                stop.wait(timeoutMs: 1_000)
                storageDown = false
            }
        }
    }
    client.disconnect()
}

/// The most messages of one read stored together: the batch's statements go to a server in one
/// pipeline, whose answers must fit its socket's buffer while this side still sends.
let ingestBatchLimit = 256

/// The mailer: sends the queued mails (verification, password reset) until `stop`; one the
/// server refuses is tried again later (`Portal.mailFailed`).
func runMailer(_ server: MailServer, db: String, now: @escaping () -> Int64, stop: StopSignal) {
    let portal = openPortal(db)
    var sequence: Int64 = 0
    while !stop.isSet {
        let due = (try? portal.dueMails(nowMs: now())) ?? []
        for (id, mail) in due where !stop.isSet {
            sequence += 1
            switch SMTPSender.send(mail, via: server, nowMs: now(), id: "\(now()).\(id).\(sequence)") {
            case .success:
                _ = try? portal.mailSent(id: id)
                note("mail \(id) sent (\(mail.subject))")
            case .failure(let f):
                let again = (try? portal.mailFailed(id: id, error: f.description, nowMs: now())) ?? false
                note("mail \(id) not sent: \(f)\(again ? "; tried again later" : "; given up")")
            }
        }
        // (Mails are queued by the HTTP side in the same file: a look twice a second.)
        stop.wait(timeoutMs: 500)
    }
}

struct State: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A car's latest state, one object per block with the time the car captured it and the time it arrived."
    )
    @Argument(help: "The VIN.") var vin: String
    @OptionGroup var database: DatabaseOption

    func run() throws {
        do {
            var blocks: [(String, JSON)] = []
            for b in try openStore(database.db).state(vin: vin) {
                let values = (try? JSON.parse(b.values)) ?? .null
                blocks.append((b.block, .object([("capturedAt", .number(Double(b.capturedAtMs))),
                                                 ("receivedAt", .number(Double(b.receivedAtMs))), ("values", values)])))
            }
            print(JSON.object([("vin", .string(vin)), ("blocks", .object(blocks))]).text)
        } catch { fail("\(error)", 65) }
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Every message a car sent, in sequence order, one JSON line each.")
    @Argument(help: "The VIN.") var vin: String
    @OptionGroup var database: DatabaseOption

    func run() throws {
        do {
            for m in try openStore(database.db).messages(vin: vin) { print(m.payload) }
        } catch { fail("\(error)", 65) }
    }
}

struct Gaps: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Missing sequence numbers of a car, and how many duplicates were removed.")
    @Argument(help: "The VIN.") var vin: String
    @OptionGroup var database: DatabaseOption

    func run() throws {
        do {
            let store = openStore(database.db)
            let gaps = try store.gaps(vin: vin)
            let list = gaps.map { JSON.object([("from", .number(Double($0.lowerBound))), ("to", .number(Double($0.upperBound)))]) }
            print(JSON.object([("vin", .string(vin)), ("gaps", .array(list)),
                               ("duplicatesRemoved", .number(Double(try store.duplicates(vin: vin))))]).text)
        } catch { fail("\(error)", 65) }
    }
}

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Every car's figures at once: messages, highest sequence number, numbers missing, duplicates removed.",
        discussion: "One JSON object: the totals, and the cars with numbers missing (a fleet's check that nothing was lost)."
    )
    @OptionGroup var database: DatabaseOption

    func run() throws {
        do {
            let cars = try openStore(database.db).summary()
            let missing = cars.filter { $0.missing != 0 }
            print(JSON.object([
                ("cars", .number(Double(cars.count))), ("messages", .number(Double(cars.reduce(0) { $0 + $1.messages }))),
                ("duplicatesRemoved", .number(Double(cars.reduce(0) { $0 + $1.duplicates }))),
                ("carsWithGaps", .array(missing.map { .object([("vin", .string($0.vin)), ("missing", .number(Double($0.missing))),
                                                                ("highestSequence", .number(Double($0.highestSequence)))]) })),
            ]).text)
        } catch { fail("\(error)", 65) }
    }
}

struct Connection: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The car's retained connection state (online, or the last will).")
    @Argument(help: "The VIN.") var vin: String
    @OptionGroup var database: DatabaseOption

    func run() throws {
        do { print(try openStore(database.db).connection(vin: vin) ?? "null") } catch { fail("\(error)", 65) }
    }
}

func openPortal(_ path: String) -> Portal {
    do { return try Portal(path: path) } catch { fail(error.description, 66) }
}

/// Runs a portal action; a refusal ends the command with its reason and code (exit 65).
func portal<T>(_ body: () throws(PortalError) -> T) -> T {
    do { return try body() } catch { fail("\(error.message) (\(error.code))", 65) }
}

struct UserCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "user", abstract: "Accounts (the SEAT ID): sign up, verify the e-mail address, change the password.",
        subcommands: [Add.self, Verify.self, Password.self]
    )

    struct Password: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change the password (the portal's page); every session and security token issued before is void.",
            discussion: "The current password and then the new one (10 characters or more) are read from standard input: asked for with the echo off at a terminal, one per line from a pipe or a file. Every app logged in with the old password must log in again (a serving backend refuses their sessions with sessionRevoked)."
        )
        @Argument(help: "The e-mail address.") var email: String
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let current = readSecret("Current password")
            let new = readSecret("New password")
            let p = openPortal(database.db)
            portal { () throws(PortalError) in try p.changePassword(email: email, current: current, new: new, nowMs: database.nowMs) }
            print(JSON.object([("user", .string(email.lowercased())), ("passwordChanged", .bool(true))]).text)
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an account; the password (10 characters or more) and the 4-digit S-PIN are stored as salted PBKDF2 hashes.",
            discussion: "The password and then the S-PIN that guards remote functions are read from standard input: asked for with the echo off at a terminal, one per line from a pipe or a file (printf '%s\\n' \"$PASSWORD\" \"$SPIN\" | tcu-backend user add EMAIL). They are never arguments, which every local user can read."
        )
        @Argument(help: "The e-mail address.") var email: String
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let password = readSecret("Password")
            let spin = readSecret("S-PIN (4 digits)")
            let p = openPortal(database.db)
            portal { () throws(PortalError) in try p.addUser(email: email, password: password, spin: spin, nowMs: database.nowMs) }
            print(JSON.object([("user", .string(email.lowercased())), ("verified", .bool(false))]).text)
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Mark the e-mail address as verified (the link in the sign-up mail).")
        @Argument(help: "The e-mail address.") var email: String
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let p = openPortal(database.db)
            portal { () throws(PortalError) in try p.verifyEmail(email) }
            print(JSON.object([("user", .string(email.lowercased())), ("verified", .bool(true))]).text)
        }
    }
}

struct GarageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "garage", abstract: "A user's cars: add one by VIN (and get its pairing code), remove it, list them, share them.",
        subcommands: [Add.self, Import.self, Remove.self, List.self, Share.self, Users.self]
    )

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add many cars to one account's garage (a fleet); prints each with its pairing code, one JSON line.",
            discussion: "Reads JSON lines with vin, model, built and country (what tcu-fleet cars --registrable prints) from the file, or from standard input. Each car is checked as by garage add; a car already in this garage is printed as it is (its code unchanged), so an import can be run again. The first car refused ends the import with its line and the reason."
        )
        @Argument(help: "The JSON lines (default: standard input).") var file: String?
        @Option(help: "The account's e-mail address.") var user: String
        @Flag(help: "Accept the terms of use and the privacy policy.") var acceptTerms = false
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let text: String
            if let file {
                do { text = try readTextFile(file) } catch { fail("\(error)", 66) }
            } else {
                var all: [UInt8] = []
                var chunk = [UInt8](repeating: 0, count: 65_536)
                while true {
                    let n = read(0, &chunk, chunk.count)
                    if n <= 0 { break }
                    all += chunk[0..<n]
                }
                text = String(decoding: all, as: UTF8.self)
            }
            let source = file ?? "standard input"
            let p = openPortal(database.db)
            var known: [String: Portal.Car] = [:]
            for car in portal({ () throws(PortalError) in try p.garage(email: user, nowMs: database.nowMs) }) { known[car.vin] = car }
            for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.trimmingSpaces.isEmpty {
                guard let j = try? JSON.parse(String(line)), let vin = j["vin"]?.stringValue, let model = j["model"]?.stringValue,
                      let built = j["built"]?.stringValue, let country = j["country"]?.stringValue else {
                    fail("\(source):\(n + 1): expected a JSON object with vin, model, built and country", 65)
                }
                if let car = known[vin] {
                    print(car.json.text)
                    continue
                }
                do {
                    print(try p.addCar(vin: vin, email: user, model: model, built: built, country: country, acceptedTerms: acceptTerms,
                                       nowMs: database.nowMs).json.text)
                } catch {
                    fail("\(source):\(n + 1): \(vin): \(error.code): \(error.message)", 65)
                }
            }
        }
    }

    struct Share: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The primary user shares a registered car with another account, as a secondary user or a guest.",
            discussion: "Roles: the primary user (who registered the car) has every service, remote functions included; a secondary user and a guest see the car but get no remote functions."
        )
        @Argument(help: "The VIN.") var vin: String
        @Option(help: "The primary user's e-mail address.") var user: String
        @Option(name: .customLong("with"), help: "The account to share the car with.") var other: String
        @Option(help: "secondary or guest.") var role: String
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let p = openPortal(database.db)
            portal { () throws(PortalError) in try p.share(vin: vin, owner: user, with: other, role: try Portal.sharedRole(role), nowMs: database.nowMs) }
            print(JSON.object([("vin", .string(vin)), ("user", .string(other.lowercased())), ("role", .string(role))]).text)
        }
    }

    struct Users: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Who may use a car and in which role, one JSON line each (the primary user first).")
        @Argument(help: "The VIN.") var vin: String
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let p = openPortal(database.db)
            for u in portal({ () throws(PortalError) in try p.users(vin: vin) }) { print(u.json.text) }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a car by VIN; prints it with its 8-digit pairing code (valid one year).",
            discussion: "The model, build date and country come from --profile (a vehicle profile such as hw/vehicle-profile.conf) or from the options; they are checked against the compatible models and supported countries."
        )
        @Argument(help: "The VIN.") var vin: String
        @Option(help: "The account's e-mail address.") var user: String
        @Option(help: "A vehicle profile to take the model, build date and country from.") var profile: String?
        @Option(help: "The model (Leon, Arona, ...).") var model: String?
        @Option(help: "The build date, YYYY-MM or YYYY-MM-DD.") var built: String?
        @Option(help: "The country of registration (ISO 3166, two letters).") var country: String?
        @Flag(help: "Accept the terms of use and the privacy policy.") var acceptTerms = false
        @OptionGroup var database: DatabaseOption

        func run() throws {
            var model = self.model, built = self.built, country = self.country
            if let profile {
                do {
                    let v = try VehicleProfile.parse(try readTextFile(profile), source: profile)
                    model = model ?? v.model
                    built = built ?? v.buildDate
                    country = country ?? v.country
                } catch { fail("\(error)", 66) }
            }
            guard let model, let built, let country else { fail("give --profile, or --model, --built and --country", 64) }
            let p = openPortal(database.db)
            let car = portal { () throws(PortalError) in
                try p.addCar(vin: vin, email: user, model: model, built: built, country: country, acceptedTerms: acceptTerms,
                             nowMs: database.nowMs)
            }
            print(car.json.text)
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove a car from the garage: its pairing code is void.")
        @Argument(help: "The VIN.") var vin: String
        @Option(help: "The account's e-mail address.") var user: String
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let p = openPortal(database.db)
            portal { () throws(PortalError) in try p.removeCar(vin: vin, email: user) }
            print(JSON.object([("vin", .string(vin)), ("removed", .bool(true))]).text)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The cars in a user's garage, one JSON line each.")
        @Option(help: "The account's e-mail address.") var user: String
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let p = openPortal(database.db)
            for car in portal({ () throws(PortalError) in try p.garage(email: user, nowMs: database.nowMs) }) { print(car.json.text) }
        }
    }
}

struct LicenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "licence", abstract: "A registered car's licence: show it, renew it (radio or navi, 1 or 2 years).",
        subcommands: [Show.self, Renew.self]
    )

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The car's licence: package, end, services.")
        @Argument(help: "The VIN.") var vin: String
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let p = openPortal(database.db)
            print(portal { () throws(PortalError) in try p.licence(vin: vin) }.json.text)
        }
    }

    struct Renew: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Renew from the portal: radio (1 year 50 €, 2 years 85 €) or navi (135 €, 225 €); from its end, or from now when expired."
        )
        @Argument(help: "The VIN.") var vin: String
        @Option(help: "radio or navi.") var package: String
        @Option(help: "1 or 2.") var years: Int
        @OptionGroup var database: DatabaseOption

        func run() throws {
            let p = openPortal(database.db)
            print(portal { () throws(PortalError) in try p.renew(vin: vin, package: package, years: years, nowMs: database.nowMs) }.json.text)
        }
    }
}

struct RemoteCommandCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "command",
        abstract: "Send a remote command to a car as an app would: signed with the car's key, bound to its VIN, with an expiry and a counter.",
        discussion: "lock, unlock and the climatisation (start and stop) need the user's S-PIN (three wrong ones lock it for a growing time), read from standard input: asked for with the echo off at a terminal, the first line from a pipe or a file; none at the end of the input. Only the primary user has remote functions; one request per type may be pending. Prints the request, then (with --wait-s) its final status: successful, failed with a cause, or timedOut."
    )

    @Argument(help: "The VIN.") var vin: String
    @Argument(help: "lock, unlock, honkAndFlash, flash, climatisationStart or climatisationStop.") var action: String
    @Option(help: "The user's e-mail address.") var user: String
    @Option(help: "climatisationStart: the target temperature, 16 to 30 °C in 0.5 steps.") var temperature: Double?
    @Option(help: "How long the command is valid, in seconds.") var ttlS: Int = 60
    @Option(help: "How long to wait for the car's final result, in seconds (0: do not wait).") var waitS: Int = 30
    @OptionGroup var broker: BrokerOptions
    @OptionGroup var database: DatabaseOption

    func run() throws {
        guard let a = RemoteCommand.Action(rawValue: action) else {
            fail("unknown action '\(action)': \(RemoteCommand.Action.allCases.map(\.rawValue).joined(separator: ", "))", 64)
        }
        let spin = Portal.spinActions.contains(a) ? SecretInput.read("S-PIN").flatMap { $0.isEmpty ? nil : $0 } : nil
        let endpoint = broker.endpoint()
        let p = openPortal(database.db)
        let command = portal { () throws(PortalError) in
            try p.issueCommand(vin: vin, user: user, spin: spin.map { .spin($0) } ?? .none, action: a, targetTemperature: temperature,
                               ttlMs: Int64(ttlS) * 1000, nowMs: database.nowMs)
        }
        guard publishCommand(command, via: endpoint) else { fail("the broker at \(endpoint) did not take the command", 69) }
        print(JSON.object([("request", command.json)]).text)
        guard waitS > 0 else { return }
        // Until the car says how it ended, or the wait is over (then an expired request has timed
        // out). The serving process records the results: each of its commits writes the
        // database's WAL, which wakes this wait (at least once a second all the same).
        let written = FileGrowth(path: database.db + "-wal")
        let deadline = monotonicNow().adding(milliseconds: Int64(min(waitS, 86_400)) * 1000)  // at most a day: no overflow
        var status = portal { () throws(PortalError) in try p.commandStatus(id: command.id, nowMs: database.nowMs) }
        while !status.status.isFinal {
            let left = deadline.milliseconds(since: monotonicNow())
            guard left > 0 else { break }
            written.wait(timeoutMs: min(left, 1000))
            status = portal { () throws(PortalError) in try p.commandStatus(id: command.id, nowMs: database.nowMs) }
        }
        print(status.json.text)
        if status.status != .successful { Glibc.exit(75) }
    }
}

/// Publishes a signed command on `vehicles/{vin}/commands` at QoS 1 over its own short
/// connection; true once the broker acknowledged it (PUBACK), within 5 s.
func publishCommand(_ command: RemoteCommand, via endpoint: BrokerEndpoint) -> Bool {
    guard let client = try? endpoint.client(id: "tcu-backend-command-\(command.id.prefix(8))") else { return false }
    nonisolated(unsafe) var published = false
    client.onPublish = { _ in published = true }
    guard client.connect() == 0 else { return false }
    _ = client.publish(topic: "vehicles/\(command.vin)/commands", payload: Array(command.json.text.utf8))
    for _ in 0..<100 where !published { _ = client.loop(timeoutMs: 50) }
    client.disconnect()
    return published
}

struct KeysCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "The backend's public key for the answers cars act on (made on first use): install it in each car as [backend] answer-key."
    )
    @OptionGroup var database: DatabaseOption

    func run() throws {
        let p = openPortal(database.db)
        let key = portal { () throws(PortalError) in try p.answerKey() }
        print(hexBytes(Array(key.publicKey.rawRepresentation)))
    }
}

struct CommandStatusCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "command-status", abstract: "The status of a remote command: queued, inProgress, successful, failed (with a cause) or timedOut."
    )
    @Argument(help: "The request's id.") var id: String
    @OptionGroup var database: DatabaseOption

    func run() throws {
        let p = openPortal(database.db)
        print(portal { () throws(PortalError) in try p.commandStatus(id: id, nowMs: database.nowMs) }.json.text)
    }
}

/// Where the broker is and how the backend proves who it is: mutual TLS with the backend's
/// own certificate (common name tcu-backend), which the broker's ACL lets reach every car
/// (hw/broker/acl, docs/operations.md).
struct BrokerOptions: ParsableArguments {
    @Option(help: "The MQTT broker, HOST:PORT.") var broker = "127.0.0.1:8883"
    @Option(help: "The CA that signed the broker's certificate (PEM): TLS to the broker.") var tlsCa: String?
    @Option(help: "The backend's client certificate (PEM), for mutual TLS.") var tlsCert: String?
    @Option(help: "The backend's private key (PEM).") var tlsKey: String?

    func endpoint() -> BrokerEndpoint {
        let parts = broker.split(separator: ":")
        guard parts.count == 2, let port = Int32(parts[1]), (1...65_535).contains(port) else { fail("--broker: expected HOST:PORT", 64) }
        guard (tlsCert == nil) == (tlsKey == nil) else { fail("--tls-cert and --tls-key go together", 64) }
        guard tlsCert == nil || tlsCa != nil else { fail("--tls-cert needs --tls-ca", 64) }
        return BrokerEndpoint(host: String(parts[0]), port: port, ca: tlsCa, cert: tlsCert, key: tlsKey)
    }
}

struct BrokerEndpoint: Sendable, CustomStringConvertible {
    var host: String
    var port: Int32
    var ca: String?
    var cert: String?
    var key: String?

    var description: String { "\(host):\(port)\(ca == nil ? "" : " (TLS)")" }

    func client(id: String, cleanSession: Bool = true, acknowledgeAfterHandling: Bool = false) throws(MQTTError) -> MQTTClient {
        let c = try MQTTClient(clientID: id, host: host, port: port, cleanSession: cleanSession, acknowledgeAfterHandling: acknowledgeAfterHandling)
        if let ca { try c.useTLS(caFile: ca, certFile: cert, keyFile: key) }
        return c
    }
}
