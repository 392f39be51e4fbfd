import ArgumentParser
import UnitConfiguration
import Logging
import TelematicsCore
import TelematicsDaemon

#if canImport(Glibc)
import Glibc
#endif

@main
struct Telematicsd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "telematicsd",
        abstract: "The telematics unit (TCU) of a simulated SEAT CONNECT car.",
        discussion: """
            Reads the car's CAN bus (SocketCAN or a recorded candump log), decodes it with a DBC \
            file and keeps the live vehicle state; transmits the unit's status frame; answers \
            tcuctl on its control socket. Stops gracefully on SIGTERM or SIGINT.

            Exit codes: 0 success, 64 usage, 65 invalid DBC or profile, 66 a file cannot be \
            read, 69 CAN interface unavailable, 71 the signals cannot be taken, 73 control socket cannot be created, \
            78 invalid configuration.
            """
    )

    @Option(name: .shortAndLong, help: "The configuration file.")
    var config: String = "/etc/telematicsd/telematicsd.conf"

    @Flag(help: "Check the configuration, the DBC and the vehicle profile, then exit.")
    var checkConfig = false

    @Option(help: "Log level, overriding the configuration (trace, debug, info, notice, warning, error, critical).")
    var logLevel: String?

    @Flag(help: "Print every configuration key (section, form, default, whether a reload applies it, meaning) as the man page lists them (roff), then exit.")
    var configReference = false

    func run() async throws {
        if configReference {
            print(DaemonConfiguration.roffReference, terminator: "")
            return
        }
        let setup: LoadedSetup
        do {
            setup = try Daemon.load(configPath: config)
        } catch {
            fail(error.message, code: error.exitCode)
        }
        if checkConfig {
            print("\(config): OK (\(setup.database.messages.count) messages in \(setup.configuration.dbcPath), VIN \(setup.profile.vin), source \(setup.configuration.source))")
            return
        }
        var levelName = setup.configuration.logLevel.rawValue
        if let logLevel {
            guard DaemonConfiguration.LogLevel(rawValue: logLevel) != nil else {
                fail("--log-level: unknown level '\(logLevel)'", code: 64)
            }
            levelName = logLevel
        }
        let level = Logger.Level(rawValue: levelName) ?? .info
        let log = LogOutput(writer: LogWriter(), level: level)
        // Libraries' own loggers go to the same output.
        LoggingSystem.bootstrap { label in JournalLogHandler(label: label, output: log) }
        do {
            try await Daemon.run(setup, log: log, logLevelFixed: logLevel != nil)
            log.writer.flush()
        } catch {
            log.logger(label: "telematicsd").critical("cannot start", metadata: ["error": "\(error.message)"])
            log.writer.flush()
            fail(error.message, code: error.exitCode)
        }
    }

    private func fail(_ message: String, code: Int32) -> Never {
        var line = Array("telematicsd: error: \(message)\n".utf8)
        _ = line.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
        Glibc.exit(code)
    }
}
