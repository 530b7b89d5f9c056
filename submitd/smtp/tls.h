#ifndef SUBMITD_TLS_H
#define SUBMITD_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <time.h>

struct config;

/*
 * The server side of TLS for the smtp process: TLS 1.2+ with AEAD suites only, the
 * server certificate, and a client certificate requested from every client. The
 * handshake completes whatever the client sends and the chain is not judged here:
 * the authz process verifies it (DESIGN §2), and the session gives a clear SMTP
 * reply and an audit row either way.
 */
SSL_CTX *tls_server_ctx(const struct config *cfg, char *err, size_t errlen);
/* The same from descriptors opened by someone allowed to (the master, at a reload);
 * cfg names the files in messages. They are read whole, not closed. */
SSL_CTX *tls_server_ctx_fds(const struct config *cfg, int cert_fd, int key_fd, int ca_fd,
                            char *err, size_t errlen);

/* What the handshake brought about the client. */
struct tls_peer {
    char sha256[65];      /* lower-case hex of the DER leaf, "" when none (for logs and
                             the Received header; authz computes its own) */
    char subject[512];    /* RFC 2253, for the log */
    char tls[128];        /* "TLSv1.3 TLS_AES_256_GCM_SHA384" */
};
void tls_peer_identity(SSL *ssl, struct tls_peer *out);
/* The certificates the client sent, leaf first, at most max; they belong to ssl. */
int tls_peer_chain(SSL *ssl, X509 **out, int max);

#endif
