import Testing
@testable import TelematicsCore

@Suite("Privacy levels")
struct PrivacyTests {
    let event = OutboxMessage(id: "e", stream: "events", priority: .event, capturedAtMs: 1, payload: "{}")
    let parking = OutboxMessage(id: "p", stream: "state", priority: .state, coalesceKey: "state.parking", capturedAtMs: 1,
                                payload: "{}", carriesPosition: true)
    let report = OutboxMessage(id: "r", stream: "ecall", priority: .eCallReport, capturedAtMs: 1, payload: "{}")

    @Test("share sends everything; use keeps positions in; offline lets nothing out and closes the link")
    func gating() {
        #expect([event, parking, report].allSatisfy(PrivacyMode.shareMyPosition.allows))
        #expect(PrivacyMode.useMyPosition.allows(event) && PrivacyMode.useMyPosition.allows(report))
        #expect(!PrivacyMode.useMyPosition.allows(parking))
        #expect(![event, parking, report].contains(where: PrivacyMode.offline.allows))
        #expect(PrivacyMode.useMyPosition.connects && !PrivacyMode.offline.connects)
    }

    @Test("the command line's words and the stored names both parse; anything else does not")
    func words() {
        #expect(PrivacyMode(word: "share") == .shareMyPosition && PrivacyMode(word: "useMyPosition") == .useMyPosition)
        #expect(PrivacyMode(word: "offline") == .offline && PrivacyMode(word: "Offline") == nil && PrivacyMode(word: "") == nil)
    }
}
