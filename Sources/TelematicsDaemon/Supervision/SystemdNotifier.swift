#if canImport(Glibc)
import Glibc
#endif

/// A Unix datagram socket that sends to one address: an absolute path, or an abstract name
/// written `@name`. What sd_notify and the journal's native protocol both need.
public final class UnixDatagramSender: Sendable {
    /// The address as `sockaddr_un` wants it: an abstract name starts with a NUL byte.
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

    public let address: Address
    private let fd: Int32

    public init?(_ text: String) {
        guard let a = Address(text) else { return nil }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        address = a
        self.fd = fd
    }

    deinit { close(fd) }

    /// Sends one datagram; false when it could not be sent whole.
    public func send(_ bytes: [UInt8]) -> Bool {
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &sa.sun_path) { raw in
            for (i, b) in address.path.enumerated() { raw[i] = b }
        }
        // The address is as long as the name, not the whole structure: an abstract name would
        // otherwise include the trailing NULs and name another socket.
        let length = socklen_t(MemoryLayout.offset(of: \sockaddr_un.sun_path)! + address.path.count)
        let sent = bytes.withUnsafeBytes { body in
            withUnsafePointer(to: &sa) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, body.baseAddress, body.count, Int32(MSG_NOSIGNAL), $0, length) }
            }
        }
        return sent == bytes.count
    }
}

/// The sd_notify protocol without libsystemd: one datagram per message to `$NOTIFY_SOCKET`
/// (`READY=1`, `STATUS=...`, `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1`). Outside systemd (no
/// `NOTIFY_SOCKET`) every call does nothing.
public final class SystemdNotifier: Sendable {
    private let sender: UnixDatagramSender?
    /// The watchdog interval systemd asked for (`WATCHDOG_USEC`), when it is meant for this process.
    public let watchdogMicroseconds: Int64?

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment.
    public convenience init() {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        var watchdog = env("WATCHDOG_USEC").flatMap { Int64($0) }.flatMap { $0 > 0 ? $0 : nil }
        // WATCHDOG_PID names the process the watchdog is for: not a child started with our environment.
        if let pid = env("WATCHDOG_PID").flatMap({ Int32($0) }), pid != getpid() { watchdog = nil }
        self.init(socket: env("NOTIFY_SOCKET"), watchdogMicroseconds: watchdog)
    }

    public init(socket: String?, watchdogMicroseconds: Int64?) {
        sender = socket.flatMap(UnixDatagramSender.init)
        self.watchdogMicroseconds = sender == nil ? nil : watchdogMicroseconds
    }

    public var isActive: Bool { sender != nil }

    /// Sends one notification (lines joined by newlines). False when it could not be sent.
    @discardableResult
    public func notify(_ lines: String...) -> Bool {
        sender?.send(Array(lines.joined(separator: "\n").utf8)) ?? false
    }
}
