/*
 * Users, the sender addresses they own, and the subject maps that name a user for a
 * certificate of another CA (db.h), in SQLite.
 */
#include "db_sqlite.h"
#include "util.h"

#include <string.h>

#define SQL_USER_ADD "INSERT INTO users (name) VALUES (?1)"
#define SQL_USER_DEL "DELETE FROM users WHERE name = ?1"
#define SQL_USER_SET_ENABLED "UPDATE users SET enabled = ?2 WHERE name = ?1"
#define SQL_USER_GET "SELECT enabled FROM users WHERE name = ?1"
#define SQL_SENDER_ADD "INSERT INTO senders (user, address) VALUES (?1, ?2)"
#define SQL_SENDER_DEL "DELETE FROM senders WHERE user = ?1 AND address = ?2"
#define SQL_SENDER_OWNED "SELECT 1 FROM senders WHERE user = ?1 AND address IN (?2, ?3) LIMIT 1"
/* Deleting a user revokes its valid certificates first (db_sqlite_certs.c keeps the rest). */
#define SQL_CERT_REVOKE_USER                                                             \
    "UPDATE certs SET status = 'revoked',"                                               \
    " revoked_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now'),"                               \
    " revoke_reason = 'cessationOfOperation' WHERE user = ?1 AND status = 'valid'"
/* An exact issuer wins over a map for any issuer. */
#define SQL_MAP_LOOKUP                                                                   \
    "SELECT user FROM subject_maps WHERE subject = ?1 AND issuer IN (?2, '')"            \
    " ORDER BY issuer = '' LIMIT 1"


int db_user_add(struct db *db, const char *name)
{
    sqlite3_stmt *st;

    if (!db_user_name_valid(name)) {
        db_set_err(db, "invalid user name");
        return DB_ERROR;
    }
    st = db_stmt(db, ST_USER_ADD, SQL_USER_ADD);
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, name) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st, 1));
}

int db_user_del(struct db *db, const char *name)
{
    sqlite3_stmt *revoke, *del;
    int own, rc = DB_OK;

    revoke = db_stmt(db, ST_CERT_REVOKE_USER, SQL_CERT_REVOKE_USER);
    del = db_stmt(db, ST_USER_DEL, SQL_USER_DEL);
    if (revoke == NULL || del == NULL)
        return DB_ERROR;
    if (tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    /*
     * Revoke first: the rows stay (ON DELETE SET NULL) and must not stay valid, or a
     * later user of the same name could be confused with this one.
     */
    if (bind_text(revoke, 1, name) != SQLITE_OK || bind_text(del, 1, name) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(revoke);
        db_stmt_done(del);
        rc = DB_ERROR;
    } else if (db_run(db, revoke, 1) != SQLITE_DONE) {
        db_stmt_done(del);
        rc = DB_ERROR;
    } else if (db_run(db, del, 1) != SQLITE_DONE) {
        rc = DB_ERROR;
    } else if (sqlite3_changes(db->h) == 0) {
        rc = DB_NOTFOUND;
    }
    return tx_end(db, own, rc);
}

int db_user_set_enabled(struct db *db, const char *name, int enabled)
{
    sqlite3_stmt *st = db_stmt(db, ST_USER_SET_ENABLED, SQL_USER_SET_ENABLED);

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, name) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, enabled ? 1 : 0) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    if (db_run(db, st, 1) != SQLITE_DONE)
        return DB_ERROR;
    return sqlite3_changes(db->h) > 0 ? DB_OK : DB_NOTFOUND;
}

/* ctx is the int that receives the user's enabled flag (a row callback of db_one()). */
static void enabled_row(sqlite3_stmt *st, void *ctx)
{
    int *enabled = ctx;

    *enabled = sqlite3_column_int(st, 0) != 0;
}

int db_user_get(struct db *db, const char *name, int *enabled)
{
    return db_one_key(db, db_stmt(db, ST_USER_GET, SQL_USER_GET), name,
                      enabled != NULL ? enabled_row : NULL, enabled);
}

/* Copies a comma-separated list, ending it with "..." when it does not fit. */
static void copy_list(char *out, size_t outlen, const char *s)
{
    if (str_lcpy(out, s, outlen) >= outlen && outlen > 4) {
        char *cut = out + outlen - 4;

        memcpy(cut, "...", 4);
    }
}

struct user_iter {
    db_user_cb cb;
    void *arg;
};

static int user_row(sqlite3_stmt *st, void *ctx)
{
    struct user_iter *it = ctx;
    struct db_user u;
    const unsigned char *senders = sqlite3_column_text(st, 3);

    memset(&u, 0, sizeof(u));
    column_text(st, 0, u.name, sizeof(u.name));
    u.enabled = sqlite3_column_int(st, 1) != 0;
    u.created_at = column_time(st, 2);
    copy_list(u.senders, sizeof(u.senders), senders != NULL ? (const char *)senders : "");
    return it->cb(it->arg, &u);
}

int db_user_list(struct db *db, db_user_cb cb, void *arg)
{
    /* group_concat keeps the order of its input rows. */
    sqlite3_stmt *st = db_prepare(
        db, "SELECT name, enabled, created_at,"
            " (SELECT group_concat(address, ',') FROM"
            "   (SELECT address FROM senders s WHERE s.user = u.name ORDER BY address))"
            " FROM users u ORDER BY name");
    struct user_iter it = { cb, arg };

    if (st == NULL)
        return DB_ERROR;
    return db_each(db, st, user_row, &it);
}

/* ---- senders ------------------------------------------------------------ */

int db_sender_add(struct db *db, const char *user, const char *address)
{
    char addr[DB_ADDRESS_MAX + 1];
    sqlite3_stmt *st;

    if (!db_sender_address_valid(address) || db_lower_address(address, addr, sizeof(addr)) != 0) {
        db_set_err(db, "invalid sender address");
        return DB_ERROR;
    }
    st = db_stmt(db, ST_SENDER_ADD, SQL_SENDER_ADD);
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK || bind_text(st, 2, addr) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st, 1));
}

int db_sender_del(struct db *db, const char *user, const char *address)
{
    char addr[DB_ADDRESS_MAX + 1];
    sqlite3_stmt *st;

    if (db_lower_address(address, addr, sizeof(addr)) != 0)
        return DB_NOTFOUND;
    st = db_stmt(db, ST_SENDER_DEL, SQL_SENDER_DEL);
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK || bind_text(st, 2, addr) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    if (db_run(db, st, 1) != SQLITE_DONE)
        return DB_ERROR;
    return sqlite3_changes(db->h) > 0 ? DB_OK : DB_NOTFOUND;
}

int db_sender_owned(struct db *db, const char *user, const char *address)
{
    char addr[DB_ADDRESS_MAX + 1];
    const char *domain;
    sqlite3_stmt *st;

    /* An address too long to be stored cannot be owned. */
    if (user == NULL || db_lower_address(address, addr, sizeof(addr)) != 0)
        return DB_NOTFOUND;
    /* The domain is what follows the last '@': a quoted local part may hold one. */
    domain = strrchr(addr, '@');
    if (domain == NULL || domain[1] == '\0')
        return DB_NOTFOUND;
    st = db_stmt(db, ST_SENDER_OWNED, SQL_SENDER_OWNED);
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK || bind_text(st, 2, addr) != SQLITE_OK ||
        bind_text(st, 3, domain) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_one(db, st, NULL, NULL);
}

struct sender_iter {
    db_sender_cb cb;
    void *arg;
};

static int sender_row(sqlite3_stmt *st, void *ctx)
{
    struct sender_iter *it = ctx;
    const unsigned char *a = sqlite3_column_text(st, 0);

    return it->cb(it->arg, a != NULL ? (const char *)a : "");
}

int db_sender_list(struct db *db, const char *user, db_sender_cb cb, void *arg)
{
    int rc = db_user_get(db, user, NULL);
    struct sender_iter it = { cb, arg };
    sqlite3_stmt *st;

    if (rc != DB_OK)
        return rc;
    st = db_prepare(db, "SELECT address FROM senders WHERE user = ?1 ORDER BY address");
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, sender_row, &it);
}

int db_sender_other_owner(struct db *db, const char *user, const char *address, char *owner,
                          size_t ownerlen)
{
    char addr[DB_ADDRESS_MAX + 1];
    struct db_text_out out = { owner, ownerlen };
    sqlite3_stmt *st;
    int rc;

    if (db_lower_address(address, addr, sizeof(addr)) != 0)
        return DB_NOTFOUND;
    /* A user who owns the address already gains nothing: no one is surprised. */
    st = db_prepare(db, "SELECT user FROM senders WHERE address = ?1 AND user <> ?2"
                        " AND NOT EXISTS (SELECT 1 FROM senders WHERE address = ?1"
                        "                 AND user = ?2)"
                        " ORDER BY user LIMIT 1");
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, addr) != SQLITE_OK || bind_text(st, 2, user) != SQLITE_OK)
        rc = db_fail(db);
    else
        rc = db_one(db, st, db_row_text, &out);
    sqlite3_finalize(st);
    return rc;
}

struct owner_iter {
    db_owner_cb cb;
    void *arg;
};

static int owner_row(sqlite3_stmt *st, void *ctx)
{
    struct owner_iter *it = ctx;
    const unsigned char *u = sqlite3_column_text(st, 0), *a = sqlite3_column_text(st, 1);

    return it->cb(it->arg, u != NULL ? (const char *)u : "", a != NULL ? (const char *)a : "",
                  sqlite3_column_int(st, 2));
}

int db_sender_owners(struct db *db, const char *address, db_owner_cb cb, void *arg)
{
    char addr[DB_ADDRESS_MAX + 1];
    const char *domain;
    struct owner_iter it = { cb, arg };
    sqlite3_stmt *st;

    if (db_lower_address(address, addr, sizeof(addr)) != 0)
        return DB_OK;
    domain = strrchr(addr, '@');
    /* "@domain" itself has no wider owner; ?2 then repeats ?1 and matches nothing new. */
    if (domain == NULL || domain == addr)
        domain = addr;
    st = db_prepare(db, "SELECT user, address, address <> ?1 FROM senders"
                        " WHERE address IN (?1, ?2) ORDER BY address <> ?1, user");
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, addr) != SQLITE_OK || bind_text(st, 2, domain) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, owner_row, &it);
}

/* ---- subject maps ------------------------------------------------------ */

int db_map_add_text(struct db *db, const char *subject, const char *issuer, const char *user,
                    const char *subject_text, const char *issuer_text)
{
    sqlite3_stmt *st = db_prepare(db,
        "INSERT INTO subject_maps(subject, issuer, user, subject_text, issuer_text)"
        " VALUES (?1, ?2, ?3, ?4, ?5)");

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, subject) != SQLITE_OK ||
        bind_text(st, 2, issuer != NULL ? issuer : "") != SQLITE_OK ||
        bind_text(st, 3, user) != SQLITE_OK ||
        bind_text_or_null(st, 4, subject_text) != SQLITE_OK ||
        bind_text_or_null(st, 5, issuer_text) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st, 0));
}

int db_map_del(struct db *db, const char *subject, const char *issuer)
{
    sqlite3_stmt *st = db_prepare(db, issuer != NULL
        ? "DELETE FROM subject_maps WHERE subject = ?1 AND issuer = ?2"
        : "DELETE FROM subject_maps WHERE subject = ?1");

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, subject) != SQLITE_OK ||
        (issuer != NULL && bind_text(st, 2, issuer) != SQLITE_OK)) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    if (db_run(db, st, 0) != SQLITE_DONE)
        return DB_ERROR;
    return sqlite3_changes(db->h) > 0 ? DB_OK : DB_NOTFOUND;
}

int db_map_lookup(struct db *db, const char *subject, const char *issuer, char *user,
                  size_t userlen)
{
    sqlite3_stmt *st = db_stmt(db, ST_MAP_LOOKUP, SQL_MAP_LOOKUP);
    struct db_text_out out = { user, userlen };

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, subject) != SQLITE_OK || bind_text(st, 2, issuer) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_one(db, st, db_row_text, &out);
}

struct map_iter {
    db_map_cb cb;
    void *arg;
};

static int map_row(sqlite3_stmt *st, void *ctx)
{
    struct map_iter *it = ctx;
    const char *v[3];

    /* Names are handed on whole: a subject has no length limit of ours. */
    for (int i = 0; i < 3; i++) {
        v[i] = (const char *)sqlite3_column_text(st, i);
        if (v[i] == NULL)
            v[i] = "";
    }
    return it->cb(it->arg, v[0], v[1], v[2]);
}

int db_map_list(struct db *db, db_map_cb cb, void *arg)
{
    sqlite3_stmt *st = db_prepare(db,
        "SELECT coalesce(subject_text, subject), coalesce(issuer_text, issuer), user"
        " FROM subject_maps ORDER BY user, subject, issuer");
    struct map_iter it = { cb, arg };

    if (st == NULL)
        return DB_ERROR;
    return db_each(db, st, map_row, &it);
}
