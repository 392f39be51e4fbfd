import Testing
@testable import TelematicsCore

@Suite("NG-eCall: the MSD body part, the control block, the responses")
struct NGECallTests {
    /// An MSD's bytes as they can be: NUL, CR, LF and what looks like a delimiter.
    static let msd: [UInt8] = [0x02, 0x00, 0x0D, 0x0A, 0x2D, 0x2D, 0x62, 0x00, 0xFF, 0x0A]

    @Test("a multipart body with the SDP offer and a binary MSD reads back byte for byte")
    func roundTrip() throws {
        let sdp = Array("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n".utf8)
        let parts = [MIMEPart(contentType: "application/sdp", body: sdp),
                     MIMEPart(contentType: NGECall.msdContentType, contentID: "msd1@unit", disposition: "by-reference", body: Self.msd)]
        let boundary = MIMEMultipart.boundary(for: parts, base: "b")
        // The MSD holds "--b": the boundary is made longer.
        #expect(boundary == "b-1")
        let body = MIMEMultipart.build(parts, boundary: boundary)
        let back = try MIMEMultipart.parse(body, contentType: MIMEMultipart.contentType(boundary: boundary))
        #expect(back.count == 2)
        #expect(back[0].mediaType == "application/sdp" && back[0].body == sdp)
        #expect(back[1].mediaType == NGECall.msdContentType.lowercased() && back[1].body == Self.msd)
        #expect(back[1].contentID == "msd1@unit" && back[1].header("content-disposition") == "by-reference")
    }

    @Test("a boundary is lengthened until no part holds its delimiter")
    func boundaryAvoidsTheBody() {
        let part = MIMEPart(contentType: NGECall.msdContentType, body: Array("x--ecall y--ecall-1 z".utf8))
        #expect(MIMEMultipart.boundary(for: [part], base: "ecall") == "ecall-2")
    }

    @Test("a preamble, LF line ends, a folded header and quoted boundary are read as RFC 2046 allows")
    func lenient() throws {
        let text = "preamble\n--q\nContent-Type: application/EmergencyCallData.Control+xml;\n charset=utf-8\n\n<x/>\n--q--\n"
        let parts = try MIMEMultipart.parse(Array(text.utf8), contentType: "Multipart/Mixed; boundary=\"q\"")
        #expect(parts.count == 1 && parts[0].mediaType == "application/emergencycalldata.control+xml")
        #expect(parts[0].header("Content-Type") == "application/EmergencyCallData.Control+xml; charset=utf-8")
        #expect(parts[0].body == Array("<x/>".utf8))
        // Not multipart: the body is its one part.
        let one = try MIMEMultipart.parse(Array("v=0".utf8), contentType: "application/sdp")
        #expect(one == [MIMEPart(headers: [.init("Content-Type", "application/sdp")], body: Array("v=0".utf8))])
    }

    @Test("a broken multipart body is refused with what is wrong", arguments: [
        ("--b\r\nContent-Type: a/b\r\n\r\nx\r\n", "multipart/mixed;boundary=b", "has no closing delimiter"),
        ("x", "multipart/mixed", "has no valid boundary"),
        ("nothing here", "multipart/mixed;boundary=b", "no '--b' delimiter"),
        ("--b\r\nno colon\r\n\r\nx\r\n--b--\r\n", "multipart/mixed;boundary=b", "expected 'Name: value'"),
    ])
    func refused(_ body: String, _ type: String, _ message: String) {
        #expect(throws: ParseError.self) { try MIMEMultipart.parse(Array(body.utf8), contentType: type) }
        do { _ = try MIMEMultipart.parse(Array(body.utf8), contentType: type) } catch { #expect(error.message.contains(message), "\(error.message)") }
    }

    @Test("an oversized body is refused before it is read")
    func oversized() {
        #expect(throws: ParseError.self) {
            try MIMEMultipart.parse([UInt8](repeating: 0x41, count: MIMEMultipart.maximumBytes + 1), contentType: "multipart/mixed;boundary=b")
        }
    }

    @Test("the PSAP's acknowledgements and requests are read; what is not a control block is refused")
    func control() throws {
        let ack = EmergencyCallControl.xml([.ack(ref: "msd1@unit", received: true)])
        #expect(try EmergencyCallControl.parse(Array(ack.utf8)) == [.ack(ref: "msd1@unit", received: true)])
        let prefixed = """
        <?xml version="1.0"?>
        <ctl:EmergencyCallData.Control xmlns:ctl="urn:ietf:params:xml:ns:EmergencyCallData:control">
          <ctl:ack ref='a&amp;b' received="false"><ctl:actionResult action="msg-static" success="false"/></ctl:ack>
          <ctl:request action="send-data" datatype="eCall.MSD"/>
        </ctl:EmergencyCallData.Control>
        """
        let items = try EmergencyCallControl.parse(Array(prefixed.utf8))
        #expect(items == [.ack(ref: "a&b", received: false), .request(action: "send-data", datatype: "eCall.MSD")])
        #expect(items[1].isMSDRequest && !items[0].isMSDRequest)
        for (bad, why) in [("<other/>", "expected an <EmergencyCallData.Control>"),
                           ("<EmergencyCallData.Control><ack/></EmergencyCallData.Control>", "needs a 'received'"),
                           ("<EmergencyCallData.Control><ack received=\"yes\"/></EmergencyCallData.Control>", "must be true or false")] {
            do {
                _ = try EmergencyCallControl.parse(Array(bad.utf8))
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.message.contains(why), "\(error.message)")
            }
        }
    }

    @Test("Call-Info's MSD references are found among other values")
    func callInfo() {
        let value = NGECall.callInfo(contentID: "msd1@unit")
        #expect(value == "<cid:msd1@unit>;purpose=EmergencyCallData.eCall.MSD")
        #expect(NGECall.msdReferences(callInfo: ["<http://x.example/a,b>;purpose=icon, " + value, "<cid:other>;purpose=EmergencyCallData.DeviceInfo"])
                == ["msd1@unit"])
    }

    @Test("final responses map onto the machine's set-up outcomes", arguments: [
        (200, ECallWire.SetupOutcome.answered), (486, .busy), (600, .busy), (603, .busy), (408, .noAnswer), (480, .noAnswer),
        (487, .noAnswer), (503, .noNetwork), (500, .noNetwork), (404, .busy), (415, .busy),
    ])
    func outcomes(_ code: Int, _ outcome: ECallWire.SetupOutcome) {
        #expect(NGECall.setupOutcome(statusCode: code) == outcome)
    }

    @Test("automatic and manual eCalls go to their service URNs; a test call to the configured URI")
    func urns() {
        #expect(NGECall.serviceURN(.automatic) == "urn:service:sos.ecall.automatic")
        #expect(NGECall.serviceURN(.manual) == "urn:service:sos.ecall.manual")
        #expect(NGECall.serviceURN(.test) == nil)
    }
}
