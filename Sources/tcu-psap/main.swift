import ArgumentParser
import ECallLink
import PSAP
import Platform
import TelematicsCore

#if canImport(Glibc)
import Glibc
#endif

@main
struct TCUPSAP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tcu-psap",
        abstract: "A PSAP and network simulator for the unit's eCall (circuit-switched, EN 16062, or NG-eCall over SIP).",
        discussion: """
            Listens for units on a TCP port (or, with --sip, for NG-eCall INVITEs on a UDP \
            port), answers their calls as the scenario file says (call setup outcome per \
            attempt, SEND MSD, LL-ACK, AL-ACK or clear-down, drops, asking for the MSD again, \
            hang-up, calling back), and writes every event as a JSON line, each MSD it received \
            decoded. docs/ecall.md describes the protocol and the scenario keys.
            """
    )

    @Option(help: "Where to listen, HOST:PORT.")
    var listen: String = "127.0.0.1:5061"

    @Option(help: "Be the NG-eCall PSAP instead: take SIP on this IPv4 address and UDP port (HOST:PORT).")
    var sip: String?

    @Option(help: "The scenario file (key = value lines); the defaults answer and acknowledge.")
    var scenario: String?

    @Option(help: "Append the event log (JSON lines) to this file instead of standard output.")
    var log: String?

    func run() throws {
        let signals: ProcessSignals
        do { signals = try ProcessSignals(reload: []) } catch { fail(error.description, 71) }
        guard let endpoint = TCPEndpoint.parseLink(listen) else { fail("--listen: expected HOST:PORT, found '\(listen)'", 64) }
        var s = PSAPScenario()
        if let scenario {
            let text: String
            do { text = try readTextFile(scenario) } catch { fail(error.description, 66) }
            do { s = try PSAPScenario.parse(text, source: scenario) } catch { fail("\(error)", 65) }
        }
        let out: UnsafeMutablePointer<FILE>
        if let log {
            guard let f = fopen(log, "a") else { fail("cannot open \(log) for writing", 73) }
            out = f
        } else {
            out = fdopen(1, "w")
        }
        let sink = LogSink(file: out)
        if let sip {
            guard let endpoint = Endpoint.parse(sip), endpoint.isIPv4OrLocalhost, endpoint.host != "localhost" else {
                fail("--sip: expected an IPv4 HOST:PORT, found '\(sip)'", 64)
            }
            let psap = SIPPSAPSimulator(listen: endpoint, scenario: s, log: { sink.write($0) })
            guard signals.route({ _ in psap.requestStop() }) else { fail("cannot start the signals thread", 71) }
            if let failure = psap.run() { fail(failure, 69) }
            return
        }
        let sim: PSAPSimulator
        do { sim = try PSAPSimulator(listen: endpoint, scenario: s, log: { sink.write($0) }) } catch { fail("\(error)", 69) }
        guard signals.route({ _ in sim.requestStop() }) else { fail("cannot start the signals thread", 71) }
        sim.run()
    }

    private func fail(_ message: String, _ code: Int32) -> Never {
        var line = Array("tcu-psap: error: \(message)\n".utf8)
        _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        Glibc.exit(code)
    }
}

/// One JSON line per event, flushed, from whichever thread logs.
final class LogSink: @unchecked Sendable {
    private let file: UnsafeMutablePointer<FILE>
    private var lock = pthread_mutex_t()
    init(file: UnsafeMutablePointer<FILE>) {
        self.file = file
        pthread_mutex_init(&lock, nil)
    }
    func write(_ j: JSON) {
        pthread_mutex_lock(&lock)
        fputs(j.text + "\n", file)
        fflush(file)
        pthread_mutex_unlock(&lock)
    }
}
