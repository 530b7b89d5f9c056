#ifndef SUBMITD_TLS_H
#define SUBMITD_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <time.h>

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

/*
 * CRL reloads (DESIGN §6 "crl"): tls_use_current_store() gives a new TLS session the
 * client CAs and the CRL current at its start, after looking at most once per
 * second whether the CRL file changed; tls_crl_tick() does the same look from the
 * worker loop, so that changes and an approaching nextUpdate are logged even when
 * no client connects. Both are thread-safe and do nothing without a crl.
 * tls_crl_free() releases the stores at shutdown.
 */
void tls_use_current_store(SSL *ssl);
void tls_crl_tick(time_t now);
void tls_crl_free(void);

/* The reason word for a verification error code, as used in SMTP replies. */
const char *tls_verify_reason(int code);

#endif
