/*
 * Users, the sender addresses they own, and the subject maps that name a user for a
 * certificate of another CA (db.h), in PostgreSQL.
 */
#include "db_pg.h"
#include "util.h"

#include <string.h>

/* Copies a comma-separated list, ending it with "..." when it does not fit. */
static void copy_list(char *out, size_t outlen, const char *s)
{
    if (str_lcpy(out, s, outlen) >= outlen && outlen > 4) {
        char *cut = out + outlen - 4;

        memcpy(cut, "...", 4);
    }
}

int db_user_add(struct db *db, const char *name)
{
    const char *p[1] = { name };

    if (!db_user_name_valid(name)) {
        pg_set_err(db, "invalid user name");
        return DB_ERROR;
    }
    return pg_insert(db, "INSERT INTO users (name) VALUES ($1)", 1, p);
}

int db_user_del(struct db *db, const char *name)
{
    const char *p[1] = { name };
    long long changed = 0;
    int own, rc;

    if (pg_tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    /*
     * Revoke first: the rows stay (ON DELETE SET NULL) and must not stay valid, or a
     * later user of the same name could be confused with this one.
     */
    rc = pg_run(db, "UPDATE certs SET status = 'revoked', revoked_at = submitd_now_s(),"
                    " revoke_reason = 'cessationOfOperation'"
                    " WHERE \"user\" = $1 AND status = 'valid'", 1, p, NULL);
    if (rc == DB_OK)
        rc = pg_run(db, "DELETE FROM users WHERE name = $1", 1, p, &changed);
    if (rc == DB_OK && changed == 0)
        rc = DB_NOTFOUND;
    return pg_tx_end(db, own, rc);
}

int db_user_set_enabled(struct db *db, const char *name, int enabled)
{
    const char *p[2] = { name, enabled ? "1" : "0" };
    long long changed = 0;

    if (pg_run(db, "UPDATE users SET enabled = $2 WHERE name = $1", 2, p, &changed) != DB_OK)
        return DB_ERROR;
    return changed > 0 ? DB_OK : DB_NOTFOUND;
}

int db_user_get(struct db *db, const char *name, int *enabled)
{
    const char *p[1] = { name };
    PGresult *res = pg_exec(db, "SELECT enabled FROM users WHERE name = $1", 1, p);
    int rc;

    if (res == NULL)
        return DB_ERROR;
    rc = PQntuples(res) > 0 ? DB_OK : DB_NOTFOUND;
    if (rc == DB_OK && enabled != NULL)
        *enabled = pg_ll(res, 0, 0) != 0;
    PQclear(res);
    return rc;
}

struct user_iter {
    db_user_cb cb;
    void *arg;
};

static int user_row(const PGresult *res, int i, void *ctx)
{
    struct user_iter *it = ctx;
    struct db_user u;

    memset(&u, 0, sizeof(u));
    pg_text(res, i, 0, u.name, sizeof(u.name));
    u.enabled = pg_ll(res, i, 1) != 0;
    u.created_at = pg_time_col(res, i, 2);
    copy_list(u.senders, sizeof(u.senders), PQgetisnull(res, i, 3) ? "" : PQgetvalue(res, i, 3));
    return it->cb(it->arg, &u);
}

int db_user_list(struct db *db, db_user_cb cb, void *arg)
{
    struct user_iter it = { cb, arg };

    return pg_each(db, "SELECT name, enabled, created_at,"
                       " (SELECT string_agg(address, ',' ORDER BY address) FROM senders s"
                       "  WHERE s.\"user\" = u.name)"
                       " FROM users u ORDER BY name", 0, NULL, user_row, &it);
}

/* ---- senders ------------------------------------------------------------ */

int db_sender_add(struct db *db, const char *user, const char *address)
{
    char addr[DB_ADDRESS_MAX + 1];
    const char *p[2] = { user, addr };

    if (!db_sender_address_valid(address) || pg_lower_address(address, addr, sizeof(addr)) != 0) {
        pg_set_err(db, "invalid sender address");
        return DB_ERROR;
    }
    return pg_insert(db, "INSERT INTO senders (\"user\", address) VALUES ($1, $2)", 2, p);
}

int db_sender_del(struct db *db, const char *user, const char *address)
{
    char addr[DB_ADDRESS_MAX + 1];
    const char *p[2] = { user, addr };
    long long changed = 0;

    if (pg_lower_address(address, addr, sizeof(addr)) != 0)
        return DB_NOTFOUND;
    if (pg_run(db, "DELETE FROM senders WHERE \"user\" = $1 AND address = $2", 2, p, &changed) !=
        DB_OK)
        return DB_ERROR;
    return changed > 0 ? DB_OK : DB_NOTFOUND;
}

int db_sender_owned(struct db *db, const char *user, const char *address)
{
    char addr[DB_ADDRESS_MAX + 1];
    const char *domain, *p[3];
    PGresult *res;
    int rc;

    /* An address too long to be stored cannot be owned. */
    if (user == NULL || pg_lower_address(address, addr, sizeof(addr)) != 0)
        return DB_NOTFOUND;
    /* The domain is what follows the last '@': a quoted local part may hold one. */
    domain = strrchr(addr, '@');
    if (domain == NULL || domain[1] == '\0')
        return DB_NOTFOUND;
    p[0] = user;
    p[1] = addr;
    p[2] = domain;
    res = pg_exec(db, "SELECT 1 FROM senders WHERE \"user\" = $1 AND address IN ($2, $3) LIMIT 1",
                  3, p);
    if (res == NULL)
        return DB_ERROR;
    rc = PQntuples(res) > 0 ? DB_OK : DB_NOTFOUND;
    PQclear(res);
    return rc;
}

struct sender_iter {
    db_sender_cb cb;
    void *arg;
};

static int sender_row(const PGresult *res, int i, void *ctx)
{
    struct sender_iter *it = ctx;

    return it->cb(it->arg, PQgetvalue(res, i, 0));
}

int db_sender_list(struct db *db, const char *user, db_sender_cb cb, void *arg)
{
    const char *p[1] = { user };
    struct sender_iter it = { cb, arg };
    int rc = db_user_get(db, user, NULL);

    if (rc != DB_OK)
        return rc;
    return pg_each(db, "SELECT address FROM senders WHERE \"user\" = $1 ORDER BY address", 1, p,
                   sender_row, &it);
}

int db_sender_other_owner(struct db *db, const char *user, const char *address, char *owner,
                          size_t ownerlen)
{
    char addr[DB_ADDRESS_MAX + 1];
    const char *p[2] = { addr, user };
    PGresult *res;
    int rc;

    if (pg_lower_address(address, addr, sizeof(addr)) != 0)
        return DB_NOTFOUND;
    /* A user who owns the address already gains nothing: no one is surprised. */
    res = pg_exec(db, "SELECT \"user\" FROM senders WHERE address = $1 AND \"user\" <> $2"
                      " AND NOT EXISTS (SELECT 1 FROM senders WHERE address = $1"
                      "                 AND \"user\" = $2)"
                      " ORDER BY \"user\" LIMIT 1", 2, p);
    if (res == NULL)
        return DB_ERROR;
    rc = PQntuples(res) > 0 ? DB_OK : DB_NOTFOUND;
    if (rc == DB_OK)
        pg_text(res, 0, 0, owner, ownerlen);
    PQclear(res);
    return rc;
}

struct owner_iter {
    db_owner_cb cb;
    void *arg;
};

static int owner_row(const PGresult *res, int i, void *ctx)
{
    struct owner_iter *it = ctx;

    return it->cb(it->arg, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), (int)pg_ll(res, i, 2));
}

int db_sender_owners(struct db *db, const char *address, db_owner_cb cb, void *arg)
{
    char addr[DB_ADDRESS_MAX + 1];
    const char *domain, *p[2];
    struct owner_iter it = { cb, arg };

    if (pg_lower_address(address, addr, sizeof(addr)) != 0)
        return DB_OK;
    domain = strrchr(addr, '@');
    /* "@domain" itself has no wider owner; $2 then repeats $1 and matches nothing new. */
    if (domain == NULL || domain == addr)
        domain = addr;
    p[0] = addr;
    p[1] = domain;
    return pg_each(db, "SELECT \"user\", address, (address <> $1)::int FROM senders"
                       " WHERE address IN ($1, $2) ORDER BY address <> $1, \"user\"", 2, p,
                   owner_row, &it);
}

/* ---- subject maps ------------------------------------------------------ */

int db_map_add_text(struct db *db, const char *subject, const char *issuer, const char *user,
                    const char *subject_text, const char *issuer_text)
{
    const char *p[5] = { subject, issuer != NULL ? issuer : "", user,
                         pg_text_or_null(subject_text), pg_text_or_null(issuer_text) };

    return pg_insert(db, "INSERT INTO subject_maps (subject, issuer, \"user\", subject_text,"
                         " issuer_text) VALUES ($1, $2, $3, $4, $5)", 5, p);
}

int db_map_del(struct db *db, const char *subject, const char *issuer)
{
    const char *p[2] = { subject, issuer };
    long long changed = 0;
    int rc = issuer != NULL
                 ? pg_run(db, "DELETE FROM subject_maps WHERE subject = $1 AND issuer = $2", 2, p,
                          &changed)
                 : pg_run(db, "DELETE FROM subject_maps WHERE subject = $1", 1, p, &changed);

    if (rc != DB_OK)
        return DB_ERROR;
    return changed > 0 ? DB_OK : DB_NOTFOUND;
}

int db_map_lookup(struct db *db, const char *subject, const char *issuer, char *user,
                  size_t userlen)
{
    const char *p[2] = { subject, issuer };
    PGresult *res;
    int rc;

    /* An exact issuer wins over a map for any issuer. */
    res = pg_exec(db, "SELECT \"user\" FROM subject_maps WHERE subject = $1"
                      " AND issuer IN ($2, '') ORDER BY issuer = '' LIMIT 1", 2, p);
    if (res == NULL)
        return DB_ERROR;
    rc = PQntuples(res) > 0 ? DB_OK : DB_NOTFOUND;
    if (rc == DB_OK)
        pg_text(res, 0, 0, user, userlen);
    PQclear(res);
    return rc;
}

struct map_iter {
    db_map_cb cb;
    void *arg;
};

static int map_row(const PGresult *res, int i, void *ctx)
{
    struct map_iter *it = ctx;

    /* Names are handed on whole: a subject has no length limit of ours. */
    return it->cb(it->arg, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
}

int db_map_list(struct db *db, db_map_cb cb, void *arg)
{
    struct map_iter it = { cb, arg };

    return pg_each(db, "SELECT coalesce(subject_text, subject), coalesce(issuer_text, issuer),"
                       " \"user\" FROM subject_maps ORDER BY \"user\", subject, issuer", 0, NULL,
                   map_row, &it);
}
