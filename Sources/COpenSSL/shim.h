#ifndef COPENSSL_SHIM_H
#define COPENSSL_SHIM_H
/* libcrypto (OpenSSL 3) for what the car checks: HMAC-SHA256 (the signature of a remote
   command) and Ed25519 (the backend's signature on the answers the car acts on). libmosquitto
   loads libcrypto anyway (for TLS), so this costs the daemon no memory. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

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

/* A fleet car's broker identity, made in memory: a P-256 key and a certificate (CN = the VIN,
   client authentication, valid `days` from now) signed by the fleet's issuing CA. 1 on success;
   the caller frees both with X509_free and EVP_PKEY_free. */
static inline int tcu_issue_identity(X509 *issuer, EVP_PKEY *issuer_key, const char *common_name, long days,
                                     unsigned long long serial, X509 **out_cert, EVP_PKEY **out_key) {
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    int ok = key != NULL && cert != NULL
        && X509_set_version(cert, 2)
        && ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), serial)
        && X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != NULL
        && X509_gmtime_adj(X509_getm_notAfter(cert), days * 86400L) != NULL
        && X509_set_pubkey(cert, key)
        && X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC, (const unsigned char *)common_name, -1, -1, 0)
        && X509_set_issuer_name(cert, X509_get_subject_name(issuer));
    if (ok) {
        X509V3_CTX v3;
        X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
        X509_EXTENSION *eku = X509V3_EXT_conf_nid(NULL, &v3, NID_ext_key_usage, "clientAuth");
        ok = eku != NULL && X509_add_ext(cert, eku, -1) && X509_sign(cert, issuer_key, EVP_sha256()) > 0;
        X509_EXTENSION_free(eku);
    }
    if (!ok) {
        X509_free(cert);
        EVP_PKEY_free(key);
        return 0;
    }
    *out_cert = cert;
    *out_key = key;
    return 1;
}

/* A PEM certificate or private key from a file (NULL when it cannot be read). */
static inline X509 *tcu_read_certificate(const char *path) {
    BIO *b = BIO_new_file(path, "r");
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return x;
}
static inline EVP_PKEY *tcu_read_private_key(const char *path) {
    BIO *b = BIO_new_file(path, "r");
    EVP_PKEY *k = b != NULL ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    return k;
}

/* The fleet's one TLS client context: the broker's certificate checked against `ca_file` and
   `host`, TLS 1.2 at least, small buffers; each connection's own certificate is given by
   `cert_cb` (SSL_CTX_set_cert_cb) when the broker asks for it. */
static inline SSL_CTX *tcu_fleet_tls_context(const char *ca_file, const char *host, int (*cert_cb)(SSL *, void *), void *arg) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
        /* An address is checked against the certificate's IP names, a name against its DNS names. */
        || (X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(ctx), host) != 1
            && X509_VERIFY_PARAM_set1_host(SSL_CTX_get0_param(ctx), host, 0) != 1)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_cb(ctx, cert_cb, arg);
    return ctx;
}

/* The last OpenSSL error as text (empty when none). */
static inline void tcu_openssl_error(char *buffer, size_t size) {
    unsigned long e = ERR_get_error();
    if (size > 0) buffer[0] = 0;
    if (e != 0) ERR_error_string_n(e, buffer, size);
}
#endif
