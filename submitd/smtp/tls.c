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
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

/* Sessions kept for resumption in the smtp process. An entry holds the session
 * secrets and the parsed client certificate: about 10 KiB of RSS each (6000 full
 * handshakes grew the process by 62 MiB), so 4096 entries cost at most ~40 MiB.
 * A mail client resumes within minutes when it does (a burst of messages, a retry),
 * hence the half hour. The oldest entries go first when the cache is full, and a
 * client whose entry is gone makes a full handshake. */
#define TLS_SESSION_CACHE_SIZE 4096
#define TLS_SESSION_LIFETIME 1800
/* Bytes of the client's Certificate message. */
#define TLS_PEER_CHAIN_MAX (32 * 1024)

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

/* The whole of a PEM file, at most TLS_FILE_MAX bytes, as a memory BIO. */
#define TLS_FILE_MAX (1024 * 1024)

static BIO *bio_from_fd(int fd, const char *key, const char *file, char *err, size_t errlen)
{
    char *buf = malloc(TLS_FILE_MAX);
    size_t len = 0;
    BIO *bio = NULL;

    if (buf == NULL) {
        str_fmt(err, errlen, "out of memory");
        return NULL;
    }
    for (;;) {
        ssize_t n = pread(fd, buf + len, TLS_FILE_MAX - len, (off_t)len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            str_fmt(err, errlen, "%s: %s: %s", key, file, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == TLS_FILE_MAX) {
            str_fmt(err, errlen, "%s: %s: larger than %d bytes", key, file, TLS_FILE_MAX);
            goto out;
        }
    }
    bio = BIO_new(BIO_s_mem());
    if (bio == NULL || BIO_write(bio, buf, (int)len) != (int)len) {
        BIO_free(bio);
        bio = NULL;
        str_fmt(err, errlen, "out of memory");
    }
out:
    OPENSSL_cleanse(buf, len);
    free(buf);
    return bio;
}

/* The end of a PEM sequence is the "no start line" error; anything else is not. */
static int pem_end_clean(void)
{
    unsigned long e = ERR_peek_last_error();

    if (e == 0 || (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        ERR_clear_error();
        return 1;
    }
    return 0;
}

/* The server certificate (first) and its chain from one PEM file. */
static int use_chain(SSL_CTX *ctx, BIO *in)
{
    X509 *x = PEM_read_bio_X509_AUX(in, NULL, NULL, NULL);
    int ok = x != NULL && SSL_CTX_use_certificate(ctx, x) == 1;

    X509_free(x);
    if (!ok || SSL_CTX_clear_chain_certs(ctx) != 1)
        return -1;
    while ((x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL)
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            return -1;
        }
    return pem_end_clean() ? 0 : -1;
}

static STACK_OF(X509_NAME) *ca_names(BIO *in)
{
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    X509 *x;

    while (names != NULL && (x = PEM_read_bio_X509(in, NULL, NULL, NULL)) != NULL) {
        X509_NAME *n = X509_NAME_dup(X509_get_subject_name(x));

        X509_free(x);
        if (n == NULL || !sk_X509_NAME_push(names, n)) {
            X509_NAME_free(n);
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            return NULL;
        }
    }
    if (names == NULL || !pem_end_clean() || sk_X509_NAME_num(names) == 0) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return NULL;
    }
    return names;
}

SSL_CTX *tls_server_ctx_fds(const struct config *cfg, int cert_fd, int key_fd, int ca_fd,
                            char *err, size_t errlen)
{
    SSL_CTX *ctx;
    STACK_OF(X509_NAME) *names;
    static const unsigned char sid_ctx[] = "submitd";
    BIO *cert = NULL, *key = NULL, *ca = NULL;
    EVP_PKEY *pkey;

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
    /* Idle sessions should cost little memory: free the I/O buffers between reads.
     * The chain sent with the server certificate is the one tls_cert holds
     * (use_chain); without NO_AUTO_CHAIN OpenSSL would also try to build one from the
     * context's store, which is empty here, at every handshake. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_NO_AUTO_CHAIN);
    /* One read(2) takes what the socket holds instead of one for each record's header
     * and one for its body. Bytes read ahead wait inside OpenSSL where epoll cannot see
     * them; session_pump reads until SSL_read wants more from the socket, and every
     * wait it ends for another reason (an answer from authz or the queue, a full
     * output buffer) resumes through session_pump, so none is left behind. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if ((cert = bio_from_fd(cert_fd, "tls_cert", cfg->tls_cert, err, errlen)) == NULL ||
        (key = bio_from_fd(key_fd, "tls_key", cfg->tls_key, err, errlen)) == NULL ||
        (ca = bio_from_fd(ca_fd, "client_ca", cfg->client_ca, err, errlen)) == NULL)
        goto fail;
    if (use_chain(ctx, cert) != 0) {
        ssl_err(err, errlen, "tls_cert: cannot load certificate", cfg->tls_cert);
        goto fail;
    }
    pkey = PEM_read_bio_PrivateKey(key, NULL, NULL, NULL);
    if (pkey == NULL || SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
        EVP_PKEY_free(pkey);
        ssl_err(err, errlen, "tls_key: cannot load private key", cfg->tls_key);
        goto fail;
    }
    EVP_PKEY_free(pkey);
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err(err, errlen, "tls_key: does not match tls_cert", cfg->tls_key);
        goto fail;
    }
    /* The CA names go into the CertificateRequest, so that clients with several
     * certificates pick one of ours. */
    names = ca_names(ca);
    if (names == NULL) {
        ssl_err(err, errlen, "client_ca: no CA names", cfg->client_ca);
        goto fail;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, accept_for_authz, NULL);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    /* Resumption state stays in this process's session cache (TLS 1.3 tickets that
     * only name a cache entry, TLS 1.2 session IDs) instead of stateless tickets.
     * OpenSSL 3.0 builds a stateless ticket by encoding the session and decoding it
     * again, and that decode parses the client certificate inside the session anew,
     * public key included: once per ticket sent and once more per resumption. That
     * was about a fifth of the smtp process's CPU per message. A cache entry is
     * reused as it is. Nothing is lost: the ticket keys lived in this process too,
     * a restart ended resumption either way, and every session, resumed or not, is
     * still checked by authz. One ticket per handshake is enough, since a client
     * resumes a session once and receives a new ticket then. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_sess_set_cache_size(ctx, TLS_SESSION_CACHE_SIZE);
    SSL_CTX_set_timeout(ctx, TLS_SESSION_LIFETIME);
    /* Any client may send a certificate chain before authz judges it, and it stays in
     * memory with the session: bound it well below OpenSSL's 100 KiB. Eight
     * certificates of an RSA-4096 chain take about 16 KiB. */
    SSL_CTX_set_max_cert_list(ctx, TLS_PEER_CHAIN_MAX);
    BIO_free(cert);
    BIO_free(key);
    BIO_free(ca);
    return ctx;
fail:
    BIO_free(cert);
    BIO_free(key);
    BIO_free(ca);
    SSL_CTX_free(ctx);
    return NULL;
}

SSL_CTX *tls_server_ctx(const struct config *cfg, char *err, size_t errlen)
{
    const char *const keys[3] = { "tls_cert", "tls_key", "client_ca" };
    const char *const paths[3] = { cfg->tls_cert, cfg->tls_key, cfg->client_ca };
    int fd[3] = { -1, -1, -1 };
    SSL_CTX *ctx = NULL;

    for (int i = 0; i < 3; i++) {
        fd[i] = open(paths[i], O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd[i] < 0) {
            str_fmt(err, errlen, "%s: %s: %s", keys[i], paths[i], strerror(errno));
            goto out;
        }
    }
    ctx = tls_server_ctx_fds(cfg, fd[0], fd[1], fd[2], err, errlen);
out:
    for (int i = 0; i < 3; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    return ctx;
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
