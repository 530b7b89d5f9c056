/*
 * submit-ca renew USER: a new certificate for a user who has one, for the same
 * address; with --revoke-old the previous ones are revoked and the CRL rewritten.
 */
#include "ca_cmd.h"

#include "ca_crl.h"
#include "ca_issue.h"
#include "ca_msg.h"
#include "ca_revoke.h"
#include "cli_db.h"
#include "db.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct renew_mailbox {
    char addr[CA_EMAIL_MAX + 1];
    int count;
};

/* The user's mailbox addresses ("@domain" entries name no mailbox). */
static int renew_mailbox_cb(void *arg, const char *address)
{
    struct renew_mailbox *m = arg;

    if (address[0] == '@')
        return 0;
    if (m->count++ == 0)
        str_lcpy(m->addr, address, sizeof(m->addr));
    return 0;
}

/* The previous certificates of the user that still work: printed, or collected. */
struct renew_cert {
    char serial[CA_SERIAL_HEX_MAX + 1];
    char not_after[32];
};

struct renew_previous {
    const char *new_serial;
    int64_t now;
    struct renew_cert *certs;
    size_t n, cap;
    size_t total;            /* certificates of the user, in any state */
    int failed;
};

static int renew_previous_cb(void *arg, const struct db_cert *c)
{
    struct renew_previous *p = arg;

    p->total++;
    if (p->new_serial == NULL || !db_cert_in_force(c, p->now) ||
        strcmp(c->serial, p->new_serial) == 0)
        return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        void *v;

        if (cap > 100000 || (v = realloc(p->certs, cap * sizeof(*p->certs))) == NULL) {
            ca_err("user %s: too many certificates", c->user);
            p->failed = 1;
            return 1;
        }
        p->certs = v;
        p->cap = cap;
    }
    str_lcpy(p->certs[p->n].serial, c->serial, sizeof(p->certs[0].serial));
    db_time_text(c->not_after, p->certs[p->n].not_after, sizeof(p->certs[0].not_after));
    p->n++;
    return 0;
}

/* The address for the new certificate: --email, or the user's only mailbox. */
static int renew_address(const struct config *cfg, struct db *db, const char *user,
                         struct renew_mailbox *mb)
{
    memset(mb, 0, sizeof(*mb));
    if (db_sender_list(db, user, renew_mailbox_cb, mb) != DB_OK) {
        ca_err("cannot list the addresses of user %s: %s", user, db_errmsg(db));
        return -1;
    }
    if (mb->count != 1) {
        ca_err("%s: user %s owns %d mailbox addresses; choose one with --email",
               config_database_shown(cfg), user, mb->count);
        return -1;
    }
    if (!ca_valid_email(mb->addr)) {
        ca_err("%s: address %s of user %s cannot go into a certificate; choose one with "
               "--email", config_database_shown(cfg), mb->addr, user);
        return -1;
    }
    return 0;
}

/*
 * A new key and certificate for a user who already has one, for the same address.
 * The previous certificates stay valid until they expire, so renewing never locks a
 * user out; with --revoke-old they are revoked (superseded) at once and the CRL is
 * rewritten.
 */
int ca_cmd_renew(const struct config *cfg, const struct ca_opts *o)
{
    struct renew_mailbox mb;
    struct renew_previous prev;
    struct ca_authority ca;
    struct ca_opts ro = *o;
    char serial[CA_SERIAL_HEX_MAX + 1];
    struct db *db;
    int r, rc = 1, loaded = 0;

    memset(&prev, 0, sizeof(prev));
    if ((db = cli_db_open(&ca_prog, cfg, NULL)) == NULL)
        return 1;
    r = db_user_get(db, o->name, NULL);
    if (r == DB_NOTFOUND) {
        ca_err("%s: no user %s; use \"submit-ca issue\"", config_database_shown(cfg), o->name);
        goto out;
    }
    if (r != DB_OK || db_cert_list(db, o->name, DB_TIME_NONE, renew_previous_cb, &prev) != DB_OK) {
        ca_err("cannot look up user %s: %s", o->name, db_errmsg(db));
        goto out;
    }
    if (prev.total == 0) {
        ca_err("%s: user %s has no certificate to renew; use \"submit-ca issue\"",
               config_database_shown(cfg), o->name);
        goto out;
    }
    if (ro.email == NULL) {
        if (renew_address(cfg, db, o->name, &mb) != 0)
            goto out;
        ro.email = mb.addr;
    } else if (ca_issue_check(db, o, "renew") != 0) {
        goto out;
    }
    if (ca_authority_load(&ca, cfg->ca_dir, o->passphrase_file) != 0)
        goto out;
    loaded = 1;
    if (ca_issue_with_db(cfg, &ro, db, &ca, "renew", serial, sizeof(serial)) != 0)
        goto out;

    memset(&prev, 0, sizeof(prev));
    prev.new_serial = serial;
    prev.now = (int64_t)time(NULL);
    if (db_cert_list(db, o->name, DB_TIME_NONE, renew_previous_cb, &prev) != DB_OK || prev.failed) {
        ca_err("cannot list the previous certificates of user %s: %s", o->name,
               db_errmsg(db));
        goto out;
    }
    for (size_t i = 0; i < prev.n; i++) {
        if (!o->revoke_old) {
            printf("previous: %s not_after=%s\n", prev.certs[i].serial, prev.certs[i].not_after);
            continue;
        }
        if (ca_revoke_serial(db, config_database_shown(cfg), prev.certs[i].serial, o->name,
                             CA_REASON_SUPERSEDED) != 0)
            goto out;
    }
    if (o->revoke_old && prev.n > 0 && ca_crl_publish(cfg, &ca, db, CA_DAYS_CRL) != 0) {
        ca_err("revoked in %s, but the CRL was not rewritten; run \"submit-ca crl\"",
               config_database_shown(cfg));
        goto out;
    }
    rc = 0;
out:
    free(prev.certs);
    if (loaded)
        ca_authority_free(&ca);
    db_close(db);
    return rc;
}
