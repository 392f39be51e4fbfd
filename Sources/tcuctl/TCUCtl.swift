import ArgumentParser
import Control
import Platform
import TelematicsCore
import VehicleBus

#if canImport(Glibc)
import Glibc
#endif

@main
struct TCUCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcuctl",
        abstract: "Operate and inspect the telematics unit, and work with its CAN data offline.",
        subcommands: [Status.self, CAN.self, MSDCommand.self, ECallCommand.self, PrivacyCommand.self, RegisterCommand.self, AssistantCommand.self, LicenceCommand.self, NaviCommand.self, ResetCommand.self, MenuCommand.self, FaultCommand.self]
    )
}

struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "The daemon's control socket.")
    var socket: String = "/run/telematicsd/control.sock"
}

/// The DBC file, or a clear error; what the parser skipped goes to standard error as warnings.
func loadDatabase(_ path: String) -> DBCDatabase {
    let db: DBCDatabase
    do { db = try loadDBC(path: path) } catch { die(error.description, code: 65) }
    for w in db.warnings {
        var line = Array("tcuctl: warning: \(w)\n".utf8)
        _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    }
    return db
}

func die(_ message: String, code: Int32 = 1) -> Never {
    var line = Array("tcuctl: error: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(code)
}

func ask(_ socket: String, _ request: ControlRequest) -> JSON {
    let reply: JSON
    do { reply = try ControlClient.request(socket, request.json) } catch { die(error.description, code: 69) }
    guard reply["ok"]?.boolValue == true else { die(reply["error"]?.stringValue ?? "the daemon refused the request") }
    return reply
}

/// How long a request that waits for the backend (a registration, a renewal) may take: the
/// daemon's own timeout is at most 120 s.
let interactiveTimeoutMs = 130_000

/// A request that waits for the backend; the reply may say it failed (the caller shows why).
func askBackend(_ socket: String, _ request: ControlRequest) -> JSON {
    do { return try ControlClient.request(socket, request.json, timeoutMs: interactiveTimeoutMs) } catch { die(error.description, code: 69) }
}

/// A leaf value for people: strings without quotes.
func plain(_ v: JSON) -> String { v.stringValue ?? v.text }

/// Prints nested JSON as `a.b.c = value` lines, for people.
func printFlat(_ json: JSON, prefix: String = "") {
    switch json {
    case .object(let pairs):
        // A leaf reading: {"value": …} or {"available": false}.
        if let v = json["value"] {
            print("\(prefix) = \(plain(v))")
            return
        }
        if json["available"]?.boolValue == false {
            let last = json["lastValue"].map { " (last \(plain($0)))" } ?? ""
            print("\(prefix) = unavailable\(last)")
            return
        }
        for (k, v) in pairs { printFlat(v, prefix: prefix.isEmpty ? k : prefix + "." + k) }
    default:
        print("\(prefix) = \(plain(json))")
    }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the vehicle state and the bus as the daemon sees them.")

    @OptionGroup var options: SocketOption

    @Flag(help: "Print the daemon's reply as one JSON object.")
    var json = false

    @Option(help: "Only the part of the state under this dotted key (e.g. doors, ignition.on).")
    var key: String?

    func run() throws {
        let reply = ask(options.socket, .status)
        var state = reply["state"] ?? .null
        if let key {
            for part in key.split(separator: ".") {
                guard let next = state[String(part)] else { die("the state has no key '\(key)'", code: 1) }
                state = next
            }
            if json { print(state.text) } else { printFlat(state, prefix: key) }
            return
        }
        if json { print(reply.text); return }
        for (section, value) in reply.objectValue ?? [] where section != "ok" && section != "state" {
            printFlat(value, prefix: section)
        }
        printFlat(state)
    }
}

struct CAN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "can",
        abstract: "Decode and encode CAN frames with a DBC file; send frames through the daemon.",
        subcommands: [Decode.self, Encode.self, Send.self]
    )
}

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode a candump -l log: one JSON line per frame.",
        discussion: """
            Each line: {"t": receive time, "iface", "id", "extended", "message", "signals": \
            {name: physical value}, "labels": {name: value-table name}}. Frames whose \
            identifier the DBC does not know have "message": null and their raw "data". \
            A malformed log line is reported on stderr with its line number and skipped; \
            the exit code is then 1.
            """
    )

    @Option(help: "The DBC file.")
    var dbc: String

    @Argument(help: "The candump -l log ('-' for standard input).")
    var log: String

    func run() throws {
        let db = loadDatabase(dbc)
        let reader: CandumpLogReader
        do { reader = try CandumpLogReader(path: log == "-" ? "/dev/stdin" : log) } catch { die(error.description, code: 66) }
        var errors = 0
        let decoder = FrameDecoder(db)
        var scratch: [DecodedSignal] = []
        var out = ""
        while true {
            let frame: CANFrame?
            do { frame = try reader.next() } catch {
                errors += 1
                var line = Array("tcuctl: \(error)\n".utf8)
                _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
                continue
            }
            guard let frame else { break }
            out.removeAll(keepingCapacity: true)
            FrameJSON.write(frame, decoder: decoder, scratch: &scratch, into: &out)
            print(out)
        }
        if errors > 0 { throw ExitCode(1) }
    }
}

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode physical signal values into frames (cansend syntax).",
        discussion: """
            With MESSAGE and NAME=VALUE arguments, prints one frame. Without them, reads JSON \
            lines {"message": NAME, "signals": {NAME: VALUE}} from standard input and prints one \
            frame per line. Values outside a signal's range, unknown signals and missing \
            signals are errors that name the signal.
            """
    )

    @Option(help: "The DBC file.")
    var dbc: String

    @Flag(help: "Encode signals that are not given as raw 0.")
    var missingAsZero = false

    @Argument(help: "The message name, then NAME=VALUE for each signal.")
    var arguments: [String] = []

    func run() throws {
        let db = loadDatabase(dbc)
        if let name = arguments.first {
            var values: [String: Double] = [:]
            for a in arguments.dropFirst() {
                let parts = a.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let v = Double(parts[1]) else { die("expected NAME=NUMBER, found '\(a)'", code: 64) }
                values[String(parts[0])] = v
            }
            print(encode(db, name, values))
            return
        }
        var lineNo = 0
        while let line = readLine() {
            lineNo += 1
            if line.trimmingSpaces.isEmpty { continue }
            let json: JSON
            do { json = try JSON.parse(line) } catch { die("stdin:\(lineNo): \(error.message)", code: 65) }
            guard let name = json["message"]?.stringValue else { die("stdin:\(lineNo): needs a \"message\"", code: 65) }
            var values: [String: Double] = [:]
            for (k, v) in json["signals"]?.objectValue ?? [] {
                guard let d = v.numberValue else { die("stdin:\(lineNo): signal \(k) needs a number", code: 65) }
                values[k] = d
            }
            print(encode(db, name, values, context: "stdin:\(lineNo): "))
        }
    }

    func encode(_ db: DBCDatabase, _ name: String, _ values: [String: Double], context: String = "") -> String {
        guard let m = db.message(named: name) else { die("\(context)the DBC has no message '\(name)'", code: 65) }
        do {
            let data = try SignalCodec.encode(m, values: values, missingAsZero: missingAsZero)
            return CandumpFormat.formatFrame(CANFrame(id: m.id, data: data, isExtended: m.isExtended, isFD: m.isFD))
        } catch {
            die("\(context)\(error.description)", code: 65)
        }
    }
}

struct Send: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Have the daemon encode and transmit a DBC message on its bus.",
        discussion: "Signals not given are sent as raw 0. Prints the frame that was sent."
    )

    @OptionGroup var options: SocketOption

    @Argument(help: "The message name, then NAME=VALUE for each signal.")
    var arguments: [String]

    func run() throws {
        guard let name = arguments.first else { die("name a message", code: 64) }
        var signals: [String: Double] = [:]
        for a in arguments.dropFirst() {
            let parts = a.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, let v = Double(parts[1]) else { die("expected NAME=NUMBER, found '\(a)'", code: 64) }
            signals[String(parts[0])] = v
        }
        let reply = ask(options.socket, .transmit(message: name, signals: signals))
        print(reply["frame"]?.stringValue ?? "")
    }
}

extension ControlRequest.ECallAction: ExpressibleByArgument {}

struct MSDCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "msd",
        abstract: "Encode and decode eCall Minimum Set of Data messages (EN 15722, ASN.1 UPER).",
        subcommands: [MSDDecode.self, MSDEncode.self]
    )
}

struct MSDDecode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode an MSD (msdVersion 2 or 3) given in hex; prints every field as JSON.",
        discussion: "Field names are those of the ASN.1 module; degrees, the UTC time and the direction in degrees are added for people."
    )

    @Argument(help: "The MSD in hex (spaces allowed).")
    var hex: [String]

    func run() throws {
        let text = hex.joined().filter { !$0.isWhitespace }
        guard let data = bytes(fromHex: text) else { die("'\(text)' is not hex (two digits a byte)", code: 65) }
        do {
            print(try MSD.decode(data).json.text)
        } catch {
            die("invalid MSD: \(error)", code: 65)
        }
    }
}

struct MSDEncode: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode",
        abstract: "Encode an msdVersion 3 MSD; prints it in hex.",
        discussion: """
            With no field options, reads the MSD as JSON on standard input (the form \
            `tcuctl msd decode` prints; latitudeDegrees/longitudeDegrees may replace the \
            milliarcsecond fields). With options, builds it from them. Invalid fields are \
            refused with an error that names them.
            """
    )

    @Option(help: "The VIN (17 characters).") var vin: String?
    @Flag(help: "Automatic activation (a crash); manual (the SOS button) otherwise.") var automatic = false
    @Flag(help: "A test call.") var testCall = false
    @Flag(help: "The position can be trusted (95 % within 150 m).") var trusted = false
    @Option(help: "Vehicle type (ASN.1 name, default passengerVehicleClassM1).") var vehicleType = "passengerVehicleClassM1"
    @Option(help: "Propulsion storage, comma-separated ASN.1 names (default gasolineTankPresent).") var propulsion = "gasolineTankPresent"
    @Option(help: "UTC seconds (default: now is not read; give it).") var timestamp: UInt32?
    @Option(help: "Latitude in degrees (omit for unknown).") var latitude: Double?
    @Option(help: "Longitude in degrees (omit for unknown).") var longitude: Double?
    @Option(help: "Direction in 2° steps, 0-179 (omit for unknown).") var direction: Int?
    @Option(help: "N1 minus the position, 'latDelta,lonDelta' in units of 100 mas.") var n1 = "0,0"
    @Option(help: "N2 minus N1, 'latDelta,lonDelta' in units of 100 mas.") var n2 = "0,0"
    @Option(help: "Number of occupants (omit for unknown).") var occupants: Int?
    @Option(help: "Message identifier (1 for a first send).") var messageIdentifier = 1

    func run() throws {
        let msd: MSD
        if let vin {
            guard let timestamp else { die("--timestamp is required with field options", code: 64) }
            var flags = [Bool](repeating: false, count: 7)
            for name in propulsion.split(separator: ",") {
                guard let i = MSD.propulsionNames.firstIndex(of: String(name)) else {
                    die("--propulsion: unknown '\(name)'; known: \(MSD.propulsionNames.joined(separator: ", "))", code: 64)
                }
                flags[i] = true
            }
            guard let type = MSD.vehicleTypes.firstIndex(of: vehicleType) else { die("--vehicle-type: unknown '\(vehicleType)'", code: 64) }
            func delta(_ text: String, _ option: String) -> MSD.LocationDelta {
                let parts = text.split(separator: ",").compactMap { Int($0) }
                guard parts.count == 2 else { die("\(option): expected 'latDelta,lonDelta', found '\(text)'", code: 64) }
                return MSD.LocationDelta(latitude: parts[0], longitude: parts[1])
            }
            guard (latitude == nil) == (longitude == nil) else { die("give both --latitude and --longitude, or neither", code: 64) }
            // Degrees to milliarcseconds, checked before the conversion (1e300 or nan would trap).
            func mas(_ degrees: Double?, _ option: String, limit: Double) -> Int32 {
                guard let d = degrees else { return MSD.unknownCoordinate }
                guard d.isFinite, abs(d) <= limit else { die("\(option): expected degrees from -\(Int(limit)) to \(Int(limit)), found \(d)", code: 64) }
                return Int32((d * 3_600_000).rounded())
            }
            msd = MSD(
                messageIdentifier: messageIdentifier, automaticActivation: automatic, testCall: testCall,
                positionCanBeTrusted: trusted, vehicleType: type, vin: vin, propulsion: flags, timestamp: timestamp,
                latitude: mas(latitude, "--latitude", limit: 90), longitude: mas(longitude, "--longitude", limit: 180),
                direction: direction, recentLocationN1: delta(n1, "--n1"), recentLocationN2: delta(n2, "--n2"),
                numberOfOccupants: occupants
            )
        } else {
            var text = ""
            while let line = readLine(strippingNewline: false) { text += line }
            do {
                msd = try MSD(json: try JSON.parse(text))
            } catch let e as ParseError {
                die("stdin: \(e)", code: 65)
            } catch let e as MSDError {
                die("invalid MSD: \(e)", code: 65)
            }
        }
        do {
            print(hexBytes(try msd.encode()))
        } catch {
            die("invalid MSD: \(error)", code: 65)
        }
    }
}

struct FaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fault",
        abstract: "For tests and benches: make one of the daemon's main loops hang, so that its watchdog stops being fed.",
        discussion: "Refused unless the daemon's configuration has [control] fault-injection = true. Under systemd the watchdog then restarts the service."
    )

    @OptionGroup var options: SocketOption

    @Option(help: "The loop that hangs: can-reader, outbox, ecall or control.")
    var hang: String

    func run() throws {
        _ = ask(options.socket, .fault(hang: hang))
        print("ok")
    }
}

struct ECallCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ecall",
        abstract: "Trigger a test eCall, cancel a pending manual one, or show the eCall's state.",
        discussion: "A test call goes to the configured test number with testCall set in the MSD. Only a manual call still in its cancellation window (T1) can be cancelled; an automatic one never."
    )

    typealias Action = ControlRequest.ECallAction

    @OptionGroup var options: SocketOption

    @Argument(help: "test, cancel or status.")
    var action: Action

    func run() throws {
        let reply = ask(options.socket, .eCall(action))
        if action == .status { printFlat(reply["ecall"] ?? .null, prefix: "ecall") } else { print("ok") }
    }
}

struct PrivacyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "privacy",
        abstract: "Show or set the privacy level (Settings → Online services → Service management).",
        discussion: """
            share: everything the services need goes to the backend, positions included. use: the \
            car uses its position but never sends it (no parking position). offline: no data leaves \
            the car except the legal eCall, which works in every mode.
            """
    )

    @OptionGroup var options: SocketOption

    @Argument(help: "share, use or offline; without it, the current level.")
    var mode: String?

    func validate() throws {
        if let mode, PrivacyMode(word: mode) == nil {
            throw ValidationError("'\(mode)' is not a privacy level: expected share, use or offline")
        }
    }

    func run() throws {
        print(ask(options.socket, .privacy(mode.flatMap(PrivacyMode.init(word:))))["privacy"]?.stringValue ?? "unknown")
    }
}

struct RegisterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "register",
        abstract: "Register the car with the 8-digit pairing code from the portal (Settings → Online services → Registration).",
        discussion: "The code goes to the backend at once (nothing is queued: without a data connection it fails right away); the answer is the registration, or the reason and what to do. A few wrong codes lock registration for a growing time."
    )

    @OptionGroup var options: SocketOption

    @Argument(help: "The pairing code: 8 digits.")
    var code: String

    func validate() throws {
        guard isPairingCode(code) else { throw ValidationError("the pairing code is 8 digits, found '\(code)'") }
    }

    func run() throws {
        let reply = askBackend(options.socket, .register(code: code))
        if let refusal = RegistrationReply.refusal(in: reply) { die("registration failed: \(refusal.text)", code: 75) }
        printFlat(reply["registration"] ?? .null, prefix: "registration")
    }
}

struct AssistantCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "assistant",
        abstract: "The in-car activation assistant: create the account in the car, then log in, add the car to the garage and register it.",
        discussion: "The seed product's other path to registration, without the portal: create-account, then (after the e-mail address is verified) add-car. The password travels once over the backend link and is kept nowhere in the car.",
        subcommands: [CreateAccount.self, AddCar.self]
    )

    static func report(_ reply: JSON, what: String) {
        if let refusal = RegistrationReply.refusal(in: reply) { die("\(what) failed: \(refusal.text)", code: 75) }
    }

    /// A secret from standard input (SecretInput), or a clear error at its end.
    static func secret(_ prompt: String) -> String {
        guard let value = SecretInput.read(prompt), !value.isEmpty else {
            die("\(prompt.lowercased()): nothing on standard input (secrets are read from it, one per line)", code: 64)
        }
        return value
    }

    struct CreateAccount: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-account", abstract: "Create the user's account (SEAT ID) from the car.",
            discussion: "The password (at least 10 characters) and the 4-digit S-PIN that will guard remote functions are read from standard input: asked for with the echo off at a terminal, one per line from a pipe or a file. They are never arguments, which every local user can read."
        )
        @OptionGroup var options: SocketOption
        @Option(help: "The e-mail address.") var email: String

        func run() throws {
            let password = AssistantCommand.secret("Password (at least 10 characters)")
            let spin = AssistantCommand.secret("S-PIN for remote functions (4 digits)")
            guard spin.count == 4, spin.allSatisfy({ $0.isASCII && $0.isNumber }) else { die("the S-PIN is 4 digits", code: 64) }
            let reply = askBackend(options.socket, .createAccount(email: email, password: password, spin: spin))
            AssistantCommand.report(reply, what: "creating the account")
            print("account = \(plain(reply["user"] ?? .null))")
            if let advice = reply["advice"]?.stringValue { print("next = \(advice)") }
        }
    }

    struct AddCar: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add-car", abstract: "Log in, add this car to the account's garage and register it (the account holder becomes its primary user).",
            discussion: "The password is read from standard input: asked for with the echo off at a terminal, the first line from a pipe or a file."
        )
        @OptionGroup var options: SocketOption
        @Option(help: "The account's e-mail address.") var email: String
        @Flag(help: "Accept the terms of use and the privacy policy (required).") var acceptTerms = false

        func run() throws {
            let password = AssistantCommand.secret("Password")
            let reply = askBackend(options.socket, .addCar(email: email, password: password, acceptedTerms: acceptTerms))
            AssistantCommand.report(reply, what: "registration")
            printFlat(reply["registration"] ?? .null, prefix: "registration")
        }
    }
}

struct ResetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Delete user / restore factory settings: the car forgets its registration, parking position, privacy choice and queued data, and asks the backend to delete the car's data.",
        discussion: "Needed on a change of owner. The backend's deletion request is queued until delivered; tcuctl status shows outbox.dataDeletionConfirmedAt once the backend confirmed it. The eCall is not affected."
    )

    @OptionGroup var options: SocketOption

    @Flag(help: "Yes, delete it all.")
    var yes = false

    func validate() throws {
        guard yes else { throw ValidationError("a factory reset deletes the user's data in the car and in the backend: add --yes") }
    }

    func run() throws {
        let reply = ask(options.socket, .factoryReset)
        print("factory settings restored: \(reply["outboxMessagesDeleted"]?.integer() ?? 0) queued messages deleted; the backend is asked to delete the car's data")
    }
}

struct LicenceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "licence",
        abstract: "Show the car's licence, or renew it from the car: radio (1 year 50 €, 2 years 85 €) or navi (135 €, 225 €).",
        discussion: "An expired licence stops the remote services (parking position, remote access), never the eCall."
    )

    enum Package: String, ExpressibleByArgument, CaseIterable { case radio, navi }

    @OptionGroup var options: SocketOption

    @Flag(help: "Renew (with --package and --years); without it, show the licence.")
    var renew = false

    @Option(help: "radio or navi.") var package: Package = .radio
    @Option(help: "1 or 2 years.") var years: Int = 1

    func validate() throws {
        guard years == 1 || years == 2 else { throw ValidationError("a licence is renewed for 1 or 2 years, not \(years)") }
    }

    func run() throws {
        guard renew else {
            printFlat(ask(options.socket, .status)["registration"] ?? .null, prefix: "registration")
            return
        }
        let reply = askBackend(options.socket, .renewLicence(package: package.rawValue, years: years))
        if let refusal = RegistrationReply.refusal(in: reply) { die("renewal failed: \(refusal.text)", code: 75) }
        printFlat(reply["registration"] ?? .null, prefix: "registration")
        if let price = reply["priceEUR"]?.integer() { print("price = \(price) EUR") }
    }
}
