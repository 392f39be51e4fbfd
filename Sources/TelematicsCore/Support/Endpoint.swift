/// A network endpoint `HOST:PORT`, parsed once where it enters (the configuration, a command
/// line) and passed on typed: no one splits the text again.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// `HOST:PORT` (or `tcp:HOST:PORT`): a host name or address without ':' and a port from 1 to
    /// 65535; nil otherwise.
    public static func parse(_ text: String) -> Endpoint? {
        var t = Substring(text)
        if t.hasPrefix("tcp:") { t = t.dropFirst(4) }
        let parts = t.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[0].contains(" "), let port = UInt16(parts[1]), port > 0 else { return nil }
        return Endpoint(host: String(parts[0]), port: port)
    }

    /// The host is `localhost` or an IPv4 address in dotted decimal: what the eCall's link and
    /// the PSAP simulator take (they connect without a resolver, so no lookup can stall a call).
    public var isIPv4OrLocalhost: Bool {
        if host == "localhost" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets.allSatisfy { o in
            !o.isEmpty && o.count <= 3 && o.allSatisfy { $0.isASCII && $0.isNumber } && Int(o)! <= 255
        }
    }

    public var description: String { "\(host):\(port)" }
}
