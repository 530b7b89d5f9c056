/*
 * Opening a PostgreSQL database (db.h db_open with a postgresql:// or postgres:// URI):
 * the connection, and the numbered migrations of db/postgres/migrations/, embedded at
 * build time and applied in order under an advisory lock, so that several nodes that
 * start at once migrate the schema once. The versions are those of the SQLite
 * migrations: version N has the same tables and rules in both backends.
 *
 * The URI may hold a password. Every message names the database by the URI with the
 * password masked (config_mask_secret), never by the URI itself.
 */
#include "db_pg.h"
#include "config.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* Defined in the file that scripts/embed-sql.sh generates from the migrations. */
extern const char *const db_pg_migrations[];
extern const int db_pg_migrations_count;

#define DB_LOCK_TIMEOUT_MS 5000
#define PG_CONNECT_TIMEOUT_S "10"
/* The advisory lock that serialises migrations: any constant of our own. */
#define PG_MIGRATE_LOCK "7305214923"

static long long pg_query_ll(struct db *db, const char *sql)
{
    PGresult *res = pg_exec(db, sql, 0, NULL);
    long long v = -1;

    if (res == NULL)
        return -1;
    if (PQntuples(res) == 1)
        v = pg_ll(res, 0, 0);
    else
        pg_set_err(db, "no result");
    PQclear(res);
    return v;
}

/* Runs a migration's text, which has several statements and no parameters. */
static int pg_exec_script(struct db *db, const char *sql, int version)
{
    PGresult *res = PQexec(db->conn, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        char msg[512];

        pg_fail(db, res);
        (void)str_fmt(msg, sizeof(msg), "migration %d: %s", version,
                      db->err + strlen(db->name) + 2);
        pg_set_err(db, msg);
        PQclear(res);
        return DB_ERROR;
    }
    PQclear(res);
    return DB_OK;
}

static int pg_migrate_locked(struct db *db)
{
    long long v;

    if (pg_run(db, "SELECT pg_advisory_xact_lock(" PG_MIGRATE_LOCK ")", 0, NULL, NULL) != DB_OK ||
        pg_run(db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", 0,
               NULL, NULL) != DB_OK ||
        pg_run(db, "INSERT INTO schema_version (version) SELECT 0"
                   " WHERE NOT EXISTS (SELECT 1 FROM schema_version)", 0, NULL, NULL) != DB_OK)
        return DB_ERROR;
    /* Another node may have migrated while this one waited for the lock. */
    v = pg_query_ll(db, "SELECT max(version) FROM schema_version");
    if (v < 0)
        return DB_ERROR;
    if (v > db_pg_migrations_count) {
        char msg[160];

        (void)str_fmt(msg, sizeof(msg), "schema version %lld is newer than this program knows (%d)",
                      v, db_pg_migrations_count);
        pg_set_err(db, msg);
        return DB_ERROR;
    }
    for (; v < db_pg_migrations_count; v++) {
        char next[PG_NUM_LEN];
        const char *p[1] = { pg_num(next, v + 1) };

        if (pg_exec_script(db, db_pg_migrations[v], (int)v + 1) != DB_OK ||
            pg_run(db, "UPDATE schema_version SET version = $1", 1, p, NULL) != DB_OK)
            return DB_ERROR;
    }
    return DB_OK;
}

/* The schema version, 0 before the first migration; -1 on error. */
static long long pg_version(struct db *db)
{
    long long exists = pg_query_ll(db, "SELECT (to_regclass('schema_version') IS NOT NULL)::int");

    if (exists <= 0)
        return exists;
    return pg_query_ll(db, "SELECT coalesce(max(version), 0) FROM schema_version");
}

/*
 * A schema that is up to date is only read, so that the programs may run as a role
 * that can change rows but not tables once an administrator has migrated.
 */
static int pg_migrate(struct db *db)
{
    long long v = pg_version(db);
    int own;

    if (v < 0)
        return DB_ERROR;
    if (v == db_pg_migrations_count)
        return DB_OK;
    if (pg_tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    return pg_tx_end(db, own, pg_migrate_locked(db));
}

struct db *db_open(const char *dsn, char *err, size_t errlen)
{
    static const char *const keys[] = { "connect_timeout", "dbname", NULL };
    const char *const values[] = { PG_CONNECT_TIMEOUT_S, dsn, NULL };
    struct db *db = calloc(1, sizeof(*db));

    if (db == NULL) {
        (void)str_fmt(err, errlen, "PostgreSQL database: out of memory");
        return NULL;
    }
    db->head.backend = &db_pg_backend;
    db->lock_timeout_ms = DB_LOCK_TIMEOUT_MS;
    config_mask_secret(dsn, db->name, sizeof(db->name));
    if (strlen(dsn) >= PG_DSN_MAX) {
        pg_set_err(db, "connection URI too long");
        goto fail;
    }
    /*
     * A server that does not answer must not hold authz, and every session with it,
     * for the kernel's TCP timeout: ten seconds unless the URI says otherwise (its
     * values, expanded from dbname, override those before it). PQreset reuses them.
     */
    db->conn = PQconnectdbParams(keys, values, 1);
    if (db->conn == NULL || PQstatus(db->conn) != CONNECTION_OK) {
        pg_fail(db, NULL);
        goto fail;
    }
    if (pg_session_setup(db) != DB_OK || pg_migrate(db) != DB_OK)
        goto fail;
    return db;

fail:
    str_lcpy(err, db->err, errlen);
    db_close(db);
    return NULL;
}

void db_close(struct db *db)
{
    if (db == NULL)
        return;
    pg_stmt_forget(db);
    PQfinish(db->conn);
    free(db);
}

int db_schema_version(struct db *db)
{
    long long v = pg_query_ll(db, "SELECT max(version) FROM schema_version");

    return v < 0 ? DB_ERROR : (int)v;
}

int db_set_lock_timeout(struct db *db, int ms)
{
    db->lock_timeout_ms = ms;
    if (PQstatus(db->conn) != CONNECTION_OK)
        return DB_OK;    /* applied when the connection is made again */
    return pg_session_setup(db);
}

const struct db_backend db_pg_backend = {
    .name = "postgresql",
    .open = db_pg_open,
    .close = db_pg_close,
    .rollback = db_pg_rollback,
#define DB_PG_FN(ret, fn, params, args) .fn = db_pg_##fn,
    DB_BACKEND_FUNCS(DB_PG_FN)
#undef DB_PG_FN
};
