/*
 * Certificates issued by submit-ca (db.h), in SQLite. The table keeps the status as
 * the words "valid" and "revoked" and the times as ISO-8601 UTC text (DESIGN §7);
 * this file converts them to and from enum cert_status and seconds.
 */
#include "db_sqlite.h"
#include "util.h"

#include <string.h>

#define DB_NOW_SECONDS "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')"

#define CERT_COLUMNS                                                                    \
    "serial, coalesce(user, ''), sha256, subject, issuer, not_before, not_after, "      \
    "status, revoked_at, coalesce(revoke_reason, '')"

#define SQL_CERT_INSERT                                                                 \
    "INSERT INTO certs (serial, user, sha256, subject, issuer, not_before, not_after,"  \
    " status, revoked_at, revoke_reason)"                                               \
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"                                          \
    " CASE WHEN ?8 = 'revoked' THEN coalesce(?9, " DB_NOW_SECONDS ") END, ?10)"
#define SQL_CERT_BY_SHA256 "SELECT " CERT_COLUMNS " FROM certs WHERE sha256 = ?1"
#define SQL_CERT_BY_SERIAL "SELECT " CERT_COLUMNS " FROM certs WHERE serial = ?1"
#define SQL_CERT_REVOKE                                                                 \
    "UPDATE certs SET status = 'revoked', revoked_at = " DB_NOW_SECONDS ","             \
    " revoke_reason = ?2 WHERE serial = ?1 AND status = 'valid'"

/*
 * A status the table should never hold (its CHECK allows the two words) reads as
 * revoked, and a time that does not parse as DB_TIME_NONE, which is long past: a
 * damaged row never makes a certificate acceptable. ctx is the struct db_cert to
 * fill, so that this is also a row callback of db_one().
 */
static void cert_from_row(sqlite3_stmt *st, void *ctx)
{
    struct db_cert *c = ctx;
    char status[16];

    memset(c, 0, sizeof(*c));
    column_text(st, 0, c->serial, sizeof(c->serial));
    column_text(st, 1, c->user, sizeof(c->user));
    column_text(st, 2, c->sha256, sizeof(c->sha256));
    column_text(st, 3, c->subject, sizeof(c->subject));
    column_text(st, 4, c->issuer, sizeof(c->issuer));
    c->not_before = column_time(st, 5);
    c->not_after = column_time(st, 6);
    column_text(st, 7, status, sizeof(status));
    if (db_cert_status_parse(status, &c->status) != DB_OK)
        c->status = CERT_REVOKED;
    c->revoked_at = column_time(st, 8);
    column_text(st, 9, c->revoke_reason, sizeof(c->revoke_reason));
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
    sqlite3_stmt *st;
    int ok;

    if (c->status != CERT_VALID && c->status != CERT_REVOKED) {
        db_set_err(db, "certificate status is neither valid nor revoked");
        return DB_ERROR;
    }
    if (c->not_before == DB_TIME_NONE || c->not_after == DB_TIME_NONE) {
        db_set_err(db, "certificate without a validity period");
        return DB_ERROR;
    }
    st = db_stmt(db, ST_CERT_INSERT, SQL_CERT_INSERT);
    if (st == NULL)
        return DB_ERROR;
    str_lcpy(serial, c->serial, sizeof(serial));
    str_upper(serial);
    str_lcpy(sha256, c->sha256, sizeof(sha256));
    str_lower(sha256);
    ok = bind_text(st, 1, serial) == SQLITE_OK && bind_text_or_null(st, 2, c->user) == SQLITE_OK &&
         bind_text(st, 3, sha256) == SQLITE_OK && bind_text(st, 4, c->subject) == SQLITE_OK &&
         bind_text(st, 5, c->issuer) == SQLITE_OK &&
         bind_time(st, 6, c->not_before, nb) == SQLITE_OK &&
         bind_time(st, 7, c->not_after, na) == SQLITE_OK &&
         bind_text(st, 8, db_cert_status_name(c->status)) == SQLITE_OK &&
         bind_time(st, 9, c->revoked_at, ra) == SQLITE_OK &&
         bind_text_or_null(st, 10, c->revoke_reason) == SQLITE_OK;
    if (!ok) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st, 1));
}

static int db_cert_get(struct db *db, enum db_stmt id, const char *sql, const char *key,
                       struct db_cert *out)
{
    return db_one_key(db, db_stmt(db, id, sql), key, cert_from_row, out);
}

int db_cert_by_sha256(struct db *db, const char *sha256, struct db_cert *out)
{
    char key[sizeof(out->sha256)];

    if (sha256 == NULL || str_lcpy(key, sha256, sizeof(key)) >= sizeof(key))
        return DB_NOTFOUND;
    str_lower(key);
    return db_cert_get(db, ST_CERT_BY_SHA256, SQL_CERT_BY_SHA256, key, out);
}

int db_cert_by_serial(struct db *db, const char *serial, struct db_cert *out)
{
    char key[sizeof(out->serial)];

    if (serial == NULL || str_lcpy(key, serial, sizeof(key)) >= sizeof(key))
        return DB_NOTFOUND;
    str_upper(key);
    return db_cert_get(db, ST_CERT_BY_SERIAL, SQL_CERT_BY_SERIAL, key, out);
}

struct cert_iter {
    db_cert_cb cb;
    void *arg;
};

static int cert_row(sqlite3_stmt *st, void *ctx)
{
    struct cert_iter *it = ctx;
    struct db_cert c;

    cert_from_row(st, &c);
    return it->cb(it->arg, &c);
}

int db_cert_list(struct db *db, const char *user, int64_t not_after_before, db_cert_cb cb,
                 void *arg)
{
    struct cert_iter it = { cb, arg };
    char before[DB_ISO_LEN];
    sqlite3_stmt *st = db_prepare(db, "SELECT " CERT_COLUMNS " FROM certs"
                                      " WHERE (?1 IS NULL OR user = ?1)"
                                      " AND (?2 IS NULL OR not_after < ?2)"
                                      " ORDER BY not_after, serial");

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK ||
        bind_time(st, 2, not_after_before, before) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, cert_row, &it);
}

int db_cert_revoke(struct db *db, const char *serial, const char *reason)
{
    char key[sizeof(((struct db_cert *)0)->serial)];
    sqlite3_stmt *st;
    struct db_cert c;
    int own, rc;

    if (serial == NULL || str_lcpy(key, serial, sizeof(key)) >= sizeof(key))
        return DB_NOTFOUND;
    str_upper(key);
    st = db_stmt(db, ST_CERT_REVOKE, SQL_CERT_REVOKE);
    if (st == NULL || tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    if (bind_text(st, 1, key) != SQLITE_OK ||
        bind_text(st, 2, reason != NULL && *reason != '\0' ? reason : "unspecified") != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return tx_end(db, own, DB_ERROR);
    }
    if (db_run(db, st, 1) != SQLITE_DONE)
        return tx_end(db, own, DB_ERROR);
    /* Nothing changed: either unknown, or revoked already (kept as it was). */
    rc = sqlite3_changes(db->h) > 0
             ? DB_OK
             : db_cert_get(db, ST_CERT_BY_SERIAL, SQL_CERT_BY_SERIAL, key, &c);
    return tx_end(db, own, rc);
}
