#if canImport(Glibc)
import Glibc
#endif
import CPlatform

/// The process's signals (SIGTERM, SIGINT, SIGHUP), taken the one way: a handler that does
/// nothing but write the signal's number to a pipe, and one thread that reads the pipe and
/// handles each signal in ordinary code (`route`).
///
/// A handler is the process's, whichever thread the kernel picks; blocking the signals for
/// `sigwait` would have to happen in every thread before it starts, which a Swift program
/// cannot promise (its concurrency runtime and libraries start threads of their own), and a
/// signal that reached a thread that had not blocked it ended the process on the spot. The
/// routing thread unblocks them, so that one thread at least takes them (the concurrency
/// runtime's threads block every signal). Catch the signals first thing in a program: one
/// that comes before `route` waits (in the pipe, or pending) and is handled when the program
/// is ready. One instance per process.
public final class ProcessSignals: Sendable {
    /// What a caught signal asks of the program.
    public enum Request: Sendable, Equatable {
        /// SIGTERM or SIGINT: stop; `first` is false for every one after the first (a second
        /// SIGTERM hurries a stop that waits for something).
        case stop(first: Bool)
        /// SIGHUP: read the configuration again.
        case reload
    }

    private let readFD: Int32
    private let reloadSignals: [Int32]
    private let caught: [Int32]

    /// Catches `stop` and `reload` signals from now on.
    public init(stop: [Int32] = [SIGTERM, SIGINT], reload: [Int32] = [SIGHUP]) throws(SystemError) {
        var fds: [Int32] = [-1, -1]
        _ = try syscall("cannot make the signals' pipe") { pipe(&fds) }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        // The handler must never block: a full pipe drops the byte.
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        readFD = fds[0]
        reloadSignals = reload
        caught = stop + reload
        for signal in stop + reload {
            _ = try syscall("cannot catch signal \(signal)") { cpl_route_signal_to_pipe(signal, fds[1]) }
        }
    }

    /// Starts the thread that calls `handle` for each signal caught, in order, those that came
    /// before included. False when the thread cannot start.
    @discardableResult
    public func route(_ handle: @escaping @Sendable (Request) -> Void) -> Bool {
        let fd = readFD
        let reloadSignals = reloadSignals
        let caught = caught
        return DedicatedThread.detached(name: "signals") {
            var set = sigset_t()
            sigemptyset(&set)
            for signal in caught { sigaddset(&set, signal) }
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            var number: UInt8 = 0
            var stops = 0
            while true {
                let n = read(fd, &number, 1)
                if n == 1 {
                    if reloadSignals.contains(Int32(number)) {
                        handle(.reload)
                    } else {
                        stops += 1
                        handle(.stop(first: stops == 1))
                    }
                } else if n == 0 || errno != EINTR {
                    return
                }
            }
        }
    }
}
