import ArgumentParser
import Backend
import BackendLink
import TelematicsCore
import VehicleBus

#if canImport(Glibc)
import Glibc
#endif

@main
struct TCUBackend: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcu-backend",
        abstract: "The reference backend's vehicle side: stores what the cars send over MQTT, and answers queries.",
        subcommands: [Serve.self, State.self, Events.self, Gaps.self, Connection.self]
    )
}

struct DatabaseOption: ParsableArguments {
    @Option(help: "The backend's SQLite database.") var db = "tcu-backend.db"
}

func fail(_ message: String, _ code: Int32) -> Never {
    var line = Array("tcu-backend: error: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
    exit(code)
}

func note(_ message: String) {
    var line = Array("tcu-backend: \(message)\n".utf8)
    _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

func openStore(_ path: String) -> BackendStore {
    do { return try BackendStore(path: path) } catch { fail(error.description, 66) }
}

nonisolated(unsafe) var stopRequested: sig_atomic_t = 0

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Subscribe to vehicles/# at QoS 1 and store every message once (duplicates removed by id)."
    )

    @Option(help: "The MQTT broker, HOST:PORT.") var broker = "127.0.0.1:1883"
    @OptionGroup var database: DatabaseOption

    func run() throws {
        let parts = broker.split(separator: ":")
        guard parts.count == 2, let port = Int32(parts[1]) else { fail("--broker: expected HOST:PORT", 64) }
        let store = openStore(database.db)
        signal(SIGTERM) { _ in stopRequested = 1 }
        signal(SIGINT) { _ in stopRequested = 1 }
        // A persistent session: the broker keeps QoS 1 messages for the backend while it is down.
        let client: MQTTClient
        do { client = try MQTTClient(clientID: "tcu-backend", host: String(parts[0]), port: port, cleanSession: false) } catch { fail("\(error)", 69) }
        var failures = 0
        client.onConnect = { rc in
            if rc == 0 {
                _ = client.subscribe("vehicles/#", qos: 1)
                note("connected to \(broker)")
            }
        }
        client.onMessage = { topic, payload in
            do {
                let receipt = try store.receive(topic: topic, payload: String(decoding: payload, as: UTF8.self),
                                                receivedAtMs: wallClockNow().nanoseconds / 1_000_000)
                if case .rejected(let why) = receipt { note("rejected a message: \(why)") }
            } catch {
                note("cannot store a message: \(error)")
            }
        }
        var connected = false
        while stopRequested == 0 {
            if !connected {
                if client.connect() != 0 {
                    failures += 1
                    usleep(UInt32(min(2_000, 100 * (1 << min(failures, 5)))) * 1000)
                    continue
                }
                connected = true
                failures = 0
            }
            if client.loop(timeoutMs: 100) != 0 { connected = false }
        }
        client.disconnect()
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

struct Connection: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The car's retained connection state (online, or the last will).")
    @Argument(help: "The VIN.") var vin: String
    @OptionGroup var database: DatabaseOption

    func run() throws {
        do { print(try openStore(database.db).connection(vin: vin) ?? "null") } catch { fail("\(error)", 65) }
    }
}
