#if canImport(Glibc)
import Glibc
#endif
import Logging
import Platform
import Synchronization
import TelematicsCore
import VehicleBus

/// The privacy level the user chose in the car, kept in a small file across restarts, and the
/// services that follow it. The eCall never asks it.
public final class PrivacySetting: Sendable {
    private let mode: Mutex<PrivacyMode>
    private let observers = Mutex<[@Sendable (PrivacyMode) -> Void]>([])
    let path: String
    let logger: Logger

    /// Reads the file; when there is none, `initial` (the configuration's) holds.
    public init(path: String, initial: PrivacyMode, logger: Logger) {
        self.path = path
        self.logger = logger
        var current = initial
        if let text = try? readTextFile(path) {
            if let json = try? JSON.parse(text), let raw = json["privacy"]?.stringValue, let m = PrivacyMode(rawValue: raw) {
                current = m
            } else {
                logger.error("the settings file is damaged; moved aside, the configured privacy holds", metadata: [
                    "settings.file": "\(path)", "privacy": "\(initial.rawValue)",
                ])
                rename(path, path + ".bad")
            }
        }
        mode = Mutex(current)
    }

    public var current: PrivacyMode { mode.withLock { $0 } }

    /// Calls `observer` at every change (and now, with `initially`).
    public func observe(initially: Bool = true, _ observer: @escaping @Sendable (PrivacyMode) -> Void) {
        observers.withLock { $0.append(observer) }
        if initially { observer(current) }
    }

    /// Back to the configured level (a factory reset): the user's choice is deleted.
    public func reset(to initial: PrivacyMode) {
        let old = mode.withLock { m in defer { m = initial }; return m }
        unlink(path)
        syncFolder(of: path)
        if old != initial { for o in observers.withLock({ $0 }) { o(initial) } }
    }

    /// Sets and stores the mode; false when it could not be stored (it applies all the same:
    /// the user's choice is never ignored, and it is stored again at the next change).
    @discardableResult
    public func set(_ new: PrivacyMode) -> Bool {
        let old = mode.withLock { m in defer { m = new }; return m }
        let stored = writeFileDurably(path, JSON.object([("privacy", .string(new.rawValue))]).text + "\n")
        if !stored { logger.error("cannot store the privacy setting", metadata: ["settings.file": "\(path)"]) }
        guard old != new else { return stored }
        logger.notice("privacy changed", metadata: ["privacy.previous": "\(old.rawValue)", "privacy": "\(new.rawValue)"])
        for o in observers.withLock({ $0 }) { o(new) }
        return stored
    }
}
