/// A person's role for a car, as the product page and its FAQ describe them: the primary user,
/// who registered the car (every service, the remote functions), and the users the primary user
/// adds in the portal: a secondary user (sees the car and gets its alerts, no remote functions)
/// and a guest (for a time, the status only, no alerts: an assumption, the page does not say).
public enum UserRole: String, Sendable, CaseIterable {
    case primary, secondary, guest

    /// Only the primary user locks, unlocks, honks or warms the car from afar.
    public var hasRemoteFunctions: Bool { self == .primary }
    /// The theft alarm, the locks, the command results, an eCall placed.
    public var receivesAlerts: Bool { self != .guest }
}
