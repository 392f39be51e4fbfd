// The backend link's decisions, as a value: when to connect and how long to back off after a
// failure, what the broker's answers change, how many messages may be in flight, what an
// acknowledgement frees and what a lost connection sends again. The outbox thread (the shell)
// does the MQTT calls and the SQLite reads; this decides. No IO, no clock: time comes in with
// the events (monotonic milliseconds), and so does the backoff's jitter (a fraction the shell
// draws at random), so that a test replays any sequence exactly.
//
//     offline ──online──> down(due now)
//     down ──due, connect called──> connecting ──CONNACK 0──> up (announce online, subscribe)
//                                   connecting ──CONNACK refused / error──> down(backoff)
//     down ──connect call failed──> down(backoff)
//     up ──connection lost──> down(backoff): the in-flight messages go again on the next connection
//     any ──offline (privacy) / close──> offline: a goodbye when up, nothing leaves the car

/// What the shell must do after an event.
public enum UplinkAction: Sendable, Equatable {
    /// Publish the retained `{"online":true}` and subscribe to the car's commands and answers.
    case announceOnline
    /// Close the connection (a CONNACK that refused, or going offline).
    case disconnect
    /// Publish the retained `{"online":false}` before closing (going offline while up).
    case sayGoodbye
}

/// The backend link's state machine: connection, backoff and the in-flight window.
public struct UplinkMachine: Sendable, Equatable {
    public enum Phase: Sendable, Equatable {
        /// Closed: the user chose "offline" (no connection at all), or the unit stops.
        case offline
        /// Not connected; the next attempt is due at this instant (monotonic ms).
        case down(nextAttemptAt: Int64)
        /// Connect was called; the CONNACK has not come yet.
        case connecting
        /// Connected and announced.
        case up
    }

    public private(set) var phase: Phase = .down(nextAttemptAt: .min)
    /// Failures since the last successful connection (the backoff's exponent).
    public private(set) var failures = 0
    /// Connections made again after a first one (or after failures).
    public private(set) var reconnects: Int64 = 0
    /// Why the link is not up, in words.
    public private(set) var lastError: String?
    /// Messages handed to the broker and not yet acknowledged: MQTT message id → outbox id.
    public private(set) var inFlight: [Int32: String] = [:]
    /// Acknowledged since the shell last deleted them from the outbox.
    public private(set) var acknowledged: [String] = []
    /// At most this many messages in flight.
    public let window: Int

    /// `firstAttemptAt`: when the first connection is due (a fleet spreads its cars' first
    /// connections over a ramp; a unit connects at once).
    public init(window: Int, firstAttemptAt: Int64 = .min) {
        self.window = max(1, window)
        phase = .down(nextAttemptAt: firstAttemptAt)
    }

    /// Capped exponential backoff: 0.5 s, 1 s, 2 s ... 30 s after the `failures`-th failure,
    /// times `jitter` (0.5 to 1.0, drawn by the shell) so that a fleet does not storm a broker
    /// that comes back.
    public static func backoffMs(failures: Int, jitter: Double) -> Int64 {
        let cap = min(30_000, 500 * (1 << min(max(failures, 1) - 1, 6)))
        let j = jitter.isFinite ? min(1.0, max(0.5, jitter)) : 1.0
        return Int64(Double(cap) * j)
    }

    /// Whether the shell should call connect now.
    public func isDue(at now: Int64) -> Bool {
        if case .down(let at) = phase { return now >= at }
        return false
    }

    /// Milliseconds until the next attempt (0 when due; nil when no attempt is waiting).
    public func msUntilAttempt(at now: Int64) -> Int64? {
        guard case .down(let at) = phase else { return nil }
        return at <= now ? 0 : at &- now
    }

    // MARK: - Events

    /// The connect call went out at `now` (the CONNACK will tell).
    public mutating func connectCalled(at now: Int64 = .min) {
        guard case .down = phase else { return }
        phase = .connecting
        connectCalledAt = now
    }

    /// When the last connect call went out (`.min`: not told).
    public private(set) var connectCalledAt: Int64 = .min

    /// A connection that has had no CONNACK for `timeoutMs` (a broker that accepts the socket and
    /// never answers, a handshake that died without an error): the shell gives it up as lost.
    public func connAckOverdue(at now: Int64, timeoutMs: Int64) -> Bool {
        guard phase == .connecting, connectCalledAt != .min else { return false }
        return now &- connectCalledAt >= timeoutMs
    }

    /// The connect call failed at once (no route, DNS, TLS files).
    public mutating func connectFailed(_ reason: String, at now: Int64, jitter: Double) {
        guard case .down = phase else { return }
        retryLater(reason, at: now, jitter: jitter)
    }

    /// The broker answered the connection: 0 accepts it.
    public mutating func connAck(_ code: Int32, at now: Int64, jitter: Double) -> [UplinkAction] {
        guard case .connecting = phase else { return [] }
        guard code == 0 else {
            retryLater("refused by the broker (CONNACK \(code))", at: now, jitter: jitter)
            return [.disconnect]
        }
        phase = .up
        if failures > 0 || reconnects > 0 { reconnects += 1 }
        failures = 0
        lastError = nil
        // What was in flight on the last connection goes again: it is still in the outbox.
        inFlight.removeAll()
        return [.announceOnline]
    }

    /// The connection was lost (or never completed). True when a live link went down for a
    /// reason worth a warning (not the shell's own close).
    @discardableResult
    public mutating func connectionLost(_ reason: String, unexpected: Bool, at now: Int64, jitter: Double) -> Bool {
        switch phase {
        case .up, .connecting:
            let wasUp = phase == .up
            inFlight.removeAll()
            retryLater(reason, at: now, jitter: jitter)
            return wasUp && unexpected
        case .down, .offline:
            return false
        }
    }

    /// The broker acknowledged message `mid` (PUBACK): its outbox row may go.
    public mutating func published(_ mid: Int32) {
        if let id = inFlight.removeValue(forKey: mid) { acknowledged.append(id) }
    }

    /// How many more may be sent now.
    public var room: Int {
        guard case .up = phase else { return 0 }
        return max(0, window - inFlight.count)
    }

    /// Message `id` went out as `mid`.
    public mutating func sent(_ id: String, as mid: Int32) {
        guard case .up = phase else { return }
        inFlight[mid] = id
    }

    /// The acknowledged ids, handed to the shell to delete (and forgotten here).
    public mutating func takeAcknowledged() -> [String] {
        defer { acknowledged.removeAll() }
        return acknowledged
    }

    /// The privacy level changed: `connects` false is "offline".
    public mutating func privacyChanged(connects: Bool) -> [UplinkAction] {
        switch (phase, connects) {
        case (.offline, true):
            phase = .down(nextAttemptAt: .min)
            lastError = nil
            return []
        case (.offline, false), (.down, true), (.connecting, true), (.up, true):
            return []
        case (.down, false), (.connecting, false), (.up, false):
            defer { lastError = "offline (privacy)" }
            return close()
        }
    }

    /// Closes the link for good (the unit stops) or until `privacyChanged(connects: true)`:
    /// a goodbye when up; the in-flight messages stay in the outbox for the next connection.
    public mutating func close() -> [UplinkAction] {
        let actions: [UplinkAction]
        switch phase {
        case .up: actions = [.sayGoodbye, .disconnect]
        case .connecting: actions = [.disconnect]
        case .down, .offline: actions = []
        }
        phase = .offline
        inFlight.removeAll()
        return actions
    }

    private mutating func retryLater(_ reason: String, at now: Int64, jitter: Double) {
        failures += 1
        lastError = reason
        phase = .down(nextAttemptAt: now &+ Self.backoffMs(failures: failures, jitter: jitter))
    }
}
