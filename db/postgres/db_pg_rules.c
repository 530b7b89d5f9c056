/*
 * Certificates of enterprise CAs (db.h, migration 6): the rule maps of the issuing
 * CAs, the blocked certificates and the devices each user was seen with, in
 * PostgreSQL. The same stored forms as db/sqlite/db_sqlite_rules.c.
 */
#include "db_pg.h"
#include "util.h"

#include <string.h>

#define RULE_COLUMNS                                                                    \
    "issuer, issuer_text, field, coalesce(strip_domain, ''),"                           \
    " coalesce(require_domain, ''), created_at"
#define BLOCK_COLUMNS                                                                   \
    "coalesce(sha256, ''), coalesce(issuer, ''), coalesce(issuer_text, issuer, ''),"    \
    " coalesce(serial, ''), coalesce(reason, ''), blocked_at, blocked_by"
#define DEVICE_COLUMNS "sha256, \"user\", issuer, serial, not_after, first_seen, last_seen"

/* ---- rule maps ---------------------------------------------------------------- */

static void rule_from_row(const PGresult *res, int i, struct db_map_rule *r)
{
    char field[16];

    memset(r, 0, sizeof(*r));
    pg_text(res, i, 0, r->issuer, sizeof(r->issuer));
    pg_text(res, i, 1, r->issuer_text, sizeof(r->issuer_text));
    pg_text(res, i, 2, field, sizeof(field));
    /* Anything but the four words reads as cn, whose refusals are the strictest. */
    if (db_rule_field_parse(field, &r->field) != DB_OK)
        r->field = DB_RULE_CN;
    pg_text(res, i, 3, r->strip_domain, sizeof(r->strip_domain));
    pg_text(res, i, 4, r->require_domain, sizeof(r->require_domain));
    r->created_at = pg_time_col(res, i, 5);
}

int db_map_rule_add(struct db *db, const struct db_map_rule *r)
{
    const char *p[5] = { r->issuer, r->issuer_text[0] ? r->issuer_text : r->issuer,
                         db_rule_field_name(r->field), pg_text_or_null(r->strip_domain),
                         pg_text_or_null(r->require_domain) };

    return pg_insert(db, "INSERT INTO map_rules (issuer, issuer_text, field, strip_domain,"
                         " require_domain) VALUES ($1, $2, $3, $4, $5)", 5, p);
}

int db_map_rule_del(struct db *db, const char *issuer)
{
    const char *p[1] = { issuer };
    long long changed = 0;

    if (pg_run(db, "DELETE FROM map_rules WHERE issuer = $1", 1, p, &changed) != DB_OK)
        return DB_ERROR;
    return changed > 0 ? DB_OK : DB_NOTFOUND;
}

int db_map_rule_get(struct db *db, const char *issuer, struct db_map_rule *out)
{
    const char *p[1] = { issuer };
    PGresult *res = pg_exec(db, "SELECT " RULE_COLUMNS " FROM map_rules WHERE issuer = $1", 1, p);
    int rc;

    if (res == NULL)
        return DB_ERROR;
    rc = PQntuples(res) > 0 ? DB_OK : DB_NOTFOUND;
    if (rc == DB_OK)
        rule_from_row(res, 0, out);
    PQclear(res);
    return rc;
}

struct rule_iter {
    db_map_rule_cb cb;
    void *arg;
};

static int rule_row(const PGresult *res, int i, void *ctx)
{
    struct rule_iter *it = ctx;
    struct db_map_rule r;

    rule_from_row(res, i, &r);
    return it->cb(it->arg, &r);
}

int db_map_rule_list(struct db *db, db_map_rule_cb cb, void *arg)
{
    struct rule_iter it = { cb, arg };

    return pg_each(db, "SELECT " RULE_COLUMNS " FROM map_rules ORDER BY issuer_text, issuer", 0,
                   NULL, rule_row, &it);
}

/* ---- blocked certificates ------------------------------------------------------ */

static void block_from_row(const PGresult *res, int i, struct db_cert_block *b)
{
    memset(b, 0, sizeof(*b));
    pg_text(res, i, 0, b->sha256, sizeof(b->sha256));
    pg_text(res, i, 1, b->issuer, sizeof(b->issuer));
    pg_text(res, i, 2, b->issuer_text, sizeof(b->issuer_text));
    pg_text(res, i, 3, b->serial, sizeof(b->serial));
    pg_text(res, i, 4, b->reason, sizeof(b->reason));
    b->blocked_at = pg_time_col(res, i, 5);
    pg_text(res, i, 6, b->blocked_by, sizeof(b->blocked_by));
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
    const char *p[6];

    block_keys(b->sha256, b->serial, sha, ser);
    if (sha[0] == '\0' && (b->issuer[0] == '\0' || ser[0] == '\0'))
        return DB_NOTFOUND;
    p[0] = pg_text_or_null(sha);
    p[1] = pg_text_or_null(b->issuer);
    p[2] = pg_text_or_null(b->issuer_text);
    p[3] = pg_text_or_null(ser);
    p[4] = pg_text_or_null(b->reason);
    p[5] = b->blocked_by;
    return pg_insert(db, "INSERT INTO cert_blocks (sha256, issuer, issuer_text, serial, reason,"
                         " blocked_by) VALUES ($1, $2, $3, $4, $5, $6)", 6, p);
}

int db_cert_block_del(struct db *db, const char *sha256, const char *issuer, const char *serial)
{
    char sha[65], ser[80];
    const char *p[2];
    long long changed = 0;
    int rc;

    block_keys(sha256, serial, sha, ser);
    if (sha[0] != '\0') {
        p[0] = sha;
        rc = pg_run(db, "DELETE FROM cert_blocks WHERE sha256 = $1", 1, p, &changed);
    } else {
        if (issuer == NULL || issuer[0] == '\0' || ser[0] == '\0')
            return DB_NOTFOUND;
        p[0] = issuer;
        p[1] = ser;
        rc = pg_run(db, "DELETE FROM cert_blocks WHERE issuer = $1 AND serial = $2", 2, p,
                    &changed);
    }
    if (rc != DB_OK)
        return DB_ERROR;
    return changed > 0 ? DB_OK : DB_NOTFOUND;
}

int db_cert_block_find(struct db *db, const char *sha256, const char *issuer, const char *serial,
                       struct db_cert_block *out)
{
    char sha[65], ser[80];
    const char *p[3];
    PGresult *res;
    int rc;

    block_keys(sha256, serial, sha, ser);
    /* Empty arguments are NULL, which never equals anything. */
    p[0] = pg_text_or_null(sha);
    p[1] = pg_text_or_null(issuer);
    p[2] = pg_text_or_null(ser);
    res = pg_exec(db, "SELECT " BLOCK_COLUMNS " FROM cert_blocks"
                      " WHERE sha256 = $1 OR (issuer = $2 AND serial = $3) ORDER BY id LIMIT 1",
                  3, p);
    if (res == NULL)
        return DB_ERROR;
    rc = PQntuples(res) > 0 ? DB_OK : DB_NOTFOUND;
    if (rc == DB_OK && out != NULL)
        block_from_row(res, 0, out);
    PQclear(res);
    return rc;
}

struct block_iter {
    db_cert_block_cb cb;
    void *arg;
};

static int block_row(const PGresult *res, int i, void *ctx)
{
    struct block_iter *it = ctx;
    struct db_cert_block b;

    block_from_row(res, i, &b);
    return it->cb(it->arg, &b);
}

int db_cert_block_list(struct db *db, db_cert_block_cb cb, void *arg)
{
    struct block_iter it = { cb, arg };

    return pg_each(db, "SELECT " BLOCK_COLUMNS " FROM cert_blocks ORDER BY id DESC", 0, NULL,
                   block_row, &it);
}

/* ---- devices ---------------------------------------------------------------------- */

/*
 * A known device is written again only when its user changed or it was last written
 * at or before $7 (an hour before now). The read first lets the sessions of a known
 * device cost no write at all; the conditional upsert keeps two nodes that see the
 * same new device at once from failing.
 */
int db_device_seen(struct db *db, const struct db_device *d, int64_t now)
{
    char sha[65], ser[80], t_after[DB_ISO_LEN], t_now[DB_ISO_LEN], t_before[DB_ISO_LEN];
    const char *q[3], *p[7];
    PGresult *res;
    int current;

    block_keys(d->sha256, d->serial, sha, ser);
    db_time_iso(db_device_rewrite_before(now), t_before);
    q[0] = sha;
    q[1] = d->user;
    q[2] = t_before;
    res = pg_exec(db, "SELECT 1 FROM devices WHERE sha256 = $1 AND \"user\" = $2"
                      " AND last_seen > $3", 3, q);
    if (res == NULL)
        return DB_ERROR;
    current = PQntuples(res) > 0;
    PQclear(res);
    if (current)
        return DB_OK;
    p[0] = sha;
    p[1] = d->user;
    p[2] = d->issuer;
    p[3] = ser;
    p[4] = pg_time(d->not_after, t_after);
    p[5] = pg_time(now, t_now);
    p[6] = t_before;
    return pg_insert(db, "INSERT INTO devices (sha256, \"user\", issuer, serial, not_after,"
                         " first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $6)"
                         " ON CONFLICT (sha256) DO UPDATE SET \"user\" = excluded.\"user\","
                         " issuer = excluded.issuer, serial = excluded.serial,"
                         " not_after = excluded.not_after, last_seen = excluded.last_seen"
                         " WHERE devices.\"user\" <> excluded.\"user\""
                         " OR devices.last_seen <= $7", 7, p);
}

static void device_from_row(const PGresult *res, int i, struct db_device *d)
{
    memset(d, 0, sizeof(*d));
    pg_text(res, i, 0, d->sha256, sizeof(d->sha256));
    pg_text(res, i, 1, d->user, sizeof(d->user));
    pg_text(res, i, 2, d->issuer, sizeof(d->issuer));
    pg_text(res, i, 3, d->serial, sizeof(d->serial));
    d->not_after = pg_time_col(res, i, 4);
    d->first_seen = pg_time_col(res, i, 5);
    d->last_seen = pg_time_col(res, i, 6);
}

struct device_iter {
    db_device_cb cb;
    void *arg;
};

static int device_row(const PGresult *res, int i, void *ctx)
{
    struct device_iter *it = ctx;
    struct db_device d;

    device_from_row(res, i, &d);
    return it->cb(it->arg, &d);
}

int db_device_list(struct db *db, const char *user, db_device_cb cb, void *arg)
{
    const char *p[1] = { user };
    struct device_iter it = { cb, arg };

    return pg_each(db, "SELECT " DEVICE_COLUMNS " FROM devices WHERE \"user\" = $1"
                       " ORDER BY last_seen DESC, sha256", 1, p, device_row, &it);
}
