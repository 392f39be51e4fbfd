#if canImport(Glibc)
import Glibc
#endif
import CLibre
import ECallSIP
import Platform
import Synchronization
import TelematicsCore

/// The PSAP for NG-eCall (RFC 8147), on libre like the unit: takes the INVITE to the eCall
/// service URN, decodes the MSD it carries, answers as the scenario says (the same keys as the
/// circuit-switched simulator: the outcome per attempt, the acknowledgement in the 200 OK or a
/// negative one, asking for the MSD again in an INFO, the clear-down, the call-back), and logs
/// every event as the other simulator does. Its voice is G.711 silence over RTP. A dropped call
/// (`drop-on-msd`, `drop-after-answer-ms`) goes silent as a lost bearer does: no more voice,
/// no BYE, and a 481 to any request in its dialog; the unit finds out by its media timeout.
public final class SIPPSAPSimulator: @unchecked Sendable {
    private let endpoint: Endpoint
    private let scenario: PSAPScenario
    private let log: @Sendable (JSON) -> Void
    private let loop: LibreLoop
    private let stopped = StopSignal()
    private let started = monotonicMs()

    // On the libre thread only.
    private var stack: SIPStack?
    private var sip: OpaquePointer? { stack?.sip }
    private var sessionSocket: OpaquePointer? { stack?.sessions }
    private var listener: OpaquePointer?
    private var dials = 0
    private var msds = 0
    private var calls: [Int: PSAPCall] = [:]
    private var calledBack = false

    public init(listen endpoint: Endpoint, scenario: PSAPScenario, log: @escaping @Sendable (JSON) -> Void) {
        self.endpoint = endpoint
        self.scenario = scenario
        self.log = log
        let started = monotonicMs()
        loop = LibreLoop(name: "psap-sip", warning: { line in
            log(.object([("t", .number(Double(monotonicMs() - started))), ("event", .string("malformed")), ("error", .string(line))]))
        })
    }

    public func requestStop() { stopped.set() }

    /// Serves until `requestStop`; nil when it ran, else why it could not start.
    public func run() -> String? {
        if let failure = loop.start(setUp: { self.setUp() }, tearDown: { self.tearDown() }) { return failure }
        record("listening", [("endpoint", .string("sip:\(endpoint)"))])
        stopped.waitForever()
        loop.stop()
        return nil
    }

    fileprivate func record(_ event: String, _ fields: [(String, JSON)] = []) {
        log(.object([("t", .number(Double(monotonicMs() - started))), ("event", .string(event))] + fields))
    }

    private func setUp() -> String? {
        switch SIPStack.open(local: endpoint, software: "tcu-psap", invited: { msg, arg in
            guard let msg, let arg else { return }
            Unmanaged<SIPPSAPSimulator>.fromOpaque(arg).takeUnretainedValue().invite(msg)
        }, arg: Unmanaged.passUnretained(self).toOpaque()) {
        case .success(let stack): self.stack = stack
        case .failure(let e): return e.description
        }
        guard let s = sip else { return "no SIP stack" }
        // The unit asks whether the network is there: the PSAP stands for it and answers.
        var lsnr: OpaquePointer?
        guard sip_listen(&lsnr, s, true, { msg, arg in
            guard let msg, let arg, text(msg.pointee.met) == "OPTIONS" else { return false }
            let psap = Unmanaged<SIPPSAPSimulator>.fromOpaque(arg).takeUnretainedValue()
            if let sip = psap.sip { _ = tcu_sip_reply(sip, msg, 200, "OK") }
            return true
        }, Unmanaged.passUnretained(self).toOpaque()) == 0 else { return "cannot listen for SIP requests" }
        listener = lsnr
        return nil
    }

    private func tearDown() {
        for c in calls.values { c.close() }
        calls.removeAll()
        if let l = listener { _ = tcu_mem_deref(UnsafeMutableRawPointer(l)) }
        listener = nil
        stack?.close()
        stack = nil
    }

    /// A new INVITE: the unit's eCall (or anything else, refused).
    private func invite(_ msg: UnsafePointer<sip_msg>) {
        guard let sip, let sessionSocket else { return }
        let uri = text(msg.pointee.ruri)
        let callInfo = headerValue(msg, "Call-Info")
        let (type, body) = content(of: msg)
        var received: [(String, JSON)] = [("type", .string("invite")), ("uri", .string(uri)), ("contentType", .string(type))]
        if let callInfo { received.append(("callInfo", .string(callInfo))) }
        record("received", [("message", .object(received))])
        guard uri.hasPrefix("urn:service:sos.ecall.") || uri.hasPrefix("sip:") else {
            _ = tcu_sip_reply(sip, msg, 404, "Not Found")
            return
        }
        dials += 1
        let call = dials
        let c = PSAPCall(number: call, psap: self, sip: sip, local: endpoint.host)
        c.requestsLeft = scenario.requestAgain
        var parts: [MIMEPart] = []
        do { parts = try MIMEMultipart.parse(body, contentType: type) } catch {
            record("malformed", [("call", .number(Double(call))), ("error", .string(error.message))])
        }
        if let offer = sessionDescription(type: type, body: body) { c.takeOffer(offer) }
        let references = NGECall.msdReferences(callInfo: callInfo.map { [$0] } ?? [])
        if let m = parts.first(where: { $0.mediaType == NGECall.msdContentType.lowercased() }) {
            c.msdContentID = m.contentID
            // Dropped on this MSD: the call is answered (the MSD came with it), then lost.
            c.dropsWhenAnswered = !msdArrived(call: call, bytes: m.body, referenced: m.contentID.map(references.contains) ?? false)
        }
        c.contact = headerValue(msg, "Contact").map { v in
            var s = Substring(v)
            if let lt = s.firstIndex(of: "<"), let gt = s.firstIndex(of: ">"), lt < gt { s = s[s.index(after: lt)..<gt] }
            return String(s)
        }
        let outcome = scenario.attempts[min(dials - 1, scenario.attempts.count - 1)]
        let answerType = MIMEMultipart.contentType(boundary: "psap-boundary")
        guard c.accept(socket: sessionSocket, msg: msg, contentType: answerType) else {
            _ = tcu_sip_reply(sip, msg, 500, "Server Internal Error")
            return
        }
        calls[call] = c
        c.after(scenario.answerDelayMs) { [self] in
            switch outcome {
            case .answered:
                let received = scenario.alAck && msds > scenario.ignoreMSDs
                let ack = c.dropsWhenAnswered ? nil : c.msdContentID.map { EmergencyCallControl.ack(ref: $0, received: received) }
                c.answer(ack: ack, boundary: "psap-boundary")
                record("sent", [("message", .object([("type", .string("200")), ("call", .number(Double(call))),
                                                    ("acknowledged", ack == nil ? .null : .bool(received))]))])
            case .busy, .noAnswer, .noNetwork:
                let (code, reason): (UInt16, String) = switch outcome {
                case .busy: (486, "Busy Here")
                case .noAnswer: (480, "Temporarily Unavailable")
                default: (503, "Service Unavailable")
                }
                c.reject(code, reason)
                calls[call] = nil
                record("sent", [("message", .object([("type", .string("\(code)")), ("call", .number(Double(call)))]))])
            }
        }
    }

    /// Records an MSD; false when the scenario drops the call on it.
    fileprivate func msdArrived(call: Int, bytes: [UInt8], referenced: Bool? = nil) -> Bool {
        msds += 1
        var fields: [(String, JSON)] = [("call", .number(Double(call))), ("hex", .string(hexBytes(bytes)))]
        if let referenced { fields.append(("referencedByCallInfo", .bool(referenced))) }
        do {
            let msd = try MSD.decode(bytes)
            fields.append(("messageIdentifier", .number(Double(msd.messageIdentifier))))
            fields.append(("decoded", msd.json))
        } catch {
            fields.append(("error", .string(error.description)))
        }
        record("msd", fields)
        return scenario.dropOnMSD != msds
    }

    /// The call is up: ask again for the MSD, or clear down, as the scenario says.
    fileprivate func established(_ c: PSAPCall) {
        record("answered", [("call", .number(Double(c.number)))])
        c.startVoice()
        if c.dropsWhenAnswered {
            lose(c)
            return
        }
        if scenario.dropAfterAnswerMs >= 0 {
            c.after(scenario.dropAfterAnswerMs) { [self] in lose(c) }
        }
        if scenario.alAckClearDown {
            hangUp(c)
        } else {
            acknowledged(c)
        }
    }

    /// After an acknowledgement: the next request for the MSD, or the clear-down.
    fileprivate func acknowledged(_ c: PSAPCall) {
        if c.requestsLeft > 0 {
            c.requestsLeft -= 1
            c.after(scenario.requestAgainDelayMs) { [self] in
                c.sendControl([.request(action: "send-data", datatype: "eCall.MSD")])
                record("sent", [("message", .object([("type", .string("sendMSD")), ("call", .number(Double(c.number)))]))])
            }
        } else if scenario.hangUpAfterMs >= 0 {
            c.after(scenario.hangUpAfterMs) { [self] in hangUp(c) }
        }
    }

    /// An MSD in an INFO from the unit; false when the call drops on it.
    fileprivate func msdUpdate(_ c: PSAPCall, _ m: MIMEPart) -> Bool {
        guard msdArrived(call: c.number, bytes: m.body) else {
            lose(c)
            return false
        }
        guard scenario.alAck, msds > scenario.ignoreMSDs else { return true }
        c.after(scenario.ackDelayMs) { [self] in
            c.sendControl([.ack(ref: m.contentID, received: true)])
            record("sent", [("message", .object([("type", .string("ack")), ("call", .number(Double(c.number)))]))])
            acknowledged(c)
        }
        return true
    }

    /// The call is lost as a dropped bearer loses it: silent, no BYE, its dialog gone.
    private func lose(_ c: PSAPCall) {
        record("dropped", [("call", .number(Double(c.number)))])
        c.lose()
    }

    private func hangUp(_ c: PSAPCall) {
        record("sent", [("message", .object([("type", .string("bye")), ("call", .number(Double(c.number)))]))])
        ended(c)
        c.close()
        callBack(after: c)
    }

    fileprivate func ended(_ c: PSAPCall) {
        if calls[c.number] === c { calls[c.number] = nil }
    }

    /// The unit cleared down.
    fileprivate func clearedByUnit(_ c: PSAPCall, err: Int32) {
        record("received", [("message", .object([("type", .string(err == ECONNRESET ? "bye" : "ended")), ("call", .number(Double(c.number)))]))])
        ended(c)
        c.close()
        // After a drop the unit redials: no call-back for the lost call.
        if !c.lost { callBack(after: c) }
    }

    private func callBack(after c: PSAPCall) {
        guard scenario.callbackAfterMs >= 0, !calledBack, let contact = c.contact, let sip, let sessionSocket, !c.isCallback else { return }
        calledBack = true
        let back = PSAPCall(number: c.number + 1_000, psap: self, sip: sip, local: endpoint.host)
        back.isCallback = true
        back.after(scenario.callbackAfterMs) { [self] in
            record("sent", [("message", .object([("type", .string("incoming")), ("call", .number(Double(back.number))),
                                                ("uri", .string(contact))]))])
            if let failure = back.connect(socket: sessionSocket, to: contact, from: "sip:psap@\(endpoint)") {
                record("malformed", [("error", .string("the call-back could not be placed: \(failure)"))])
                return
            }
            calls[back.number] = back
        }
    }

    fileprivate func callBackAnswered(_ c: PSAPCall) {
        record("received", [("message", .object([("type", .string("answer")), ("call", .number(Double(c.number)))]))])
        c.startVoice()
        c.after(scenario.callbackHangUpAfterMs) { [self] in hangUp(c) }
    }
}

/// One call at the PSAP: the unit's eCall or the PSAP's call-back.
final class PSAPCall {
    let number: Int
    unowned let psap: SIPPSAPSimulator
    let sip: OpaquePointer
    let local: String
    var session: OpaquePointer?
    var audio: AudioStream?
    var msdContentID: String?
    var contact: String?
    var isCallback = false
    var requestsLeft: Int
    /// The MSD in the INVITE is the one the scenario drops the call on.
    var dropsWhenAnswered = false
    /// Dropped: silent, and its dialog answers 481.
    private(set) var lost = false
    /// Timers, cancelled and freed when the call closes.
    private var jobs: [Job] = []

    init(number: Int, psap: SIPPSAPSimulator, sip: OpaquePointer, local: String) {
        self.number = number
        self.psap = psap
        self.sip = sip
        self.local = local
        requestsLeft = 0
    }

    deinit { close() }

    var me: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    static func from(_ arg: UnsafeMutableRawPointer?) -> PSAPCall? { arg.map { Unmanaged<PSAPCall>.fromOpaque($0).takeUnretainedValue() } }

    /// Runs `body` on the loop after `ms` (not once the call is closed).
    func after(_ ms: Int64, _ body: @escaping () -> Void) {
        let job = Job(body)
        jobs.append(job)
        tmr_start(job.timer, UInt64(max(0, ms)), { arg in
            guard let arg else { return }
            let job = Unmanaged<Job>.fromOpaque(arg).takeUnretainedValue()
            job.body()
        }, Unmanaged.passUnretained(job).toOpaque())
    }

    /// A timer and what it runs; kept by the call until it closes.
    final class Job {
        let timer = UnsafeMutablePointer<tmr>.allocate(capacity: 1)
        let body: () -> Void
        init(_ body: @escaping () -> Void) {
            self.body = body
            tmr_init(timer)
        }
        deinit {
            tmr_cancel(timer)
            timer.deallocate()
        }
    }

    private func openMedia() -> Bool {
        if audio == nil { audio = AudioStream.open(host: local) }
        return audio != nil
    }

    func takeOffer(_ offer: [UInt8]) {
        guard openMedia(), let audio else { return }
        _ = audio.take(offer, offer: true)
    }

    func accept(socket: OpaquePointer, msg: UnsafePointer<sip_msg>, contentType: String) -> Bool {
        guard openMedia() else { return false }
        var sess: OpaquePointer?
        let err = tcu_sipsess_accept(&sess, socket, msg, 180, "Ringing", "psap", contentType,
            { descp, msg, arg in PSAPCall.from(arg)?.audio?.answer(reoffer: msg, into: descp) ?? EINVAL },
            { _, _ in 0 },
            { _, arg in
                guard let call = PSAPCall.from(arg) else { return }
                call.psap.established(call)
            },
            { sip, msg, arg in PSAPCall.from(arg)?.info(msg) },
            { err, _, arg in
                guard let call = PSAPCall.from(arg) else { return }
                call.psap.clearedByUnit(call, err: err)
            }, me)
        guard err == 0 else { return false }
        session = sess
        return true
    }

    /// The 200 OK: the SDP answer and the acknowledgement of the INVITE's MSD.
    func answer(ack: EmergencyCallControl?, boundary: String) {
        guard let session, let answer = audio?.describe(offer: false) else { return }
        var parts = [MIMEPart(contentType: "application/sdp", body: answer)]
        if let ack { parts.append(MIMEPart(contentType: NGECall.controlContentType, body: Array(EmergencyCallControl.xml([ack]).utf8))) }
        guard let mb = mbuf(MIMEMultipart.build(parts, boundary: boundary)) else { return }
        _ = tcu_sipsess_answer(session, 200, "OK", mb)
        _ = tcu_mem_deref(mb)
    }

    func reject(_ code: UInt16, _ reason: String) {
        guard let session else { return }
        _ = tcu_sipsess_reject(session, code, reason)
        close()
    }

    /// An INFO to the unit with a control block.
    func sendControl(_ items: [EmergencyCallControl]) {
        guard let session else { return }
        let body = Array(EmergencyCallControl.xml(items).utf8)
        let headers = "Info-Package: \(NGECall.infoPackage)\r\nContent-Type: \(NGECall.controlContentType)\r\n"
        _ = body.withUnsafeBufferPointer { b in
            tcu_sip_drequest(sip, sipsess_dialog(session), "INFO", headers, b.baseAddress, b.count, { _, _, _ in }, nil)
        }
    }

    /// An INFO from the unit: an MSD update.
    func info(_ msg: UnsafePointer<sip_msg>?) {
        guard let msg else { return }
        guard !lost else {
            _ = tcu_sip_reply(sip, msg, 481, "Call/Transaction Does Not Exist")
            return
        }
        let (type, body) = content(of: msg)
        guard let parts = try? MIMEMultipart.parse(body, contentType: type),
              let m = parts.first(where: { $0.mediaType == NGECall.msdContentType.lowercased() }) else {
            _ = tcu_sip_reply(sip, msg, 415, "Unsupported Media Type")
            psap.record("malformed", [("call", .number(Double(number))), ("error", .string("an INFO of type '\(type)' without an MSD"))])
            return
        }
        if psap.msdUpdate(self, m) {
            _ = tcu_sip_reply(sip, msg, 200, "OK")
        } else {
            _ = tcu_sip_reply(sip, msg, 481, "Call/Transaction Does Not Exist")
        }
    }

    /// Silence every 20 ms while the call is up (the PSAP does not watch the unit's voice).
    func startVoice() { audio?.start(silenceMs: 0) {} }

    /// Dropped: no voice, nothing more scheduled, and its dialog answers 481 from now on.
    func lose() {
        lost = true
        jobs.removeAll()
        audio?.stop()
    }

    /// The PSAP's call-back to the unit.
    func connect(socket: OpaquePointer, to: String, from: String) -> String? {
        guard openMedia(), let description = audio?.describe(offer: true), let offer = mbuf(description) else { return "no media" }
        defer { _ = tcu_mem_deref(offer) }
        var sess: OpaquePointer?
        let err = tcu_sipsess_connect(&sess, socket, to, from, "psap", nil, "application/sdp", offer,
            { msg, arg in
                guard let msg, let call = PSAPCall.from(arg), let audio = call.audio else { return 0 }
                _ = audio.take(content(of: msg).body, offer: false)
                return 0
            },
            { _, _ in },
            { _, arg in
                guard let call = PSAPCall.from(arg) else { return }
                call.psap.callBackAnswered(call)
            },
            { _, msg, arg in PSAPCall.from(arg)?.info(msg) },
            { err, msg, arg in
                guard let call = PSAPCall.from(arg) else { return }
                if let msg, !msg.pointee.req, msg.pointee.scode >= 300 {
                    call.psap.record("received", [("message", .object([("type", .string("\(msg.pointee.scode)")), ("call", .number(Double(call.number)))]))])
                    call.psap.ended(call)
                    call.close()
                } else {
                    call.psap.clearedByUnit(call, err: err)
                }
            }, me, "")
        guard err == 0 else { return errorText(err) }
        session = sess
        return nil
    }

    /// Frees the session (libre sends BYE or CANCEL as the dialog needs), the media and the timers.
    func close() {
        jobs.removeAll()
        if let s = session { _ = tcu_mem_deref(UnsafeMutableRawPointer(s)) }
        session = nil
        audio?.close()
        audio = nil
    }
}
