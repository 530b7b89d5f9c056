/*
 * submit-ca revoke SERIAL | --user USER: certificates marked revoked in the database
 * (new sessions refuse them at once), recorded in the admin log, then the CRL
 * rewritten. ca_revoke_serial (ca_revoke.h) is shared with issue and renew.
 */
#include "ca_cmd.h"

#include "ca_crl.h"
#include "ca_log.h"
#include "ca_msg.h"
#include "ca_revoke.h"
#include "cli_db.h"
#include "db.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A bound on the certificates of one user, far above any real one. */
#define USER_CERTS_MAX 1000000

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

        if (cap > USER_CERTS_MAX || (v = realloc(sl->v, cap * sizeof(*sl->v))) == NULL) {
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
            ca_err("%s: no certificate with serial %s", config_database_shown(cfg), o->serial);
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
        return ca_revoke_serial(db, config_database_shown(cfg), c.serial, c.user, o->reason);
    }

    /* By name: exactly this user's certificates (names compare case-sensitively). */
    r = db_user_get(db, o->user, NULL);
    if (r == DB_NOTFOUND) {
        ca_err("%s: no user %s", config_database_shown(cfg), o->user);
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
        ca_err("%s: user %s has no certificates", config_database_shown(cfg), o->user);
        goto out;
    }
    if (sl.n == 0)
        printf("already revoked: every certificate of user %s\n", o->user);
    for (size_t i = 0; i < sl.n; i++)
        if (ca_revoke_serial(db, config_database_shown(cfg), sl.v[i], o->user, o->reason) != 0)
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
    if ((db = cli_db_open(&ca_prog, cfg, NULL)) == NULL || revoke_in_db(cfg, db, o) != 0)
        goto out;
    if (ca_crl_publish(cfg, &ca, db, CA_DAYS_CRL) != 0) {
        ca_err("revoked in %s, but the CRL was not rewritten; run \"submit-ca crl\"",
               config_database_shown(cfg));
        goto out;
    }
    rc = 0;
out:
    if (db != NULL)
        db_close(db);
    ca_authority_free(&ca);
    return rc;
}
