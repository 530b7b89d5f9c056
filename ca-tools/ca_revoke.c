/* submit-ca revoke, crl and list: the certificate records and the CRL built from them. */
#include "ca_cmd.h"

#include "ca_log.h"
#include "ca_msg.h"
#include "db.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY_SECONDS 86400LL
/* A bound on the CRL, far above any deployment this CA is meant for. */
#define CRL_MAX_ENTRIES 1000000

static void db_close_if(struct db *db)
{
    if (db != NULL)
        db_close(db);
}

/* ---- CRL --------------------------------------------------------------------- */

int ca_crl_write(const struct config *cfg, const struct ca_authority *ca, X509_CRL *crl)
{
    struct ca_stage st;
    BIO *pem = ca_pem_crl(crl);
    int rc = -1;

    if (pem == NULL)
        return -1;
    /* submitd reads the CRL again as its unprivileged user when it changes. */
    (void)ca_dir_publish(ca->dir);
    ca_stage_init(&st);
    if (ca_stage_write(&st, ca->crl_path, 0644, pem) != 0 || ca_stage_commit(&st, 1) != 0)
        goto out;
    printf("crl: %s\n", ca->crl_path);
    /* The daemon reads the configured crl; publish there too when it is another file. */
    if (cfg->crl[0] != '\0' && strcmp(cfg->crl, ca->crl_path) != 0) {
        ca_stage_discard(&st);
        if (ca_stage_write(&st, cfg->crl, 0644, pem) != 0 || ca_stage_commit(&st, 1) != 0)
            goto out;
        printf("crl: %s\n", cfg->crl);
    }
    rc = 0;
out:
    ca_stage_discard(&st);
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
    if ((db = ca_open_db(cfg)) != NULL &&
        ca_crl_publish(cfg, &ca, db, o->days > 0 ? o->days : CA_DAYS_CRL) == 0)
        rc = 0;
    db_close_if(db);
    ca_authority_free(&ca);
    return rc;
}

/* ---- revoke -------------------------------------------------------------------- */

struct serial_list {
    char (*v)[CA_SERIAL_HEX_MAX + 1];
    size_t n, cap;
    size_t total;                /* certificates of the user, valid or not */
    int failed;
};

static int collect_valid_cb(void *arg, const struct db_cert *c)
{
    struct serial_list *sl = arg;

    sl->total++;
    if (c->status != CERT_VALID)
        return 0;
    if (sl->n == sl->cap) {
        size_t cap = sl->cap ? sl->cap * 2 : 8;
        void *v;

        if (cap > CRL_MAX_ENTRIES || (v = realloc(sl->v, cap * sizeof(*sl->v))) == NULL) {
            ca_err("user %s: too many certificates", c->user);
            sl->failed = 1;
            return 1;
        }
        sl->v = v;
        sl->cap = cap;
    }
    str_lcpy(sl->v[sl->n++], c->serial, sizeof(sl->v[0]));
    return 0;
}

int ca_revoke_serial(struct db *db, const char *dbpath, const char *serial, const char *user,
                     int reason_code)
{
    const char *reason = ca_reason_name(reason_code);
    int r;

    if (reason == NULL)
        reason = "unspecified";
    if (db_begin(db) != DB_OK) {
        ca_err("cannot start a transaction: %s", db_errmsg(db));
        return -1;
    }
    r = db_cert_revoke(db, serial, reason);
    if (r == DB_NOTFOUND) {
        db_rollback(db);
        ca_err("%s: no certificate with serial %s", dbpath, serial);
        return -1;
    }
    if (r != DB_OK) {
        ca_err("cannot revoke certificate %s of user %s: %s", serial, user, db_errmsg(db));
        db_rollback(db);
        return -1;
    }
    if (ca_log_record(db, "revoke", serial, user[0] ? user : NULL, "reason=%s", reason) != 0) {
        db_rollback(db);
        return -1;
    }
    if (db_commit(db) != DB_OK) {
        ca_err("cannot revoke certificate %s of user %s: %s", serial, user, db_errmsg(db));
        db_rollback(db);
        return -1;
    }
    printf("revoked: %s user=%s reason=%s\n", serial, user[0] ? user : "-", reason);
    return 0;
}

/* Revokes what was asked in the database: from then on new sessions refuse it. */
static int revoke_in_db(const struct config *cfg, struct db *db, const struct ca_opts *o)
{
    struct db_cert c;
    struct serial_list sl;
    int r, rc = -1;

    if (o->serial[0] != '\0') {
        r = db_cert_by_serial(db, o->serial, &c);
        if (r == DB_NOTFOUND) {
            ca_err("%s: no certificate with serial %s", cfg->database, o->serial);
            return -1;
        }
        if (r != DB_OK) {
            ca_err("cannot look up serial %s: %s", o->serial, db_errmsg(db));
            return -1;
        }
        if (c.status == CERT_REVOKED) {
            char revoked_at[DB_TIME_TEXT_LEN];

            printf("already revoked: %s user=%s revoked_at=%s reason=%s\n", c.serial,
                   c.user[0] ? c.user : "-",
                   db_time_text(c.revoked_at, revoked_at, sizeof(revoked_at)),
                   c.revoke_reason[0] ? c.revoke_reason : "unspecified");
            return 0;
        }
        return ca_revoke_serial(db, cfg->database, c.serial, c.user, o->reason);
    }

    /* By name: exactly this user's certificates (names compare case-sensitively). */
    r = db_user_get(db, o->user, NULL);
    if (r == DB_NOTFOUND) {
        ca_err("%s: no user %s", cfg->database, o->user);
        return -1;
    }
    if (r != DB_OK) {
        ca_err("cannot look up user %s: %s", o->user, db_errmsg(db));
        return -1;
    }
    memset(&sl, 0, sizeof(sl));
    if (db_cert_list(db, o->user, DB_TIME_NONE, collect_valid_cb, &sl) == DB_ERROR) {
        ca_err("cannot list the certificates of user %s: %s", o->user, db_errmsg(db));
        goto out;
    }
    if (sl.failed)
        goto out;
    if (sl.total == 0) {
        ca_err("%s: user %s has no certificates", cfg->database, o->user);
        goto out;
    }
    if (sl.n == 0)
        printf("already revoked: every certificate of user %s\n", o->user);
    for (size_t i = 0; i < sl.n; i++)
        if (ca_revoke_serial(db, cfg->database, sl.v[i], o->user, o->reason) != 0)
            goto out;
    rc = 0;
out:
    free(sl.v);
    return rc;
}

int ca_cmd_revoke(const struct config *cfg, const struct ca_opts *o)
{
    struct ca_authority ca;
    struct db *db = NULL;
    int rc = 1;

    /* Load the CA first: a revocation should not be left without its CRL for a typo. */
    if (ca_authority_load(&ca, cfg->ca_dir, o->passphrase_file) != 0)
        return 1;
    if ((db = ca_open_db(cfg)) == NULL || revoke_in_db(cfg, db, o) != 0)
        goto out;
    if (ca_crl_publish(cfg, &ca, db, CA_DAYS_CRL) != 0) {
        ca_err("revoked in %s, but the CRL was not rewritten; run \"submit-ca crl\"",
               cfg->database);
        goto out;
    }
    rc = 0;
out:
    db_close_if(db);
    ca_authority_free(&ca);
    return rc;
}

/* ---- list ---------------------------------------------------------------------------- */

struct list_state {
    int json;
    int only_valid_unexpired;
    int64_t now;
    size_t count;
    int failed;
};

static int print_json_field(const char *key, const char *value, int last)
{
    char buf[4096];

    if (value[0] == '\0') {
        printf("\"%s\":null%s", key, last ? "" : ",");
        return 0;
    }
    if (ca_json_quote(value, buf, sizeof(buf)) != 0)
        return -1;
    printf("\"%s\":%s%s", key, buf, last ? "" : ",");
    return 0;
}

static int list_cb(void *arg, const struct db_cert *c)
{
    struct list_state *ls = arg;
    char not_before[DB_TIME_TEXT_LEN], not_after[DB_TIME_TEXT_LEN], revoked_at[DB_TIME_TEXT_LEN];

    if (ls->only_valid_unexpired && !db_cert_in_force(c, ls->now))
        return 0;
    db_time_text(c->not_before, not_before, sizeof(not_before));
    db_time_text(c->not_after, not_after, sizeof(not_after));
    db_time_text(c->revoked_at, revoked_at, sizeof(revoked_at));
    if (ls->json) {
        printf("%s{", ls->count ? ",\n  " : "  ");
        if (print_json_field("serial", c->serial, 0) != 0 ||
            print_json_field("user", c->user, 0) != 0 ||
            print_json_field("sha256", c->sha256, 0) != 0 ||
            print_json_field("subject", c->subject, 0) != 0 ||
            print_json_field("issuer", c->issuer, 0) != 0 ||
            print_json_field("not_before", not_before, 0) != 0 ||
            print_json_field("not_after", not_after, 0) != 0 ||
            print_json_field("status", db_cert_status_name(c->status), 0) != 0 ||
            print_json_field("revoked_at", revoked_at, 0) != 0 ||
            print_json_field("revoke_reason", c->revoke_reason, 1) != 0) {
            ca_err("certificate %s: a field is too long to print", c->serial);
            ls->failed = 1;
            return 1;
        }
        printf("}");
    } else {
        printf("%-32s  %-16s  %-24s  %-20s  %-7s  %s\n", c->serial, c->user[0] ? c->user : "-",
               c->subject, not_after, db_cert_status_name(c->status),
               c->revoke_reason[0] ? c->revoke_reason : "-");
    }
    ls->count++;
    return 0;
}

int ca_cmd_list(const struct config *cfg, const struct ca_opts *o)
{
    struct list_state ls;
    struct db *db;
    int64_t before = DB_TIME_NONE;
    long long now = (long long)time(NULL);
    int r;

    memset(&ls, 0, sizeof(ls));
    ls.json = o->json;
    ls.now = (int64_t)now;
    if (o->expiring >= 0) {
        /* Certificates that still work today and stop working within DAYS. */
        ls.only_valid_unexpired = 1;
        before = now + o->expiring * DAY_SECONDS;
    }
    if ((db = ca_open_db(cfg)) == NULL)
        return 1;
    if (ls.json)
        printf("[\n");
    else
        printf("%-32s  %-16s  %-24s  %-20s  %-7s  %s\n", "SERIAL", "USER", "SUBJECT",
               "NOT_AFTER", "STATUS", "REVOKE_REASON");
    r = db_cert_list(db, o->user, before, list_cb, &ls);
    if (ls.json)
        printf("%s]\n", ls.count ? "\n" : "");
    if (r == DB_ERROR) {
        ca_err("cannot list certificates: %s", db_errmsg(db));
        db_close(db);
        return 1;
    }
    db_close(db);
    return ls.failed ? 1 : 0;
}

/* ---- log ------------------------------------------------------------------------------ */

struct log_state {
    int json;
    size_t count;
    int failed;
};

static int log_cb(void *arg, const struct db_ca_log_row *r)
{
    struct log_state *ls = arg;
    char uid[32], ts[DB_TIME_TEXT_LEN];

    db_stamp_text(&r->ts, ts, sizeof(ts));
    if (ls->json) {
        str_fmt(uid, sizeof(uid), "%lld", r->uid);
        printf("%s{\"id\":%lld,", ls->count ? ",\n  " : "  ", r->id);
        if (print_json_field("ts", ts, 0) != 0 || printf("\"uid\":%s,", uid) < 0 ||
            print_json_field("unix_user", r->unix_user, 0) != 0 ||
            print_json_field("sudo_user", r->sudo_user, 0) != 0 ||
            print_json_field("command", r->command, 0) != 0 ||
            print_json_field("serial", r->serial, 0) != 0 ||
            print_json_field("user", r->user, 0) != 0 ||
            print_json_field("detail", r->detail, 1) != 0) {
            ca_err("ca_log row %lld: a field is too long to print", r->id);
            ls->failed = 1;
            return 1;
        }
        printf("}");
    } else {
        char who[160];

        if (r->sudo_user[0] != '\0')
            str_fmt(who, sizeof(who), "%s(sudo:%s)", r->unix_user, r->sudo_user);
        else
            str_lcpy(who, r->unix_user, sizeof(who));
        printf("%-24s  %-20s  %-11s  %-32s  %-16s  %s\n", ts, who, r->command,
               r->serial[0] ? r->serial : "-", r->user[0] ? r->user : "-", r->detail);
    }
    ls->count++;
    return 0;
}

int ca_cmd_log(const struct config *cfg, const struct ca_opts *o)
{
    struct log_state ls;
    struct db *db;
    int r;

    memset(&ls, 0, sizeof(ls));
    ls.json = o->json;
    if ((db = ca_open_db(cfg)) == NULL)
        return 1;
    if (ls.json)
        printf("[\n");
    else
        printf("%-24s  %-20s  %-11s  %-32s  %-16s  %s\n", "TIME", "RUN_BY", "COMMAND", "SERIAL",
               "USER", "DETAIL");
    r = db_ca_log_list(db, o->user, o->serial[0] ? o->serial : NULL, log_cb, &ls);
    if (ls.json)
        printf("%s]\n", ls.count ? "\n" : "");
    if (r == DB_ERROR)
        ca_err("cannot read ca_log: %s", db_errmsg(db));
    db_close(db);
    return r == DB_ERROR || ls.failed ? 1 : 0;
}
