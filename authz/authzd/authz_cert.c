/* Client certificate verification for the authz process (see authz_cert.h). */
#include "authz_cert.h"

#include "config.h"
#include "crl_check.h"
#include "dn.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SECURITY_LEVEL 2
#define CHAIN_DEPTH 5
#define CRL_CHECK_INTERVAL 1                 /* seconds between looks at the file */
#define CRL_WARN_BEFORE (2LL * 86400)        /* warn this long before nextUpdate */
#define CRL_WARN_EVERY 3600                  /* ... at most once per hour */
#define CRL_EXPIRED_EVERY 60                 /* an expired CRL: once per minute */
#define VCACHE_SLOTS 256                     /* verified chains remembered */
#define VCACHE_MAX_AGE 3600                  /* seconds a verification is reused at most */

struct crl_info {
    int count;                 /* CRLs in the store */
    int entries;               /* revoked serials, all CRLs together */
    int kept;                  /* newer CRLs kept from before: the file's were older */
    long long last_update;     /* the latest lastUpdate */
    long long next_update;     /* the earliest nextUpdate; 0 when none has one */
    /* The newest CRL in the store for each client CA (index as in st.cas), or NULL:
     * what the next version of the file is compared with, so that an older CRL
     * copied over a newer one cannot bring revoked certificates back. */
    X509_CRL **newest;
};

/*
 * The store: client CAs (loaded at start-up, never changed) and the current CRLs.
 * authz is single-threaded, so a reload simply replaces the store between two
 * verifications.
 */
static struct {
    STACK_OF(X509) *cas;
    X509_STORE *store;
    char crl_path[PATH_MAX];   /* empty: no CRL check */
    struct crl_info info;
    int have_file;
    struct stat file;          /* the CRL file as last examined */
    int stat_errno;
    time_t checked, warned;
} st;

/* ---- verified chains ---------------------------------------------------------------
 * A client that comes back (a new session, resumed or not) sends the same chain: its
 * verification against the same store gives the same answer until a certificate of
 * the chain or a CRL expires. A chain that verified is remembered, keyed by the
 * SHA-256 of everything sent, until the earliest notAfter of the chain built, the
 * earliest CRL nextUpdate, or VCACHE_MAX_AGE; any change of the store (a new CRL, a
 * reload of client_ca) forgets them all, so a revocation by CRL acts at the next
 * session. Only the chain is remembered: the certificate's status and its user's in
 * the database are looked up for every session (authz_identity). Refusals are not
 * remembered: they are rare, and may depend on the time (not yet valid). */
struct vcache_entry {
    int used;
    unsigned char key[32];
    time_t until;
    struct cert_result r;
};

static struct vcache_entry *vcache;

static void vcache_clear(void)
{
    if (vcache != NULL)
        for (int i = 0; i < VCACHE_SLOTS; i++)
            vcache[i].used = 0;
}

/* The key of a chain: its length-prefixed DER, hashed. 0, or -1. */
static int vcache_key(const unsigned char *const *der, const size_t *len, int n,
                      unsigned char key[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int klen = 0;
    int ok = c != NULL && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;

    for (int i = 0; ok && i < n; i++) {
        unsigned char l[4] = { (unsigned char)(len[i] >> 24), (unsigned char)(len[i] >> 16),
                               (unsigned char)(len[i] >> 8), (unsigned char)len[i] };
        ok = len[i] <= 65535 && EVP_DigestUpdate(c, l, sizeof(l)) == 1 &&
             EVP_DigestUpdate(c, der[i], len[i]) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(c, key, &klen) == 1 && klen == 32;
    EVP_MD_CTX_free(c);
    ERR_clear_error();
    return ok ? 0 : -1;
}

static struct vcache_entry *vcache_slot(const unsigned char key[32])
{
    if (vcache == NULL && (vcache = calloc(VCACHE_SLOTS, sizeof(*vcache))) == NULL)
        return NULL;
    return &vcache[((unsigned)key[0] << 8 | key[1]) % VCACHE_SLOTS];
}

/* The earliest notAfter of the chain that was built (trust anchor included). */
static time_t chain_not_after(X509_STORE_CTX *ctx, time_t now)
{
    STACK_OF(X509) *built = X509_STORE_CTX_get0_chain(ctx);
    time_t until = now + VCACHE_MAX_AGE;

    for (int i = 0; built != NULL && i < sk_X509_num(built); i++) {
        int days = 0, secs = 0;

        if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(sk_X509_value(built, i))) != 1)
            return now;
        if (now + (time_t)days * 86400 + secs < until)
            until = now + (time_t)days * 86400 + secs;
    }
    ERR_clear_error();
    return until;
}

static void ssl_err(char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;

    str_fmt(err, errlen, "%s: %s: %s", file, what, r ? r : "unknown OpenSSL error");
    ERR_clear_error();
}

/* ---- the store and its CRL ------------------------------------------------------- */

static void crl_info_free(struct crl_info *info)
{
    for (int i = 0; info->newest != NULL && i < sk_X509_num(st.cas); i++)
        X509_CRL_free(info->newest[i]);
    free(info->newest);
    info->newest = NULL;
}

static X509_STORE *store_with_cas(char *err, size_t errlen, const char *what)
{
    X509_STORE *store = X509_STORE_new();

    if (store == NULL) {
        ssl_err(err, errlen, "cannot allocate a certificate store", what);
        return NULL;
    }
    for (int i = 0; i < sk_X509_num(st.cas); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(st.cas, i)) != 1) {
            ssl_err(err, errlen, "cannot add a client CA to the store", what);
            X509_STORE_free(store);
            return NULL;
        }
    return store;
}

/* Puts CRL c of client CA ca into store and counts it in info. */
static int crl_put(X509_STORE *store, X509_CRL *c, int ca, const char *path,
                   struct crl_info *info, char *err, size_t errlen)
{
    long long last = crl_asn1_epoch(X509_CRL_get0_lastUpdate(c));
    long long next = crl_asn1_epoch(X509_CRL_get0_nextUpdate(c));
    char d1[128], d2[128];

    if (X509_STORE_add_crl(store, c) != 1) {
        ssl_err(err, errlen, "cannot add the CRL to the store", path);
        return -1;
    }
    if (info->newest[ca] == NULL || crl_order(c, info->newest[ca], d1, d2, sizeof(d1)) > 0) {
        X509_CRL_up_ref(c);
        X509_CRL_free(info->newest[ca]);
        info->newest[ca] = c;
    }
    info->count++;
    if (X509_CRL_get_REVOKED(c) != NULL)
        info->entries += sk_X509_REVOKED_num(X509_CRL_get_REVOKED(c));
    if (last > info->last_update)
        info->last_update = last;
    if (next != 0 && (info->next_update == 0 || next < info->next_update))
        info->next_update = next;
    return 0;
}

/*
 * A CRL older than the one in use for its issuer (an old file copied back, a
 * replayed download) would bring revoked certificates back to life. Returns c, or
 * for an older c the newer CRL in use, after saying so loudly. prev: the CRLs in
 * use, NULL at start-up.
 */
static X509_CRL *crl_not_older(X509_CRL *c, int ca, const char *path,
                               const struct crl_info *prev)
{
    X509_CRL *in_use = prev != NULL && prev->newest != NULL ? prev->newest[ca] : NULL;
    char older[128], newer[128], issuer[512];

    if (in_use == NULL || crl_order(c, in_use, older, newer, sizeof(older)) >= 0)
        return c;
    dn_text(X509_CRL_get_issuer(c), issuer, sizeof(issuer));
    log_err("crl %s: the CRL of %s has %s, older than the %s in use: refused (an older "
            "CRL copied over a newer one?); the newer CRL stays in use", path, issuer, older,
            newer);
    return in_use;
}

/* Adds one CRL read from path (examined by crl_check) to store; one older than the
 * CRL in use for its issuer is replaced by that one. A CRL of another issuer is
 * ignored, a CRL that its CA did not sign fails the whole file. */
static int crl_add(X509_STORE *store, const struct crl_entry *e, const char *path,
                   const struct crl_info *prev, struct crl_info *info, char *err,
                   size_t errlen)
{
    X509_CRL *use;

    if (e->state == CRL_FOREIGN) {
        char name[256] = "";
        X509_NAME_oneline(X509_CRL_get_issuer(e->crl), name, sizeof(name));
        log_warn("crl %s: a CRL of %s, which is not in client_ca: ignored", path, name);
        return 0;
    }
    if (e->state == CRL_BAD_SIGNATURE) {
        str_fmt(err, errlen, "%s: CRL signature does not verify with its client CA", path);
        return -1;
    }
    use = crl_not_older(e->crl, e->ca, path, prev);
    if (use != e->crl) {
        if (info->newest[e->ca] == use)
            return 0; /* kept already */
        info->kept++;
    }
    return crl_put(store, use, e->ca, path, info, err, errlen);
}

/* A store of the client CAs and every CRL in path, or NULL with err set. prev: the
 * CRLs in use (NULL at start-up), which an older CRL in the file cannot replace. */
static X509_STORE *crl_store_build(const char *path, const struct crl_info *prev,
                                   struct crl_info *info, char *err, size_t errlen)
{
    X509_STORE *store = store_with_cas(err, errlen, path);
    struct crl_bundle b;
    int rc;

    memset(info, 0, sizeof(*info));
    if (store == NULL)
        return NULL;
    info->newest = calloc((size_t)sk_X509_num(st.cas), sizeof(*info->newest));
    if (info->newest == NULL) {
        str_fmt(err, errlen, "%s: out of memory", path);
        X509_STORE_free(store);
        return NULL;
    }
    rc = crl_bundle_read(path, st.cas, &b, err, errlen);
    for (int i = 0; rc == 0 && i < b.n; i++)
        rc = crl_add(store, &b.crls[i], path, prev, info, err, errlen);
    if (rc == 0 && info->count == 0) {
        str_fmt(err, errlen, "%s: no CRL of a client CA in the file", path);
        rc = -1;
    }
    crl_bundle_free(&b);
    if (rc != 0) {
        crl_info_free(info);
        X509_STORE_free(store);
        return NULL;
    }
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    return store;
}

static int crl_file_changed(const struct stat *sb)
{
    return !st.have_file || sb->st_dev != st.file.st_dev || sb->st_ino != st.file.st_ino ||
           sb->st_size != st.file.st_size ||
           sb->st_mtim.tv_sec != st.file.st_mtim.tv_sec ||
           sb->st_mtim.tv_nsec != st.file.st_mtim.tv_nsec ||
           sb->st_ctim.tv_sec != st.file.st_ctim.tv_sec ||
           sb->st_ctim.tv_nsec != st.file.st_ctim.tv_nsec;
}

/* Loud lines about the validity of the CRL in use. */
static void crl_check_dates(time_t now)
{
    char when[32];
    long long next = st.info.next_update;
    int flags = crl_time_flags(0, next, now, CRL_WARN_BEFORE);

    if (next == 0)
        return;
    iso_time_utc(when, sizeof(when), next);
    if (flags & CRL_EXPIRED) {
        if (st.warned == 0 || now - st.warned >= CRL_EXPIRED_EVERY) {
            st.warned = now;
            log_err("crl %s EXPIRED at %s: the certificates of its CA are refused with 454 "
                    "until a new CRL is published (submit-ca crl)", st.crl_path, when);
        }
    } else if (flags & CRL_EXPIRES_SOON) {
        if (st.warned == 0 || now - st.warned >= CRL_WARN_EVERY) {
            st.warned = now;
            log_warn("crl %s expires at %s, in %lld hours: publish a new one with "
                     "\"submit-ca crl\" before then, or the certificates of its CA are "
                     "refused", st.crl_path, when, (next - (long long)now + 3599) / 3600);
        }
    }
}

static void crl_log_loaded(const char *what)
{
    char last[32], next[32];

    iso_time_utc(last, sizeof(last), st.info.last_update);
    if (st.info.next_update != 0)
        iso_time_utc(next, sizeof(next), st.info.next_update);
    else
        str_lcpy(next, "never", sizeof(next));
    log_info("crl %s %s: %d CRL%s, %d revoked, last update %s, next update %s%s", st.crl_path,
             what, st.info.count, st.info.count == 1 ? "" : "s", st.info.entries, last, next,
             st.info.kept ? " (with a newer CRL kept from before: see the rollback above)" : "");
    if (crl_time_flags(st.info.last_update, 0, time(NULL), 0) & CRL_NOT_YET_VALID)
        log_err("crl %s is not valid yet (last update %s is in the future; is the clock "
                "right?): certificates of its CA are refused with 454", st.crl_path, last);
}

void cert_tick(time_t now)
{
    struct stat sb;
    struct crl_info info;
    X509_STORE *fresh;
    char err[512];

    if (st.crl_path[0] == '\0' || now - st.checked < CRL_CHECK_INTERVAL)
        return;
    st.checked = now;
    if (stat(st.crl_path, &sb) != 0) {
        if (errno != st.stat_errno)
            log_err("crl %s: cannot look for changes: %s: the CRL loaded before stays in use",
                    st.crl_path, strerror(errno));
        st.stat_errno = errno;
        crl_check_dates(now);
        return;
    }
    if (st.stat_errno != 0)
        log_info("crl %s can be examined again", st.crl_path);
    st.stat_errno = 0;
    if (!crl_file_changed(&sb)) {
        crl_check_dates(now);
        return;
    }
    /* Remember this version even if it does not load: retry only when it changes. */
    st.have_file = 1;
    st.file = sb;
    fresh = crl_store_build(st.crl_path, &st.info, &info, err, sizeof(err));
    if (fresh != NULL) {
        vcache_clear();
        X509_STORE_free(st.store);
        crl_info_free(&st.info);
        st.store = fresh;
        st.info = info;
        st.warned = 0;
        crl_log_loaded("reloaded");
    } else {
        char next[32] = "never";
        if (st.info.next_update != 0)
            iso_time_utc(next, sizeof(next), st.info.next_update);
        log_err("crl %s changed but cannot be loaded: %s; the previous CRL stays in use "
                "(next update %s)", st.crl_path, err, next);
    }
    crl_check_dates(now);
}

/* The same CAs in the same order: CRL indexes of one set are valid in the other. */
static int same_cas(const STACK_OF(X509) *a, const STACK_OF(X509) *b)
{
    if (a == NULL || b == NULL || sk_X509_num(a) != sk_X509_num(b))
        return 0;
    for (int i = 0; i < sk_X509_num(a); i++)
        if (X509_cmp(sk_X509_value(a, i), sk_X509_value(b, i)) != 0)
            return 0;
    return 1;
}

/* prev_cas/prev: what a reload replaces (NULL at start): with the same CAs, a CRL
 * older than the one in use is refused at a reload as it is at a file change. */
static int cert_load(const struct config *cfg, const STACK_OF(X509) *prev_cas,
                     const struct crl_info *prev, char *err, size_t errlen)
{
    struct stat sb;
    int why;

    vcache_clear();
    memset(&st, 0, sizeof(st));
    st.cas = crl_cas_load(cfg->client_ca, &why);
    if (st.cas == NULL) {
        ssl_err(err, errlen, why == CRL_CAS_EMPTY ? "client_ca: no CA certificate in the file"
                                                  : "client_ca: cannot read", cfg->client_ca);
        return -1;
    }
    if (cfg->crl[0] == '\0') {
        st.store = store_with_cas(err, errlen, cfg->client_ca);
        return st.store != NULL ? 0 : -1;
    }
    if (str_lcpy(st.crl_path, cfg->crl, sizeof(st.crl_path)) >= sizeof(st.crl_path)) {
        str_fmt(err, errlen, "%s: crl: path too long", cfg->crl);
        return -1;
    }
    if (stat(st.crl_path, &sb) == 0) {
        st.have_file = 1;
        st.file = sb;
    }
    st.store = crl_store_build(st.crl_path, same_cas(st.cas, prev_cas) ? prev : NULL,
                               &st.info, err, errlen);
    if (st.store == NULL)
        return -1;
    st.checked = time(NULL);
    crl_log_loaded("loaded");
    crl_check_dates(st.checked);
    return 0;
}

int cert_init(const struct config *cfg, char *err, size_t errlen)
{
    return cert_load(cfg, NULL, NULL, err, errlen);
}

int cert_reload(const struct config *cfg, char *err, size_t errlen)
{
    __typeof__(st) saved = st;

    if (cert_load(cfg, saved.cas, &saved.info, err, errlen) != 0) {
        cert_free();
        st = saved;
        return -1;
    }
    /* The old state is freed as the current one: crl_info_free() counts its CAs. */
    {
        __typeof__(st) fresh = st;

        st = saved;
        cert_free();
        st = fresh;
    }
    return 0;
}

void cert_free(void)
{
    vcache_clear();
    crl_info_free(&st.info);
    X509_STORE_free(st.store);
    sk_X509_pop_free(st.cas, X509_free);
    memset(&st, 0, sizeof(st));
}

/* ---- names ----------------------------------------------------------------------- */

static int bytes_clean(const unsigned char *p, int n)
{
    for (int i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] == 0x7f)
            return 0;
    return 1;
}

/* 1 when no attribute value of name holds NUL or a control character once decoded
 * (a BMPString can hide a NUL as well as an IA5String). */
static int name_clean(const X509_NAME *name)
{
    for (int i = 0; i < X509_NAME_entry_count(name); i++) {
        unsigned char *utf8 = NULL;
        int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i)));
        int ok = n >= 0 && bytes_clean(utf8, n);

        OPENSSL_free(utf8);
        if (!ok)
            return 0;
    }
    return 1;
}

static int alt_names_clean(X509 *x)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int ok = 1;

    for (int i = 0; gens != NULL && ok && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_STRING *s = NULL;

        if (g->type == GEN_EMAIL || g->type == GEN_DNS || g->type == GEN_URI)
            s = g->d.ia5;
        if (s != NULL)
            ok = bytes_clean(ASN1_STRING_get0_data(s), ASN1_STRING_length(s));
    }
    GENERAL_NAMES_free(gens);
    ERR_clear_error();
    return ok;
}

static int cert_names_clean(X509 *x)
{
    return name_clean(X509_get_subject_name(x)) && name_clean(X509_get_issuer_name(x)) &&
           alt_names_clean(x);
}

/* ---- verification ---------------------------------------------------------------- */

/* The reason word for a verification error, as used in SMTP replies. */
static const char *verify_reason(int code)
{
    switch (code) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "not yet valid";
    case X509_V_ERR_CERT_REVOKED:
        return "revoked";
    case X509_V_ERR_INVALID_PURPOSE:
        return "wrong purpose";
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_KEY_TOO_SMALL:
    case X509_V_ERR_CA_MD_TOO_WEAK:
        return "weak key or signature";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return "untrusted issuer";
    default:
        return "invalid";
    }
}

/* What verification saw: the first real problem, and the first CRL problem with
 * the certificate it concerned (whose issuer is named in the log). */
struct seen {
    int first;
    int crl;
    char crl_issuer[512];
};

static int verify_cb(int ok, X509_STORE_CTX *ctx)
{
    struct seen *s = X509_STORE_CTX_get_app_data(ctx);
    int code = X509_STORE_CTX_get_error(ctx);

    if (ok || s == NULL)
        return 1;
    if (crl_verify_error_is_crl(code)) {
        if (s->crl == X509_V_OK) {
            X509 *x = X509_STORE_CTX_get_current_cert(ctx);
            s->crl = code;
            if (x != NULL)
                dn_text(X509_get_issuer_name(x), s->crl_issuer, sizeof(s->crl_issuer));
        }
    } else if (s->first == X509_V_OK) {
        s->first = code;
    }
    /* Go on: every problem is collected, and the most telling one is reported. */
    return 1;
}

static void result_reject(struct cert_result *r, const char *reason, const char *detail)
{
    r->verdict = CERT_REJECTED;
    str_lcpy(r->reason, reason, sizeof(r->reason));
    str_fmt(r->detail, sizeof(r->detail), "certificate %s", detail);
}

static X509 *decode_one(const unsigned char *der, size_t len)
{
    const unsigned char *p = der;
    X509 *x = len <= 65535 ? d2i_X509(NULL, &p, (long)len) : NULL;

    /* Trailing bytes are not part of a certificate: refuse rather than ignore. */
    if (x != NULL && p != der + len) {
        X509_free(x);
        x = NULL;
    }
    ERR_clear_error();
    return x;
}

/*
 * Which certificate of client_ca issued the leaf: the second of the verified chain,
 * when it is one of client_ca (compared whole, not by name). A rule map applies to
 * the CA that vouched for the certificate, never to a name the client chose.
 */
static void issuing_ca(X509_STORE_CTX *ctx, struct cert_result *r)
{
    STACK_OF(X509) *verified = X509_STORE_CTX_get0_chain(ctx);
    X509 *ca = verified != NULL && sk_X509_num(verified) > 1 ? sk_X509_value(verified, 1) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int known = 0;

    for (int i = 0; ca != NULL && i < sk_X509_num(st.cas); i++)
        if (X509_cmp(ca, sk_X509_value(st.cas, i)) == 0)
            known = 1;
    if (!known || X509_digest(ca, EVP_sha256(), md, &mdlen) != 1 ||
        dn_canon_name(X509_get_subject_name(ca), r->ca_canon, sizeof(r->ca_canon)) != 0) {
        r->ca_sha256[0] = '\0';
        r->ca_canon[0] = '\0';
        return;
    }
    hex_encode(md, mdlen, r->ca_sha256);
}

/* The leaf's serial (upper-case hex), expiry and the fields rule maps read. */
static void leaf_facts(X509 *leaf, struct cert_result *r)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

    const char *digits = hex != NULL ? hex : "";

    /* BN_bn2hex writes whole bytes; serials are shown and compared without
     * leading zeros, as openssl x509 -serial and the CAs' consoles differ on them. */
    while (digits[0] == '0' && digits[1] != '\0')
        digits++;
    str_lcpy(r->serial, digits, sizeof(r->serial));
    OPENSSL_free(hex);
    BN_free(bn);
    r->not_after = (int64_t)crl_asn1_epoch(X509_get0_notAfter(leaf));
    for (int f = 0; f < CERT_FIELD_COUNT; f++)
        r->field_status[f] = (unsigned char)cert_field_get(leaf, (enum cert_field)f,
                                                           r->field_value[f]);
    ERR_clear_error();
}

static void chain_verify(X509 *leaf, STACK_OF(X509) *chain, struct cert_result *r,
                         time_t *until)
{
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    struct seen seen = { X509_V_OK, X509_V_OK, "" };
    char detail[700];

    if (ctx == NULL || X509_STORE_CTX_init(ctx, st.store, leaf, chain) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
        X509_STORE_CTX_free(ctx);
        ERR_clear_error();
        r->verdict = CERT_UNCHECKABLE;
        str_lcpy(r->reason, "verification impossible", sizeof(r->reason));
        str_lcpy(r->detail, "certificate check impossible: out of memory", sizeof(r->detail));
        return;
    }
    X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(ctx), SECURITY_LEVEL);
    X509_VERIFY_PARAM_set_depth(X509_STORE_CTX_get0_param(ctx), CHAIN_DEPTH);
    X509_STORE_CTX_set_app_data(ctx, &seen);
    X509_STORE_CTX_set_verify_cb(ctx, verify_cb);
    if (X509_verify_cert(ctx) != 1 && seen.first == X509_V_OK && seen.crl == X509_V_OK)
        seen.first = X509_STORE_CTX_get_error(ctx);
    else
        *until = chain_not_after(ctx, *until);
    if (seen.first == X509_V_OK && seen.crl == X509_V_OK)
        issuing_ca(ctx, r);
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    if (seen.first != X509_V_OK) {
        str_fmt(detail, sizeof(detail), "%s (%s)", verify_reason(seen.first),
                X509_verify_cert_error_string(seen.first));
        result_reject(r, verify_reason(seen.first), detail);
    } else if (seen.crl != X509_V_OK) {
        r->verdict = CERT_UNCHECKABLE;
        str_lcpy(r->reason, "certificate status unknown", sizeof(r->reason));
        str_fmt(r->detail, sizeof(r->detail), "certificate check impossible: %s for issuer %s "
                "(crl %s)", crl_verify_problem(seen.crl), seen.crl_issuer[0] ? seen.crl_issuer : "?",
                st.crl_path[0] ? st.crl_path : "not configured");
        log_err("CRL PROBLEM (%s): the certificates of issuer %s are refused with 454 until "
                "crl %s holds a current CRL of it", crl_verify_problem(seen.crl),
                seen.crl_issuer[0] ? seen.crl_issuer : "?", st.crl_path);
    } else {
        r->verdict = CERT_OK;
    }
}

/* The leaf's own checks that X509_verify_cert does not make. 0, or -1 (rejected). */
static int leaf_checks(X509 *leaf, struct cert_result *r)
{
    uint32_t flags = X509_get_extension_flags(leaf);

    if (!(flags & EXFLAG_XKUSAGE) || !(X509_get_extended_key_usage(leaf) & XKU_SSL_CLIENT)) {
        result_reject(r, "wrong purpose", !(flags & EXFLAG_XKUSAGE)
                                              ? "has no extendedKeyUsage extension (clientAuth "
                                                "is required)"
                                              : "extendedKeyUsage lacks clientAuth");
        return -1;
    }
    if (dn_canon_name(X509_get_subject_name(leaf), r->subject_canon, sizeof(r->subject_canon)) ||
        dn_canon_name(X509_get_issuer_name(leaf), r->issuer_canon, sizeof(r->issuer_canon))) {
        result_reject(r, "invalid name", "name cannot be read");
        return -1;
    }
    return 0;
}

void cert_verify(const unsigned char *const *der, const size_t *len, int n,
                 struct cert_result *out)
{
    STACK_OF(X509) *chain = NULL;
    X509 *leaf;
    unsigned char md[EVP_MAX_MD_SIZE], key[32];
    unsigned int mdlen = 0;
    struct vcache_entry *slot = NULL;
    time_t now = time(NULL), until = now;

    memset(out, 0, sizeof(*out));
    if (n <= 0) {
        out->verdict = CERT_NONE;
        str_lcpy(out->reason, "none", sizeof(out->reason));
        str_lcpy(out->detail, "no client certificate", sizeof(out->detail));
        return;
    }
    if (vcache_key(der, len, n, key) == 0 && (slot = vcache_slot(key)) != NULL &&
        slot->used && slot->until > now && memcmp(slot->key, key, sizeof(key)) == 0) {
        *out = slot->r;
        return;
    }
    leaf = decode_one(der[0], len[0]);
    if (leaf == NULL) {
        result_reject(out, "invalid", "cannot be decoded");
        return;
    }
    if (EVP_Digest(der[0], len[0], md, &mdlen, EVP_sha256(), NULL) == 1)
        hex_encode(md, mdlen, out->sha256);
    dn_text(X509_get_subject_name(leaf), out->subject, sizeof(out->subject));
    dn_text(X509_get_issuer_name(leaf), out->issuer, sizeof(out->issuer));
    chain = sk_X509_new_null();
    for (int i = 1; chain != NULL && i < n; i++) {
        X509 *x = decode_one(der[i], len[i]);
        if (x == NULL || !sk_X509_push(chain, x)) {
            X509_free(x);
            result_reject(out, "invalid", "chain cannot be decoded");
            goto done;
        }
    }
    if (chain == NULL) {
        result_reject(out, "invalid", "chain cannot be decoded");
        goto done;
    }
    for (int i = -1; i < sk_X509_num(chain); i++)
        if (!cert_names_clean(i < 0 ? leaf : sk_X509_value(chain, i))) {
            result_reject(out, "control character in a name",
                          "has a NUL or control character in a name attribute");
            goto done;
        }
    /* The chain first: an untrusted certificate is "untrusted issuer", whatever
     * else is wrong with it. */
    chain_verify(leaf, chain, out, &until);
    if (out->verdict == CERT_OK && leaf_checks(leaf, out) == 0) {
        leaf_facts(leaf, out);
        /* A CRL past its nextUpdate makes every verification "status unknown". */
        if (st.info.next_update != 0 && st.info.next_update < (long long)until)
            until = (time_t)st.info.next_update;
        if (slot != NULL && until > now) {
            slot->used = 1;
            memcpy(slot->key, key, sizeof(key));
            slot->until = until;
            slot->r = *out;
        }
    }
done:
    sk_X509_pop_free(chain, X509_free);
    X509_free(leaf);
}
