#if canImport(Glibc)
import Glibc
#endif
import GNSS
import Logging
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import VehicleBus

/// The car's position from gpsd: a client on its own thread (reconnecting with backoff when
/// gpsd goes away), the fix filter, the eCall's last fixes, and the parking position.
///
/// Two consumers with different rules: every usable fix goes into the eCall's own memory
/// (`ECallService.positions`: three fixes, never readable from outside); the parking position
/// is taken at ignition-off, kept in a file across restarts, and sent to the backend as the
/// `parking` state block (null while the car is in use).
public final class GNSSService: Service, Sendable {
    public struct Configuration: Sendable {
        public var host: String
        public var port: String
        public var filter = GNSSFilter.Configuration()
        public var parkingFile: String

        public init(host: String, port: String, parkingFile: String) {
            self.host = host
            self.port = port
            self.parkingFile = parkingFile
        }
    }

    private struct State: Sendable {
        var filter: GNSSFilter
        var parking: ParkingTracker
        var connected = false
        var outages = 0
        var lastError: String?
    }

    let configuration: Configuration
    let logger: Logger
    let clocks: Clocks
    let eCallPositions: (@Sendable (PositionFix) -> Void)?
    let onParking: @Sendable (ParkingPosition?) -> Void
    private let ignition: ChangeFeed
    private let state: Mutex<State>
    private let stop = StopSignal()

    public init(
        configuration: Configuration, bus: VehicleBusService, logger: Logger,
        clocks: Clocks = .system,
        eCallPositions: (@Sendable (PositionFix) -> Void)? = nil,
        onParking: @escaping @Sendable (ParkingPosition?) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.logger = logger
        self.clocks = clocks
        self.eCallPositions = eCallPositions
        self.onParking = onParking
        ignition = bus.changes(of: [.ignitionOn], for: "parking position")
        var restored: ParkingPosition?
        if let text = try? readTextFile(configuration.parkingFile) {
            do {
                restored = try ParkingPosition.parse(text, source: configuration.parkingFile)
            } catch {
                logger.error("the parking position file is damaged; moved aside", metadata: ["error": "\(error)"])
                rename(configuration.parkingFile, configuration.parkingFile + ".bad")
            }
        }
        state = Mutex(State(filter: GNSSFilter(configuration: configuration.filter), parking: ParkingTracker(restored: restored)))
    }

    public var parkingPosition: ParkingPosition? { state.withLock { $0.parking.position } }

    /// Forgets the parking position (a factory reset): the file is deleted, nothing is sent.
    public func clearParking() {
        state.withLock { $0.parking = ParkingTracker() }
        unlink(configuration.parkingFile)
        syncFolder(of: configuration.parkingFile)
    }

    /// Hands the current parking position (or none) over again, e.g. after a privacy change.
    public func resendParking() { onParking(parkingPosition) }

    /// The current fix while it is fresh (a service request's position), nil otherwise.
    public func currentFix() -> FilteredFix? {
        let now = clocks.monotonic()
        return state.withLock { $0.filter.fresh(now: now) }
    }

    /// The receiver's link, its current fix and the parking position, for status queries.
    public func report() -> GNSSReport {
        let now = clocks.monotonic()
        return state.withLock { s in
            var r = GNSSReport(gpsd: "\(configuration.host):\(configuration.port)", connected: s.connected, fix: .none,
                               reports: s.filter.reports, fixes: s.filter.accepted, fixLosses: s.filter.fixLosses,
                               jumps: s.filter.jumps, outages: s.outages, lastError: s.lastError, parking: s.parking.position)
            if let c = s.filter.current {
                let fresh = s.filter.fresh(now: now) != nil
                r.fix = fresh ? (c.mode == 3 ? .threeD : .twoD) : .stale
                r.current = .init(ageMs: now.milliseconds(since: c.receivedAt), trusted: fresh && c.trusted, error95: c.error95,
                                  satellites: c.satellites, moving: c.direction != nil)
            }
            return r
        }
    }

    public func run() async throws {
        let thread = DedicatedThread(name: "gnss") { [self] in self.readLoop() }
        // The current parking position (a restored one, or none) goes to the backend once.
        onParking(parkingPosition)
        for await changes in ignition.cancelOnGracefulShutdown() {
            for c in changes {
                guard let on = c.new?.flag, c.old?.flag != on else { continue }
                // The first reading after a start: off keeps the stored position (the car was
                // parked while the unit was down); on means the car is in use.
                if c.old == nil, !on { continue }
                ignitionChanged(on: on)
            }
        }
        stop.set()
        thread.join()
    }

    private func ignitionChanged(on: Bool) {
        let now = clocks.wall()
        let (changed, position) = state.withLock { s in
            (s.parking.ignition(on: on, at: now, lastTrusted: s.filter.lastTrusted), s.parking.position)
        }
        guard changed else { return }
        if let position {
            if !writeFileDurably(configuration.parkingFile, position.json.text + "\n") {
                logger.error("cannot store the parking position", metadata: ["gnss.parkingFile": "\(configuration.parkingFile)"])
            }
            logger.notice("parked", metadata: ["gnss.parkedAt": "\(utcText(position.parkedAt.nanoseconds / 1_000_000_000))"])
        } else {
            unlink(configuration.parkingFile)
            syncFolder(of: configuration.parkingFile)
        }
        onParking(position)
    }

    private func readLoop() {
        let client = GPSDClient(host: configuration.host, port: configuration.port)
        var failures = 0
        var rng = SystemRandomNumberGenerator()
        while !stop.isSet {
            do {
                try client.connect()
                if failures > 0 { logger.notice("gpsd is back", metadata: ["gnss.gpsd": "\(configuration.host):\(configuration.port)"]) }
                failures = 0
                state.withLock { $0.connected = true; $0.lastError = nil }
                while !stop.isSet {
                    if case .fix(let fix) = try client.next(timeoutMs: 200) { take(fix) }
                }
                client.close()
            } catch {
                let first = state.withLock { s -> Bool in
                    let was = s.connected
                    if was { s.outages += 1 }
                    s.connected = false
                    s.lastError = error.description
                    return was || failures == 0
                }
                if first { logger.warning("no gpsd: no position until it is back", metadata: ["error": "\(error)"]) }
                failures += 1
                // Capped exponential backoff with jitter: 0.25 s, 0.5 s ... 5 s, each × 0.5-1.0.
                let cap = min(5_000, 250 * (1 << min(failures - 1, 5)))
                let delay = Int64(Double(cap) * Double.random(in: 0.5...1.0, using: &rng))
                stop.wait(timeoutMs: delay)
            }
        }
    }

    private func take(_ fix: GNSSFix) {
        let now = clocks.monotonic()
        let result = state.withLock { $0.filter.accept(fix, receivedAt: now) }
        guard case .success(let f) = result else { return }
        if f.jump {
            logger.warning("an impossible position jump; the fix is not used", metadata: ["gnss.jumps": "\(state.withLock { $0.filter.jumps })"])
            return
        }
        eCallPositions?(PositionFix(
            latitude: f.latitude, longitude: f.longitude, time: now.nanoseconds / 1_000_000, horizontalError95: f.error95,
            track: f.direction, speed: f.speed, fixTimeMs: f.utc.map { $0.nanoseconds / 1_000_000 }
        ))
    }
}

/// The GNSS receiver's status (typed; `json` and `parkingJSON` are the control socket's form).
public struct GNSSReport: Sendable {
    public enum Fix: String, Sendable { case none, stale, twoD = "2D", threeD = "3D" }
    /// The newest fix's figures.
    public struct Current: Sendable {
        public var ageMs: Int64
        /// Fresh and within the receiver's error bound.
        public var trusted: Bool
        public var error95: Double?
        public var satellites: Int?
        public var moving: Bool
    }

    /// gpsd's address, host:port.
    public var gpsd: String
    public var connected: Bool
    public var fix: Fix
    public var current: Current?
    public var reports: Int
    public var fixes: Int
    public var fixLosses: Int
    public var jumps: Int
    public var outages: Int
    public var lastError: String?
    public var parking: ParkingPosition?

    public var json: JSON {
        var o: [(String, JSON)] = [("gpsd", .string(gpsd)), ("connected", .bool(connected)), ("fix", .string(fix.rawValue))]
        if let c = current {
            o.append(("ageMs", .number(Double(c.ageMs))))
            o.append(("trusted", .bool(c.trusted)))
            if let e = c.error95 { o.append(("error95", .number((e * 10).rounded() / 10))) }
            if let n = c.satellites { o.append(("satellites", .number(Double(n)))) }
            o.append(("moving", .bool(c.moving)))
        } else {
            o.append(("trusted", .bool(false)))
        }
        o += [
            ("reports", .number(Double(reports))), ("fixes", .number(Double(fixes))), ("fixLosses", .number(Double(fixLosses))),
            ("jumps", .number(Double(jumps))), ("outages", .number(Double(outages))),
        ]
        if let lastError { o.append(("lastError", .string(lastError))) }
        return .object(o)
    }

    public var parkingJSON: JSON { parking?.json ?? .string("none") }
}
