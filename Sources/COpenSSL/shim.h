#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
/* libcrypto (OpenSSL 3) for what the car checks: HMAC-SHA256 (the signature of a remote
   command) and Ed25519 (the backend's signature on the answers the car acts on). libmosquitto
   loads libcrypto anyway (for TLS), so this costs the daemon no memory. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

/* Writes the 32-byte HMAC-SHA256 of `data` with `key` to `out`; 1 on success. */
static inline int tcu_hmac_sha256(const unsigned char *key, int key_length, const unsigned char *data, size_t length,
                                  unsigned char out[32]) {
    unsigned int written = 0;
    return HMAC(EVP_sha256(), key, key_length, data, length, out, &written) != NULL && written == 32;
}

/* 1 when `signature` (64 bytes) is the Ed25519 signature of `data` by `public_key` (32 bytes). */
static inline int tcu_ed25519_verify(const unsigned char public_key[32], const unsigned char *data, size_t length,
                                     const unsigned char signature[64]) {
    EVP_PKEY *key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, public_key, 32);
    if (key == NULL) return 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1
             && EVP_DigestVerify(ctx, signature, 64, data, length) == 1;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    return ok;
}
#endif
