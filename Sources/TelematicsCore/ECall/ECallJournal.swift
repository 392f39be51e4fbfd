/// What must survive a crash of the daemon during an eCall: enough to resume the call within
/// the redial rules, or to keep the callback window. No position, no personal data: only the
/// call's own facts. Written with fsync on every phase change; deleted when the unit is idle
/// again, and at the latest 13 h after the call.
public struct ECallJournal: Sendable, Equatable {
    public enum Stage: String, Sendable {
        /// Between the trigger and the clear-down.
        case inCall
        /// Cleared down; the PSAP may call back.
        case callbackWindow
    }

    public var stage: Stage
    public var kind: ECallKind
    public var number: String
    public var attempts: Int
    public var msdTimestamp: UInt32
    public var messageIdentifier: Int
    public var everConnected: Bool
    public var msdAcknowledged: Bool
    /// UTC seconds: the trigger, the clear-down, and when this journal was written.
    public var startedAtUTC: Int64
    public var clearedAtUTC: Int64?
    public var writtenAtUTC: Int64
    public var t9Expired: Bool

    /// The longest a journal may be kept after its call.
    public static let maximumAgeSeconds: Int64 = 13 * 3600

    public var text: String {
        var lines = [
            "# eCall journal: deleted when the unit is idle again, at the latest 13 h after the call",
            "stage = \(stage.rawValue)", "kind = \(kind.rawValue)", "number = \(number)",
            "attempts = \(attempts)", "msd-timestamp = \(msdTimestamp)", "message-identifier = \(messageIdentifier)",
            "ever-connected = \(everConnected)", "msd-acknowledged = \(msdAcknowledged)",
            "started-at = \(startedAtUTC)", "written-at = \(writtenAtUTC)", "t9-expired = \(t9Expired)",
        ]
        if let c = clearedAtUTC { lines.append("cleared-at = \(c)") }
        return lines.joined(separator: "\n") + "\n"
    }

    public static func parse(_ text: String, source: String? = nil) throws(ParseError) -> ECallJournal {
        let f = try KeyValueFile.parse(text, source: source)
        try f.checkKnown(["": ["stage", "kind", "number", "attempts", "msd-timestamp", "message-identifier", "ever-connected",
                               "msd-acknowledged", "started-at", "written-at", "t9-expired", "cleared-at"]])
        let stageEntry = try f.required("", "stage")
        guard let stage = Stage(rawValue: stageEntry.value) else { throw f.error(stageEntry, "expected inCall or callbackWindow") }
        let kindEntry = try f.required("", "kind")
        guard let kind = ECallKind(rawValue: kindEntry.value) else { throw f.error(kindEntry, "expected automatic, manual or test") }
        let big: ClosedRange<Int64> = 0...Int64(UInt32.max) * 2
        var j = ECallJournal(
            stage: stage, kind: kind, number: try f.required("", "number").value,
            attempts: Int(try f.integer("", "attempts", default: 0, range: 0...100_000)),
            msdTimestamp: UInt32(try f.integer("", "msd-timestamp", default: 0, range: 0...Int64(UInt32.max))),
            messageIdentifier: Int(try f.integer("", "message-identifier", default: 1, range: 0...255)),
            everConnected: try f.bool("", "ever-connected", default: false),
            msdAcknowledged: try f.bool("", "msd-acknowledged", default: false),
            startedAtUTC: try f.integer("", "started-at", default: 0, range: big),
            clearedAtUTC: nil,
            writtenAtUTC: try f.integer("", "written-at", default: 0, range: big),
            t9Expired: try f.bool("", "t9-expired", default: false)
        )
        if f.entry("", "cleared-at") != nil { j.clearedAtUTC = try f.integer("", "cleared-at", default: 0, range: big) }
        if stage == .callbackWindow, j.clearedAtUTC == nil {
            throw ParseError(source: source, line: stageEntry.line, "a callbackWindow journal needs cleared-at")
        }
        return j
    }

    /// The same journal without its write time, to tell whether anything changed.
    public var ignoringWriteTime: ECallJournal {
        var c = self
        c.writtenAtUTC = 0
        return c
    }

    /// True when the journal has outlived the 13 h limit.
    public func isExpired(nowUTC: Int64) -> Bool {
        nowUTC - (clearedAtUTC ?? writtenAtUTC) > Self.maximumAgeSeconds
    }
}

extension ECallStateMachine {
    /// The journal for the current state; nil when there is nothing to keep (idle).
    public func journal(nowUTC: Int64, startedAtUTC: Int64, clearedAtUTC: Int64?) -> ECallJournal? {
        guard let snap = snapshot else { return nil }
        return ECallJournal(
            stage: snap.inCall ? .inCall : .callbackWindow, kind: snap.call.kind, number: snap.call.number,
            attempts: snap.call.attempts, msdTimestamp: snap.call.msdTimestamp, messageIdentifier: snap.call.messageIdentifier,
            everConnected: snap.call.everConnected, msdAcknowledged: snap.call.msdAcknowledged,
            startedAtUTC: startedAtUTC, clearedAtUTC: snap.inCall ? nil : clearedAtUTC, writtenAtUTC: nowUTC,
            t9Expired: snap.t9Expired
        )
    }
}

extension ECallReport {
    /// The report of a finished eCall as an outbox message (highest priority). It carries the
    /// call's facts only: no position.
    public func outboxMessage(vin: String, id: String, nowMs: Int64) -> OutboxMessage {
        let body = JSON.object([
            ("id", .string(id)), ("vin", .string(vin)), ("type", .string("eCallReport")),
            ("kind", .string(kind.rawValue)), ("ending", .string(ending.rawValue)), ("attempts", .number(Double(attempts))),
            ("msdAcknowledged", .bool(msdAcknowledged)), ("lastMessageIdentifier", .number(Double(lastMessageIdentifier))),
            ("msdTimestamp", .number(Double(msdTimestamp))), ("durationMs", .number(Double(endedAt - startedAt))),
            ("capturedAt", .number(Double(nowMs))),
        ])
        return OutboxMessage(id: id, stream: "ecall", priority: .eCallReport, capturedAtMs: nowMs, payload: body.text)
    }
}
