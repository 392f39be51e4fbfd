#if canImport(Glibc)
import Glibc
#endif
import Dispatch
import Logging
import Platform
import Synchronization
import TelematicsCore
import VehicleBus

/// Keeps the eCall journal on disk, on its own thread: the eCall loop hands over the newest
/// journal and goes on; a slow or full disk delays only the journal, never the call. Each
/// write goes to a temporary file, is fsynced, renamed over the journal, and the folder is
/// fsynced, so a power cut leaves the old journal or the new one, never half of one.
final class ECallJournalStore: Sendable {
    enum Op: Sendable, Equatable {
        case write(ECallJournal)
        case delete
    }

    let path: String
    private let logger: Logger
    private let pending = Mutex<Op?>(nil)
    private let wake = DispatchSemaphore(value: 0)
    private let stop = Atomic<Bool>(false)
    private let failing = Atomic<Bool>(false)
    private let thread = Mutex<DedicatedThread?>(nil)

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
    }

    /// Reads the journal left by a previous run, if any; a broken one is moved aside.
    func load() -> ECallJournal? {
        guard access(path, F_OK) == 0 else { return nil }
        do {
            return try ECallJournal.parse(try readTextFile(path), source: path)
        } catch {
            let aside = path + ".broken"
            rename(path, aside)
            logger.error("the eCall journal is unreadable; moved aside", metadata: ["ecall.journal": "\(aside)", "error": "\(error)"])
            return nil
        }
    }

    func start() {
        thread.withLock { $0 = DedicatedThread(name: "ecall-journal") { [self] in self.loop() } }
    }

    func submit(_ op: Op) {
        pending.withLock { $0 = op }
        wake.signal()
    }

    func shutdown() {
        stop.store(true, ordering: .releasing)
        wake.signal()
        thread.withLock { $0?.join(); $0 = nil }
    }

    private func loop() {
        while true {
            wake.wait()
            if let op = pending.withLock({ p in defer { p = nil }; return p }) { perform(op) }
            if stop.load(ordering: .acquiring) {
                if let op = pending.withLock({ p in defer { p = nil }; return p }) { perform(op) }
                return
            }
        }
    }

    func perform(_ op: Op) {
        let ok: Bool
        switch op {
        case .write(let j): ok = writeFileDurably(path, j.text)
        case .delete:
            ok = unlink(path) == 0 || errno == ENOENT
            syncFolder(of: path)
        }
        if ok, failing.exchange(false, ordering: .relaxed) {
            logger.notice("the eCall journal is written again", metadata: ["ecall.journal": "\(path)"])
        } else if !ok, !failing.exchange(true, ordering: .relaxed) {
            logger.error("cannot write the eCall journal; the call goes on without it", metadata: [
                "ecall.journal": "\(path)", "error": "\(String(cString: strerror(errno)))",
            ])
        }
    }
}
