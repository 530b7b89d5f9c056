/* Server TLS context and what the handshake tells about the client, for the smtp
 * process. */
#include "tls.h"

#include "config.h"
#include "dn.h"
#include "log.h"
#include "util.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

static void ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    str_fmt(err, errlen, "%s: %s: %s", file, what, r ? r : "unknown OpenSSL error");
    ERR_clear_error();
}

/*
 * The client's chain is not verified here: the authz process verifies it (DESIGN
 * §2, §3.4), for full and resumed sessions alike, so that a compromised smtp
 * process cannot declare a certificate good. The handshake still proves that the
 * client holds the key of the certificate it sent (CertificateVerify), which
 * OpenSSL checks whatever this callback says. Skipping the chain walk here also
 * spares every handshake a verification whose result would be thrown away.
 */
static int accept_for_authz(X509_STORE_CTX *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 1;
}

SSL_CTX *tls_server_ctx(const struct config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    STACK_OF(X509_NAME) *names;
    static const unsigned char sid_ctx[] = "submitd";

    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        ssl_err(err, errlen, "cannot create TLS context", "tls");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* TLS 1.2: forward-secret AEAD suites only; TLS 1.3 suites are all AEAD. */
    if (SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
        ssl_err(err, errlen, "cannot set cipher list", "tls");
        goto fail;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* Idle sessions should cost little memory: free the I/O buffers between reads. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        ssl_err(err, errlen, "tls_cert: cannot load certificate", cfg->tls_cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1) {
        ssl_err(err, errlen, "tls_key: cannot load private key", cfg->tls_key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err(err, errlen, "tls_key: does not match tls_cert", cfg->tls_key);
        goto fail;
    }
    /* The CA names go into the CertificateRequest, so that clients with several
     * certificates pick one of ours. */
    names = SSL_load_client_CA_file(cfg->client_ca);
    if (names == NULL) {
        ssl_err(err, errlen, "client_ca: no CA names", cfg->client_ca);
        goto fail;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, accept_for_authz, NULL);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_peer_identity(SSL *ssl, struct tls_peer *out)
{
    X509 *peer;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    memset(out, 0, sizeof(*out));
    str_fmt(out->tls, sizeof(out->tls), "%s %s", SSL_get_version(ssl),
            SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
    peer = SSL_get0_peer_certificate(ssl);
    if (peer == NULL)
        return;
    if (X509_digest(peer, EVP_sha256(), md, &mdlen) == 1)
        hex_encode(md, mdlen, out->sha256);
    dn_text(X509_get_subject_name(peer), out->subject, sizeof(out->subject));
}

int tls_peer_chain(SSL *ssl, X509 **out, int max)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509) *chain;
    int n = 0;

    if (peer == NULL || max <= 0)
        return 0;
    out[n++] = peer;
    /* On the server side the chain excludes the leaf; a resumed session may have
     * only the leaf, which authz verifies against client_ca just the same. */
    chain = SSL_get_peer_cert_chain(ssl);
    for (int i = 0; chain != NULL && i < sk_X509_num(chain) && n < max; i++)
        if (X509_cmp(sk_X509_value(chain, i), peer) != 0)
            out[n++] = sk_X509_value(chain, i);
    return n;
}
