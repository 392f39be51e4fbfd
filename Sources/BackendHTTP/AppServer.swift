import Backend
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTPTypes
import NIOPosix
import Platform
import ServiceLifecycle
import Synchronization
import TelematicsCore
import WebPortal

/// The app API (`AppAPI`, docs/openapi.yaml) over HTTP/1.1, on Hummingbird 2: keep-alive, and
/// limits that keep a burst or a slow client from holding the backend:
/// - at most `maximumConnections` connections; beyond, the server stops accepting and new
///   clients wait in the listen queue until one ends;
/// - a request's head must arrive within `headDeadline` of the connection or of the previous
///   answer (an idle keep-alive connection is closed then too), and its body within
///   `bodyDeadline` of its head: a client sending a byte a second is cut off like a silent one;
/// - bodies up to `AppAPI.maximumBody` (413 beyond, before reading them), headers up to 16 KiB;
/// - a graceful stop (a `Service` of tcu-backend's ServiceGroup): no new connections, the
///   requests in progress answered.
///
/// `AppAPI.handle` reads SQLite and hashes passwords (PBKDF2): it runs on NIO's blocking pool,
/// never on an event loop.
public final class AppServer: Service, Sendable {
    public struct Limits: Sendable {
        public var maximumConnections = 64
        public var headDeadlineMs: Int64 = 5_000
        public var bodyDeadlineMs: Int64 = 5_000
        public var maximumHeaderBytes = 16_384
        /// A live alert stream with nothing to say sends a comment this often (a proxy or a
        /// phone's network keeps it open; a client gone is noticed).
        public var alertKeepAliveMs: Int64 = 15_000
        public init() {}
    }

    private let serve: @Sendable () async throws -> Void
    private let live: LiveAlerts

    /// The server, ready to run as one of the process's services (`run`): `onListening` is
    /// told the port once the socket listens (the one asked for, or the system's choice for
    /// 0); a socket that cannot listen (an address in use, a bad host) ends `run` with the error.
    /// `web`: the portal's pages, served beside the API (every path outside /v1).
    public init(host: String, port: Int, api: AppAPI, web: WebPortal? = nil, limits: Limits = Limits(),
                onListening: @escaping @Sendable (Int) -> Void = { _ in }) {
        var logger = Logger(label: "tcu-backend.http")
        logger.logLevel = .warning
        let live = LiveAlerts(api: api, keepAliveMs: limits.alertKeepAliveMs)
        let decoder = HTTP1Channel.Configuration.DecoderConfiguration(
            maxHeaderFieldSize: limits.maximumHeaderBytes, maxHeaderListSize: limits.maximumHeaderBytes, maxHeaderFieldCount: 100)
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [BodyDeadline(ms: limits.bodyDeadlineMs)],
            idleTimeout: .milliseconds(limits.headDeadlineMs), httpDecoderConfiguration: decoder)
        let app = Application(
            responder: CallbackResponder { (request: Request, _: BasicRequestContext) in try await Self.respond(request, api, web, live) },
            server: .http1(configuration: http1),
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: port), serverName: "tcu-backend", backlog: 256,
                availableConnectionsDelegate: MaximumAvailableConnections(limits.maximumConnections)),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? port) },
            logger: logger)
        serve = { try await app.run() }
        self.live = live
    }

    /// Serves until the group it runs in stops: then it accepts no more, ends the live streams
    /// (they would keep the stop waiting for ever) and answers the requests in progress.
    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await serve()
        } onGracefulShutdown: { [live] in
            live.closing.store(true, ordering: .releasing)
            live.api.alertBell.ring()
        }
    }

    static func respond(_ request: Request, _ api: AppAPI, _ web: WebPortal?, _ live: LiveAlerts) async throws -> Response {
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: AppAPI.maximumBody)
        } catch is NIOTooManyBytesError {
            return reply(AppAPI.Response(413, .object([("error", .string("bodyTooLarge")),
                                                       ("message", .string("a body is at most \(AppAPI.maximumBody) bytes"))])))
        }
        var query: [String: String] = [:]
        for (name, value) in request.uri.queryParameters where !name.isEmpty { query[String(name)] = String(value) }
        var headers: [String: String] = [:]
        for field in request.headers { headers[field.name.canonicalName] = field.value }
        let r = AppAPI.Request(method: request.method.rawValue, path: request.uri.path, query: query, headers: headers,
                               body: Array(buffer: body))
        if let web, WebPortal.serves(path: r.path) {
            let page = try await NIOThreadPool.singleton.runIfActive { web.handle(r) }
            if let stream = page.alertStream { return live.response(stream) }
            var headers = HTTPFields()
            for (name, value) in page.headers {
                if let n = HTTPField.Name(name) { headers.append(HTTPField(name: n, value: value)) }
            }
            return Response(status: .init(code: page.status), headers: headers,
                            body: page.body.isEmpty ? ResponseBody() : ResponseBody(byteBuffer: ByteBuffer(bytes: page.body)))
        }
        let answer = try await NIOThreadPool.singleton.runIfActive { api.handle(r) }
        if let stream = answer.alertStream { return live.response(stream) }
        return reply(answer)
    }

    static func reply(_ r: AppAPI.Response) -> Response {
        var headers = HTTPFields()
        for (name, value) in r.headers {
            if let n = HTTPField.Name(name) { headers.append(HTTPField(name: n, value: value)) }
        }
        guard let json = r.body else { return Response(status: .init(code: r.status), headers: headers) }
        headers[.contentType] = "application/json"
        return Response(status: .init(code: r.status), headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(string: json.text + "\n")))
    }
}

/// The live alert streams (Server-Sent Events): each sends the alerts after the id it resumes
/// from, then waits for the MQTT side's bell (or the keep-alive's time), until the client goes,
/// its session ends (expired, revoked by a password change) or the server stops.
final class LiveAlerts: Sendable {
    let api: AppAPI
    let keepAliveMs: Int64
    let closing = Atomic<Bool>(false)

    init(api: AppAPI, keepAliveMs: Int64) {
        self.api = api
        self.keepAliveMs = keepAliveMs
    }

    func response(_ stream: AppAPI.AlertStream) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody { [self] writer in
            var last = stream.afterId
            // How long a client waits before it reconnects (with Last-Event-ID) after a cut.
            try await writer.write(ByteBuffer(string: "retry: 2000\n\n"))
            while !closing.load(ordering: .acquiring) {
                let seen = api.alertBell.rung, after = last
                guard let batch = try await NIOThreadPool.singleton.runIfActive({ self.api.streamAlerts(stream, afterId: after) }) else { break }
                if batch.isEmpty {
                    await api.alertBell.wait(after: seen, timeoutMs: keepAliveMs)
                    if api.alertBell.rung == seen { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
                    continue
                }
                var text = ""
                for a in batch {
                    text += "id: \(a.id)\nevent: \(a.kind)\ndata: \(a.json.text)\n\n"
                    last = a.id
                }
                try await writer.write(ByteBuffer(string: text))
            }
            try await writer.finish(nil)
        })
    }
}

/// Closes a connection whose request body has not fully arrived `ms` after its head (the head
/// itself is bounded by the server's idle time-out, which runs until a head arrives).
final class BodyDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    private let ms: Int64
    private var timer: Scheduled<Void>?

    init(ms: Int64) { self.ms = ms }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            timer?.cancel()
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            timer = context.eventLoop.scheduleTask(in: .milliseconds(ms)) { loopBound.value.close(promise: nil) }
        case .end:
            timer?.cancel()
            timer = nil
        case .body:
            break
        }
        context.fireChannelRead(data)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }
}
