import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// The daemon's health and its conversation with systemd (Type=notify):
/// - `READY=1` once the CAN source, the control socket and the outbox are up (a broken disk
///   does not hold readiness back: the eCall works without it);
/// - `WATCHDOG=1` at half of `WATCHDOG_USEC`, only while every main loop turns (see
///   `LoopMonitor`); a stuck loop stops the pings and systemd restarts the unit;
/// - `STATUS=` with what the unit is doing, when it changes;
/// - SIGHUP reloads the configuration between `RELOADING=1` and `READY=1`;
/// - `STOPPING=1` when the stop begins (this service is the group's last, so it stops first).
public final class Supervisor: Service, Sendable {
    public struct Hooks: Sendable {
        /// True when the daemon is up (checked until it is).
        public var isReady: @Sendable () -> Bool
        /// One line of what the daemon is doing.
        public var status: @Sendable () -> String
        /// Asks the loops that only wake for work (the eCall's) to show they turn.
        public var probe: @Sendable () -> Void
        /// Reloads the configuration: nil when it was applied, otherwise why it was refused.
        public var reload: @Sendable () -> String?

        public init(isReady: @escaping @Sendable () -> Bool, status: @escaping @Sendable () -> String,
                    probe: @escaping @Sendable () -> Void, reload: @escaping @Sendable () -> String?) {
            self.isReady = isReady
            self.status = status
            self.probe = probe
            self.reload = reload
        }
    }

    static let tickMs: Int64 = 250
    /// How often the STATUS line is looked at (it is sent only when it changed).
    static let statusIntervalMs: Int64 = 1_000
    /// A loop is stuck after this long without a beat (or half the watchdog interval, if longer).
    static let minimumSilenceMs: Int64 = 2_000

    private let notifier: SystemdNotifier
    let monitor: LoopMonitor
    private let hooks: Hooks
    private let logger: Logger
    private struct State {
        var ready = false
        var pings = 0
        var stalled: [LoopMonitor.Loop] = []
        var reloads = 0
        var lastReloadError: String?
    }
    private let state = Mutex(State())

    private let clocks: Clocks

    public init(notifier: SystemdNotifier, monitor: LoopMonitor, logger: Logger, clocks: Clocks = .system, hooks: Hooks) {
        self.clocks = clocks
        self.notifier = notifier
        self.monitor = monitor
        self.logger = logger
        self.hooks = hooks
    }

    var watchdogMs: Int64? { notifier.watchdogMicroseconds.map { max(1, $0 / 1000) } }
    var silenceMs: Int64 { max(Self.minimumSilenceMs, (watchdogMs ?? 0) / 2) }

    /// For `tcuctl status`.
    public func report() -> SupervisorReport {
        let s = state.withLock { $0 }
        return SupervisorReport(ready: s.ready, systemd: notifier.isActive, stalledLoops: s.stalled, reloads: s.reloads,
                                watchdogMs: watchdogMs, watchdogPings: s.pings, lastReloadError: s.lastReloadError)
    }

    public func run() async throws {
        await supervise()
        notifier.notify("STOPPING=1", "STATUS=Stopping")
    }

    /// SIGHUP: reads the configuration again (the daemon's signals thread calls it).
    func reload() {
        notifier.notify("RELOADING=1", "STATUS=Reloading the configuration")
        let refusal = hooks.reload()
        state.withLock { $0.reloads += 1; $0.lastReloadError = refusal }
        let status = refusal.map { "Reload refused, running with the previous configuration: \($0)" } ?? hooks.status()
        notifier.notify("READY=1", "STATUS=\(status)")
    }

    private func supervise() async {
        var lastPing: Int64?
        var lastStatus = ""
        var lastStatusAt: Int64 = .min / 2
        while !Task.isShuttingDownGracefully {
            hooks.probe()
            let now = clocks.monotonicMs
            var ready = state.withLock { $0.ready }
            if !ready, hooks.isReady() {
                ready = true
                state.withLock { $0.ready = true }
                lastStatus = hooks.status()
                notifier.notify("READY=1", "STATUS=\(lastStatus)")
                logger.notice("ready", metadata: ["systemd.notify": "\(notifier.isActive)"])
            }
            let stalled = monitor.stalled(silenceMs: silenceMs)
            let before = state.withLock { s in defer { s.stalled = stalled }; return s.stalled }
            if stalled != before {
                if stalled.isEmpty {
                    logger.notice("every main loop turns again")
                } else {
                    logger.critical("a main loop is stuck: the watchdog is no longer fed", metadata: [
                        "loops": "\(stalled.map(\.rawValue).joined(separator: ","))", "silenceMs": "\(silenceMs)",
                    ])
                }
            }
            var sleepMs = Self.tickMs
            if let w = watchdogMs {
                let half = max(1, w / 2)
                if stalled.isEmpty, lastPing.map({ now - $0 >= half }) ?? true {
                    if notifier.notify("WATCHDOG=1") { state.withLock { $0.pings += 1 } }
                    lastPing = now
                }
                if let lastPing { sleepMs = min(sleepMs, max(1, lastPing + half - now)) }
            }
            if ready, now - lastStatusAt >= Self.statusIntervalMs || stalled != before {
                lastStatusAt = now
                let status = stalled.isEmpty ? hooks.status() : "Stuck: \(stalled.map(\.rawValue).joined(separator: ", ")) not turning"
                if status != lastStatus {
                    lastStatus = status
                    notifier.notify("STATUS=\(status)")
                }
            }
            let wait = sleepMs
            do {
                try await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(wait)) }
            } catch {
                break
            }
        }
    }
}

/// The unit's health as the supervisor sees it (typed; `json` is the control socket's form).
public struct SupervisorReport: Sendable {
    public var ready: Bool
    /// Whether systemd listens to the notifications.
    public var systemd: Bool
    public var stalledLoops: [LoopMonitor.Loop]
    public var reloads: Int
    /// Nil without a watchdog.
    public var watchdogMs: Int64?
    public var watchdogPings: Int
    public var lastReloadError: String?

    public var json: JSON {
        var o: [(String, JSON)] = [
            ("ready", .bool(ready)), ("systemd", .bool(systemd)),
            ("stalledLoops", .array(stalledLoops.map { .string($0.rawValue) })), ("reloads", .number(Double(reloads))),
        ]
        if let w = watchdogMs { o += [("watchdogMs", .number(Double(w))), ("watchdogPings", .number(Double(watchdogPings)))] }
        if let e = lastReloadError { o.append(("lastReloadError", .string(e))) }
        return .object(o)
    }
}
