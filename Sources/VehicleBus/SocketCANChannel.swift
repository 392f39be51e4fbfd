#if canImport(Glibc)
import Glibc
#endif
import CSocketCAN
import Platform
import Synchronization
import TelematicsCore

/// A source of frames that a dedicated thread reads from.
public protocol CANChannel: AnyObject, Sendable {
    /// The next frame, or nil when `timeoutNs` passed with none (or, for a log, at its end
    /// when `isExhausted` turns true). A socket waits to the nanosecond (the simulated car
    /// wakes for its next cyclic frame); a log to the millisecond.
    func receive(timeoutNs: Int64) throws(SystemError) -> CANFrame?
    /// Transmits a frame.
    func send(_ frame: CANFrame) throws(SystemError)
    /// True once a finite source (a log) has nothing more.
    var isExhausted: Bool { get }
    /// Frames the kernel dropped on this socket so far.
    var kernelDrops: UInt64 { get }
    func close()
}

extension CANChannel {
    public func receive(timeoutMs: Int) throws(SystemError) -> CANFrame? {
        try receive(timeoutNs: Int64(max(0, timeoutMs)) * 1_000_000)
    }
}

/// A timeout in nanoseconds as whole milliseconds, rounded up (poll's unit).
@inline(__always) func wholeMilliseconds(_ ns: Int64) -> Int {
    Int(min(Int64(Int32.max), (max(0, ns) + 999_999) / 1_000_000))
}

/// A kernel filter entry: frames whose `id & mask == id & mask` pass.
public struct CANFilter: Sendable, Equatable {
    public var id: UInt32
    public var isExtended: Bool

    public init(id: UInt32, isExtended: Bool) {
        self.id = id
        self.isExtended = isExtended
    }

    /// One exact-match filter per message of the database.
    public static func exact(for db: DBCDatabase) -> [CANFilter] {
        db.messages.map { CANFilter(id: $0.id, isExtended: $0.isExtended) }
    }
}

/// A raw SocketCAN socket bound to one interface (can0, vcan0).
///
/// Receives with kernel timestamps (SO_TIMESTAMPNS) and the socket's drop counter
/// (SO_RXQ_OVFL); error frames are enabled and counted; CAN FD is switched on when the
/// interface's MTU says it carries FD frames.
public final class SocketCANChannel: CANChannel, @unchecked Sendable {
    // The fd is written once in init; close() is called once by the owner after the reader
    // thread has stopped.
    private let fd: Int32
    public let interface: String
    public let supportsFD: Bool
    /// The receive queue the kernel granted, in bytes (see init).
    public let receiveBuffer: Int
    public static let wantedReceiveBuffer = 1 << 20
    private let drops = DropCounter()

    public init(interface: String, filters: [CANFilter]?, receiveErrorFrames: Bool = true) throws(SystemError) {
        self.interface = interface
        let fd = try syscall("cannot open a CAN socket (does this kernel have CAN support?)") { csc_open_raw() }
        var ok = false
        defer { if !ok { Glibc.close(fd) } }
        let index = interface.withCString { csc_ifindex(fd, $0) }
        guard index > 0 else {
            throw SystemError(.unavailable, "CAN interface \(interface) does not exist", errno: errno)
        }
        let mtu = interface.withCString { csc_if_mtu(fd, $0) }
        var fdOn = false
        if mtu == csc_canfd_mtu() {
            fdOn = (try? syscall("CAN_RAW_FD_FRAMES") { csc_enable_fd(fd) }) != nil
        }
        if let filters {
            // The kernel takes at most CAN_RAW_FILTER_MAX (512) entries; beyond that, take all.
            if filters.count <= 512 {
                var raw = filters.map { f -> can_filter in
                    if f.isExtended {
                        return can_filter(can_id: f.id | csc_eff_flag(), can_mask: csc_eff_mask() | csc_eff_flag() | csc_rtr_flag())
                    }
                    return can_filter(can_id: f.id, can_mask: csc_sff_mask() | csc_eff_flag() | csc_rtr_flag())
                }
                _ = try syscall("CAN_RAW_FILTER on \(interface)") { csc_set_filters(fd, &raw, Int32(raw.count)) }
            }
        }
        if receiveErrorFrames {
            _ = try syscall("CAN_RAW_ERR_FILTER on \(interface)") { csc_set_err_mask(fd, csc_err_mask()) }
        }
        _ = try syscall("SO_TIMESTAMPNS on \(interface)") { csc_enable_timestamps(fd) }
        _ = try syscall("SO_RXQ_OVFL on \(interface)") { csc_enable_rxq_ovfl(fd) }
        // A CAN frame costs the queue about 1 KiB of kernel memory (its socket buffer), so the
        // default queue (rmem_default, 208 KiB) holds about 200 frames: a reader held up for a
        // moment on a busy bus (an fsync, a swap-in, a slow emulated machine) would lose frames.
        // Ask for 1 MiB, which the kernel doubles for its bookkeeping: about 2000 frames. Not
        // more: a reader that falls behind would then act on a bus seconds old (a remote lock's
        // confirmation seen too late). Without CAP_NET_ADMIN the kernel caps it at
        // net.core.rmem_max (docs/operations.md says how to raise it).
        self.receiveBuffer = Int(try syscall("SO_RCVBUF on \(interface)") { csc_set_rcvbuf(fd, Int32(SocketCANChannel.wantedReceiveBuffer)) })
        _ = try syscall("cannot bind to \(interface)") { csc_bind(fd, index) }
        self.fd = fd
        self.supportsFD = fdOn
        ok = true
    }

    public var isExhausted: Bool { false }
    public var kernelDrops: UInt64 { drops.value }

    public func receive(timeoutNs: Int64) throws(SystemError) -> CANFrame? {
        let ready = try syscall("poll on \(interface)") { csc_wait_readable_ns(fd, max(0, timeoutNs)) }
        if ready == 0 { return nil }
        var rx = csc_rx()
        let n = try syscall("cannot receive from \(interface)") { csc_recv(fd, &rx) }
        guard n == csc_can_mtu() || n == csc_canfd_mtu() else {
            throw SystemError(.io, "short read of \(n) bytes from \(interface)")
        }
        if rx.has_drops != 0 { drops.value = UInt64(rx.drops) }
        let f = rx.frame
        let rawID = f.can_id
        var frame = CANFrame(id: 0, data: [])
        frame.isError = rawID & csc_err_flag() != 0
        frame.isExtended = !frame.isError && rawID & csc_eff_flag() != 0
        frame.isRemote = rawID & csc_rtr_flag() != 0
        frame.id = frame.isError ? rawID & csc_err_mask() : (frame.isExtended ? rawID & csc_eff_mask() : rawID & csc_sff_mask())
        frame.isFD = rx.is_fd != 0
        if frame.isFD {
            frame.bitRateSwitch = f.flags & csc_canfd_brs() != 0
            frame.errorStateIndicator = f.flags & csc_canfd_esi() != 0
        }
        let len = min(Int(f.len), frame.isFD ? 64 : 8)
        if frame.isRemote {
            frame.remoteLength = len
        } else {
            frame.data = withUnsafeBytes(of: f.data) { Array($0.prefix(len)) }
        }
        frame.interface = interface
        frame.timestamp = rx.ts_sec != 0 ? Timestamp(seconds: rx.ts_sec, nanoseconds: rx.ts_nsec) : wallClockNow()
        return frame
    }

    public func send(_ frame: CANFrame) throws(SystemError) {
        if frame.isFD, !supportsFD {
            throw SystemError(.unsupported, "\(interface) does not carry CAN FD frames (MTU 16)")
        }
        guard frame.data.count <= (frame.isFD ? 64 : 8) else {
            throw SystemError(.invalidInput, "frame data of \(frame.data.count) bytes is too long")
        }
        var f = canfd_frame()
        f.can_id = frame.isExtended ? frame.id | csc_eff_flag() : frame.id
        if frame.isRemote { f.can_id |= csc_rtr_flag() }
        f.len = UInt8(frame.isRemote ? frame.remoteLength : frame.data.count)
        if frame.isFD {
            f.flags = (frame.bitRateSwitch ? csc_canfd_brs() : 0) | (frame.errorStateIndicator ? csc_canfd_esi() : 0)
        }
        withUnsafeMutableBytes(of: &f.data) { dst in
            for (i, b) in frame.data.enumerated() { dst[i] = b }
        }
        let isFD: Int32 = frame.isFD ? 1 : 0
        let n = try syscall("cannot send on \(interface)") { csc_send(fd, &f, isFD) }
        guard n == (frame.isFD ? csc_canfd_mtu() : csc_can_mtu()) else {
            throw SystemError(.io, "short write of \(n) bytes to \(interface)")
        }
    }

    public func close() { Glibc.close(fd) }
}

/// Written by the reader thread, read by status queries.
final class DropCounter: Sendable {
    private let atomic = Atomic<UInt64>(0)
    var value: UInt64 {
        get { atomic.load(ordering: .relaxed) }
        set { atomic.store(newValue, ordering: .relaxed) }
    }
}
