#if canImport(Glibc)
import Glibc
#endif
import CLibre
import Platform
import Synchronization
import TelematicsCore

/// Where the unit's SIP user agent listens and what it calls.
public struct SIPSettings: Sendable, Equatable {
    /// The local address and UDP port of the user agent (the PSAP's call-back comes here).
    public var local: Endpoint
    /// The outbound proxy every request goes through (the IMS network's P-CSCF; on a bench the
    /// PSAP itself or an emergency routing proxy), as a SIP URI: `sip:HOST:PORT`.
    public var proxy: String
    /// The domain of the unit's address of record: `sip:VIN@DOMAIN`.
    public var domain: String
    /// Where a test call goes (a non-emergency URI that still takes the MSD).
    public var testURI: String
    /// How often the proxy is asked (OPTIONS) whether the network is there; a request that
    /// gets no answer at all detaches the unit. 0: never asked, attached once the stack is up
    /// (a bench whose PSAP takes nothing but calls).
    public var probeIntervalMs: Int64
    /// A PSAP's call-back not answered within this long is refused (480): the machine answers
    /// only inside its call-back window.
    public var callbackAnswerMs: Int64
    /// A call whose PSAP sends no voice (RTP or RTCP) for this long, while its SDP says it
    /// sends, has dropped (a lost bearer shows this way to an endpoint); 0: never.
    public var mediaTimeoutMs: Int64
    /// The SIP thread's SCHED_FIFO priority (the eCall thread's), nil for the normal policy.
    public var realtimePriority: Int32?

    public init(local: Endpoint, proxy: String, domain: String, testURI: String, probeIntervalMs: Int64 = 5_000,
                callbackAnswerMs: Int64 = 5_000, mediaTimeoutMs: Int64 = 10_000, realtimePriority: Int32? = nil) {
        self.realtimePriority = realtimePriority
        self.mediaTimeoutMs = mediaTimeoutMs
        self.local = local
        self.proxy = proxy
        self.domain = domain
        self.testURI = testURI
        self.probeIntervalMs = probeIntervalMs
        self.callbackAnswerMs = callbackAnswerMs
    }
}

/// The NG-eCall transport (EN 17184, RFC 8147) on libre's SIP stack: the INVITE to the eCall
/// service URN carries the SDP offer and the MSD (a body part referenced from Call-Info); the
/// PSAP's final answer carries its acknowledgement; its INFO asks for a new MSD, which goes in
/// an INFO of the EmergencyCallData.eCall.MSD package; BYE from either side clears down; the
/// PSAP's call-back is answered when the machine says so. The voice stream is G.711 silence
/// over RTP, so that a real PSAP sees a call.
///
/// libre runs its own event loop on one thread ("ecall-sip"); every libre object is made, used
/// and freed there. Other threads reach it through libre's message queue and hear from it
/// through `deliver`, as the circuit-switched link's thread does.
///
/// The machine's events come as the in-band link's would: a 200 OK is `setup(answered)`, and
/// as its INVITE carried the MSD, also `sendMSD` and `llAck`, then `alAck` when the PSAP's
/// acknowledgement is positive (a negative one leaves T6 to run out). A final error is a
/// failed set-up (`NGECall.setupOutcome`), a BYE `cleared`, a broken dialog `dropped`.
public final class SIPECallTransport: ECallTransport, @unchecked Sendable {
    public var carriesMSDInSetup: Bool { true }

    let settings: SIPSettings
    private let vin: String
    private let deliver: @Sendable (ECallLinkEvent) -> Void
    private let attached = Atomic<Bool>(false)
    private let loop: LibreLoop

    // Everything below is touched on the libre thread only.
    private var stack: SIPStack?
    private var sip: OpaquePointer? { stack?.sip }
    private var sessionSocket: OpaquePointer? { stack?.sessions }
    private var calls: [Int: SIPCall] = [:]
    private var nextIncoming = 1_000_000
    /// A call made ahead, its media open, for the next INVITE.
    private var spare: SIPCall?
    private let probeTimer = UnsafeMutablePointer<tmr>.allocate(capacity: 1)
    private var probing = false

    public init(settings: SIPSettings, vin: String, deliver: @escaping @Sendable (ECallLinkEvent) -> Void) {
        self.settings = settings
        self.vin = vin
        self.deliver = deliver
        loop = LibreLoop(name: "ecall-sip", realtimePriority: settings.realtimePriority, warning: { deliver(.malformed($0)) })
        tmr_init(probeTimer)
    }

    deinit { probeTimer.deallocate() }

    public var isAttached: Bool { attached.load(ordering: .acquiring) }

    var fromURI: String { "sip:\(vin)@\(settings.domain)" }

    // MARK: - From the eCall service (any thread)

    @discardableResult
    public func send(_ message: ECallWire) -> Bool {
        switch message {
        case .hello, .initiation, .deregister:
            // No SIP counterpart: INVITE carries the MSD, and an IMS unit has no eCall-only
            // registration to drop here.
            return isAttached
        case .dial(let call, let number):
            return dial(call: call, number: number, kind: .automatic, msd: []) != .noNetwork
        case .msd(let call, let id, let bytes):
            return loop.run { self.calls[call]?.sendMSDUpdate(messageIdentifier: id, bytes: bytes) }
        case .hangUp(let call):
            return loop.run { self.calls.removeValue(forKey: call)?.hangUp() }
        case .answer(let call):
            return loop.run { self.calls[call]?.answer() }
        case .setup, .sendMSD, .llAck, .alAck, .cleared, .dropped, .incoming:
            // What the network sends: never sent by the unit.
            return false
        }
    }

    @discardableResult
    public func dial(call: Int, number: String, kind: ECallKind, msd: [UInt8]) -> ECallDialOutcome {
        guard isAttached, loop.run({ self.invite(call: call, kind: kind, msd: msd) }) else { return .noNetwork }
        return msd.isEmpty ? .placed : .placedWithMSD
    }

    public func start() {
        if let failure = loop.start(setUp: { self.setUp() }, tearDown: { self.tearDown() }) {
            deliver(.detached(reason: failure))
        }
    }

    public func shutdown() { loop.stop() }

    // MARK: - The libre thread

    /// The stack, its UDP transport and the session socket (for the call-back).
    private func setUp() -> String? {
        switch SIPStack.open(local: settings.local, software: "telematicsd", invited: { msg, arg in
            guard let msg, let arg else { return }
            Unmanaged<SIPECallTransport>.fromOpaque(arg).takeUnretainedValue().incoming(msg)
        }, arg: Unmanaged.passUnretained(self).toOpaque()) {
        case .success(let stack): self.stack = stack
        case .failure(let e): return e.description
        }
        prepareSpare()
        // Without probes the network is there as soon as the stack is: said before start()
        // returns, so that a crash read at once finds it.
        if settings.probeIntervalMs > 0 { probe() } else { probed(reachable: true) }
        return nil
    }

    private func tearDown() {
        tmr_cancel(probeTimer)
        for c in calls.values { c.close() }
        calls.removeAll()
        spare?.close()
        spare = nil
        stack?.close()
        stack = nil
        attached.store(false, ordering: .releasing)
    }

    // MARK: - Network attachment: the proxy answers OPTIONS

    private func probe() {
        guard let sip, !probing else { return }
        probing = true
        let me = Unmanaged.passUnretained(self).toOpaque()
        let err = tcu_sip_options(sip, settings.proxy, fromURI, settings.proxy, { err, msg, arg in
            guard let arg else { return }
            let t = Unmanaged<SIPECallTransport>.fromOpaque(arg).takeUnretainedValue()
            // Any answer, even a refusal, shows the network is there; none at all, that it is not.
            t.probed(reachable: err == 0 && msg != nil)
        }, me)
        if err != 0 { probed(reachable: false, reason: errorText(err)) }
        tmr_start(probeTimer, UInt64(max(100, settings.probeIntervalMs)), { arg in
            guard let arg else { return }
            Unmanaged<SIPECallTransport>.fromOpaque(arg).takeUnretainedValue().probe()
        }, me)
    }

    private func probed(reachable: Bool, reason: String = "the SIP proxy does not answer") {
        probing = false
        let was = attached.exchange(reachable, ordering: .acquiringAndReleasing)
        if reachable, !was { deliver(.attached) }
        if !reachable, was { deliver(.detached(reason: reason)) }
    }

    // MARK: - Calls

    /// Makes the spare call (its RTP socket and SDP session) when there is none.
    private func prepareSpare() {
        guard spare == nil, let sip else { return }
        let c = SIPCall(number: 0, transport: self, sip: sip, local: settings.local.host)
        if c.openMedia() { spare = c }
    }

    private func invite(call: Int, kind: ECallKind, msd: [UInt8]) {
        guard let sip, let sessionSocket else { return }
        // The spare call's RTP socket and SDP session are ready: the INVITE leaves without
        // waiting for them, and the next spare is made once it is gone.
        let c = spare.take() ?? SIPCall(number: call, transport: self, sip: sip, local: settings.local.host)
        c.number = call
        defer { prepareSpare() }
        let to = NGECall.serviceURN(kind) ?? settings.testURI
        let contentID = "msd\(call)@\(vin.lowercased()).ecall"
        guard let offer = c.makeOffer() else {
            deliver(.received(.setup(call: call, outcome: .noNetwork)))
            return
        }
        // The SDP offer first (RFC 5621: a stack that knows no multipart reads the first part).
        var parts = [MIMEPart(contentType: "application/sdp", body: offer)]
        var headers = "Accept: application/sdp, \(NGECall.controlContentType), multipart/mixed\r\nPriority: emergency\r\n"
            + "Recv-Info: \(NGECall.infoPackage)\r\n"
        if !msd.isEmpty {
            parts.append(MIMEPart(contentType: NGECall.msdContentType, contentID: contentID, disposition: "by-reference;handling=optional",
                                  body: msd))
            headers += "Call-Info: \(NGECall.callInfo(contentID: contentID))\r\n"
        }
        let boundary = MIMEMultipart.boundary(for: parts, base: "ecall-boundary")
        let body = parts.count == 1 ? offer : MIMEMultipart.build(parts, boundary: boundary)
        let contentType = parts.count == 1 ? "application/sdp" : MIMEMultipart.contentType(boundary: boundary)
        c.msdInInvite = !msd.isEmpty
        calls[call] = c
        if let failure = c.connect(socket: sessionSocket, to: to, from: fromURI, route: settings.proxy,
                                   contentType: contentType, body: body, headers: headers) {
            calls[call] = nil
            deliver(.notice("the INVITE could not be sent: \(failure)"))
            deliver(.received(.setup(call: call, outcome: .noNetwork)))
        }
    }

    /// An INVITE from outside: the PSAP's call-back.
    fileprivate func incoming(_ msg: UnsafePointer<sip_msg>) {
        guard let sip, let sessionSocket else { return }
        nextIncoming += 1
        let number = nextIncoming
        let c = SIPCall(number: number, transport: self, sip: sip, local: settings.local.host)
        c.incoming = true
        guard c.accept(socket: sessionSocket, msg: msg) else {
            _ = tcu_sip_reply(sip, msg, 500, "Server Internal Error")
            return
        }
        calls[number] = c
        deliver(.received(.incoming(call: number)))
        c.refuseUnlessAnswered(afterMs: settings.callbackAnswerMs)
    }

    // From the calls' callbacks.
    fileprivate func event(_ e: ECallLinkEvent) { deliver(e) }
    fileprivate func ended(_ c: SIPCall) { if calls[c.number] === c { calls[c.number] = nil } }
}

/// One SIP session: the eCall's INVITE or the PSAP's call-back, its SDP and its RTP.
final class SIPCall {
    var number: Int
    unowned let transport: SIPECallTransport
    let sip: OpaquePointer
    let localHost: String
    var session: OpaquePointer?
    var audio: AudioStream?
    let answerTimer = UnsafeMutablePointer<tmr>.allocate(capacity: 1)
    var incoming = false
    var established = false
    var answered = false
    /// The INVITE carried an MSD (not after the PSAP acknowledged one before a drop).
    var msdInInvite = false
    /// The PSAP's acknowledgement from the 200 OK, read in the answer handler.
    var acknowledged: Bool?

    init(number: Int, transport: SIPECallTransport, sip: OpaquePointer, local: String) {
        self.number = number
        self.transport = transport
        self.sip = sip
        self.localHost = local
        tmr_init(answerTimer)
    }

    deinit {
        answerTimer.deallocate()
    }

    var me: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    /// The RTP socket and the SDP offer for it.
    func makeOffer() -> [UInt8]? {
        guard openMedia() else { return nil }
        return audio?.describe(offer: true)
    }

    func openMedia() -> Bool {
        if audio == nil { audio = AudioStream.open(host: localHost) }
        return audio != nil
    }

    func connect(socket: OpaquePointer, to: String, from: String, route: String, contentType: String, body: [UInt8],
                 headers: String) -> String? {
        guard let mb = body.withUnsafeBufferPointer({ tcu_mbuf_from($0.baseAddress, $0.count) }) else { return "out of memory" }
        defer { _ = tcu_mem_deref(mb) }
        var sess: OpaquePointer?
        let err = tcu_sipsess_connect(&sess, socket, to, from, "ecall", route, contentType, mb,
            { msg, arg in SIPCall.from(arg)?.answerReceived(msg) ?? 0 },
            { _, _ in },
            { msg, arg in SIPCall.from(arg)?.establishedCall() },
            { sip, msg, arg in SIPCall.from(arg)?.info(msg) },
            { err, msg, arg in SIPCall.from(arg)?.closed(err: err, msg: msg) },
            me, headers)
        guard err == 0 else { return errorText(err) }
        session = sess
        return nil
    }

    static func from(_ arg: UnsafeMutableRawPointer?) -> SIPCall? {
        arg.map { Unmanaged<SIPCall>.fromOpaque($0).takeUnretainedValue() }
    }

    /// The PSAP's 200 OK: the SDP answer and, beside it, its acknowledgement of the MSD.
    func answerReceived(_ msg: UnsafePointer<sip_msg>?) -> Int32 {
        guard let msg else { return 0 }
        let (type, body) = content(of: msg)
        do {
            let parts = try MIMEMultipart.parse(body, contentType: type)
            for p in parts {
                switch p.mediaType {
                case "application/sdp": takeAnswer(p.body)
                case NGECall.controlContentType.lowercased(): readControl(p.body, inResponse: true)
                default: continue
                }
            }
        } catch {
            transport.event(.malformed("the PSAP's answer: \(error.message)"))
        }
        return 0
    }

    private func takeAnswer(_ answer: [UInt8]) {
        guard let audio else { return }
        let err = audio.take(answer, offer: false)
        if err != 0 { transport.event(.malformed("the PSAP's SDP answer could not be read (\(errorText(err)))")) }
    }

    private func readControl(_ body: [UInt8], inResponse: Bool) {
        do {
            for item in try EmergencyCallControl.parse(body) {
                switch item {
                case .ack(_, let received):
                    if inResponse {
                        acknowledged = received
                    } else {
                        // An acknowledgement of an MSD sent in INFO.
                        if received {
                            transport.event(.received(.alAck(call: number, clearDown: false)))
                        } else {
                            transport.event(.notice("the PSAP's acknowledgement of the MSD is negative"))
                        }
                    }
                case .request where item.isMSDRequest:
                    transport.event(.received(.sendMSD(call: number)))
                case .request(let action, _):
                    transport.event(.notice("the PSAP asked for '\(action)', which the unit does not do"))
                }
            }
        } catch {
            transport.event(.malformed("the PSAP's control block: \(error.message)"))
        }
    }

    func establishedCall() {
        established = true
        startVoice()
        if incoming { return }
        transport.event(.received(.setup(call: number, outcome: .answered)))
        // Without an MSD in the INVITE (the PSAP had acknowledged it before a drop), the PSAP
        // asks for one if it wants.
        guard msdInInvite else { return }
        // The INVITE carried the MSD: it was asked for and delivered with the call.
        transport.event(.received(.sendMSD(call: number)))
        transport.event(.received(.llAck(call: number)))
        switch acknowledged {
        case true?: transport.event(.received(.alAck(call: number, clearDown: false)))
        case false?: transport.event(.notice("the PSAP's acknowledgement of the MSD is negative"))
        case nil: transport.event(.notice("the PSAP's answer holds no acknowledgement of the MSD"))
        }
    }

    /// An INFO from the PSAP: a request for a new MSD, or the acknowledgement of one.
    func info(_ msg: UnsafePointer<sip_msg>?) {
        guard let msg else { return }
        let (type, body) = content(of: msg)
        do {
            let parts = try MIMEMultipart.parse(body, contentType: type)
            let control = parts.filter { $0.mediaType == NGECall.controlContentType.lowercased() }
            guard !control.isEmpty else {
                _ = tcu_sip_reply(sip, msg, 415, "Unsupported Media Type")
                transport.event(.malformed("an INFO of type '\(type)' without a control block: refused (415)"))
                return
            }
            _ = tcu_sip_reply(sip, msg, 200, "OK")
            for p in control { readControl(p.body, inResponse: false) }
        } catch {
            _ = tcu_sip_reply(sip, msg, 400, "Bad Request")
            transport.event(.malformed("an INFO from the PSAP: \(error.message)"))
        }
    }

    /// A new MSD (the PSAP asked for it) in an INFO of the eCall MSD package. (The service does
    /// not hand over the INVITE's MSD a second time.)
    func sendMSDUpdate(messageIdentifier: Int, bytes: [UInt8]) {
        guard let session, established else { return }
        let cid = "msd\(number)-\(messageIdentifier)@ecall"
        let parts = [MIMEPart(contentType: NGECall.msdContentType, contentID: cid, disposition: "Info-Package", body: bytes)]
        let boundary = MIMEMultipart.boundary(for: parts, base: "ecall-boundary")
        let body = MIMEMultipart.build(parts, boundary: boundary)
        let headers = "Info-Package: \(NGECall.infoPackage)\r\nCall-Info: \(NGECall.callInfo(contentID: cid))\r\n"
            + "Content-Type: \(MIMEMultipart.contentType(boundary: boundary))\r\n"
        // The request holds the call until its answer (or its failure) comes, even if the call
        // ended meanwhile: libre calls the handler once.
        let held = Unmanaged.passRetained(self).toOpaque()
        let err = body.withUnsafeBufferPointer { b in
            tcu_sip_drequest(sip, sipsess_dialog(session), "INFO", headers, b.baseAddress, b.count, { err, msg, arg in
                guard let arg else { return }
                let call = Unmanaged<SIPCall>.fromOpaque(arg).takeRetainedValue()
                guard call.session != nil else { return }
                let code = err == 0 ? msg.map { Int($0.pointee.scode) } : nil
                switch code {
                case (200...299)?:
                    // The PSAP's SIP stack has it: the lower layer's acknowledgement.
                    call.transport.event(.received(.llAck(call: call.number)))
                case 408?, 481?, nil:
                    // The dialog is gone (RFC 5057), or nothing answers: the call dropped.
                    call.transport.event(.notice("the MSD update found no call (\(code.map(String.init) ?? errorText(err))): the call dropped"))
                    call.dropped()
                case let other?:
                    call.transport.event(.notice("the PSAP refused the MSD update: \(other)"))
                }
            }, held)
        }
        if err != 0 {
            Unmanaged<SIPCall>.fromOpaque(held).release()
            transport.event(.notice("the MSD update could not be sent (\(errorText(err)))"))
        }
    }

    func closed(err: Int32, msg: UnsafePointer<sip_msg>?) {
        let wasEstablished = established
        stopVoice()
        transport.ended(self)
        if let msg, !msg.pointee.req, msg.pointee.scode >= 300, !wasEstablished {
            // The INVITE's final error: a failed set-up, redialled by the machine's rules.
            let code = Int(msg.pointee.scode)
            transport.event(.notice("the eCall's INVITE was refused: \(code) \(text(msg.pointee.reason))"))
            transport.event(.received(.setup(call: number, outcome: NGECall.setupOutcome(statusCode: code))))
        } else if err == ECONNRESET {
            // A BYE from the PSAP.
            transport.event(.received(.cleared(call: number)))
        } else if wasEstablished {
            transport.event(.received(.dropped(call: number)))
        } else if !incoming {
            transport.event(.notice("the eCall's INVITE failed (\(errorText(err)))"))
            transport.event(.received(.setup(call: number, outcome: .noNetwork)))
        }
        close()
    }

    /// The dialog is gone without a clear-down: the machine redials.
    func dropped() {
        guard session != nil else { return }
        stopVoice()
        transport.ended(self)
        transport.event(.received(.dropped(call: number)))
        close()
    }

    /// The unit clears down: BYE when established, CANCEL before.
    func hangUp() {
        close()
    }

    // MARK: - The call-back

    func accept(socket: OpaquePointer, msg: UnsafePointer<sip_msg>) -> Bool {
        let (type, body) = content(of: msg)
        guard openMedia(), let audio else { return false }
        if let offer = sessionDescription(type: type, body: body) { _ = audio.take(offer, offer: true) }
        var sess: OpaquePointer?
        let err = tcu_sipsess_accept(&sess, socket, msg, 180, "Ringing", "ecall", "application/sdp",
            { descp, msg, arg in SIPCall.from(arg)?.audio?.answer(reoffer: msg, into: descp) ?? EINVAL },
            { msg, arg in 0 },
            { msg, arg in SIPCall.from(arg)?.establishedCall() },
            { sip, msg, arg in SIPCall.from(arg)?.info(msg) },
            { err, msg, arg in SIPCall.from(arg)?.closed(err: err, msg: msg) },
            me)
        guard err == 0 else { return false }
        session = sess
        return true
    }

    func answer() {
        guard incoming, !answered, let session, let answer = audio?.describe(offer: false), let mb = mbuf(answer) else { return }
        answered = true
        tmr_cancel(answerTimer)
        defer { _ = tcu_mem_deref(mb) }
        _ = tcu_sipsess_answer(session, 200, "OK", mb)
    }

    func refuseUnlessAnswered(afterMs: Int64) {
        tmr_start(answerTimer, UInt64(max(1, afterMs)), { arg in
            guard let call = SIPCall.from(arg), !call.answered, let session = call.session else { return }
            _ = tcu_sipsess_reject(session, 480, "Temporarily Unavailable")
            call.transport.event(.notice("the PSAP's call-back came outside the call-back window: refused (480)"))
            call.transport.ended(call)
            call.close()
        }, me)
    }

    // MARK: - Voice

    /// G.711 silence every 20 ms; a PSAP silent past the media timeout has dropped.
    private func startVoice() {
        let timeout = transport.settings.mediaTimeoutMs
        audio?.start(silenceMs: timeout) { [unowned self] in
            transport.event(.notice("no voice from the PSAP for \(timeout) ms: the call dropped"))
            dropped()
        }
    }

    private func stopVoice() { audio?.stop() }

    /// Frees the session (libre sends BYE or CANCEL as the dialog needs), the media and the timers.
    func close() {
        tmr_cancel(answerTimer)
        if let s = session { _ = tcu_mem_deref(UnsafeMutableRawPointer(s)) }
        session = nil
        audio?.close()
        audio = nil
    }
}
