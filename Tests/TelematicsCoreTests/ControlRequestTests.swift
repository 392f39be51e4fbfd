import Testing
@testable import TelematicsCore

@Suite("Control requests")
struct ControlRequestTests {
    static let every: [ControlRequest] = [
        .ping, .status, .fault(hang: "bus"), .fault(hang: nil), .eCall(.test), .eCall(.cancel), .eCall(.status), .factoryReset,
        .register(code: "12345678"), .createAccount(email: "a@b.c", password: "correct horse", spin: "4711"),
        .addCar(email: "a@b.c", password: "correct horse", acceptedTerms: true), .renewLicence(package: "navi", years: 2),
        .privacy(.offline), .privacy(nil), .transmit(message: "TCU_Body_Request", signals: ["Body_Request": 1, "Honk_Flash_Duration": 3]),
        .navi(.route(from: .here, to: .named("Tikankatu 11")), language: .fr), .navi(.say("volume 3", near: .here), language: .en),
    ]

    @Test("every request survives the wire: what tcuctl sends is what the daemon reads", arguments: every)
    func roundTrip(_ request: ControlRequest) throws {
        let wire = try JSON.parse(request.json.text)
        #expect(ControlRequest.parse(wire) == .success(request))
    }

    static let refused: [(String, String)] = [
        (#"{}"#, "request needs a \"command\" string"),
        (#"{"command":7}"#, "request needs a \"command\" string"),
        (#"{"command":"reboot"}"#, "unknown command 'reboot'; known: ping, status, transmit, ecall, privacy, register, renewLicence, factoryReset, navi"),
        (#"{"command":"ecall","action":"call"}"#, "ecall needs an \"action\": test, cancel or status"),
        (#"{"command":"navi"}"#, "navi needs a \"request\" object"),
        (#"{"command":"navi","request":{"action":"route","to":"here"},"language":"de"}"#, "navi's \"language\" is fr or en"),
        (#"{"command":"navi","request":{"action":"nearest","kind":"hotel"}}"#, "navi: kind is fuel or parking"),
        (#"{"command":"factoryReset"}"#, "a factory reset deletes the user's data: send \"confirm\": true"),
        (#"{"command":"factoryReset","confirm":"yes"}"#, "a factory reset deletes the user's data: send \"confirm\": true"),
        (#"{"command":"register","code":12345678}"#, "register needs a \"code\" string"),
        (#"{"command":"assistant","action":"createAccount","email":"a@b.c","password":"x"}"#, "createAccount needs \"email\", \"password\" and \"spin\""),
        (#"{"command":"assistant"}"#, "assistant needs an \"action\": createAccount or addCar"),
        (#"{"command":"renewLicence","package":"gold","years":1}"#, "renewLicence needs a \"package\": radio or navi"),
        (#"{"command":"renewLicence","package":"radio","years":1.5}"#, "renewLicence needs \"years\": 1 or 2"),
        (#"{"command":"renewLicence","package":"radio","years":1e300}"#, "renewLicence needs \"years\": 1 or 2"),
        (#"{"command":"privacy","mode":"public"}"#, "privacy mode 'public': expected share, use or offline"),
        (#"{"command":"transmit"}"#, "transmit needs a \"message\" name"),
        (#"{"command":"transmit","message":"M","signals":{"S":"1"}}"#, "signal S needs a number"),
    ]

    @Test("a wrong request is refused with what is wrong", arguments: refused)
    func refusals(_ text: String, _ message: String) throws {
        #expect(ControlRequest.parse(try JSON.parse(text)) == .failure(ControlRequestError(message)))
    }
}
