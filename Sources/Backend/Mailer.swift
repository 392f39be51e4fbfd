import CCurl
#if canImport(Glibc)
import Glibc
#endif
import TelematicsCore

/// One mail for a person: the address, the subject and the text (plain, UTF-8).
public struct Mail: Sendable, Equatable {
    public var to: String
    public var subject: String
    public var text: String

    public init(to: String, subject: String, text: String) {
        self.to = to
        self.subject = subject
        self.text = text
    }
}

/// Where the backend's mail goes: an SMTP server as libcurl names it (`smtp://HOST:PORT`, or
/// `smtps://` for TLS from the start), the sender's address, and whether STARTTLS is required.
public struct MailServer: Sendable {
    public var url: String
    public var from: String
    public var requireTLS: Bool

    public init(url: String, from: String, requireTLS: Bool = false) {
        self.url = url
        self.from = from
        self.requireTLS = requireTLS
    }
}

/// Sends mail over SMTP with libcurl (blocking: the backend's mailer thread calls it).
public enum SMTPSender {
    private static let initialised: Bool = curl_global_init(Int(CURL_GLOBAL_DEFAULT)) == CURLE_OK

    /// The message as RFC 5322 text: headers (no line breaks smuggled into them), a blank
    /// line, the text with CRLF line ends.
    public static func message(_ mail: Mail, from: String, dateMs: Int64, id: String) -> String {
        // By scalar: "\r\n" is one Character in Swift, neither "\r" nor "\n".
        func clean(_ s: String) -> String {
            String(String.UnicodeScalarView(s.unicodeScalars.filter { $0 != "\r" && $0 != "\n" }))
        }
        let host = address(of: from).split(separator: "@").last.map(String.init) ?? "localhost"
        var lines = [
            "Date: \(rfc5322Date(unixMs: dateMs))", "From: \(clean(from))", "To: \(clean(mail.to))", "Subject: \(clean(mail.subject))",
            "Message-ID: <\(clean(id))@\(clean(host))>", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit", "",
        ]
        lines += mail.text.unicodeScalars.split(separator: "\n", omittingEmptySubsequences: false).map {
            String(String.UnicodeScalarView($0.filter { $0 != "\r" }))
        }
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// Sends one mail; the error says what the server or the connection refused.
    public static func send(_ mail: Mail, via server: MailServer, nowMs: Int64, id: String) -> Result<Void, MailFailure> {
        guard initialised, let curl = curl_easy_init() else { return .failure(MailFailure(description: "libcurl cannot start")) }
        defer { curl_easy_cleanup(curl) }
        let body = MessageBody(Array(message(mail, from: server.from, dateMs: nowMs, id: id).utf8))
        let recipients = curl_slist_append(nil, "<\(mail.to)>")
        defer { curl_slist_free_all(recipients) }
        var errors = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let reader: ccurl_read_fn = { buffer, size, count, context in
            guard let buffer, let context else { return 0 }
            let body = Unmanaged<MessageBody>.fromOpaque(context).takeUnretainedValue()
            let n = min(size * count, body.bytes.count - body.offset)
            body.bytes.withUnsafeBytes { _ = memcpy(buffer, $0.baseAddress! + body.offset, n) }
            body.offset += n
            return n
        }
        let rc = errors.withUnsafeMutableBufferPointer { errorBuffer -> CURLcode in
            let context = Unmanaged.passUnretained(body).toOpaque()
            var set = [
                ccurl_set_string(curl, CURLOPT_URL, server.url),
                ccurl_set_string(curl, CURLOPT_MAIL_FROM, "<\(address(of: server.from))>"),
                ccurl_set_list(curl, CURLOPT_MAIL_RCPT, recipients),
                ccurl_set_long(curl, CURLOPT_UPLOAD, 1),
                ccurl_set_long(curl, CURLOPT_NOSIGNAL, 1),
                ccurl_set_long(curl, CURLOPT_CONNECTTIMEOUT, 10),
                ccurl_set_long(curl, CURLOPT_TIMEOUT, 30),
                ccurl_set_pointer(curl, CURLOPT_ERRORBUFFER, errorBuffer.baseAddress),
                ccurl_set_reader(curl, reader, context),
            ]
            if server.requireTLS { set.append(ccurl_set_long(curl, CURLOPT_USE_SSL, Int(CURLUSESSL_ALL.rawValue))) }
            if let bad = set.first(where: { $0 != CURLE_OK }) { return bad }
            return curl_easy_perform(curl)
        }
        guard rc == CURLE_OK else {
            let detail = String(decoding: errors.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return .failure(MailFailure(description: detail.isEmpty ? String(cString: curl_easy_strerror(rc)) : detail))
        }
        return .success(())
    }

    /// The address in "Name <address>" or a bare address.
    static func address(of from: String) -> String {
        guard let open = from.lastIndex(of: "<"), let close = from.lastIndex(of: ">"), open < close else { return from }
        return String(from[from.index(after: open)..<close])
    }

    private final class MessageBody {
        let bytes: [UInt8]
        var offset = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }
    }
}

public struct MailFailure: Error, CustomStringConvertible {
    public var description: String
}
