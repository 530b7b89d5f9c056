#ifndef SUBMITD_TLS_H
#define SUBMITD_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

struct config;

/*
 * The server side of TLS for the smtp process: TLS 1.2+ with AEAD suites only, the
 * server certificate, and client certificates requested and verified against the
 * configured client CAs only (never the system store). The handshake completes
 * whatever the client sends, so the session can give a clear SMTP reply and an
 * audit row; the verification outcome is read with tls_peer_identity().
 */
SSL_CTX *tls_server_ctx(const struct config *cfg, char *err, size_t errlen);

/* What the handshake established about the client certificate. */
struct tls_peer {
    char verify[96];      /* "ok", "none", or the reason it failed ("expired"...) */
    int verify_code;      /* X509_V_OK or the first X509_V_ERR_* seen */
    char sha256[65];      /* lower-case hex of the DER leaf, "" when none */
    char subject[512];    /* RFC 2253 */
    char issuer[512];
    char tls[128];        /* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
};
void tls_peer_identity(SSL *ssl, struct tls_peer *out);

/* The reason word for a verification error code, as used in SMTP replies. */
const char *tls_verify_reason(int code);

#endif
