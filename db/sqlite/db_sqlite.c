/*
 * The SQLite implementation of db.h: what its files share (db_sqlite.h). Errors,
 * the statement cache, binding and reading values, the builder of filtered
 * listings, and transactions. Values always go through bound parameters; the only
 * SQL assembled at run time is made of constant fragments.
 *
 * The other files, by subject: db_sqlite_open.c (open, migrate, close),
 * db_sqlite_users.c (users, senders, subject maps), db_sqlite_certs.c,
 * db_sqlite_audit.c (audit rows, figures, prune), db_sqlite_log.c (admin and CA
 * log), db_sqlite_rates.c, and db_sqlite_test.c (hooks for the unit tests).
 */
#include "db_sqlite.h"
#include "util.h"

#include <string.h>

/* ---- errors ------------------------------------------------------------- */

void db_set_err(struct db *db, const char *what)
{
    (void)str_fmt(db->err, sizeof(db->err), "%s: %s", db->path, what);
}

int db_fail(struct db *db)
{
    db_set_err(db, sqlite3_errmsg(db->h));
    return DB_ERROR;
}

const char *db_errmsg(struct db *db)
{
    return db->err;
}

/* ---- statements --------------------------------------------------------- */

sqlite3_stmt *db_stmt(struct db *db, enum db_stmt id, const char *sql)
{
    if (db->st[id] == NULL &&
        sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &db->st[id], NULL) !=
            SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(db->st[id]);
        db->st[id] = NULL;
    }
    return db->st[id];
}

sqlite3_stmt *db_prepare(struct db *db, const char *sql)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/*
 * A statement left mid-step would hold a read transaction open and keep WAL
 * checkpoints from completing.
 */
void db_stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int db_each(struct db *db, sqlite3_stmt *st, int (*row)(sqlite3_stmt *st, void *ctx), void *ctx)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (row(st, ctx) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        db_fail(db);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? DB_OK : DB_ERROR;
}

int db_one(struct db *db, sqlite3_stmt *st, void (*row)(sqlite3_stmt *st, void *ctx), void *ctx)
{
    int rc = sqlite3_step(st);
    int result;

    if (rc == SQLITE_ROW) {
        if (row != NULL)
            row(st, ctx);
        result = DB_OK;
    } else if (rc == SQLITE_DONE) {
        result = DB_NOTFOUND;
    } else {
        result = db_fail(db);
    }
    db_stmt_done(st);
    return result;
}

int db_one_key(struct db *db, sqlite3_stmt *st, const char *key,
               void (*row)(sqlite3_stmt *st, void *ctx), void *ctx)
{
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, key) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_one(db, st, row, ctx);
}

void db_row_text(sqlite3_stmt *st, void *ctx)
{
    struct db_text_out *out = ctx;

    column_text(st, 0, out->buf, out->len);
}

int db_run(struct db *db, sqlite3_stmt *st, int cached)
{
    int writes = !sqlite3_stmt_readonly(st);
    int rc = sqlite3_step(st);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        db_fail(db);
    if (cached)
        db_stmt_done(st);
    else
        sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        rc = SQLITE_DONE;
    /* A write outside a transaction committed when it ended: durable like db_commit. */
    if (rc == SQLITE_DONE && writes && sqlite3_get_autocommit(db->h) && db_log_sync(db) != DB_OK)
        rc = SQLITE_IOERR_FSYNC;
    return rc;
}

int db_insert_result(int rc)
{
    switch (rc) {
    case SQLITE_DONE:
        return DB_OK;
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        return DB_EXISTS;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return DB_NOTFOUND;
    default:
        return DB_ERROR;
    }
}

int db_exec(struct db *db, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        db_set_err(db, msg != NULL ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return DB_ERROR;
    }
    return DB_OK;
}

long long db_query_int(struct db *db, const char *sql)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    long long v = -1;
    int rc;

    if (st == NULL)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        db_fail(db);
    else
        db_set_err(db, "no result");
    sqlite3_finalize(st);
    return v;
}

/* ---- values ------------------------------------------------------------- */

/* The caller's string outlives the step. */
int bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    if (s == NULL)
        return sqlite3_bind_null(st, idx);
    return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
}

int bind_text_or_null(sqlite3_stmt *st, int idx, const char *s)
{
    return bind_text(st, idx, (s != NULL && *s != '\0') ? s : NULL);
}

int bind_int64(sqlite3_stmt *st, int idx, int64_t v)
{
    return sqlite3_bind_int64(st, idx, (sqlite3_int64)v);
}

int bind_time(sqlite3_stmt *st, int idx, int64_t t, char buf[DB_ISO_LEN])
{
    if (t == DB_TIME_NONE)
        return sqlite3_bind_null(st, idx);
    db_time_iso(t, buf);
    if (buf[0] == '\0')
        return SQLITE_RANGE;
    return bind_text(st, idx, buf);
}

const char *db_time_key_or_null(int64_t t, char key[DB_ISO_LEN])
{
    if (t == DB_TIME_NONE)
        return NULL;
    db_time_key(t, key);
    return key;
}

void column_text(sqlite3_stmt *st, int col, char *out, size_t outlen)
{
    const unsigned char *s = sqlite3_column_text(st, col);

    str_lcpy(out, s != NULL ? (const char *)s : "", outlen);
}

int64_t column_time(sqlite3_stmt *st, int col)
{
    struct db_stamp s;

    if (db_time_parse((const char *)sqlite3_column_text(st, col), &s) != DB_OK)
        return DB_TIME_NONE;
    return s.sec;
}

void column_stamp(sqlite3_stmt *st, int col, struct db_stamp *out)
{
    db_stamp_or_none((const char *)sqlite3_column_text(st, col), out);
}

/* ---- filtered listings -------------------------------------------------- */

/* Appends a constant SQL fragment; -1 when the buffer is too small. */
static int sql_append(char *sql, size_t size, const char *frag)
{
    size_t n = strlen(sql);

    return str_lcpy(sql + n, frag, size - n) < size - n ? 0 : -1;
}

sqlite3_stmt *db_select(struct db *db, const char *select, const struct db_cond *conds,
                        size_t nconds, const char *order, long long limit)
{
    const char *sep = " WHERE ";
    char sql[1024];
    sqlite3_stmt *st;
    int bad = 0;

    sql[0] = '\0';
    bad |= sql_append(sql, sizeof(sql), select);
    for (size_t i = 0; i < nconds; i++) {
        if (conds[i].value == NULL)
            continue;
        bad |= sql_append(sql, sizeof(sql), sep);
        bad |= sql_append(sql, sizeof(sql), conds[i].frag);
        sep = " AND ";
    }
    bad |= sql_append(sql, sizeof(sql), " ORDER BY ");
    bad |= sql_append(sql, sizeof(sql), order);
    if (limit > 0)
        bad |= sql_append(sql, sizeof(sql), " LIMIT :limit");
    if (bad) {
        db_set_err(db, "internal error: query too long");
        return NULL;
    }
    st = db_prepare(db, sql);
    if (st == NULL)
        return NULL;
    for (size_t i = 0; i < nconds; i++) {
        if (conds[i].value == NULL)
            continue;
        if (bind_text(st, sqlite3_bind_parameter_index(st, conds[i].param), conds[i].value) !=
            SQLITE_OK)
            bad = 1;
    }
    if (limit > 0 && bind_int64(st, sqlite3_bind_parameter_index(st, ":limit"), limit) !=
                         SQLITE_OK)
        bad = 1;
    if (bad) {
        db_fail(db);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* ---- transactions ------------------------------------------------------- */

/* BEGIN and COMMIT open and close every batch of authz's rows: kept prepared, as
 * sqlite3_exec would parse them anew each time. */
static int db_exec_cached(struct db *db, enum db_stmt id, const char *sql)
{
    sqlite3_stmt *st = db_stmt(db, id, sql);
    int rc;

    if (st == NULL)
        return DB_ERROR;
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        db_fail(db);
        sqlite3_reset(st);
        return DB_ERROR;
    }
    sqlite3_reset(st);
    return DB_OK;
}

int db_begin(struct db *db)
{
    return db_exec_cached(db, ST_BEGIN, "BEGIN IMMEDIATE");
}

/*
 * The connection runs with synchronous = NORMAL (db_sqlite_open.c): in WAL mode a
 * COMMIT writes the transaction's frames to the log without a sync, and SQLite syncs
 * the log only before a checkpoint copies it into the database file, and once after
 * it starts the log afresh (its header). A durable commit syncs the log itself, as
 * synchronous = FULL would at every commit: the same one fdatasync of the -wal file,
 * with the same flags, which also carries every lazy commit before it. SQLite's unix
 * VFS declares powersafe overwrite, so frames written after a synced commit cannot
 * damage it, and it syncs the directory after it created the log.
 */
int db_log_sync(struct db *db)
{
    sqlite3_file *log = NULL;
    int rc;

    if (!db->wal) {
        db->unsynced = 0;
        return DB_OK;
    }
    if (sqlite3_file_control(db->h, "main", SQLITE_FCNTL_JOURNAL_POINTER, &log) != SQLITE_OK)
        return db_fail(db);
    /* No log open: nothing was written to it since the last checkpoint closed it. */
    if (log == NULL || log->pMethods == NULL) {
        db->unsynced = 0;
        return DB_OK;
    }
    rc = log->pMethods->xSync(log, SQLITE_SYNC_NORMAL);
    if (rc != SQLITE_OK) {
        char msg[160];

        (void)str_fmt(msg, sizeof(msg), "cannot sync the write-ahead log: %s",
                      sqlite3_errstr(rc));
        db_set_err(db, msg);
        db->unsynced = 1;    /* what was committed is still owed to the disk */
        return DB_ERROR;
    }
    db->unsynced = 0;
    return DB_OK;
}

int db_commit(struct db *db)
{
    if (db_exec_cached(db, ST_COMMIT, "COMMIT") != DB_OK)
        return DB_ERROR;
    return db_log_sync(db);
}

int db_commit_lazy(struct db *db)
{
    if (db_exec_cached(db, ST_COMMIT, "COMMIT") != DB_OK)
        return DB_ERROR;
    db->unsynced = db->wal;
    return DB_OK;
}

int db_sync(struct db *db)
{
    return db->unsynced ? db_log_sync(db) : DB_OK;
}

void db_rollback(struct db *db)
{
    if (!sqlite3_get_autocommit(db->h))
        (void)sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

int tx_begin(struct db *db, int *own)
{
    *own = sqlite3_get_autocommit(db->h) != 0;
    return *own ? db_begin(db) : DB_OK;
}

int tx_end(struct db *db, int own, int result)
{
    if (!own)
        return result;
    if (result == DB_ERROR) {
        db_rollback(db);
        return result;
    }
    if (db_commit(db) != DB_OK) {
        db_rollback(db);
        return DB_ERROR;
    }
    return result;
}

int db_lower_address(const char *address, char *out, size_t outlen)
{
    if (address == NULL || str_lcpy(out, address, outlen) >= outlen)
        return -1;
    str_lower(out);
    return 0;
}
