#if canImport(Glibc)
import Glibc
#endif

/// SIGTERM and SIGINT, waited for instead of handled: block them first thing in `main`, before
/// any thread starts (threads inherit the mask), then one thread waits in
/// `waitForTerminationSignal` and stops the program in ordinary code, with no flag to poll and
/// nothing done inside a signal handler.
public func blockTerminationSignals() {
    var set = terminationSignals()
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Waits for SIGTERM or SIGINT (blocked with `blockTerminationSignals`); returns which came.
public func waitForTerminationSignal() -> Int32 {
    var set = terminationSignals()
    var signal: Int32 = 0
    while sigwait(&set, &signal) != 0 {}
    return signal
}

private func terminationSignals() -> sigset_t {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGTERM)
    sigaddset(&set, SIGINT)
    return set
}
