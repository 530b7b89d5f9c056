/* Server TLS context and client certificate identity for the smtp process. */
#include "tls.h"

#include "config.h"
#include "log.h"
#include "util.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Index of the per-connection slot holding the first verification error. */
static int first_error_idx = -1;

static void ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    str_fmt(err, errlen, "%s: %s: %s", file, what, r ? r : "unknown OpenSSL error");
    ERR_clear_error();
}

/*
 * Accept the handshake whatever the verification result, but remember the first
 * error: OpenSSL keeps only the last one, which for an expired certificate from a
 * foreign CA would hide the more useful "untrusted issuer".
 */
static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(ctx, SSL_get_ex_data_X509_STORE_CTX_idx());

    if (!ok && ssl != NULL) {
        intptr_t prev = (intptr_t)SSL_get_ex_data(ssl, first_error_idx);
        if (prev == 0)
            SSL_set_ex_data(ssl, first_error_idx,
                            (void *)(intptr_t)X509_STORE_CTX_get_error(ctx));
    }
    return 1;
}

static int load_crl(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509_LOOKUP *lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());

    if (lookup == NULL || X509_load_crl_file(lookup, path, X509_FILETYPE_PEM) <= 0) {
        ssl_err(err, errlen, "cannot load CRL", path);
        return -1;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return 0;
}

SSL_CTX *tls_server_ctx(const struct config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    STACK_OF(X509_NAME) *names;
    static const unsigned char sid_ctx[] = "submitd";

    if (first_error_idx < 0)
        first_error_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
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
    if (SSL_CTX_load_verify_locations(ctx, cfg->client_ca, NULL) != 1) {
        ssl_err(err, errlen, "client_ca: cannot load CA certificates", cfg->client_ca);
        goto fail;
    }
    names = SSL_load_client_CA_file(cfg->client_ca);
    if (names == NULL) {
        ssl_err(err, errlen, "client_ca: no CA names", cfg->client_ca);
        goto fail;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    if (cfg->crl[0] != '\0' && load_crl(ctx, cfg->crl, err, errlen) != 0)
        goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE, verify_cb);
    SSL_CTX_set_verify_depth(ctx, 5);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

const char *tls_verify_reason(int code)
{
    switch (code) {
    case X509_V_OK:
        return "ok";
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "not yet valid";
    case X509_V_ERR_CERT_REVOKED:
        return "revoked";
    case X509_V_ERR_INVALID_PURPOSE:
        return "wrong purpose";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return "untrusted issuer";
    /* A missing or stale CRL is our problem, not the user's: the authz process
     * answers these with a temporary failure and a loud log line. */
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        return "crl unavailable";
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return "crl expired";
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return "crl not yet valid";
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
        return "crl invalid";
    default:
        return "invalid";
    }
}

void tls_peer_identity(SSL *ssl, struct tls_peer *out)
{
    X509 *peer;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    long result;
    intptr_t first;

    memset(out, 0, sizeof(*out));
    str_fmt(out->tls, sizeof(out->tls), "%s %s", SSL_get_version(ssl),
            SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)));
    peer = SSL_get1_peer_certificate(ssl);
    if (peer == NULL) {
        str_lcpy(out->verify, "none", sizeof(out->verify));
        out->verify_code = -1;
        return;
    }
    if (X509_digest(peer, EVP_sha256(), md, &mdlen) == 1)
        hex_encode(md, mdlen, out->sha256);
    {
        BIO *b = BIO_new(BIO_s_mem());
        if (b != NULL) {
            char *p;
            long n;
            if (X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0 &&
                (n = BIO_get_mem_data(b, &p)) > 0)
                str_fmt(out->subject, sizeof(out->subject), "%.*s", (int)n, p);
            (void)BIO_reset(b);
            if (X509_NAME_print_ex(b, X509_get_issuer_name(peer), 0, XN_FLAG_RFC2253) >= 0 &&
                (n = BIO_get_mem_data(b, &p)) > 0)
                str_fmt(out->issuer, sizeof(out->issuer), "%.*s", (int)n, p);
            BIO_free(b);
        }
    }
    X509_free(peer);
    first = (intptr_t)SSL_get_ex_data(ssl, first_error_idx);
    result = SSL_get_verify_result(ssl);
    out->verify_code = first != 0 ? (int)first : (int)result;
    str_lcpy(out->verify, tls_verify_reason(out->verify_code), sizeof(out->verify));
}
