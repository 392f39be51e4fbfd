/// What may leave the car for the backend, message by message. The product page: "if you do
/// not register and fully activate SEAT CONNECT, you can only use the services the law requires
/// (the public emergency call)", and "the use of the data is subject to the customer's explicit
/// consent". So nothing goes to the backend before the owner registered the car and accepted
/// the terms, but the link's own requests (registration, licences, the deletion a factory
/// reset asks for); afterwards each service's messages only while its licence runs. The eCall
/// to the PSAP does not use this link and asks nothing of it.
public enum BackendConsent {
    public enum Verdict: Sendable, Equatable {
        case allowed
        /// Never registered, or not completely: no consent yet.
        case notRegistered
        /// Registered, but the licence does not cover the service now (expired, inactive, or
        /// not in the package).
        case licence(String)
        /// A stream with no rule here never leaves the car.
        case unknownStream
    }

    /// The verdict for one message at a time.
    public static func verdict(for m: OutboxMessage, registration r: Registration, nowMs: Int64) -> Verdict {
        let service: String?
        switch m.stream {
        case "requests": return .allowed
        case "state":
            switch m.coalesceKey {
            // The services' status is how the backend and the apps learn why a service is off.
            case "state.capabilities": service = nil
            case "state.parking": service = "parkingPosition"
            default: service = "vehicleStatus"
            }
        case "events": service = "vehicleStatus"
        case "alarms": service = "alerts"
        // The eCall's report (the call itself needs nothing), the answers to commands and the
        // service buttons' requests (each checked against the licence before it was made).
        case "ecall", "results", "services": service = nil
        default: return .unknownStream
        }
        guard r.status == .completed || r.status == .inactive else { return .notRegistered }
        if let service, !r.allows(service, nowMs: nowMs) { return .licence(service) }
        return .allowed
    }
}
