/*
 * The PostgreSQL implementation of db.h: what its files share (db_pg.h). Errors,
 * reconnecting after a lost connection, converting values, the builder of filtered
 * listings, and transactions.
 *
 * The other files, by subject: db_pg_exec.c (running statements: prepared once per
 * connection, one round trip each), db_pg_open.c (open, migrate, close), db_pg_users.c
 * (users, senders, subject maps), db_pg_certs.c, db_pg_audit.c (audit rows, figures,
 * prune), db_pg_log.c (admin and CA log, rate counters, test hooks).
 *
 * A lost connection makes the call that finds it fail (DB_ERROR, which callers treat
 * as TEMPFAIL); the next call reconnects. A transaction open on the lost connection
 * is gone with it, so every call fails until the caller's db_rollback: what ran
 * before the loss must not be followed by the rest as if it had been committed.
 */
#include "db_pg.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- errors ------------------------------------------------------------- */

void pg_set_err(struct db *db, const char *what)
{
    (void)str_fmt(db->err, sizeof(db->err), "%s: %s", db->name, what);
}

int pg_fail(struct db *db, const PGresult *res)
{
    const char *msg = res != NULL ? PQresultErrorMessage(res) : "";
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char line[512];
    char *nl;

    if (msg == NULL || *msg == '\0')
        msg = db->conn != NULL ? PQerrorMessage(db->conn) : "out of memory";
    if (msg == NULL || *msg == '\0')
        msg = "unknown error";
    /* libpq's messages end with a newline and may add a DETAIL line: keep the first. */
    str_lcpy(line, msg, sizeof(line));
    nl = strchr(line, '\n');
    if (nl != NULL)
        *nl = '\0';
    pg_set_err(db, line);
    str_lcpy(db->sqlstate, state != NULL ? state : "", sizeof(db->sqlstate));
    return DB_ERROR;
}

const char *db_errmsg(struct db *db)
{
    return db->err;
}

/* ---- the connection ------------------------------------------------------- */

/* Notices (a COMMIT without a transaction, say) are for people at a psql prompt. */
static void pg_quiet(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

int pg_session_setup(struct db *db)
{
    char ms[PG_NUM_LEN + 2];
    const char *p[1];
    PGresult *res;

    PQsetNoticeProcessor(db->conn, pg_quiet, NULL);
    (void)str_fmt(ms, sizeof(ms), "%dms", db->lock_timeout_ms);
    p[0] = ms;
    res = PQexecParams(db->conn, "SELECT set_config('lock_timeout', $1, false)", 1, NULL, p,
                       NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pg_fail(db, res);
        PQclear(res);
        return DB_ERROR;
    }
    PQclear(res);
    return DB_OK;
}

int pg_ready(struct db *db)
{
    struct timespec now;

    if (db->lost_in_tx) {
        pg_set_err(db, "the connection was lost inside a transaction, which is rolled back");
        db->sqlstate[0] = '\0';
        return DB_ERROR;
    }
    if (PQstatus(db->conn) == CONNECTION_OK && !db->need_reset)
        return DB_OK;
    /*
     * authz answers sessions one after another: while the server is unreachable, one
     * attempt a second (each up to the connect timeout) is enough, and the calls in
     * between fail at once, keeping the message of the last attempt.
     */
    if (clock_gettime(CLOCK_MONOTONIC, &now) == 0 && now.tv_sec < db->retry_after)
        return DB_ERROR;
    /* The server forgets a session's prepared statements with the session. */
    pg_stmt_forget(db);
    db->need_reset = 0;
    PQreset(db->conn);
    if (PQstatus(db->conn) != CONNECTION_OK) {
        pg_fail(db, NULL);
        if (clock_gettime(CLOCK_MONOTONIC, &now) == 0)
            db->retry_after = (int64_t)now.tv_sec + 1;
        return DB_ERROR;
    }
    db->retry_after = 0;
    return pg_session_setup(db);
}

/* ---- values ------------------------------------------------------------- */

const char *pg_num(char buf[PG_NUM_LEN], long long v)
{
    (void)str_fmt(buf, PG_NUM_LEN, "%lld", v);
    return buf;
}

const char *pg_text_or_null(const char *s)
{
    return s != NULL && *s != '\0' ? s : NULL;
}

const char *pg_time(int64_t t, char buf[DB_ISO_LEN])
{
    if (t == DB_TIME_NONE)
        return NULL;
    db_time_iso(t, buf);
    return buf;
}

const char *pg_time_key(int64_t t, char buf[DB_ISO_LEN])
{
    if (t == DB_TIME_NONE)
        return NULL;
    db_time_key(t, buf);
    return buf;
}

void pg_text(const PGresult *res, int row, int col, char *out, size_t outlen)
{
    str_lcpy(out, PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col), outlen);
}

long long pg_ll(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

int64_t pg_time_col(const PGresult *res, int row, int col)
{
    struct db_stamp s;

    if (PQgetisnull(res, row, col) || db_time_parse(PQgetvalue(res, row, col), &s) != DB_OK)
        return DB_TIME_NONE;
    return s.sec;
}

void pg_stamp_col(const PGresult *res, int row, int col, struct db_stamp *out)
{
    if (PQgetisnull(res, row, col) || db_time_parse(PQgetvalue(res, row, col), out) != DB_OK) {
        out->sec = DB_TIME_NONE;
        out->msec = 0;
    }
}

/* ---- filtered listings -------------------------------------------------- */

/*
 * Appends a constant fragment, numbering its "$$" as parameter *np; -1 when the buffer
 * is too small.
 */
static int sql_append(char *sql, size_t size, const char *frag, int *np)
{
    size_t n = strlen(sql);
    const char *mark = strstr(frag, "$$");

    if (mark == NULL)
        return str_lcpy(sql + n, frag, size - n) < size - n ? 0 : -1;
    return str_fmt(sql + n, size - n, "%.*s$%d%s", (int)(mark - frag), frag, ++*np, mark + 2);
}

int pg_select_each(struct db *db, const char *select, const struct pg_cond *conds,
                   size_t nconds, const char *order, long long limit,
                   int (*row)(const PGresult *res, int i, void *ctx), void *ctx)
{
    const char *params[16], *sep = " WHERE ";
    char sql[1024], lim[PG_NUM_LEN];
    int np = 0, bad = 0;

    if (nconds + 1 > sizeof(params) / sizeof(params[0])) {
        pg_set_err(db, "internal error: too many conditions");
        return DB_ERROR;
    }
    sql[0] = '\0';
    bad |= sql_append(sql, sizeof(sql), select, &np);
    for (size_t i = 0; i < nconds; i++) {
        if (conds[i].value == NULL)
            continue;
        bad |= sql_append(sql, sizeof(sql), sep, &np);
        params[np] = conds[i].value;
        bad |= sql_append(sql, sizeof(sql), conds[i].frag, &np);
        sep = " AND ";
    }
    bad |= sql_append(sql, sizeof(sql), " ORDER BY ", &np);
    bad |= sql_append(sql, sizeof(sql), order, &np);
    if (limit > 0) {
        params[np] = pg_num(lim, limit);
        bad |= sql_append(sql, sizeof(sql), " LIMIT $$", &np);
    }
    if (bad) {
        pg_set_err(db, "internal error: query too long");
        return DB_ERROR;
    }
    /* The text depends on the filters in use: not worth a prepared statement. */
    return pg_each_dynamic(db, sql, np, params, row, ctx);
}

/* ---- transactions ------------------------------------------------------- */

int db_begin(struct db *db)
{
    if (pg_ready(db) != DB_OK)
        return DB_ERROR;
    if (pg_simple(db, "BEGIN") != DB_OK)
        return DB_ERROR;
    db->in_tx = 1;
    return DB_OK;
}

/*
 * Ends the caller's transaction with sql, whose last command is COMMIT (the only
 * result read). A COMMIT of a transaction that failed is a ROLLBACK, which
 * PostgreSQL reports as a success of its own.
 */
static int pg_commit(struct db *db, const char *sql)
{
    PGresult *res;
    int rc;

    if (db->lost_in_tx)
        return pg_ready(db);
    res = pg_exec_text(db, sql);
    rc = res != NULL && strcmp(PQcmdStatus(res), "COMMIT") == 0 ? DB_OK : DB_ERROR;
    if (res != NULL && rc != DB_OK)
        pg_set_err(db, "the transaction failed and was rolled back");
    PQclear(res);
    /* COMMIT ends the transaction whether it succeeded or not. */
    if (PQstatus(db->conn) == CONNECTION_OK)
        db->in_tx = PQtransactionStatus(db->conn) != PQTRANS_IDLE;
    if (rc == DB_OK && db->in_tx)
        rc = DB_ERROR;
    return rc;
}

/*
 * A synchronous commit flushes the log up to its own commit record, and so every lazy
 * commit before it; but a transaction that wrote nothing has no such record and
 * flushes nothing. After a lazy commit, the transaction takes a transaction id, which
 * gives it one.
 */
int db_commit(struct db *db)
{
    int rc = pg_commit(db, db->unsynced ? "SELECT txid_current(); COMMIT" : "COMMIT");

    if (rc == DB_OK)
        db->unsynced = 0;
    return rc;
}

/*
 * One round trip: a command that fails (the transaction is aborted, say) ends the
 * string there, leaving the transaction open for the caller's db_rollback. The
 * server flushes the commit record within three wal_writer_delay, and any later
 * synchronous commit of any session flushes it with its own.
 */
int db_commit_lazy(struct db *db)
{
    int rc = pg_commit(db, "SET LOCAL synchronous_commit TO off; COMMIT");

    if (rc == DB_OK)
        db->unsynced = 1;
    return rc;
}

/*
 * A transaction that takes a transaction id writes a commit record, and commits
 * synchronously (the session's setting): the server flushes the log up to it, and
 * so every commit before it.
 */
int db_sync(struct db *db)
{
    PGresult *res;

    if (!db->unsynced)
        return DB_OK;
    if (db->in_tx) {
        pg_set_err(db, "db_sync inside a transaction");
        return DB_ERROR;
    }
    if (pg_ready(db) != DB_OK)
        return DB_ERROR;
    res = pg_exec_raw(db, "SELECT txid_current()", 0, NULL);
    if (res == NULL)
        return DB_ERROR;
    PQclear(res);
    db->unsynced = 0;
    return DB_OK;
}

void db_rollback(struct db *db)
{
    db->in_tx = 0;
    db->lost_in_tx = 0;
    if (PQstatus(db->conn) == CONNECTION_OK && PQtransactionStatus(db->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(db->conn, "ROLLBACK");

        PQclear(res);
    }
}

int pg_tx_begin(struct db *db, int *own)
{
    *own = !db->in_tx;
    return *own ? db_begin(db) : DB_OK;
}

int pg_tx_end(struct db *db, int own, int result)
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

int pg_lower_address(const char *address, char *out, size_t outlen)
{
    if (address == NULL || str_lcpy(out, address, outlen) >= outlen)
        return -1;
    str_lower(out);
    return 0;
}
