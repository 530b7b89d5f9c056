/*
 * Certificates of enterprise CAs (db.h, migration 6): the rule maps of the issuing
 * CAs, the blocked certificates and the devices each user was seen with, in SQLite.
 */
#include "db_sqlite.h"
#include "util.h"

#include <string.h>

#define RULE_COLUMNS                                                                    \
    "issuer, issuer_text, field, coalesce(strip_domain, ''),"                           \
    " coalesce(require_domain, ''), created_at"
#define SQL_RULE_GET "SELECT " RULE_COLUMNS " FROM map_rules WHERE issuer = ?1"

#define BLOCK_COLUMNS                                                                   \
    "coalesce(sha256, ''), coalesce(issuer, ''), coalesce(issuer_text, issuer, ''),"    \
    " coalesce(serial, ''), coalesce(reason, ''), blocked_at, blocked_by"
/* Empty arguments are bound as NULL, which never equals anything. */
#define SQL_BLOCK_FIND                                                                  \
    "SELECT " BLOCK_COLUMNS " FROM cert_blocks"                                         \
    " WHERE sha256 = ?1 OR (issuer = ?2 AND serial = ?3) ORDER BY id LIMIT 1"

#define DEVICE_COLUMNS "sha256, user, issuer, serial, not_after, first_seen, last_seen"
#define SQL_DEVICE_CURRENT                                                              \
    "SELECT 1 FROM devices WHERE sha256 = ?1 AND user = ?2 AND last_seen > ?3"
/*
 * A device already known is written again only when its user changed or it was last
 * written at or before ?7 (an hour before now): most sessions cost no write at all.
 */
#define SQL_DEVICE_SEEN                                                                 \
    "INSERT INTO devices (sha256, user, issuer, serial, not_after, first_seen, last_seen)" \
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"                                              \
    " ON CONFLICT (sha256) DO UPDATE SET user = excluded.user,"                         \
    " issuer = excluded.issuer, serial = excluded.serial,"                              \
    " not_after = excluded.not_after, last_seen = excluded.last_seen"                   \
    " WHERE devices.user <> excluded.user OR devices.last_seen <= ?7"

/* ---- rule maps ---------------------------------------------------------------- */

/* ctx is the struct db_map_rule to fill (a row callback of db_one()). */
static void rule_from_row(sqlite3_stmt *st, void *ctx)
{
    struct db_map_rule *r = ctx;
    char field[16];

    memset(r, 0, sizeof(*r));
    column_text(st, 0, r->issuer, sizeof(r->issuer));
    column_text(st, 1, r->issuer_text, sizeof(r->issuer_text));
    column_text(st, 2, field, sizeof(field));
    /* The table's CHECK allows only the four words; anything else reads as cn,
     * whose refusals are the strictest (no address, no sender lookup). */
    if (db_rule_field_parse(field, &r->field) != DB_OK)
        r->field = DB_RULE_CN;
    column_text(st, 3, r->strip_domain, sizeof(r->strip_domain));
    column_text(st, 4, r->require_domain, sizeof(r->require_domain));
    r->created_at = column_time(st, 5);
}

int db_map_rule_add(struct db *db, const struct db_map_rule *r)
{
    sqlite3_stmt *st = db_prepare(db,
        "INSERT INTO map_rules (issuer, issuer_text, field, strip_domain, require_domain)"
        " VALUES (?1, ?2, ?3, ?4, ?5)");

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, r->issuer) != SQLITE_OK ||
        bind_text(st, 2, r->issuer_text[0] ? r->issuer_text : r->issuer) != SQLITE_OK ||
        bind_text(st, 3, db_rule_field_name(r->field)) != SQLITE_OK ||
        bind_text_or_null(st, 4, r->strip_domain) != SQLITE_OK ||
        bind_text_or_null(st, 5, r->require_domain) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st, 0));
}

int db_map_rule_del(struct db *db, const char *issuer)
{
    sqlite3_stmt *st = db_prepare(db, "DELETE FROM map_rules WHERE issuer = ?1");

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, issuer) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    if (db_run(db, st, 0) != SQLITE_DONE)
        return DB_ERROR;
    return sqlite3_changes(db->h) > 0 ? DB_OK : DB_NOTFOUND;
}

int db_map_rule_get(struct db *db, const char *issuer, struct db_map_rule *out)
{
    return db_one_key(db, db_stmt(db, ST_RULE_GET, SQL_RULE_GET), issuer, rule_from_row, out);
}

struct rule_iter {
    db_map_rule_cb cb;
    void *arg;
};

static int rule_row(sqlite3_stmt *st, void *ctx)
{
    struct rule_iter *it = ctx;
    struct db_map_rule r;

    rule_from_row(st, &r);
    return it->cb(it->arg, &r);
}

int db_map_rule_list(struct db *db, db_map_rule_cb cb, void *arg)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT " RULE_COLUMNS " FROM map_rules"
                                      " ORDER BY issuer_text, issuer");
    struct rule_iter it = { cb, arg };

    if (st == NULL)
        return DB_ERROR;
    return db_each(db, st, rule_row, &it);
}

/* ---- blocked certificates ------------------------------------------------------ */

/* ctx is the struct db_cert_block to fill (a row callback of db_one()). */
static void block_from_row(sqlite3_stmt *st, void *ctx)
{
    struct db_cert_block *b = ctx;

    memset(b, 0, sizeof(*b));
    column_text(st, 0, b->sha256, sizeof(b->sha256));
    column_text(st, 1, b->issuer, sizeof(b->issuer));
    column_text(st, 2, b->issuer_text, sizeof(b->issuer_text));
    column_text(st, 3, b->serial, sizeof(b->serial));
    column_text(st, 4, b->reason, sizeof(b->reason));
    b->blocked_at = column_time(st, 5);
    column_text(st, 6, b->blocked_by, sizeof(b->blocked_by));
}

static void upper_ascii(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

/* The stored forms: sha256 lower-case, serial upper-case without leading zeros (one
 * "0" for zero); "" stays "". */
static void block_keys(const char *sha256, const char *serial, char sha[65], char ser[80])
{
    str_lcpy(sha, sha256 != NULL ? sha256 : "", 65);
    str_lower(sha);
    serial = serial != NULL ? serial : "";
    while (serial[0] == '0' && serial[1] != '\0')
        serial++;
    str_lcpy(ser, serial, 80);
    upper_ascii(ser);
}

int db_cert_block_add(struct db *db, const struct db_cert_block *b)
{
    char sha[65], ser[80];
    sqlite3_stmt *st;

    block_keys(b->sha256, b->serial, sha, ser);
    if (sha[0] == '\0' && (b->issuer[0] == '\0' || ser[0] == '\0'))
        return DB_NOTFOUND;
    st = db_prepare(db, "INSERT INTO cert_blocks (sha256, issuer, issuer_text, serial, reason,"
                        " blocked_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (st == NULL)
        return DB_ERROR;
    if (bind_text_or_null(st, 1, sha) != SQLITE_OK ||
        bind_text_or_null(st, 2, b->issuer) != SQLITE_OK ||
        bind_text_or_null(st, 3, b->issuer_text) != SQLITE_OK ||
        bind_text_or_null(st, 4, ser) != SQLITE_OK ||
        bind_text_or_null(st, 5, b->reason) != SQLITE_OK ||
        bind_text(st, 6, b->blocked_by) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st, 0));
}

int db_cert_block_del(struct db *db, const char *sha256, const char *issuer, const char *serial)
{
    char sha[65], ser[80];
    sqlite3_stmt *st;
    int by_sha;

    block_keys(sha256, serial, sha, ser);
    by_sha = sha[0] != '\0';
    if (!by_sha && (issuer == NULL || issuer[0] == '\0' || ser[0] == '\0'))
        return DB_NOTFOUND;
    st = db_prepare(db, by_sha ? "DELETE FROM cert_blocks WHERE sha256 = ?1"
                               : "DELETE FROM cert_blocks WHERE issuer = ?1 AND serial = ?2");
    if (st == NULL)
        return DB_ERROR;
    if ((by_sha ? bind_text(st, 1, sha)
                : (bind_text(st, 1, issuer) != SQLITE_OK ? SQLITE_ERROR
                                                         : bind_text(st, 2, ser))) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    if (db_run(db, st, 0) != SQLITE_DONE)
        return DB_ERROR;
    return sqlite3_changes(db->h) > 0 ? DB_OK : DB_NOTFOUND;
}

int db_cert_block_find(struct db *db, const char *sha256, const char *issuer, const char *serial,
                       struct db_cert_block *out)
{
    char sha[65], ser[80];
    sqlite3_stmt *st = db_stmt(db, ST_BLOCK_FIND, SQL_BLOCK_FIND);

    if (st == NULL)
        return DB_ERROR;
    block_keys(sha256, serial, sha, ser);
    if (bind_text_or_null(st, 1, sha) != SQLITE_OK ||
        bind_text_or_null(st, 2, issuer) != SQLITE_OK ||
        bind_text_or_null(st, 3, ser) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_one(db, st, out != NULL ? block_from_row : NULL, out);
}

struct block_iter {
    db_cert_block_cb cb;
    void *arg;
};

static int block_row(sqlite3_stmt *st, void *ctx)
{
    struct block_iter *it = ctx;
    struct db_cert_block b;

    block_from_row(st, &b);
    return it->cb(it->arg, &b);
}

int db_cert_block_list(struct db *db, db_cert_block_cb cb, void *arg)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT " BLOCK_COLUMNS " FROM cert_blocks"
                                      " ORDER BY id DESC");
    struct block_iter it = { cb, arg };

    if (st == NULL)
        return DB_ERROR;
    return db_each(db, st, block_row, &it);
}

/* ---- devices ---------------------------------------------------------------------- */

/*
 * Whether the device's row is current: same user, written within the hour. A read,
 * so that the sessions of a known device take no write lock at all. 1, 0, or
 * DB_ERROR.
 */
static int device_current(struct db *db, const char *sha, const char *user, const char *before)
{
    sqlite3_stmt *st = db_stmt(db, ST_DEVICE_GET, SQL_DEVICE_CURRENT);
    int rc;

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, sha) != SQLITE_OK || bind_text(st, 2, user) != SQLITE_OK ||
        bind_text(st, 3, before) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    rc = db_one(db, st, NULL, NULL);
    return rc == DB_OK ? 1 : rc == DB_NOTFOUND ? 0 : DB_ERROR;
}

int db_device_seen(struct db *db, const struct db_device *d, int64_t now)
{
    char sha[65], ser[80], t_after[DB_ISO_LEN], t_now[DB_ISO_LEN], t_before[DB_ISO_LEN];
    sqlite3_stmt *st;
    int current;

    block_keys(d->sha256, d->serial, sha, ser);
    db_time_iso(db_device_rewrite_before(now), t_before);
    current = device_current(db, sha, d->user, t_before);
    if (current != 0)
        return current == 1 ? DB_OK : DB_ERROR;
    st = db_stmt(db, ST_DEVICE_SEEN, SQL_DEVICE_SEEN);
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, sha) != SQLITE_OK || bind_text(st, 2, d->user) != SQLITE_OK ||
        bind_text(st, 3, d->issuer) != SQLITE_OK || bind_text(st, 4, ser) != SQLITE_OK ||
        bind_time(st, 5, d->not_after, t_after) != SQLITE_OK ||
        bind_time(st, 6, now, t_now) != SQLITE_OK ||
        bind_time(st, 7, db_device_rewrite_before(now), t_before) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st, 1));
}

static void device_from_row(sqlite3_stmt *st, struct db_device *d)
{
    memset(d, 0, sizeof(*d));
    column_text(st, 0, d->sha256, sizeof(d->sha256));
    column_text(st, 1, d->user, sizeof(d->user));
    column_text(st, 2, d->issuer, sizeof(d->issuer));
    column_text(st, 3, d->serial, sizeof(d->serial));
    d->not_after = column_time(st, 4);
    d->first_seen = column_time(st, 5);
    d->last_seen = column_time(st, 6);
}

struct device_iter {
    db_device_cb cb;
    void *arg;
};

static int device_row(sqlite3_stmt *st, void *ctx)
{
    struct device_iter *it = ctx;
    struct db_device d;

    device_from_row(st, &d);
    return it->cb(it->arg, &d);
}

int db_device_list(struct db *db, const char *user, db_device_cb cb, void *arg)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT " DEVICE_COLUMNS " FROM devices WHERE user = ?1"
                                      " ORDER BY last_seen DESC, sha256");
    struct device_iter it = { cb, arg };

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, device_row, &it);
}
