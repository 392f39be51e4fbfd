/// The eCall self-test run at every ignition-on (Regulation (EU) 2015/758): the unit checks
/// what an eCall needs and raises a warning while something is missing.
public struct ECallSelfTest: Sendable, Equatable {
    public enum Check: String, Sendable, CaseIterable {
        /// The network access device: the eCall link is attached.
        case networkAccess
        /// The crash signal from the airbag controller arrives and is fresh.
        case crashSignal
        /// A GNSS receiver delivers fixes.
        case gnss
    }

    public enum Outcome: String, Sendable, Equatable {
        case passed, failed
        /// Not part of this unit (no GNSS service configured): reported, never a pass.
        case notFitted
    }

    public var results: [(Check, Outcome)]

    public static func == (a: Self, b: Self) -> Bool {
        a.results.count == b.results.count && zip(a.results, b.results).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    /// - Parameters:
    ///   - linkAttached: the network link is up.
    ///   - crashSignalFresh: `crash.detected` is available (its message arrives within 3 cycles).
    ///   - gnssFix: nil when the unit has no GNSS service; otherwise whether it has a fix.
    public init(linkAttached: Bool, crashSignalFresh: Bool, gnssFix: Bool?) {
        results = [
            (.networkAccess, linkAttached ? .passed : .failed),
            (.crashSignal, crashSignalFresh ? .passed : .failed),
            (.gnss, gnssFix.map { $0 ? .passed : .failed } ?? .notFitted),
        ]
    }

    /// The checks that failed; a warning lasts while this is not empty.
    public var failures: [Check] { results.filter { $0.1 == .failed }.map(\.0) }

    public var json: JSON {
        .object(results.map { ($0.0.rawValue, .string($0.1.rawValue)) })
    }
}
