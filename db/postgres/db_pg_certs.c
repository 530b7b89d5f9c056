/*
 * Certificates issued by submit-ca (db.h), in PostgreSQL. As in SQLite, the table
 * keeps the status as the words "valid" and "revoked" and the times as ISO-8601 UTC
 * text; this file converts them to and from enum cert_status and seconds.
 */
#include "db_pg.h"
#include "util.h"

#include <string.h>

#define CERT_COLUMNS                                                                    \
    "serial, coalesce(\"user\", ''), sha256, subject, issuer, not_before, not_after, "  \
    "status, revoked_at, coalesce(revoke_reason, '')"

/*
 * A status the table should never hold reads as revoked, and a time that does not
 * parse as DB_TIME_NONE, which is long past: a damaged row never makes a certificate
 * acceptable.
 */
static void cert_from_row(const PGresult *res, int i, struct db_cert *c)
{
    char status[16];

    memset(c, 0, sizeof(*c));
    pg_text(res, i, 0, c->serial, sizeof(c->serial));
    pg_text(res, i, 1, c->user, sizeof(c->user));
    pg_text(res, i, 2, c->sha256, sizeof(c->sha256));
    pg_text(res, i, 3, c->subject, sizeof(c->subject));
    pg_text(res, i, 4, c->issuer, sizeof(c->issuer));
    c->not_before = pg_time_col(res, i, 5);
    c->not_after = pg_time_col(res, i, 6);
    pg_text(res, i, 7, status, sizeof(status));
    if (db_cert_status_parse(status, &c->status) != DB_OK)
        c->status = CERT_REVOKED;
    c->revoked_at = pg_time_col(res, i, 8);
    pg_text(res, i, 9, c->revoke_reason, sizeof(c->revoke_reason));
}

static void str_upper(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

int db_cert_insert(struct db *db, const struct db_cert *c)
{
    char serial[sizeof(c->serial)], sha256[sizeof(c->sha256)];
    char nb[DB_ISO_LEN], na[DB_ISO_LEN], ra[DB_ISO_LEN];
    const char *p[10];

    if (c->status != CERT_VALID && c->status != CERT_REVOKED) {
        pg_set_err(db, "certificate status is neither valid nor revoked");
        return DB_ERROR;
    }
    if (c->not_before == DB_TIME_NONE || c->not_after == DB_TIME_NONE) {
        pg_set_err(db, "certificate without a validity period");
        return DB_ERROR;
    }
    str_lcpy(serial, c->serial, sizeof(serial));
    str_upper(serial);
    str_lcpy(sha256, c->sha256, sizeof(sha256));
    str_lower(sha256);
    p[0] = serial;
    p[1] = pg_text_or_null(c->user);
    p[2] = sha256;
    p[3] = c->subject;
    p[4] = c->issuer;
    p[5] = pg_time(c->not_before, nb);
    p[6] = pg_time(c->not_after, na);
    p[7] = db_cert_status_name(c->status);
    p[8] = pg_time(c->revoked_at, ra);
    p[9] = pg_text_or_null(c->revoke_reason);
    if ((p[5] != NULL && nb[0] == '\0') || (p[6] != NULL && na[0] == '\0') ||
        (p[8] != NULL && ra[0] == '\0')) {
        pg_set_err(db, "certificate time out of range");
        return DB_ERROR;
    }
    return pg_insert(db, "INSERT INTO certs (serial, \"user\", sha256, subject, issuer,"
                         " not_before, not_after, status, revoked_at, revoke_reason)"
                         " VALUES ($1, $2, $3, $4, $5, $6, $7, $8,"
                         " CASE WHEN $8 = 'revoked' THEN coalesce($9, submitd_now_s()) END,"
                         " $10)", 10, p);
}

static int db_cert_get(struct db *db, const char *sql, const char *key, struct db_cert *out)
{
    const char *p[1] = { key };
    PGresult *res = pg_exec(db, sql, 1, p);
    int rc;

    if (res == NULL)
        return DB_ERROR;
    rc = PQntuples(res) > 0 ? DB_OK : DB_NOTFOUND;
    if (rc == DB_OK)
        cert_from_row(res, 0, out);
    PQclear(res);
    return rc;
}

int db_cert_by_sha256(struct db *db, const char *sha256, struct db_cert *out)
{
    char key[sizeof(out->sha256)];

    if (sha256 == NULL || str_lcpy(key, sha256, sizeof(key)) >= sizeof(key))
        return DB_NOTFOUND;
    str_lower(key);
    return db_cert_get(db, "SELECT " CERT_COLUMNS " FROM certs WHERE sha256 = $1", key, out);
}

int db_cert_by_serial(struct db *db, const char *serial, struct db_cert *out)
{
    char key[sizeof(out->serial)];

    if (serial == NULL || str_lcpy(key, serial, sizeof(key)) >= sizeof(key))
        return DB_NOTFOUND;
    str_upper(key);
    return db_cert_get(db, "SELECT " CERT_COLUMNS " FROM certs WHERE serial = $1", key, out);
}

struct cert_iter {
    db_cert_cb cb;
    void *arg;
};

static int cert_row(const PGresult *res, int i, void *ctx)
{
    struct cert_iter *it = ctx;
    struct db_cert c;

    cert_from_row(res, i, &c);
    return it->cb(it->arg, &c);
}

int db_cert_list(struct db *db, const char *user, int64_t not_after_before, db_cert_cb cb,
                 void *arg)
{
    struct cert_iter it = { cb, arg };
    char before[DB_ISO_LEN];
    const char *p[2] = { user, pg_time(not_after_before, before) };

    return pg_each(db, "SELECT " CERT_COLUMNS " FROM certs"
                       " WHERE ($1::text IS NULL OR \"user\" = $1)"
                       " AND ($2::text IS NULL OR not_after < $2)"
                       " ORDER BY not_after, serial", 2, p, cert_row, &it);
}

int db_cert_revoke(struct db *db, const char *serial, const char *reason)
{
    char key[sizeof(((struct db_cert *)0)->serial)];
    const char *p[2];
    long long changed = 0;
    struct db_cert c;
    int own, rc;

    if (serial == NULL || str_lcpy(key, serial, sizeof(key)) >= sizeof(key))
        return DB_NOTFOUND;
    str_upper(key);
    p[0] = key;
    p[1] = reason != NULL && *reason != '\0' ? reason : "unspecified";
    if (pg_tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    rc = pg_run(db, "UPDATE certs SET status = 'revoked', revoked_at = submitd_now_s(),"
                    " revoke_reason = $2 WHERE serial = $1 AND status = 'valid'", 2, p, &changed);
    /* Nothing changed: either unknown, or revoked already (kept as it was). */
    if (rc == DB_OK && changed == 0)
        rc = db_cert_get(db, "SELECT " CERT_COLUMNS " FROM certs WHERE serial = $1", key, &c);
    return pg_tx_end(db, own, rc);
}
