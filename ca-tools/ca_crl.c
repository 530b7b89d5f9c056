/*
 * submit-ca crl, and the CRL for every command that changes it (ca_crl.h): rebuilt
 * from the revoked certificates in the database, written to ca_dir and to crl.
 */
#include "ca_cmd.h"

#include "ca_crl.h"
#include "ca_log.h"
#include "ca_msg.h"
#include "cli_db.h"
#include "db.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#define DAY_SECONDS 86400LL
/* A bound on the CRL, far above any deployment this CA is meant for. */
#define CRL_MAX_ENTRIES 1000000

/*
 * The configured crl may be a bundle: the CRLs of other CAs in client_ca (a partner,
 * an enterprise CA) sit next to ours. Only our own CRL (our CA's name, and signed by
 * our key) is replaced; the others are kept as they are, in their order, after ours.
 * A bundle that cannot be read whole is left untouched: writing ours alone would drop
 * the other CAs' CRLs, and every certificate of those CAs would be refused.
 * Returns the new content, or NULL after a message.
 */
static BIO *crl_bundle(const char *path, const struct ca_authority *ca, BIO *own,
                       int *kept)
{
    BIO *in = NULL, *out = BIO_new(BIO_s_mem());
    X509_CRL *c;
    char *data;
    long n = BIO_get_mem_data(own, &data);
    unsigned long e;

    *kept = 0;
    if (out == NULL || n < 0 || BIO_write(out, data, (int)n) != (int)n) {
        ca_err_ssl("crl %s: out of memory", path);
        goto fail;
    }
    if (access(path, F_OK) != 0 && errno == ENOENT)
        return out;
    if ((in = BIO_new_file(path, "r")) == NULL) {
        ca_err_ssl("crl %s: cannot be read, so it was not changed", path);
        goto fail;
    }
    ERR_clear_error();
    while ((c = PEM_read_bio_X509_CRL(in, NULL, NULL, NULL)) != NULL) {
        int ours = X509_NAME_cmp(X509_CRL_get_issuer(c), X509_get_subject_name(ca->cert)) == 0
                   && X509_CRL_verify(c, X509_get0_pubkey(ca->cert)) == 1;

        if (!ours && PEM_write_bio_X509_CRL(out, c) != 1) {
            X509_CRL_free(c);
            ca_err_ssl("crl %s: out of memory", path);
            goto fail;
        }
        *kept += !ours;
        X509_CRL_free(c);
    }
    /* The end of the file shows as "no start line"; anything else is a broken bundle. */
    e = ERR_peek_last_error();
    if (e != 0 && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)) {
        ca_err_ssl("crl %s: holds something that is not a PEM CRL, so it was not changed "
                   "(the CRLs of other CAs in it would be lost); fix the file, then run "
                   "\"submit-ca crl\"", path);
        goto fail;
    }
    ERR_clear_error();
    BIO_free(in);
    return out;
fail:
    BIO_free(in);
    BIO_free(out);
    return NULL;
}

int ca_crl_write(const struct config *cfg, const struct ca_authority *ca, X509_CRL *crl)
{
    struct ca_stage st;
    BIO *pem = ca_pem_crl(crl), *bundle = NULL;
    int same = cfg->crl[0] != '\0' && strcmp(cfg->crl, ca->crl_path) == 0;
    int rc = -1, kept = 0;

    if (pem == NULL)
        return -1;
    if (cfg->crl[0] != '\0' && (bundle = crl_bundle(cfg->crl, ca, pem, &kept)) == NULL)
        goto out;
    /* submitd reads the CRL again as its unprivileged user when it changes. */
    (void)ca_dir_publish(ca->dir);
    ca_stage_init(&st);
    if (ca_stage_write(&st, ca->crl_path, 0644, same ? bundle : pem) != 0 ||
        ca_stage_commit(&st, 1) != 0)
        goto out_stage;
    printf("crl: %s\n", ca->crl_path);
    /* The daemon reads the configured crl; publish there too when it is another file. */
    if (cfg->crl[0] != '\0' && !same) {
        ca_stage_discard(&st);
        if (ca_stage_write(&st, cfg->crl, 0644, bundle) != 0 || ca_stage_commit(&st, 1) != 0)
            goto out_stage;
        printf("crl: %s\n", cfg->crl);
    }
    if (kept > 0)
        printf("crl_kept: %d CRL%s of other CAs in %s\n", kept, kept == 1 ? "" : "s", cfg->crl);
    rc = 0;
out_stage:
    ca_stage_discard(&st);
out:
    BIO_free(bundle);
    BIO_free(pem);
    return rc;
}

struct crl_collect {
    const char *issuer;          /* only certificates of this CA go into its CRL */
    struct ca_crl_entry *v;
    size_t n, cap;
    int failed;
};

static int crl_collect_cb(void *arg, const struct db_cert *c)
{
    struct crl_collect *cc = arg;
    struct ca_crl_entry *e;

    if (c->status != CERT_REVOKED || strcmp(c->issuer, cc->issuer) != 0)
        return 0;
    if (cc->n == cc->cap) {
        size_t cap = cc->cap ? cc->cap * 2 : 64;
        struct ca_crl_entry *v;

        if (cap > CRL_MAX_ENTRIES || (v = realloc(cc->v, cap * sizeof(*v))) == NULL) {
            ca_err("too many revoked certificates for one CRL (at most %d)", CRL_MAX_ENTRIES);
            cc->failed = 1;
            return 1;
        }
        cc->v = v;
        cc->cap = cap;
    }
    e = &cc->v[cc->n];
    if (ca_serial_normalize(c->serial, e->serial, sizeof(e->serial)) != 0) {
        ca_err("database: certificate of user %s has a malformed serial \"%s\"", c->user,
               c->serial);
        cc->failed = 1;
        return 1;
    }
    e->revoked_at = (long long)c->revoked_at;
    if (c->revoked_at == DB_TIME_NONE) {
        /* Still listed: leaving a revoked certificate out would make it valid again. */
        ca_warn("certificate %s: revocation time unreadable; using the current time",
                e->serial);
        e->revoked_at = (long long)time(NULL);
    }
    e->reason = c->revoke_reason[0] != '\0' ? ca_reason_parse(c->revoke_reason)
                                            : CA_REASON_UNSPECIFIED;
    if (e->reason == CA_REASON_NONE || e->reason == CA_REASON_REMOVE_FROM_CRL) {
        ca_warn("certificate %s: revocation reason \"%s\" unknown; listed as unspecified",
                e->serial, c->revoke_reason);
        e->reason = CA_REASON_UNSPECIFIED;
    }
    cc->n++;
    return 0;
}

/*
 * Rebuilds the full CRL from every revoked certificate of this CA in the database.
 * The crlNumber grows with every CRL: one more than the last, and at least the
 * current time, so it still grows if the previous CRL file was lost.
 */
int ca_crl_publish(const struct config *cfg, const struct ca_authority *ca, struct db *db,
                   long long days)
{
    struct crl_collect cc;
    char issuer[512], next_iso[32];
    uint64_t prev = 0, number;
    long long now = (long long)time(NULL);
    X509_CRL *crl = NULL;
    int rc = -1;

    memset(&cc, 0, sizeof(cc));
    if (ca_name_rfc2253(X509_get_subject_name(ca->cert), issuer, sizeof(issuer)) != 0)
        return -1;
    cc.issuer = issuer;
    if (db_cert_list(db, NULL, DB_TIME_NONE, crl_collect_cb, &cc) == DB_ERROR) {
        ca_err("cannot list certificates: %s", db_errmsg(db));
        goto out;
    }
    if (cc.failed)
        goto out;
    number = (uint64_t)now;
    if (ca_crl_file_number(ca->crl_path, &prev) == 0 && prev >= number)
        number = prev + 1;
    crl = ca_crl_build(ca->cert, ca->key, cc.v, cc.n, number, now, now + days * DAY_SECONDS);
    if (crl == NULL || ca_crl_write(cfg, ca, crl) != 0)
        goto out;
    iso_time_utc(next_iso, sizeof(next_iso), now + days * DAY_SECONDS);
    printf("crl_number: %llu\n", (unsigned long long)number);
    printf("crl_entries: %zu\n", cc.n);
    printf("next_update: %s\n", next_iso);
    if (ca_log_record(db, "crl", NULL, NULL, "number=%llu entries=%zu next_update=%s",
                      (unsigned long long)number, cc.n, next_iso) != 0)
        goto out;
    rc = 0;
out:
    X509_CRL_free(crl);
    free(cc.v);
    return rc;
}

int ca_cmd_crl(const struct config *cfg, const struct ca_opts *o)
{
    struct ca_authority ca;
    struct db *db = NULL;
    int rc = 1;

    if (ca_authority_load(&ca, cfg->ca_dir, o->passphrase_file) != 0)
        return 1;
    if ((db = cli_db_open(&ca_prog, cfg, NULL)) != NULL &&
        ca_crl_publish(cfg, &ca, db, o->days > 0 ? o->days : CA_DAYS_CRL) == 0)
        rc = 0;
    if (db != NULL)
        db_close(db);
    ca_authority_free(&ca);
    return rc;
}
