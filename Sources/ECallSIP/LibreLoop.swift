#if canImport(Glibc)
import Glibc
#endif
import CLibre
import Platform
import Synchronization
import TelematicsCore

/// libre's event loop on a thread of its own. libre is single-threaded: every libre object is
/// made, used and freed on this thread. Other threads hand it work through libre's message
/// queue (thread-safe by design: a pipe the loop watches). libre's own warnings go to
/// `warning`, not to standard error. One loop per process (libre keeps its loop in globals).
public final class LibreLoop: @unchecked Sendable {
    private let name: String
    private let warning: @Sendable (String) -> Void
    private struct QueueRef: @unchecked Sendable { let pointer: OpaquePointer }
    private let queue = Mutex<QueueRef?>(nil)
    private let thread = Mutex<DedicatedThread?>(nil)
    private let started = OneShot<String?>()

    final class Work {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }

    /// Whether a loop runs in this process (libre's own state is process-wide).
    private static let running = Atomic<Bool>(false)

    private let realtimePriority: Int32?

    /// `realtimePriority`: the thread's SCHED_FIFO priority (the eCall's: its INVITE must not
    /// wait for a core behind other work), nil for the normal policy.
    public init(name: String, realtimePriority: Int32? = nil, warning: @escaping @Sendable (String) -> Void) {
        self.name = name
        self.realtimePriority = realtimePriority
        self.warning = warning
    }

    /// Starts the thread; `setUp` runs on it first (nil when it worked, else why not) and
    /// `tearDown` after the loop ends. Returns once `setUp` ran: nil, or why the loop does not run.
    public func start(setUp: @escaping @Sendable () -> String?, tearDown: @escaping @Sendable () -> Void) -> String? {
        // libre keeps its loop in process-wide globals: a second loop would share them.
        guard !Self.running.exchange(true, ordering: .acquiringAndReleasing) else {
            return "another SIP stack (libre) already runs in this process"
        }
        thread.withLock { t in
            guard t == nil else { return }
            t = DedicatedThread(name: name) { [self] in self.run(setUp: setUp, tearDown: tearDown) }
        }
        return started.wait(timeoutMs: 10_000) ?? "the SIP stack did not start within 10 s"
    }

    /// Runs `work` on the loop's thread, in order; false when the loop is not running.
    @discardableResult
    public func run(_ work: @escaping @Sendable () -> Void) -> Bool {
        queue.withLock { q in
            guard let q else { return false }
            let box = Unmanaged.passRetained(Work(work)).toOpaque()
            if mqueue_push(q.pointer, 0, box) != 0 {
                Unmanaged<Work>.fromOpaque(box).release()
                return false
            }
            return true
        }
    }

    /// Ends the loop (its `tearDown` runs on its thread) and waits for the thread.
    public func stop() {
        run { re_cancel() }
        thread.withLock { t in
            t?.join()
            t = nil
        }
    }

    private func run(setUp: () -> String?, tearDown: () -> Void) {
        defer { Self.running.store(false, ordering: .releasing) }
        if let realtimePriority, case .refused(_, let why) = raiseCallingThread(toRealtimePriority: realtimePriority) {
            warning("the SIP thread runs at normal priority: \(why)")
        }
        guard libre_init() == 0 else {
            _ = started.give("libre could not start")
            return
        }
        defer { libre_close() }
        dbg_init(Int32(DBG_WARNING), DBG_NONE)
        dbg_handler_set({ _, p, len, arg in
            guard let p, let arg else { return }
            let line = p.withMemoryRebound(to: UInt8.self, capacity: len) { String(decoding: UnsafeBufferPointer(start: $0, count: len), as: UTF8.self) }
            Unmanaged<LibreLoop>.fromOpaque(arg).takeUnretainedValue().warning("SIP stack: " + line.trimmingCharacters(in: "\r\n "))
        }, Unmanaged.passUnretained(self).toOpaque())
        defer { dbg_handler_set(nil, nil) }
        var q: OpaquePointer?
        guard mqueue_alloc(&q, { _, data, _ in
            guard let data else { return }
            Unmanaged<Work>.fromOpaque(data).takeRetainedValue().body()
        }, nil) == 0, let q else {
            _ = started.give("cannot make the SIP command queue")
            return
        }
        if let failure = setUp() {
            tearDown()
            _ = tcu_mem_deref(UnsafeMutableRawPointer(q))
            _ = started.give(failure)
            return
        }
        queue.withLock { $0 = QueueRef(pointer: q) }
        _ = started.give(nil)
        _ = re_main(nil)
        queue.withLock { $0 = nil }
        tearDown()
        _ = tcu_mem_deref(UnsafeMutableRawPointer(q))
    }
}

// Reading libre's values.

/// A message's Content-Type value and body bytes.
public func content(of msg: UnsafePointer<sip_msg>) -> (type: String, body: [UInt8]) {
    var len = 0
    let p = tcu_msg_body(msg, &len)
    let body = p.map { Array(UnsafeBufferPointer(start: $0, count: len)) } ?? []
    let type = sip_msg_hdr(msg, SIP_HDR_CONTENT_TYPE).map { text($0.pointee.val) } ?? "application/octet-stream"
    return (type, body)
}

/// The SDP in a body: the body itself, or its `application/sdp` part; nil when there is none.
public func sessionDescription(type: String, body: [UInt8]) -> [UInt8]? {
    let parts = (try? MIMEMultipart.parse(body, contentType: type)) ?? []
    return parts.first(where: { $0.mediaType == "application/sdp" })?.body
}

/// The first value of a header field by name (Call-Info, Info-Package, ...), nil when absent.
public func headerValue(_ msg: UnsafePointer<sip_msg>, _ name: String) -> String? {
    sip_msg_xhdr(msg, name).map { text($0.pointee.val) }
}

public func text(_ p: pl) -> String {
    guard let start = p.p, p.l > 0 else { return "" }
    return start.withMemoryRebound(to: UInt8.self, capacity: p.l) { String(decoding: UnsafeBufferPointer(start: $0, count: p.l), as: UTF8.self) }
}

public func bytes(of mb: UnsafeMutablePointer<mbuf>) -> [UInt8] {
    let m = mb.pointee
    guard let buf = m.buf, m.end > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: buf, count: m.end))
}

public func errorText(_ err: Int32) -> String { String(cString: strerror(err)) }

/// An mbuf holding a copy of `bytes` (release it with `tcu_mem_deref`).
public func mbuf(_ bytes: [UInt8]) -> UnsafeMutablePointer<mbuf>? {
    bytes.withUnsafeBufferPointer { tcu_mbuf_from($0.baseAddress, $0.count) }
}

extension String {
    /// Without the given characters at either end.
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}

/// A call's voice: its RTP socket (an even port from 20000-40000, RTCP beside it), the SDP
/// session that offers or answers it (G.711 µ-law and A-law), G.711 silence sent every 20 ms
/// while the call is up, and a watch on what arrives: when the peer's SDP says it sends and
/// nothing (RTP or RTCP) arrives for `silenceMs`, `silent` runs once. Made, used and freed on
/// the loop; `close` before the last reference goes.
public final class AudioStream {
    public private(set) var rtp: OpaquePointer?
    public private(set) var sdp: OpaquePointer?
    public private(set) var media: OpaquePointer?
    private let sendTimer = UnsafeMutablePointer<tmr>.allocate(capacity: 1)
    private let watchTimer = UnsafeMutablePointer<tmr>.allocate(capacity: 1)
    private var timestamp: UInt32 = 0
    private var first = true
    private var silenceMs: UInt64 = 0
    private var silent: (() -> Void)?
    /// RTP and RTCP packets received (what a test or a log reads to see the voice arrived).
    public private(set) var received = 0

    private init() {
        tmr_init(sendTimer)
        tmr_init(watchTimer)
    }

    deinit {
        close()
        sendTimer.deallocate()
        watchTimer.deallocate()
    }

    private var me: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }
    private static func from(_ arg: UnsafeMutableRawPointer?) -> AudioStream? {
        arg.map { Unmanaged<AudioStream>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Opens one on `host`; nil when no port or SDP session could be had.
    public static func open(host: String) -> AudioStream? {
        var laddr = sa()
        guard sa_set_str(&laddr, host, 0) == 0 else { return nil }
        let stream = AudioStream()
        var rs: OpaquePointer?
        guard rtp_listen(&rs, Int32(IPPROTO_UDP), &laddr, 20_000, 40_000, true,
                         { _, _, _, arg in AudioStream.from(arg)?.heard() },
                         { _, _, arg in AudioStream.from(arg)?.heard() }, stream.me) == 0, let rs else { return nil }
        stream.rtp = rs
        var bound = sa()
        if let sock = rtp_sock(rs) { _ = udp_local_get(OpaquePointer(sock), &bound) }
        var s: OpaquePointer?
        var m: OpaquePointer?
        guard tcu_sdp_audio(&s, &m, &laddr, sa_port(&bound)) == 0, let s, let m else {
            stream.close()
            return nil
        }
        stream.sdp = s
        stream.media = m
        return stream
    }

    /// Reads the peer's SDP (an offer, or the answer to ours); an errno when it does not parse.
    public func take(_ description: [UInt8], offer: Bool) -> Int32 {
        guard let sdp else { return EINVAL }
        // A body part ends where its delimiter's CRLF begins; SDP's last line needs its own.
        var body = description
        if body.last != 0x0A { body += [0x0D, 0x0A] }
        guard let mb = mbuf(body) else { return ENOMEM }
        defer { _ = tcu_mem_deref(mb) }
        let err = sdp_decode(sdp, mb, offer)
        if err == 0 { rearm() }
        return err
    }

    /// Our SDP: the offer, or the answer to what `take` read.
    public func describe(offer: Bool) -> [UInt8]? {
        guard let sdp else { return nil }
        var mb: UnsafeMutablePointer<mbuf>?
        guard sdp_encode(&mb, sdp, offer) == 0, let mb else { return nil }
        defer { _ = tcu_mem_deref(mb) }
        return bytes(of: mb)
    }

    /// A re-INVITE's offer (hold, resume, a new address): read it, and answer it with this
    /// stream into `descp` (libre's offer handler).
    public func answer(reoffer msg: UnsafePointer<sip_msg>?, into descp: UnsafeMutablePointer<UnsafeMutablePointer<mbuf>?>?) -> Int32 {
        guard let msg, let descp, let sdp else { return EINVAL }
        let (type, body) = content(of: msg)
        if let offer = sessionDescription(type: type, body: body) {
            let err = take(offer, offer: true)
            if err != 0 { return err }
        }
        return sdp_encode(descp, sdp, false)
    }

    /// Whether the peer's SDP says it sends (sendrecv or sendonly): then silence means it is gone.
    public var peerSends: Bool {
        guard let media else { return false }
        return sdp_media_rdir(media).rawValue & SDP_SENDONLY.rawValue != 0
    }

    /// Sends silence every 20 ms to the address the peer's SDP gave, and watches what arrives:
    /// `silent` runs when the peer sends nothing for `silenceMs` (0: no watch).
    public func start(silenceMs: Int64, silent: @escaping () -> Void) {
        self.silenceMs = UInt64(max(0, silenceMs))
        self.silent = silent
        tmr_start(sendTimer, 0, { arg in AudioStream.from(arg)?.sendSilence() }, me)
        rearm()
    }

    /// Stops sending and watching (the socket stays until `close`).
    public func stop() {
        tmr_cancel(sendTimer)
        tmr_cancel(watchTimer)
        silent = nil
    }

    private func heard() {
        received += 1
        rearm()
    }

    /// (Re)starts the watch from now, when there is one and the peer sends.
    private func rearm() {
        guard silent != nil, silenceMs > 0, peerSends else {
            tmr_cancel(watchTimer)
            return
        }
        tmr_start(watchTimer, silenceMs, { arg in
            guard let stream = AudioStream.from(arg), let silent = stream.silent else { return }
            stream.stop()
            silent()
        }, me)
    }

    private func sendSilence() {
        tmr_start(sendTimer, 20, { arg in AudioStream.from(arg)?.sendSilence() }, me)
        guard let rtp, let media, let dst = sdp_media_raddr(media), sa_isset(dst, Int32(SA_ALL.rawValue)) else { return }
        // µ-law silence is 0xFF: 160 samples, 20 ms at 8 kHz.
        let silence = [UInt8](repeating: 0xFF, count: 160)
        _ = silence.withUnsafeBufferPointer { tcu_rtp_send(rtp, dst, first, 0, timestamp, $0.baseAddress, $0.count) }
        first = false
        timestamp &+= 160
    }

    /// Stops the voice and frees the socket and the SDP session.
    public func close() {
        stop()
        if let rtp { _ = tcu_mem_deref(UnsafeMutableRawPointer(rtp)) }
        if let sdp { _ = tcu_mem_deref(UnsafeMutableRawPointer(sdp)) }
        rtp = nil
        sdp = nil
        media = nil
    }
}

/// A SIP user agent's stack on the loop: libre's `sip` with a UDP transport on one address, and
/// the session socket that takes new INVITEs. Made and closed on the loop.
public struct SIPStack {
    public let sip: OpaquePointer
    public let sessions: OpaquePointer

    public typealias Invited = @convention(c) (UnsafePointer<sip_msg>?, UnsafeMutableRawPointer?) -> Void

    /// Opens one on `local` (an IPv4 address); `invited` gets each new INVITE with `arg`.
    public static func open(local: Endpoint, software: String, invited: Invited, arg: UnsafeMutableRawPointer) -> Result<SIPStack, SIPStackError> {
        var s: OpaquePointer?
        guard sip_alloc(&s, nil, 32, 32, 32, software, nil, nil) == 0, let s else { return .failure(.init("cannot make the SIP stack")) }
        var laddr = sa()
        var err = sa_set_str(&laddr, local.host, local.port)
        if err == 0 { err = tcu_sip_transp_add_udp(s, &laddr) }
        var sock: OpaquePointer?
        if err == 0 { err = sipsess_listen(&sock, s, 32, invited, arg) }
        guard err == 0, let sock else {
            sip_close(s, true)
            _ = tcu_mem_deref(UnsafeMutableRawPointer(s))
            return .failure(.init("cannot listen for SIP on \(local) (\(errorText(err)))"))
        }
        return .success(SIPStack(sip: s, sessions: sock))
    }

    /// Closes the session socket (its sessions end) and the stack.
    public func close() {
        _ = tcu_mem_deref(UnsafeMutableRawPointer(sessions))
        sip_close(sip, true)
        _ = tcu_mem_deref(UnsafeMutableRawPointer(sip))
    }
}

public struct SIPStackError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
