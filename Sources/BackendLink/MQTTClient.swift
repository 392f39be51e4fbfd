import CMosquitto
#if canImport(Glibc)
import Glibc
#endif

/// A libmosquitto client driven by its owner's thread: `loop` does the network work and the
/// callbacks run inside it, on that thread. libmosquitto's own reconnect and threaded loop
/// are not used: the owner decides when to reconnect (capped backoff with jitter) and
/// publishes only while connected, since a QoS 1 publish while disconnected is queued in RAM
/// without bound.
public final class MQTTClient {
    public struct Will: Sendable {
        public var topic: String
        public var payload: String
        public var retain: Bool
        public init(topic: String, payload: String, retain: Bool) {
            self.topic = topic
            self.payload = payload
            self.retain = retain
        }
    }

    public var onConnect: ((Int32) -> Void)?
    public var onDisconnect: ((Int32) -> Void)?
    public var onPublish: ((Int32) -> Void)?
    public var onMessage: ((String, [UInt8]) -> Void)?
    public private(set) var isConnected = false

    private let mosq: OpaquePointer
    private let host: String
    private let port: Int32
    private let keepaliveSeconds: Int32

    private static let initialised: Bool = { mosquitto_lib_init(); return true }()

    /// `acknowledgeAfterHandling`: a QoS 1 message is acknowledged only once `onMessage`
    /// returned (what a store needs: a crash before its commit gets the message again). By
    /// default libmosquitto sends the PUBACK before it calls the handler.
    public init(clientID: String, host: String, port: Int32, keepaliveSeconds: Int32 = 10, cleanSession: Bool = true,
                will: Will? = nil, acknowledgeAfterHandling: Bool = false) throws(MQTTError) {
        _ = Self.initialised
        guard let m = mosquitto_new(clientID, cleanSession, nil) else { throw MQTTError("mosquitto_new failed", errno) }
        mosq = m
        self.host = host
        self.port = port
        self.keepaliveSeconds = keepaliveSeconds
        mosquitto_user_data_set(m, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, Int32(MQTT_PROTOCOL_V311))
        // No Nagle: a request or an answer written just after an acknowledgement would wait
        // for the peer's delayed ACK (40 ms on Linux) before leaving.
        mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1)
        // In "threaded" mode libmosquitto queues what it sends (the PUBACK among it) instead of
        // writing it at once, and writes the queue after the packets read, and so after the
        // handler: the acknowledgement follows the store. (Measured: without it, the PUBACK
        // leaves before the handler starts.) The loop is still driven by its one owner thread.
        if acknowledgeAfterHandling { mosquitto_threaded_set(m, true) }
        if let will {
            var bytes = Array(will.payload.utf8)
            let rc = mosquitto_will_set(m, will.topic, Int32(bytes.count), &bytes, 1, will.retain)
            guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError("will_set", rc) }
        }
        mosquitto_connect_callback_set(m, mqttOnConnect)
        mosquitto_disconnect_callback_set(m, mqttOnDisconnect)
        mosquitto_publish_callback_set(m, mqttOnPublish)
        mosquitto_message_callback_set(m, mqttOnMessage)
    }

    deinit { mosquitto_destroy(mosq) }

    /// TLS with a CA, and a client certificate and key for mutual TLS.
    public func useTLS(caFile: String, certFile: String?, keyFile: String?) throws(MQTTError) {
        let rc = mosquitto_tls_set(mosq, caFile, nil, certFile, keyFile, nil)
        guard rc == MOSQ_ERR_SUCCESS.rawValue else { throw MQTTError("tls_set \(caFile)", rc) }
    }

    /// Connects (blocking on the TCP connect and the CONNECT packet); the CONNACK arrives in a
    /// later `loop` as `onConnect(0)`.
    public func connect() -> Int32 {
        // After a first successful connect, libmosquitto wants reconnect (it keeps the session
        // settings and resets the socket state).
        if hasConnected { return mosquitto_reconnect(mosq) }
        let rc = mosquitto_connect(mosq, host, port, keepaliveSeconds)
        if rc == MOSQ_ERR_SUCCESS.rawValue { hasConnected = true }
        return rc
    }

    private var hasConnected = false

    public func disconnect() {
        mosquitto_disconnect(mosq)
        isConnected = false
    }

    /// Drops the connection at once, writing nothing more: what libmosquitto queued is never
    /// sent (with `acknowledgeAfterHandling`, the acknowledgement of a message the handler
    /// could not store: the broker sends it again on the next connection). The next `loop`
    /// reports the link down. (The process must ignore SIGPIPE.)
    public func abandon() {
        let sock = mosquitto_socket(mosq)
        if sock >= 0 { _ = shutdown(sock, Int32(SHUT_RDWR)) }
        isConnected = false
    }

    /// Network work for at most `timeoutMs`; callbacks run in here. Non-zero: the link is down.
    /// `wake` ends the wait early when another thread signals it (urgent work to publish).
    ///
    /// `readingUpTo` and `beforeWriting` are for a store (`acknowledgeAfterHandling`): while
    /// more has arrived, up to `readingUpTo` messages are read (a batch), then `beforeWriting`
    /// makes them durable before any acknowledgement is written. When it returns false the
    /// connection is abandoned: none of the batch is acknowledged, the broker sends it again.
    public func loop(timeoutMs: Int32, wake: WakePipe? = nil, readingUpTo limit: Int = 1, beforeWriting: (() -> Bool)? = nil) -> Int32 {
        let sock = mosquitto_socket(mosq)
        guard wake != nil || beforeWriting != nil, sock >= 0 else { return mosquitto_loop(mosq, timeoutMs, 1) }
        // libmosquitto's external-loop pattern: wait on its socket (and the wake pipe).
        // Not for writing before the CONNACK: libmosquitto queues the CONNECT at once but sends
        // nothing until the TLS handshake is done, and the handshake advances only on reads; a
        // writable socket would end every wait at once until then (the CONNECT goes after a read).
        let wantsWrite = isConnected && mosquitto_want_write(mosq)
        var fds = [pollfd(fd: sock, events: Int16(POLLIN) | (wantsWrite ? Int16(POLLOUT) : 0), revents: 0),
                   pollfd(fd: wake?.readFD ?? -1, events: Int16(POLLIN), revents: 0)]
        if poll(&fds, 2, timeoutMs) < 0, errno != EINTR { return Int32(MOSQ_ERR_ERRNO.rawValue) }
        if fds[1].revents != 0 { wake?.drain() }
        var rc = Int32(MOSQ_ERR_SUCCESS.rawValue)
        if fds[0].revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
            receivedInRead = 0
            repeat {
                rc = mosquitto_loop_read(mosq, 1)
            } while rc == MOSQ_ERR_SUCCESS.rawValue && beforeWriting != nil && receivedInRead < limit && Self.readable(sock)
        }
        // What was read is made durable even when the link broke while reading (the broker
        // sends it again unacknowledged: stored twice is a duplicate the store counts).
        if let beforeWriting, !beforeWriting() {
            abandon()
            return Int32(MOSQ_ERR_CONN_LOST.rawValue)
        }
        if rc != MOSQ_ERR_SUCCESS.rawValue { return rc }
        if mosquitto_socket(mosq) >= 0, mosquitto_want_write(mosq) {
            rc = mosquitto_loop_write(mosq, 1)
            if rc != MOSQ_ERR_SUCCESS.rawValue { return rc }
        }
        return mosquitto_loop_misc(mosq)
    }

    /// Messages handed to `onMessage` during the current read.
    private var receivedInRead = 0

    private static func readable(_ sock: Int32) -> Bool {
        var fd = pollfd(fd: sock, events: Int16(POLLIN), revents: 0)
        return poll(&fd, 1, 0) > 0 && fd.revents & Int16(POLLIN) != 0
    }

    /// Publishes at QoS 1; the message id, whose PUBACK comes as `onPublish(mid)`.
    public func publish(topic: String, payload: [UInt8], qos: Int32 = 1, retain: Bool = false) -> Int32? {
        var mid: Int32 = 0
        var bytes = payload
        let rc = mosquitto_publish(mosq, &mid, topic, Int32(bytes.count), &bytes, qos, retain)
        return rc == MOSQ_ERR_SUCCESS.rawValue ? mid : nil
    }

    public func subscribe(_ pattern: String, qos: Int32 = 1) -> Bool {
        mosquitto_subscribe(mosq, nil, pattern, qos) == MOSQ_ERR_SUCCESS.rawValue
    }

    fileprivate func connected(_ rc: Int32) { isConnected = rc == 0; onConnect?(rc) }
    fileprivate func disconnected(_ rc: Int32) { isConnected = false; onDisconnect?(rc) }
    fileprivate func published(_ mid: Int32) { onPublish?(mid) }
    fileprivate func received(_ topic: String, _ payload: [UInt8]) {
        receivedInRead += 1
        onMessage?(topic, payload)
    }

    /// libmosquitto's text for a result code.
    public static func describe(_ rc: Int32) -> String { String(cString: mosquitto_strerror(rc)) }
}

// Callbacks are plain C functions outside any actor: libmosquitto calls them from the thread
// that runs `loop`, and they reach their client through the user-data pointer.
private func client(_ userdata: UnsafeMutableRawPointer?) -> MQTTClient {
    Unmanaged<MQTTClient>.fromOpaque(userdata!).takeUnretainedValue()
}
private let mqttOnConnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = { _, u, rc in client(u).connected(rc) }
private let mqttOnDisconnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = { _, u, rc in client(u).disconnected(rc) }
private let mqttOnPublish: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Void = { _, u, mid in client(u).published(mid) }
private let mqttOnMessage: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafePointer<mosquitto_message>?) -> Void = { _, u, m in
    guard let m = m?.pointee else { return }
    let topic = String(cString: m.topic)
    let payload = m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: Int(m.payloadlen))) } ?? []
    client(u).received(topic, payload)
}

public struct MQTTError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ what: String, _ rc: Int32) { description = "\(what): \(MQTTClient.describe(rc))" }
}

/// A pipe another thread writes a byte to, to end the link thread's wait early.
public final class WakePipe: Sendable {
    public let readFD: Int32
    private let writeFD: Int32

    public init() {
        var fds: [Int32] = [-1, -1]
        _ = pipe(&fds)
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readFD = fds[0]
        writeFD = fds[1]
    }

    deinit {
        close(readFD)
        close(writeFD)
    }

    /// From any thread; never blocks (a full pipe already says "wake").
    public func signal() {
        var b: UInt8 = 1
        _ = write(writeFD, &b, 1)
    }

    public func drain() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(readFD, &buffer, buffer.count) > 0 {}
    }

    /// Waits up to `timeoutMs` for a signal (then takes it): a wait another thread can end.
    public func wait(timeoutMs: Int32) {
        var pfd = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        if poll(&pfd, 1, max(0, timeoutMs)) > 0 { drain() }
    }
}
