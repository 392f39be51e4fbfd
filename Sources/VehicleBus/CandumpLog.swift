#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization
import TelematicsCore

/// Reads a `candump -l` log line by line (files of any size; one line in memory at a time).
public final class CandumpLogReader {
    private let file: UnsafeMutablePointer<FILE>
    public let path: String
    @exclusivity(unchecked) public private(set) var lineNumber = 0
    /// A last line without its newline is left for later (another program is writing it).
    public var waitsForWholeLines = false

    public init(path: String) throws(SystemError) {
        guard let f = fopen(path, "re") else {
            throw SystemError(.unavailable, "cannot open candump log \(path)", errno: errno)
        }
        file = f
        self.path = path
    }

    /// getline's buffer, kept from line to line (one allocation for the whole log). One
    /// thread reads a log: the run-time exclusivity check on every line is not needed.
    @exclusivity(unchecked) private var linePtr: UnsafeMutablePointer<CChar>?
    @exclusivity(unchecked) private var cap = 0

    deinit {
        fclose(file)
        free(linePtr)
    }

    /// The next frame; nil at the end of the file. A malformed line throws a ParseError that
    /// names the file and line; reading can go on after it.
    public func next() throws(ParseError) -> CANFrame? {
        while true {
            let n = getline(&linePtr, &cap, file)
            guard n >= 0, let linePtr else { return nil }
            if waitsForWholeLines, linePtr[n - 1] != 10 {
                fseek(file, -n, SEEK_CUR)
                return nil
            }
            lineNumber += 1
            var bytes = UnsafeBufferPointer(start: UnsafeRawPointer(linePtr).assumingMemoryBound(to: UInt8.self), count: n)
            while let last = bytes.last, last == 10 || last == 13 { bytes = UnsafeBufferPointer(rebasing: bytes.dropLast()) }
            if bytes.isEmpty { continue }
            do {
                return try CandumpFormat.parseLogLine(bytes: bytes, line: lineNumber)
            } catch {
                throw error.in(path)
            }
        }
    }

    /// Moves past everything written so far.
    public func skipToEnd() {
        fseek(file, 0, SEEK_END)
    }

    /// Clears the end-of-file state, so that lines appended since can be read.
    public func resume() { clearerr(file) }

    /// Starts again from the first line.
    public func rewind() {
        Glibc.rewind(file)
        lineNumber = 0
    }
}

/// Appends frames to a `candump -l` log that canplayer and log2asc read.
public final class CandumpLogWriter: Sendable {
    private let state: Mutex<UnsafeMutablePointer<FILE>?>

    public init(path: String, append: Bool = true) throws(SystemError) {
        guard let f = fopen(path, append ? "ae" : "we") else {
            throw SystemError(.io, "cannot open \(path) for writing", errno: errno)
        }
        state = Mutex(f)
    }

    public func write(_ frame: CANFrame) {
        let line = CandumpFormat.formatLogLine(frame) + "\n"
        state.withLock { f in
            guard let f else { return }
            fputs(line, f)
            fflush(f)
        }
    }

    public func close() {
        state.withLock { f in
            if let file = f { fclose(file) }
            f = nil
        }
    }
}

/// Replays a candump log as a channel: at the recorded gaps (`original`) or as fast as the
/// reader takes frames (`fast`). In original timing the frames are re-stamped to the moment
/// they are due, as if they had just been received; in fast mode they keep the log's own time.
///
/// The replay's clock (`replayNow`) is what staleness is judged by. In original timing it is
/// the wall clock, but never past the moment the next frame of the log is due: a machine that
/// stalled the reader (a loaded emulated guest) must not see values go stale for frames the
/// log has and the reader has not taken yet.
public final class CandumpReplayChannel: CANChannel, @unchecked Sendable {
    // Used from the one reader thread only.
    private let reader: CandumpLogReader
    private let realtime: Bool
    private let loop: Bool
    private var firstLogTime: Timestamp?
    private var startMonotonic = Timestamp.zero
    private var startWall = Timestamp.zero
    private var pending: CANFrame?
    private let exhausted = Atomic<Bool>(false)
    /// Malformed lines seen so far, with their errors, for the daemon to log.
    public private(set) var malformed: [ParseError] = []
    private var loopOffset: Int64 = 0
    private var lastLogTime = Timestamp.zero

    private let follow: Bool
    /// Ends the wait for more lines as soon as the file is written to.
    private let growth: FileGrowth?
    private let clocks: Clocks
    /// Waits until a monotonic instant, at most so many milliseconds (a test's returns at once).
    private let sleep: @Sendable (Timestamp, Int64) -> Void
    /// Original timing: the wall time the next frame of the log is due (Int64.max when none is
    /// known). Read from other threads through `replayNow`.
    private let nextDueWall = Atomic<Int64>(.max)

    /// `follow`: at the end, wait for more lines (`tail -f`) instead of ending.
    public init(path: String, realtime: Bool, loop: Bool, follow: Bool = false, clocks: Clocks = .system,
                sleep: @escaping @Sendable (Timestamp, Int64) -> Void = { sleepUntil(monotonic: $0, maxMs: $1) }) throws(SystemError) {
        self.clocks = clocks
        self.sleep = sleep
        reader = try CandumpLogReader(path: path)
        reader.waitsForWholeLines = follow
        // Following is live: what the file held before is history, not the bus now.
        if follow { reader.skipToEnd() }
        self.realtime = realtime
        self.loop = loop
        self.follow = follow
        growth = follow ? FileGrowth(path: path) : nil
    }

    public var isExhausted: Bool { exhausted.load(ordering: .acquiring) }
    public var kernelDrops: UInt64 { 0 }

    /// Takes the malformed-line errors collected since the last call.
    public func takeMalformed() -> [ParseError] {
        defer { malformed.removeAll() }
        return malformed
    }

    private func nextFromLog() -> CANFrame? {
        while true {
            do {
                if let f = try reader.next() { return f }
            } catch {
                malformed.append(error)
                continue
            }
            guard loop, firstLogTime != nil else { return nil }
            // Loop: continue the log's clock after its last frame.
            reader.rewind()
            loopOffset = lastLogTime.nanoseconds - firstLogTime!.nanoseconds + 1_000_000
            if let f = try? reader.next() {
                return f
            }
            return nil
        }
    }

    /// Reads the next frame into `pending` when it is empty.
    private func fillPending() {
        guard pending == nil else { return }
        pending = nextFromLog()
        if loopOffset != 0, var p = pending {
            // A later round of the loop: shifted past the end of the previous one.
            p.timestamp = max(lastLogTime, Timestamp(nanoseconds: p.timestamp.nanoseconds + loopOffset))
            pending = p
        }
    }

    public func receive(timeoutNs: Int64) throws(SystemError) -> CANFrame? {
        let timeoutMs = wholeMilliseconds(timeoutNs)
        fillPending()
        // Taken, not copied (this runs for every frame); put back when it is not due yet.
        guard var frame = pending.take() else {
            if follow {
                // Nothing new yet: wait until the file is written to (a line may also be half
                // written: the next write completes it).
                growth?.wait(timeoutMs: Int64(timeoutMs))
                reader.resume()
                return nil
            }
            exhausted.store(true, ordering: .releasing)
            nextDueWall.store(.max, ordering: .relaxed)
            return nil
        }
        if firstLogTime == nil {
            firstLogTime = frame.timestamp
            startMonotonic = clocks.monotonic()
            startWall = clocks.wall()
        }
        lastLogTime = frame.timestamp
        guard realtime else { return frame }
        let offset = frame.timestamp.nanoseconds - firstLogTime!.nanoseconds
        let due = Timestamp(nanoseconds: startMonotonic.nanoseconds + offset)
        if due > clocks.monotonic() {
            sleep(due, Int64(timeoutMs))
            if due > clocks.monotonic() {
                pending = frame
                return nil
            }
        }
        frame.timestamp = Timestamp(nanoseconds: startWall.nanoseconds + offset)
        // Read ahead: the replay's clock stops at the next frame's due time until it is taken.
        fillPending()
        let next = pending.map { startWall.nanoseconds + ($0.timestamp.nanoseconds - firstLogTime!.nanoseconds) }
        nextDueWall.store(next ?? .max, ordering: .relaxed)
        return frame
    }

    /// A log has no bus to transmit on: frames are dropped here (the daemon's transmit log
    /// keeps them).
    public func send(_ frame: CANFrame) throws(SystemError) {}

    public func close() {}

    /// "Now" on the replay's clock: the log time of the last frame in fast mode; in original
    /// timing the wall clock, but not past the due time of a frame not yet taken.
    public var replayNow: Timestamp {
        guard realtime else { return firstLogTime == nil ? clocks.wall() : lastLogTime }
        return Timestamp(nanoseconds: min(clocks.wall().nanoseconds, nextDueWall.load(ordering: .relaxed)))
    }
}

/// The software bus between the unit and the simulated car on a host without kernel CAN:
/// a folder with two candump logs, `car.log` (the car's frames) and `unit.log` (the unit's).
/// Each side appends what it sends to its own log and follows the other's, so both stay
/// readable with can-utils (`canplayer`, `log2asc`) and nothing is lost if one side restarts.
public final class LogBusChannel: CANChannel, @unchecked Sendable {
    public enum Side: Sendable { case unit, car }

    public static func carLog(_ directory: String) -> String { directory + "/car.log" }
    public static func unitLog(_ directory: String) -> String { directory + "/unit.log" }

    private let incoming: CandumpReplayChannel
    private let outgoing: CandumpLogWriter
    private let interface: String

    /// Opens the bus in `directory` (made when missing) for one side.
    public init(directory: String, side: Side, interface: String = "can0") throws(SystemError) {
        if access(directory, F_OK) != 0, mkdir(directory, 0o755) != 0, errno != EEXIST {
            throw SystemError(.unavailable, "cannot make the log bus folder \(directory)", errno: errno)
        }
        let (mine, theirs) = side == .unit ? (Self.unitLog(directory), Self.carLog(directory))
                                           : (Self.carLog(directory), Self.unitLog(directory))
        outgoing = try CandumpLogWriter(path: mine)
        // The other side's log exists from the start, so it can be followed before it writes.
        try CandumpLogWriter(path: theirs).close()
        incoming = try CandumpReplayChannel(path: theirs, realtime: false, loop: false, follow: true)
        self.interface = interface
    }

    public var isExhausted: Bool { false }
    public var kernelDrops: UInt64 { 0 }

    public func receive(timeoutNs: Int64) throws(SystemError) -> CANFrame? {
        guard var f = try incoming.receive(timeoutNs: timeoutNs) else { return nil }
        f.timestamp = wallClockNow()
        return f
    }

    public func send(_ frame: CANFrame) throws(SystemError) {
        var f = frame
        f.timestamp = wallClockNow()
        f.interface = interface
        outgoing.write(f)
    }

    /// Malformed lines the other side wrote, with their errors.
    public func takeMalformed() -> [ParseError] { incoming.takeMalformed() }

    public func close() { outgoing.close() }
}
