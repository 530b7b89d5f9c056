/* Server TLS context and client certificate identity for the smtp process. */
#include "tls.h"

#include "config.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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

/* ---- the client certificate store and its CRL ------------------------------ */

/*
 * The CRL file is looked at (stat) at most once per second, by whichever worker
 * thread gets there first. When it changed, a fresh X509_STORE is built from the
 * client CAs loaded at start-up and the new CRL, outside the lock, and replaces the
 * current one. Every new TLS session takes a reference to the store current at its
 * start (SSL_set1_verify_cert_store), so a handshake in progress keeps the store it
 * began with and no store is ever changed while another thread verifies with it.
 *
 * The smtp process runs as the unprivileged user after start-up: the CRL file and
 * its directories must be readable by that user for reloads (submit-ca writes the
 * CRL 0644 in a ca_dir of mode 0711, whose ca.key stays 0600). A file that cannot
 * be read or parsed leaves the previous CRL in use, which still expires at its own
 * nextUpdate, and says so in the log.
 */
#define CRL_CHECK_INTERVAL 1                 /* seconds between looks at the file */
#define CRL_WARN_BEFORE (2LL * 86400)        /* warn this long before nextUpdate */
#define CRL_WARN_EVERY 3600                  /* ... at most once per hour */
#define CRL_EXPIRED_EVERY 60                 /* an expired CRL: once per minute */

struct crl_info {
    int count;                 /* CRLs in the file */
    int entries;               /* revoked serials, all CRLs together */
    long long last_update;     /* the latest lastUpdate */
    long long next_update;     /* the earliest nextUpdate; 0 when none has one */
};

static struct {
    pthread_mutex_t lock;
    char path[PATH_MAX];
    STACK_OF(X509) *cas;       /* client CAs, loaded at start-up, never changed */
    X509_STORE *store;         /* CAs + current CRL; NULL when no CRL is configured */
    struct crl_info info;      /* of the CRL in store */
    /* The file as last examined: a difference means it was replaced or rewritten. */
    int have_file;
    struct stat file;
    int stat_errno;            /* of the last failed stat, 0 when it worked */
    int reloading;             /* one thread is building a store outside the lock */
    time_t checked;
    time_t warned;             /* last warning about nextUpdate */
} crl = { .lock = PTHREAD_MUTEX_INITIALIZER };

static long long asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (long long)timegm(&tm);
}

/* The client CA whose subject issued crl, or NULL. */
static X509 *crl_issuer(STACK_OF(X509) *cas, X509_CRL *c)
{
    for (int i = 0; i < sk_X509_num(cas); i++) {
        X509 *ca = sk_X509_value(cas, i);
        if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(c)) == 0)
            return ca;
    }
    return NULL;
}

/*
 * Reads every PEM CRL in path and builds a store of the client CAs and these CRLs.
 * A CRL of a client CA must carry that CA's signature; a CRL of another issuer is
 * useless (and logged). Returns the store, or NULL with err set.
 */
static X509_STORE *crl_store_build(const char *path, STACK_OF(X509) *cas,
                                   struct crl_info *info, char *err, size_t errlen)
{
    X509_STORE *store = X509_STORE_new();
    FILE *f = NULL;
    X509_CRL *c;

    memset(info, 0, sizeof(*info));
    if (store == NULL) {
        ssl_err(err, errlen, "cannot allocate a certificate store", path);
        return NULL;
    }
    for (int i = 0; i < sk_X509_num(cas); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(cas, i)) != 1) {
            ssl_err(err, errlen, "cannot add a client CA to the store", path);
            goto fail;
        }
    if ((f = fopen(path, "re")) == NULL) {
        str_fmt(err, errlen, "%s: cannot read CRL: %s", path, strerror(errno));
        goto fail;
    }
    while ((c = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
        X509 *issuer = crl_issuer(cas, c);
        long long last = asn1_epoch(X509_CRL_get0_lastUpdate(c));
        long long next = asn1_epoch(X509_CRL_get0_nextUpdate(c));

        if (issuer == NULL) {
            char name[256] = "";
            X509_NAME_oneline(X509_CRL_get_issuer(c), name, sizeof(name));
            log_warn("crl %s: a CRL of %s, which is not in client_ca: ignored", path, name);
            X509_CRL_free(c);
            continue;
        }
        if (X509_CRL_verify(c, X509_get0_pubkey(issuer)) != 1) {
            X509_CRL_free(c);
            ERR_clear_error();
            str_fmt(err, errlen, "%s: CRL signature does not verify with its client CA", path);
            goto fail;
        }
        if (X509_STORE_add_crl(store, c) != 1) {
            X509_CRL_free(c);
            ssl_err(err, errlen, "cannot add the CRL to the store", path);
            goto fail;
        }
        info->count++;
        if (X509_CRL_get_REVOKED(c) != NULL)
            info->entries += sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c));
        if (last > info->last_update)
            info->last_update = last;
        if (next != 0 && (info->next_update == 0 || next < info->next_update))
            info->next_update = next;
        X509_CRL_free(c);
    }
    /* The loop ends with "no start line" at the end of the file. */
    ERR_clear_error();
    if (ferror(f)) {
        str_fmt(err, errlen, "%s: cannot read CRL: %s", path, strerror(errno));
        goto fail;
    }
    if (info->count == 0) {
        str_fmt(err, errlen, "%s: no CRL of a client CA in the file", path);
        goto fail;
    }
    fclose(f);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return store;
fail:
    if (f != NULL)
        fclose(f);
    X509_STORE_free(store);
    return NULL;
}

static void crl_note_file(const struct stat *sb)
{
    crl.have_file = 1;
    crl.file = *sb;
}

static int crl_file_changed(const struct stat *sb)
{
    return !crl.have_file || sb->st_dev != crl.file.st_dev || sb->st_ino != crl.file.st_ino ||
           sb->st_size != crl.file.st_size ||
           sb->st_mtim.tv_sec != crl.file.st_mtim.tv_sec ||
           sb->st_mtim.tv_nsec != crl.file.st_mtim.tv_nsec ||
           sb->st_ctim.tv_sec != crl.file.st_ctim.tv_sec ||
           sb->st_ctim.tv_nsec != crl.file.st_ctim.tv_nsec;
}

/* Loud lines about the validity of the CRL in use. Called with the lock held. */
static void crl_check_dates(time_t now)
{
    char when[32];
    long long next = crl.info.next_update;

    if (next == 0)
        return;
    iso_time_utc(when, sizeof(when), next);
    if ((long long)now >= next) {
        if (crl.warned == 0 || now - crl.warned >= CRL_EXPIRED_EVERY) {
            crl.warned = now;
            log_err("crl %s EXPIRED at %s: every client certificate is refused with 454 "
                    "until a new CRL is published (submit-ca crl)", crl.path, when);
        }
    } else if (next - (long long)now <= CRL_WARN_BEFORE) {
        if (crl.warned == 0 || now - crl.warned >= CRL_WARN_EVERY) {
            crl.warned = now;
            log_warn("crl %s expires at %s, in %lld hours: publish a new one with "
                     "\"submit-ca crl\" before then, or every client is refused",
                     crl.path, when, (next - (long long)now + 3599) / 3600);
        }
    }
}

static void crl_log_loaded(const char *what)
{
    char last[32], next[32];

    iso_time_utc(last, sizeof(last), crl.info.last_update);
    if (crl.info.next_update != 0)
        iso_time_utc(next, sizeof(next), crl.info.next_update);
    else
        str_lcpy(next, "never", sizeof(next));
    log_info("crl %s %s: %d CRL%s, %d revoked, last update %s, next update %s", crl.path,
             what, crl.info.count, crl.info.count == 1 ? "" : "s", crl.info.entries, last, next);
    if (crl.info.last_update > (long long)time(NULL))
        log_err("crl %s is not valid yet (last update %s is in the future; is the clock "
                "right?): every client certificate is refused with 454", crl.path, last);
}

/*
 * Looks at the CRL file when CRL_CHECK_INTERVAL has passed and reloads it when it
 * changed. Called without the lock.
 */
static void crl_maintain(time_t now)
{
    struct stat sb;
    struct crl_info info;
    X509_STORE *fresh;
    char err[512], path[PATH_MAX];

    pthread_mutex_lock(&crl.lock);
    if (crl.reloading || now - crl.checked < CRL_CHECK_INTERVAL) {
        pthread_mutex_unlock(&crl.lock);
        return;
    }
    crl.checked = now;
    if (stat(crl.path, &sb) != 0) {
        int e = errno;

        if (e != crl.stat_errno)
            log_err("crl %s: cannot look for changes: %s: the CRL loaded before stays in "
                    "use; the file and its directories must be readable by the user "
                    "submitd runs as", crl.path, strerror(e));
        crl.stat_errno = e;
        crl_check_dates(now);
        pthread_mutex_unlock(&crl.lock);
        return;
    }
    if (crl.stat_errno != 0)
        log_info("crl %s can be examined again", crl.path);
    crl.stat_errno = 0;
    if (!crl_file_changed(&sb)) {
        crl_check_dates(now);
        pthread_mutex_unlock(&crl.lock);
        return;
    }
    /* Remember this version even if it does not load: retry only when it changes. */
    crl_note_file(&sb);
    crl.reloading = 1;
    str_lcpy(path, crl.path, sizeof(path));
    pthread_mutex_unlock(&crl.lock);

    fresh = crl_store_build(path, crl.cas, &info, err, sizeof(err));

    pthread_mutex_lock(&crl.lock);
    crl.reloading = 0;
    if (fresh != NULL) {
        X509_STORE_free(crl.store);
        crl.store = fresh;
        crl.info = info;
        crl.warned = 0;
        crl_log_loaded("reloaded");
    } else {
        char next[32] = "never";
        if (crl.info.next_update != 0)
            iso_time_utc(next, sizeof(next), crl.info.next_update);
        log_err("crl %s changed but cannot be loaded: %s; the previous CRL stays in use "
                "(next update %s)", path, err, next);
    }
    crl_check_dates(now);
    pthread_mutex_unlock(&crl.lock);
}

void tls_crl_tick(time_t now)
{
    if (crl.path[0] != '\0')
        crl_maintain(now);
}

void tls_use_current_store(SSL *ssl)
{
    if (crl.path[0] == '\0')
        return;
    crl_maintain(time(NULL));
    pthread_mutex_lock(&crl.lock);
    /* The session holds its own reference: a later reload does not touch it. */
    if (SSL_set1_verify_cert_store(ssl, crl.store) != 1)
        log_err("cannot attach the certificate store to a TLS session");
    pthread_mutex_unlock(&crl.lock);
}

void tls_crl_free(void)
{
    pthread_mutex_lock(&crl.lock);
    X509_STORE_free(crl.store);
    crl.store = NULL;
    sk_X509_pop_free(crl.cas, X509_free);
    crl.cas = NULL;
    crl.path[0] = '\0';
    pthread_mutex_unlock(&crl.lock);
}

/* Loads the CRL at start-up (still as root); a CRL that cannot be used is fatal. */
static int crl_init(SSL_CTX *ctx, const char *path, char *err, size_t errlen)
{
    struct stat sb;

    if (str_lcpy(crl.path, path, sizeof(crl.path)) >= sizeof(crl.path)) {
        str_fmt(err, errlen, "%s: crl: path too long", path);
        return -1;
    }
    crl.cas = X509_STORE_get1_all_certs(SSL_CTX_get_cert_store(ctx));
    if (crl.cas == NULL) {
        ssl_err(err, errlen, "cannot list the client CAs", path);
        return -1;
    }
    if (stat(path, &sb) == 0)
        crl_note_file(&sb);
    crl.store = crl_store_build(path, crl.cas, &crl.info, err, errlen);
    if (crl.store == NULL)
        return -1;
    crl.checked = time(NULL);
    crl_log_loaded("loaded");
    crl_check_dates(crl.checked);
    /* Sessions that do not take the current store still check the start-up CRL. */
    if (SSL_CTX_set1_verify_cert_store(ctx, crl.store) != 1) {
        ssl_err(err, errlen, "cannot install the certificate store", path);
        return -1;
    }
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
    if (cfg->crl[0] != '\0' && crl_init(ctx, cfg->crl, err, errlen) != 0)
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

/* Keeps the first verification error, as verify_cb does for handshakes. */
static int reverify_cb(int ok, X509_STORE_CTX *ctx)
{
    int *first = X509_STORE_CTX_get_app_data(ctx);

    if (!ok && first != NULL && *first == X509_V_OK)
        *first = X509_STORE_CTX_get_error(ctx);
    return 1;
}

/* Verifies the peer of a resumed session again; returns X509_V_OK or the first error. */
static int reverify(SSL *ssl, X509 *peer)
{
    X509_STORE *store = NULL;
    X509_STORE_CTX *vctx = X509_STORE_CTX_new();
    int first = X509_V_OK, code;

    SSL_get0_verify_cert_store(ssl, &store);
    if (store == NULL)
        store = SSL_CTX_get_cert_store(SSL_get_SSL_CTX(ssl));
    if (vctx == NULL ||
        X509_STORE_CTX_init(vctx, store, peer, SSL_get_peer_cert_chain(ssl)) != 1 ||
        X509_STORE_CTX_set_default(vctx, "ssl_client") != 1 ||
        X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(vctx), SSL_get0_param(ssl)) != 1) {
        X509_STORE_CTX_free(vctx);
        ERR_clear_error();
        return X509_V_ERR_OUT_OF_MEM;
    }
    X509_STORE_CTX_set_app_data(vctx, &first);
    X509_STORE_CTX_set_verify_cb(vctx, reverify_cb);
    code = X509_verify_cert(vctx) == 1 ? X509_V_OK : X509_STORE_CTX_get_error(vctx);
    X509_STORE_CTX_free(vctx);
    ERR_clear_error();
    return first != X509_V_OK ? first : code;
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
    first = (intptr_t)SSL_get_ex_data(ssl, first_error_idx);
    result = SSL_get_verify_result(ssl);
    out->verify_code = first != 0 ? (int)first : (int)result;
    /*
     * A resumed session carries the verification result of its first handshake,
     * which may predate a revocation or the CRL's expiry: verify again, now, with
     * the store of this session.
     */
    if (SSL_session_reused(ssl))
        out->verify_code = reverify(ssl, peer);
    X509_free(peer);
    str_lcpy(out->verify, tls_verify_reason(out->verify_code), sizeof(out->verify));
}
