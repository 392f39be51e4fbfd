import COpenSSL
#if canImport(Glibc)
import Glibc
#endif
import CPlatform
import Platform

/// Every car's broker identity (a P-256 key and a certificate whose common name is its VIN),
/// made in memory at start from the fleet's issuing CA: no key file per car, nothing written.
/// One TLS context serves the whole fleet; each connection presents its own car's certificate
/// when the broker asks for it. The context's certificate callback runs inside a libmosquitto
/// call the loop makes for one car (connect, read, write), on the loop's thread: the loop says
/// which car before each (`serving`). (libmosquitto attaches nothing the callback could read
/// to a connection made with an application's context, and on loopback the handshake may reach
/// the callback inside the connect call, before the socket is known.)
public final class FleetIdentities {
    private var certificates: [OpaquePointer?]
    private var keys: [OpaquePointer?]
    /// The car whose libmosquitto call runs now (the loop sets it before each).
    var serving = -1
    private(set) var context: OpaquePointer?

    /// `issuer`: the CA that signs the cars' certificates (the broker trusts it); `ca`: the CA
    /// the broker's certificate is checked against; `host`: the name or address the broker's
    /// certificate must carry.
    public init(vins: [String], issuerCertificate: String, issuerKey: String, ca: String, host: String) throws(SystemError) {
        guard let issuer = tcu_read_certificate(issuerCertificate) else {
            throw SystemError(.invalidInput, "cannot read the issuing certificate \(issuerCertificate) (PEM)")
        }
        defer { X509_free(issuer) }
        guard let key = tcu_read_private_key(issuerKey) else {
            throw SystemError(.invalidInput, "cannot read the issuing key \(issuerKey) (PEM, not encrypted)")
        }
        defer { EVP_PKEY_free(key) }
        guard X509_check_private_key(issuer, key) == 1 else {
            throw SystemError(.invalidInput, "the issuing key \(issuerKey) does not belong to \(issuerCertificate)")
        }
        certificates = Array(repeating: nil, count: vins.count)
        keys = Array(repeating: nil, count: vins.count)
        var serialBase: UInt64 = 0
        withUnsafeMutableBytes(of: &serialBase) { _ = getrandom($0.baseAddress, 8, 0) }
        for (slot, vin) in vins.enumerated() {
            var cert: OpaquePointer?, pkey: OpaquePointer?
            guard tcu_issue_identity(issuer, key, vin, 825, (serialBase >> 24) &+ UInt64(slot), &cert, &pkey) == 1 else {
                throw SystemError(.io, "cannot make the certificate of \(vin): \(Self.lastError())")
            }
            certificates[slot] = cert
            keys[slot] = pkey
        }
        context = tcu_fleet_tls_context(ca, host, fleetCertificateCallback, Unmanaged.passUnretained(self).toOpaque())
        guard context != nil else { throw SystemError(.invalidInput, "cannot use the CA \(ca) for broker \(host): \(Self.lastError())") }
    }

    deinit {
        SSL_CTX_free(context)
        for c in certificates { X509_free(c) }
        for k in keys { EVP_PKEY_free(k) }
    }

    fileprivate func present(on ssl: OpaquePointer) -> Int32 {
        let slot = serving
        guard certificates.indices.contains(slot) else { return 0 }
        return SSL_use_certificate(ssl, certificates[slot]) == 1 && SSL_use_PrivateKey(ssl, keys[slot]) == 1 ? 1 : 0
    }

    static func lastError() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        tcu_openssl_error(&buffer, buffer.count)
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.isEmpty ? "unknown OpenSSL error" : text
    }
}

/// OpenSSL's certificate callback (on the fleet loop's thread, inside a TLS handshake).
private let fleetCertificateCallback: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?) -> Int32 = { ssl, arg in
    guard let ssl, let arg else { return 0 }
    return Unmanaged<FleetIdentities>.fromOpaque(arg).takeUnretainedValue().present(on: ssl)
}
