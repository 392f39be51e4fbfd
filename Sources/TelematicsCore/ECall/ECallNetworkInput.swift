// What the network says, as the eCall machine's events: the mapping from the link's messages
// (ECallWire, the same events a SIP transport would carry) to the machine, with the rule that
// a message about another call than the current one is stale and does nothing. Pure: the
// eCall service only logs and carries out the step.

extension ECallStateMachine {
    /// A message from the network. `current` is the call the messages belong to (the last one
    /// dialled, or the PSAP's callback): an incoming call during the callback window becomes it.
    public mutating func networkMessage(_ message: ECallWire, current: inout Int, at now: ECallInstant) -> ECallStep {
        switch message {
        case .setup(let call, let outcome):
            guard call == current else { return .doNothing }
            switch outcome {
            case .answered: return callAnswered(at: now)
            case .busy: return callFailed(.busy, at: now)
            case .noAnswer: return callFailed(.noAnswer, at: now)
            case .noNetwork: return callFailed(.noNetwork, at: now)
            }
        case .sendMSD(let call):
            return call == current ? sendMSDReceived(at: now) : .doNothing
        case .llAck(let call):
            return call == current ? llAckReceived(at: now) : .doNothing
        case .alAck(let call, let clearDown):
            return call == current ? alAckReceived(clearDown: clearDown, at: now) : .doNothing
        case .cleared(let call):
            return call == current ? callCleared(at: now) : .doNothing
        case .dropped(let call):
            return call == current ? callDropped(at: now) : .doNothing
        case .incoming(let call):
            // Only the callback window answers; a call in progress keeps its own number.
            guard phase == .callbackWindow else { return .doNothing }
            current = call
            return incomingCall(at: now)
        case .hello, .dial, .initiation, .msd, .hangUp, .answer, .deregister:
            // Only the unit sends these: a peer that echoes them changes nothing.
            return .doNothing
        }
    }

    /// The unit lost the network: an attempt being dialled failed for want of it, a call that
    /// was connected dropped (redialled within EN 16062's window).
    public mutating func networkLost(at now: ECallInstant) -> ECallStep {
        switch phase {
        case .dialling: callFailed(.noNetwork, at: now)
        case .waitingForSendMSD, .transmittingMSD, .waitingForALACK, .voice: callDropped(at: now)
        case .idle, .manualPending, .redialWait, .callbackWindow: .doNothing
        }
    }
}
