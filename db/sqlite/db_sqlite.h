#ifndef SUBMITD_DB_SQLITE_H
#define SUBMITD_DB_SQLITE_H
/*
 * What the files of the SQLite backend share: the connection, its cache of prepared
 * statements, and the helpers that bind, step and convert. Nothing outside
 * db/sqlite/ includes this header.
 */
#include "db_sqlite_names.h"

#include "db.h"
#include "db_backend.h"
#include "db_rules.h"

#include <limits.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define DB_ADDRESS_MAX 320

/*
 * Statements on the paths that authz takes for every session, and those of the rate
 * limits, are prepared once per connection and kept. Listings are prepared per call,
 * so that a callback may use the database.
 */
enum db_stmt {
    ST_USER_ADD,
    ST_USER_DEL,
    ST_USER_SET_ENABLED,
    ST_USER_GET,
    ST_SENDER_ADD,
    ST_SENDER_DEL,
    ST_SENDER_OWNED,
    ST_MAP_LOOKUP,
    ST_CERT_INSERT,
    ST_CERT_BY_SHA256,
    ST_CERT_BY_SERIAL,
    ST_CERT_REVOKE,
    ST_CERT_REVOKE_USER,
    ST_AUDIT_INSERT,
    ST_RATE_RECORD,
    ST_RATE_PRUNE,
    ST_RATE_USAGE,
    ST_RULE_GET,
    ST_BLOCK_FIND,
    ST_DEVICE_GET,
    ST_DEVICE_SEEN,
    ST_BEGIN,
    ST_COMMIT,
    ST_COUNT
};

struct db {
    struct db_head head;    /* first: db_backend.c finds the backend here */
    sqlite3 *h;
    char path[PATH_MAX];
    char err[PATH_MAX + 512];
    sqlite3_stmt *st[ST_COUNT];
    int wal;                /* the database is in WAL mode (a file, not ":memory:") */
    int unsynced;           /* a lazy commit since the last sync of the log */
};

/* ---- errors (db_sqlite.c) ---------------------------------------------------- */
/* Records what went wrong, naming the file. */
void db_set_err(struct db *db, const char *what);
/* Records SQLite's message for the last failed call; returns DB_ERROR. */
int db_fail(struct db *db);

/* ---- statements ---------------------------------------------------------------- */
/* The cached statement id, prepared from sql on first use; NULL on error. */
sqlite3_stmt *db_stmt(struct db *db, enum db_stmt id, const char *sql);
/* A one-off statement, to be finalized by the caller (or by db_each). */
sqlite3_stmt *db_prepare(struct db *db, const char *sql);
/* Returns a cached statement to its idle state, bindings cleared. */
void db_stmt_done(sqlite3_stmt *st);
/*
 * Hands every row of a one-off statement to row(), which converts it and calls the
 * caller's callback; a non-zero return stops early (not an error). Finalizes st.
 */
int db_each(struct db *db, sqlite3_stmt *st, int (*row)(sqlite3_stmt *st, void *ctx),
            void *ctx);
/*
 * Steps a statement, already bound, that returns at most one row of interest, and
 * hands that row to row() (NULL when the question is only whether a row exists).
 * DB_OK on a row, DB_NOTFOUND on none, DB_ERROR with the error recorded. Resets st
 * (db_stmt_done) whatever happens: a cached statement is ready for its next use, a
 * one-off one is still the caller's to finalize.
 */
int db_one(struct db *db, sqlite3_stmt *st, void (*row)(sqlite3_stmt *st, void *ctx),
           void *ctx);
/*
 * db_one() after binding key to the first parameter. st may be NULL, so that the
 * result of db_stmt() can be passed straight in: that is DB_ERROR, already recorded.
 */
int db_one_key(struct db *db, sqlite3_stmt *st, const char *key,
               void (*row)(sqlite3_stmt *st, void *ctx), void *ctx);
/* A row callback of db_one() that copies the first column as text into a buffer. */
struct db_text_out {
    char *buf;
    size_t len;
};
void db_row_text(sqlite3_stmt *st, void *ctx);
/*
 * Steps a statement that returns no rows and resets it when it is cached (cached
 * non-zero) or finalizes it. Returns the extended SQLite result code, SQLITE_DONE
 * on success, with the error recorded otherwise.
 */
int db_run(struct db *db, sqlite3_stmt *st, int cached);
/* A refused duplicate is DB_EXISTS, a missing user (foreign key) DB_NOTFOUND. */
int db_insert_result(int rc);
/* Runs SQL text without parameters. */
int db_exec(struct db *db, const char *sql);
/* A query that returns one integer (a PRAGMA); -1 on error. */
long long db_query_int(struct db *db, const char *sql);

/* ---- binding and reading: every bind returns SQLITE_OK or an error code ----- */
int bind_text(sqlite3_stmt *st, int idx, const char *s);
/* "" is stored as NULL. */
int bind_text_or_null(sqlite3_stmt *st, int idx, const char *s);
int bind_int64(sqlite3_stmt *st, int idx, int64_t v);
/* A time as stored ("YYYY-MM-DDTHH:MM:SSZ"), or NULL for DB_TIME_NONE. */
int bind_time(sqlite3_stmt *st, int idx, int64_t t, char buf[DB_ISO_LEN]);
/* The comparable prefix of t (db_time_key), or NULL for DB_TIME_NONE (no filter). */
const char *db_time_key_or_null(int64_t t, char key[DB_ISO_LEN]);
void column_text(sqlite3_stmt *st, int col, char *out, size_t outlen);
/* A stored time; DB_TIME_NONE when NULL or not a time. */
int64_t column_time(sqlite3_stmt *st, int col);
void column_stamp(sqlite3_stmt *st, int col, struct db_stamp *out);

/*
 * Filtered listings (audit, admin log, CA log) are built by one function: the
 * conditions in use, each a constant fragment with one named parameter, joined by
 * AND after the constant select. value NULL leaves the condition out.
 */
struct db_cond {
    const char *frag;       /* e.g. "user = :user" */
    const char *param;      /* e.g. ":user" */
    const char *value;
};
/* Prepares select + conditions + " ORDER BY " order (+ " LIMIT :limit" when limit > 0). */
sqlite3_stmt *db_select(struct db *db, const char *select, const struct db_cond *conds,
                        size_t nconds, const char *order, long long limit);

/* ---- transactions ------------------------------------------------------------ */
/*
 * Syncs the write-ahead log, which holds every commit not yet checkpointed, to the
 * disk: DB_OK, or DB_ERROR with the error recorded. Nothing to do outside WAL mode,
 * where every commit syncs by itself.
 */
int db_log_sync(struct db *db);
/* Opens a transaction unless the caller has one; *own says whether tx_end ends it. */
int tx_begin(struct db *db, int *own);
/* Commits an own transaction unless result is DB_ERROR; returns result or DB_ERROR. */
int tx_end(struct db *db, int own, int result);

/* An audit row with the stored time ts instead of now (db_sqlite_test.c). */
int db_sqlite_audit_insert_at(struct db *db, const struct db_audit *a, const char *ts);

/* Lower-cases address into out; -1 when it does not fit. */
int db_lower_address(const char *address, char *out, size_t outlen);

#endif
