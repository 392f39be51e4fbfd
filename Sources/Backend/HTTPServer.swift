#if canImport(Glibc)
import Glibc
#endif
import Platform
import Synchronization
import TelematicsCore

/// A small HTTP/1.1 server for the reference backend's app API: one request per connection
/// (`Connection: close`), JSON in and out, each connection on its own thread, bodies up to
/// 64 KiB. Enough for apps, home-automation clients and tests on a bench; a production backend
/// sits behind a real web server.
public final class HTTPServer: @unchecked Sendable {
    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var query: [String: String]
        /// Header names in lower case.
        public var headers: [String: String]
        public var body: [UInt8]

        /// The body as JSON, or nil when there is none or it is not JSON.
        public var json: JSON? { body.isEmpty ? nil : try? JSON.parse(String(decoding: body, as: UTF8.self)) }
    }

    public struct Response: Sendable {
        public var status: Int
        public var body: JSON?
        public var headers: [(String, String)] = []

        public init(_ status: Int, _ body: JSON? = nil, headers: [(String, String)] = []) {
            self.status = status
            self.body = body
            self.headers = headers
        }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    static let maximumBody = 65_536
    private let listener: Listener
    public var port: UInt16 { listener.port ?? 0 }
    private let handler: @Sendable (Request) -> Response
    /// Connections served at once (each a thread and, in the app API, a database file); beyond,
    /// a client is answered 503 at once, so a burst costs no descriptors nor threads.
    public static let maximumConnections = 64
    /// A whole request must arrive within this (not per read: a client sending a byte a second
    /// is cut off like a silent one).
    static let requestDeadlineMs: Int64 = 5_000

    /// Listens on `host:port` (port 0: any free port, see `port`).
    public init(host: String, port: UInt16, handler: @escaping @Sendable (Request) -> Response) throws(Failure) {
        self.handler = handler
        do {
            listener = try Listener(.tcp(host: host, port: port), backlog: 64)
        } catch {
            throw Failure(description: "--http: \(error)")
        }
    }

    deinit { listener.close() }

    /// Accepts connections until `stop` is set (seen within 100 ms); blocks.
    public func run(stop: StopSignal) {
        listener.serve(name: "http-connection", maximum: Self.maximumConnections, stop: stop, refuse: { [self] conn in
            write(conn, Response(503, .object([("error", .string("busy")), ("message", .string("too many connections; try again"))]),
                                 headers: [("Retry-After", "1")]))
        }, handle: { [self] conn in serve(conn) })
    }

    private func serve(_ conn: Int32) {
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let response: Response
        switch Self.read(conn) {
        case .success(let request): response = handler(request)
        case .failure(let f): response = Response(400, .object([("error", .string("badRequest")), ("message", .string(f.description))]))
        }
        write(conn, response)
    }

    /// Reads one request: the request line, the headers, and a body of Content-Length bytes.
    static func read(_ conn: Int32) -> Result<Request, Failure> {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        var headerEnd: Int?
        let deadline = monotonicMs() + requestDeadlineMs
        // Each read waits only for what is left of the request's deadline.
        func recvBefore(_ count: Int) -> Int {
            let left = deadline - monotonicMs()
            guard left > 0 else { return -1 }
            var pfd = pollfd(fd: conn, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, Int32(left)) > 0 else { return -1 }
            return recv(conn, &buffer, count, 0)
        }
        while headerEnd == nil {
            let n = recvBefore(buffer.count)
            guard n > 0 else { return .failure(Failure(description: "the request ended before its headers")) }
            data += buffer[..<n]
            headerEnd = find([13, 10, 13, 10], in: data)
            if headerEnd == nil, data.count > 16_384 { return .failure(Failure(description: "headers longer than 16 KiB")) }
        }
        let head: Head
        switch parseHead(data[..<headerEnd!]) {
        case .success(let h): head = h
        case .failure(let f): return .failure(f)
        }
        var body = Array(data[(headerEnd! + 4)...])
        while body.count < head.contentLength {
            let n = recvBefore(min(buffer.count, head.contentLength - body.count))
            guard n > 0 else { return .failure(Failure(description: "the body ended early")) }
            body += buffer[..<n]
        }
        return .success(Request(method: head.method, path: head.path, query: head.query, headers: head.headers,
                                body: Array(body.prefix(head.contentLength))))
    }

    /// A request's line and headers, read.
    public struct Head: Sendable, Equatable {
        public var method: String
        public var path: String
        public var query: [String: String]
        public var headers: [String: String]
        public var contentLength: Int
    }

    /// Parses the bytes before the blank line: the request line, the headers (names in lower
    /// case), the query, and a Content-Length from 0 to `maximumBody`. Outside input: any bytes
    /// give a head or a failure that says why (a fuzz target holds it to that).
    public static func parseHead(_ bytes: ArraySlice<UInt8>) -> Result<Head, Failure> {
        let head = String(decoding: bytes, as: UTF8.self).split(separator: "\r\n", omittingEmptySubsequences: false)
        let line = head[0].split(separator: " ")
        guard line.count == 3, line[2].hasPrefix("HTTP/1.") else { return .failure(Failure(description: "not an HTTP/1.x request line")) }
        var headers: [String: String] = [:]
        for h in head.dropFirst() {
            guard let colon = h.firstIndex(of: ":") else { continue }
            headers[h[..<colon].lowercased()] = String(h[h.index(after: colon)...]).trimmingSpaces()
        }
        let length = Int(headers["content-length"] ?? "0") ?? -1
        guard length >= 0, length <= maximumBody else { return .failure(Failure(description: "Content-Length must be 0 to \(maximumBody)")) }
        let target = String(line[1])
        let parts = target.split(separator: "?", maxSplits: 1)
        var query: [String: String] = [:]
        if parts.count == 2 {
            // `?=`, `?a=1&=&b=2`: a pair with no name is skipped (splitting "=" gives no name).
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                guard let name = kv.first, !name.isEmpty else { continue }
                query[String(name)] = kv.count == 2 ? String(kv[1]) : ""
            }
        }
        return .success(Head(method: String(line[0]), path: String(parts.first ?? ""), query: query, headers: headers, contentLength: length))
    }

    static func find(_ needle: [UInt8], in hay: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] && Array(hay[i..<(i + needle.count)]) == needle { return i }
        return nil
    }

    static let reasons = [200: "OK", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
                          404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 423: "Locked", 429: "Too Many Requests",
                          500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"]

    static func monotonicMs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000 + Int64(ts.tv_nsec) / 1_000_000
    }

    private func write(_ conn: Int32, _ r: Response) {
        let body = r.body.map { Array(($0.text + "\n").utf8) } ?? []
        var head = "HTTP/1.1 \(r.status) \(Self.reasons[r.status] ?? "Status")\r\nConnection: close\r\nContent-Length: \(body.count)\r\n"
        if !body.isEmpty { head += "Content-Type: application/json\r\n" }
        for (k, v) in r.headers { head += "\(k): \(v)\r\n" }
        let bytes = Array((head + "\r\n").utf8) + body
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(conn, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return }
            off += n
        }
    }
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" { s.removeLast() }
        return String(s)
    }
}
