/*
 * The functions of db.h that are the same for every backend because they are made of
 * other functions of db.h: shorter forms of a fuller call, and the CA log, which is a
 * part of the admin log (DESIGN §7).
 */
#include "db.h"

#include <string.h>

void db_audit_filter_init(struct db_audit_filter *f)
{
    memset(f, 0, sizeof(*f));
    f->since = DB_TIME_NONE;
    f->until = DB_TIME_NONE;
}

int db_audit_query(struct db *db, const char *user, int64_t since, const char *decision,
                   db_audit_cb cb, void *arg)
{
    struct db_audit_filter f;

    db_audit_filter_init(&f);
    f.user = user;
    f.since = since;
    f.decision = decision;
    return db_audit_search(db, &f, cb, arg);
}

int db_map_add(struct db *db, const char *subject, const char *issuer, const char *user)
{
    return db_map_add_text(db, subject, issuer, user, NULL, NULL);
}

/* A CA operation is an admin log row of submit-ca, about a serial or else a user. */
int db_ca_log_insert(struct db *db, const struct db_ca_log *e)
{
    struct db_admin_log a = {
        .uid = e->uid,
        .unix_user = e->unix_user,
        .sudo_user = e->sudo_user,
        .program = "submit-ca",
        .command = e->command,
        .target = e->serial != NULL && *e->serial != '\0' ? e->serial : e->user,
        .details = e->detail,
        .user = e->user,
        .serial = e->serial,
    };

    return db_admin_log_insert(db, &a);
}
