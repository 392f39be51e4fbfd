import COpenSSL
import TelematicsCore

/// What a car checks with cryptography, the same in a unit (`telematicsd`) and in a fleet car:
/// a remote command's HMAC-SHA256 with the key its registration gave it, and the backend's
/// Ed25519 signature on the answers it acts on (libcrypto: libmosquitto loads it anyway).
public enum CarCrypto {
    /// HMAC-SHA256 of `message` with `key` (empty when libcrypto fails): CommandVerifier's `mac`.
    public static func hmacSHA256(_ key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = key.withUnsafeBufferPointer { k in
            message.withUnsafeBufferPointer { m in tcu_hmac_sha256(k.baseAddress, Int32(k.count), m.baseAddress, m.count, &out) }
        }
        return ok == 1 ? out : []
    }

    /// Whether an answer of `kind` for `vin` carries the backend's signature by `key` (its
    /// Ed25519 public key, 32 bytes): a forged or unsigned answer changes nothing in the car.
    public static func isAuthentic(_ answer: JSON, vin: String, kind: String, key: [UInt8]?) -> Bool {
        guard let key, key.count == 32, let hex = answer["signature"]?.stringValue, let signature = bytes(fromHex: hex),
              signature.count == 64 else { return false }
        let text = Array(AnswerSignature.signedText(answer, vin: vin, kind: kind).utf8)
        return key.withUnsafeBufferPointer { k in
            text.withUnsafeBufferPointer { t in
                signature.withUnsafeBufferPointer { s in tcu_ed25519_verify(k.baseAddress, t.baseAddress, t.count, s.baseAddress) == 1 }
            }
        }
    }
}
