#if canImport(Glibc)
import Glibc
#endif

/// The sd_notify protocol without libsystemd: one datagram per message to `$NOTIFY_SOCKET`
/// (`READY=1`, `STATUS=...`, `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1`). Outside systemd (no
/// `NOTIFY_SOCKET`) every call does nothing.
public final class SystemdNotifier: Sendable {
    /// Where the notifications go, as `sockaddr_un` wants it: an abstract name (written `@name`
    /// in the environment) starts with a NUL byte.
    public struct Address: Sendable, Equatable {
        public var path: [UInt8]

        /// Nil for a value that is neither an absolute path nor an abstract name, or too long.
        public init?(_ text: String) {
            var bytes = Array(text.utf8)
            guard let first = bytes.first, first == UInt8(ascii: "/") || first == UInt8(ascii: "@"), bytes.count > 1 else { return nil }
            if first == UInt8(ascii: "@") { bytes[0] = 0 }
            guard bytes.count < MemoryLayout.size(ofValue: sockaddr_un().sun_path) else { return nil }
            path = bytes
        }
    }

    public let address: Address?
    /// The watchdog interval systemd asked for (`WATCHDOG_USEC`), when it is meant for this process.
    public let watchdogMicroseconds: Int64?
    private let fd: Int32

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    public convenience init() {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        var watchdog = env("WATCHDOG_USEC").flatMap { Int64($0) }.flatMap { $0 > 0 ? $0 : nil }
        // WATCHDOG_PID names the process the watchdog is for: not a child started with our environment.
        if let pid = env("WATCHDOG_PID").flatMap({ Int32($0) }), pid != getpid() { watchdog = nil }
        self.init(socket: env("NOTIFY_SOCKET"), watchdogMicroseconds: watchdog)
    }

    public init(socket: String?, watchdogMicroseconds: Int64?) {
        address = socket.flatMap(Address.init)
        self.watchdogMicroseconds = address == nil ? nil : watchdogMicroseconds
        fd = address == nil ? -1 : Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }

    deinit { if fd >= 0 { Glibc.close(fd) } }

    public var isActive: Bool { fd >= 0 }

    /// Sends one notification (lines joined by newlines). False when it could not be sent.
    @discardableResult
    public func notify(_ lines: String...) -> Bool {
        guard fd >= 0, let address else { return false }
        var message = Array(lines.joined(separator: "\n").utf8)
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            for (i, b) in address.path.enumerated() { raw[i] = b }
        }
        // The address is as long as the name, not the whole structure: an abstract name would
        // otherwise include the trailing NULs and name another socket.
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + address.path.count)
        let sent = message.withUnsafeMutableBytes { body in
            withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, body.baseAddress, body.count, Int32(MSG_NOSIGNAL), $0, length) }
            }
        }
        return sent == message.count
    }
}
