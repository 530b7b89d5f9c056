#ifndef SUBMITD_DB_PG_H
#define SUBMITD_DB_PG_H
/*
 * What the files of the PostgreSQL backend share: the connection and the helpers that
 * run a statement with bound parameters, reconnect after a lost connection, and
 * convert values. Nothing outside db/postgres/ includes this header.
 *
 * The tables hold the same values as the SQLite ones (db_rules.h): times as ISO-8601
 * UTC text, statuses as words, so that both backends answer alike.
 */
#include "db_pg_names.h"

#include "db.h"
#include "db_backend.h"
#include "db_rules.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#define DB_ADDRESS_MAX 320
#define PG_DSN_MAX 1024
/*
 * Prepared statements kept per connection. Every statement text of the backend is a
 * constant of its own (fewer than a hundred): they all fit, and a text beyond the
 * bound simply runs unprepared, so nothing is ever evicted.
 */
#define PG_STMT_MAX 128
#define PG_STMT_NAME_LEN 48

/* A statement prepared on the current connection, under a name of our own. */
struct pg_stmt {
    char *sql;              /* a copy of the text, the key */
    uint32_t hash;          /* of the text, to skip most comparisons */
    char name[PG_STMT_NAME_LEN];
};

struct db {
    struct db_head head;    /* first: db_backend.c finds the backend here */
    PGconn *conn;
    /* The URI with its password masked: the only form that names the database. */
    char name[PG_DSN_MAX];
    char err[PG_DSN_MAX + 512];
    char sqlstate[6];       /* of the last failed statement, "" when none */
    int in_tx;              /* a db_begin of the caller is open */
    int lost_in_tx;         /* the connection was lost inside it: refuse until rollback */
    int lock_timeout_ms;
    int unsynced;           /* a lazy commit since the last synchronous one */
    /* After a failed reconnect, calls before this monotonic second fail at once. */
    int64_t retry_after;
    /* The connection is in a state of libpq we could not bring back: reconnect. */
    int need_reset;
    struct pg_stmt stmts[PG_STMT_MAX];
    int nstmts;
    /* Names are never reused on a connection: one left behind on the server after
     * an error cannot collide with a new one. */
    unsigned long long stmt_seq;
    /* Random, in every name: the names of two clients differ should a pooler hand
     * them the same server session. */
    unsigned long long stmt_tag;
};

/* ---- errors (db_pg.c) ------------------------------------------------------------ */
/* Records what went wrong, naming the database. */
void pg_set_err(struct db *db, const char *what);
/* Records the server's or libpq's message for res (may be NULL); returns DB_ERROR. */
int pg_fail(struct db *db, const PGresult *res);

/* Settings of every new connection (db_pg.c): notices, the lock timeout. */
int pg_session_setup(struct db *db);
/*
 * Makes the connection usable (db_pg.c): DB_OK, or DB_ERROR with the reason recorded.
 * Reconnects when the connection was lost, unless a transaction was open on it.
 */
int pg_ready(struct db *db);
/* Forgets the prepared statements, as the server does when the session ends
 * (db_pg_exec.c). */
void pg_stmt_forget(struct db *db);

/* ---- statements (db_pg_exec.c) ------------------------------------------------------ */
/*
 * Runs sql with n text parameters ($1..$n; a NULL pointer is SQL NULL). Returns the
 * result, which the caller clears, or NULL with the error (and its SQLSTATE in
 * db->sqlstate) recorded. Reconnects first when the connection was lost, unless
 * a transaction of the caller was open on it. Inside a transaction the statement runs
 * under a savepoint, so that a refused statement leaves the transaction usable, as
 * a failed statement does in SQLite. The text is prepared once per connection, so sql
 * must be one of a bounded set of texts (pg_each_dynamic for the others).
 */
PGresult *pg_exec(struct db *db, const char *sql, int n, const char *const *params);
/* A statement of our own without parameters and rows (BEGIN, ROLLBACK TO ...), run
 * as it is: DB_OK, or DB_ERROR. */
int pg_simple(struct db *db, const char *sql);
/* pg_simple's result, for a caller that reads the command status (COMMIT). */
PGresult *pg_exec_raw(struct db *db, const char *sql, int n, const char *const *params);
/* Commands of our own, several separated by ';', as one string and one round trip;
 * the last command's result, or NULL after the first that failed. */
PGresult *pg_exec_text(struct db *db, const char *sql);
/* pg_exec for a statement without rows: DB_OK, or DB_ERROR. *changed (may be NULL) is
 * the number of rows it changed. */
int pg_run(struct db *db, const char *sql, int n, const char *const *params, long long *changed);
/* An INSERT: DB_OK, DB_EXISTS (unique violation), DB_NOTFOUND (foreign key) or DB_ERROR. */
int pg_insert(struct db *db, const char *sql, int n, const char *const *params);
/* Calls row() for every row of a query; non-zero from row() stops (not an error). */
int pg_each(struct db *db, const char *sql, int n, const char *const *params,
            int (*row)(const PGresult *res, int i, void *ctx), void *ctx);
/* pg_each for a text built at run time, which is not kept prepared. */
int pg_each_dynamic(struct db *db, const char *sql, int n, const char *const *params,
                    int (*row)(const PGresult *res, int i, void *ctx), void *ctx);

/* ---- values ------------------------------------------------------------------- */
#define PG_NUM_LEN 24
/* Decimal text of v in buf, for a parameter; returns buf. */
const char *pg_num(char buf[PG_NUM_LEN], long long v);
/* s, or NULL for NULL and "" (stored as NULL). */
const char *pg_text_or_null(const char *s);
/* A time as stored, or NULL for DB_TIME_NONE (no value / no filter). */
const char *pg_time(int64_t t, char buf[DB_ISO_LEN]);
/* The comparable prefix of t (db_time_key), or NULL for DB_TIME_NONE. */
const char *pg_time_key(int64_t t, char buf[DB_ISO_LEN]);
void pg_text(const PGresult *res, int row, int col, char *out, size_t outlen);
long long pg_ll(const PGresult *res, int row, int col);
int64_t pg_time_col(const PGresult *res, int row, int col);
void pg_stamp_col(const PGresult *res, int row, int col, struct db_stamp *out);

/*
 * Filtered listings: the conditions in use, each a constant fragment whose one
 * parameter is written "$$" and numbered here, joined by AND after the constant select.
 * value NULL leaves the condition out.
 */
struct pg_cond {
    const char *frag;       /* e.g. "\"user\" = $$" */
    const char *value;
};
int pg_select_each(struct db *db, const char *select, const struct pg_cond *conds,
                   size_t nconds, const char *order, long long limit,
                   int (*row)(const PGresult *res, int i, void *ctx), void *ctx);

/* ---- transactions ------------------------------------------------------------ */
int pg_tx_begin(struct db *db, int *own);
int pg_tx_end(struct db *db, int own, int result);

/* An audit row with the stored time ts instead of now (db_pg_audit.c). */
int pg_audit_insert_at(struct db *db, const struct db_audit *a, const char *ts);

int pg_lower_address(const char *address, char *out, size_t outlen);

#endif
