#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
/* libcrypto (OpenSSL 3) for the one thing the car needs: HMAC-SHA256, to check the signature
   of a remote command. libmosquitto loads libcrypto anyway (for TLS), so this costs the
   daemon no memory. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* Writes the 32-byte HMAC-SHA256 of `data` with `key` to `out`; 1 on success. */
static inline int tcu_hmac_sha256(const unsigned char *key, int key_length, const unsigned char *data, size_t length,
                                  unsigned char out[32]) {
    unsigned int written = 0;
    return HMAC(EVP_sha256(), key, key_length, data, length, out, &written) != NULL && written == 32;
}
#endif
