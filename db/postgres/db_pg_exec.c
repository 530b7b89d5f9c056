/*
 * Running statements on PostgreSQL (db_pg.h): bound parameters only, so values never
 * enter the SQL text.
 *
 * The cost of a statement is mostly the server's: parsing and planning the text, and
 * one network round trip per command. So each text is prepared once per connection
 * and then only executed, and everything one statement needs is sent at once in
 * libpq's pipeline mode: inside a transaction "SAVEPOINT; [prepare;] execute;
 * RELEASE" is one round trip instead of three. A statement that fails makes the
 * server skip the rest of the pipeline; the ROLLBACK TO SAVEPOINT that keeps the
 * transaction usable is then a round trip of its own, which only failures pay. The
 * texts built at run time (the filtered listings) are not kept: they run unprepared.
 *
 * The server forgets prepared statements when the session ends: the list is emptied
 * whenever the connection is made again (pg_ready), and a statement the server says it
 * does not know (a pooler or an administrator may have removed it without libpq
 * noticing) is prepared afresh and run once more, which is safe because a statement
 * that could not be executed changed nothing.
 */
#include "db_pg.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* SQLSTATEs after which a statement prepared earlier is run again, prepared afresh. */
#define PG_INVALID_STATEMENT_NAME "26000"     /* the server does not know the name */
#define PG_FEATURE_NOT_SUPPORTED "0A000"      /* "cached plan must not change result type" */

/* ---- prepared statements ----------------------------------------------------------- */

/* FNV-1a: enough to tell apart the texts of one program. */
static uint32_t stmt_hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static struct pg_stmt *stmt_find(struct db *db, const char *sql, uint32_t hash)
{
    for (int i = 0; i < db->nstmts; i++)
        if (db->stmts[i].hash == hash && strcmp(db->stmts[i].sql, sql) == 0)
            return &db->stmts[i];
    return NULL;
}

/* A new entry with a new name, or NULL when the list is full (run unprepared then). */
static struct pg_stmt *stmt_add(struct db *db, const char *sql, uint32_t hash)
{
    struct pg_stmt *st;
    char *copy;

    if (db->nstmts >= PG_STMT_MAX)
        return NULL;
    copy = strdup(sql);
    if (copy == NULL)
        return NULL;
    if (db->stmt_tag == 0 &&
        getrandom(&db->stmt_tag, sizeof(db->stmt_tag), GRND_NONBLOCK) != sizeof(db->stmt_tag)) {
        struct timespec now;

        /* Only a clash between clients is at stake: the time and pid tell them apart. */
        (void)clock_gettime(CLOCK_REALTIME, &now);
        db->stmt_tag = ((unsigned long long)now.tv_sec << 32) ^ (unsigned long long)now.tv_nsec ^
                       ((unsigned long long)getpid() << 16);
    }
    st = &db->stmts[db->nstmts++];
    st->sql = copy;
    st->hash = hash;
    (void)str_fmt(st->name, sizeof(st->name), "submitd_%016llx_%llu", db->stmt_tag,
                  ++db->stmt_seq);
    return st;
}

/* Drops one entry: the server does not have it, or has one we no longer trust. */
static void stmt_drop(struct db *db, struct pg_stmt *st)
{
    free(st->sql);
    *st = db->stmts[--db->nstmts];
}

void pg_stmt_forget(struct db *db)
{
    for (int i = 0; i < db->nstmts; i++)
        free(db->stmts[i].sql);
    db->nstmts = 0;
}

/* ---- one statement, one round trip ---------------------------------------------------- */

/* The commands of a pipeline, in the order they are sent. */
enum { STEP_SAVEPOINT, STEP_PREPARE, STEP_STMT, STEP_RELEASE, STEP_COUNT };

struct pipeline {
    int sent[STEP_COUNT];
    PGresult *res[STEP_COUNT];
    /* An error after the last command's result: outside a transaction, that of the
     * implicit commit at the end of the pipeline (a serialization failure, say). */
    PGresult *tail;
    int synced;             /* the end of the pipeline was read */
};

static int res_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);

    return res != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

static int send_steps(struct db *db, struct pipeline *p, const char *sql, int n,
                      const char *const *params, const struct pg_stmt *st, int prepare)
{
    PGconn *c = db->conn;

    if (p->sent[STEP_SAVEPOINT] &&
        !PQsendQueryParams(c, "SAVEPOINT submitd_stmt", 0, NULL, NULL, NULL, NULL, 0))
        return -1;
    if (prepare && !PQsendPrepare(c, st->name, sql, n, NULL))
        return -1;
    p->sent[STEP_PREPARE] = prepare;
    if (st != NULL ? !PQsendQueryPrepared(c, st->name, n, params, NULL, NULL, 0)
                   : !PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0))
        return -1;
    p->sent[STEP_STMT] = 1;
    if (p->sent[STEP_RELEASE] &&
        !PQsendQueryParams(c, "RELEASE SAVEPOINT submitd_stmt", 0, NULL, NULL, NULL, NULL, 0))
        return -1;
    return PQpipelineSync(c) ? 0 : -1;
}

/*
 * Reads the results of what was sent, up to the end of the pipeline: each command has
 * its result (PGRES_PIPELINE_ABORTED for those after a failure) followed by NULL.
 * A lost connection ends the results early.
 */
static void read_steps(struct db *db, struct pipeline *p)
{
    int step = 0, nulls = 0;

    while (step < STEP_COUNT && !p->sent[step])
        step++;
    for (;;) {
        PGresult *res = PQgetResult(db->conn);

        if (res == NULL) {
            /* Two in a row: nothing more will come, the connection is likely gone. */
            if (++nulls > 1 || PQstatus(db->conn) != CONNECTION_OK)
                return;
            do
                step++;
            while (step < STEP_COUNT && !p->sent[step]);
            continue;
        }
        nulls = 0;
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            p->synced = 1;
            return;
        }
        if (step < STEP_COUNT && p->res[step] == NULL)
            p->res[step] = res;
        else if (p->tail == NULL && !res_ok(res))
            p->tail = res;
        else
            PQclear(res);
    }
}

/* The first result that tells what went wrong; NULL sends pg_fail to libpq's message. */
static const PGresult *first_error(const struct pipeline *p)
{
    for (int i = 0; i < STEP_COUNT; i++)
        if (p->sent[i] && p->res[i] != NULL && !res_ok(p->res[i]) &&
            PQresultStatus(p->res[i]) != PGRES_PIPELINE_ABORTED)
            return p->res[i];
    return p->tail;
}

/*
 * After a statement that failed under its savepoint: back to the savepoint, keeping
 * the statement's own error rather than that of the rollback. DB_OK when the
 * transaction is usable again.
 */
static int rollback_to_savepoint(struct db *db)
{
    char err[sizeof(db->err)], state[sizeof(db->sqlstate)];
    int rc;

    str_lcpy(err, db->err, sizeof(err));
    str_lcpy(state, db->sqlstate, sizeof(state));
    rc = pg_simple(db, "ROLLBACK TO SAVEPOINT submitd_stmt");
    str_lcpy(db->err, err, sizeof(db->err));
    str_lcpy(db->sqlstate, state, sizeof(db->sqlstate));
    return rc;
}

/*
 * Runs one statement in one round trip; the outcome as pg_exec's. *again is set when
 * the statement failed only because the server no longer has the prepared statement
 * this connection had kept (or its plan no longer fits the tables): the caller runs it
 * once more, prepared afresh.
 */
static PGresult *pg_pipeline(struct db *db, const char *sql, int n, const char *const *params,
                             int cache, int *again)
{
    struct pipeline p;
    struct pg_stmt *st = NULL;
    const PGresult *err;
    int prepare = 0, sent, usable = 1;
    uint32_t hash = cache ? stmt_hash(sql) : 0;
    PGresult *out = NULL;

    memset(&p, 0, sizeof(p));
    *again = 0;
    if (cache && (st = stmt_find(db, sql, hash)) == NULL)
        prepare = (st = stmt_add(db, sql, hash)) != NULL;
    /* Inside the caller's transaction, a savepoint keeps it usable if this fails. */
    p.sent[STEP_SAVEPOINT] = p.sent[STEP_RELEASE] =
        PQtransactionStatus(db->conn) == PQTRANS_INTRANS;
    if (!PQenterPipelineMode(db->conn)) {
        if (prepare)
            stmt_drop(db, st);
        pg_fail(db, NULL);
        return NULL;
    }
    sent = send_steps(db, &p, sql, n, params, st, prepare) == 0;
    /*
     * After a failed send, what went out is still read, so that the pipeline ends;
     * that needs the sync, without which the server keeps its answers to itself.
     */
    if (PQstatus(db->conn) == CONNECTION_OK && (sent || PQpipelineSync(db->conn)))
        read_steps(db, &p);
    if ((!PQexitPipelineMode(db->conn) || !p.synced) && PQstatus(db->conn) == CONNECTION_OK)
        db->need_reset = 1;
    if (prepare && !res_ok(p.res[STEP_PREPARE])) {
        stmt_drop(db, st);
        st = NULL;
    }

    /* Success is the statement's result and the end of the pipeline with no error in
     * between: only then has an implicit transaction committed. */
    if (sent && p.synced && p.tail == NULL && !db->need_reset && res_ok(p.res[STEP_STMT]) &&
        (!p.sent[STEP_RELEASE] || res_ok(p.res[STEP_RELEASE]))) {
        db->sqlstate[0] = '\0';
        out = p.res[STEP_STMT];
        p.res[STEP_STMT] = NULL;
        goto done;
    }
    err = sent ? first_error(&p) : NULL;
    pg_fail(db, err);
    if (PQstatus(db->conn) != CONNECTION_OK || db->need_reset) {
        /* A transaction open on a connection that is gone, or to be made again, is lost. */
        if (db->in_tx)
            db->lost_in_tx = 1;
        /* Whatever the statement's own error, the caller must not take it for an
         * expected outcome (a duplicate, say): the call failed. */
        db->sqlstate[0] = '\0';
        goto done;
    }
    /* The statement (or its preparation) failed after the savepoint: undo just it. */
    if (p.sent[STEP_SAVEPOINT] && res_ok(p.res[STEP_SAVEPOINT]) && !res_ok(p.res[STEP_STMT]))
        usable = rollback_to_savepoint(db) == DB_OK;
    if (!usable)
        db->sqlstate[0] = '\0';  /* the transaction is lost, not just this statement */
    if (usable && st != NULL && !prepare && err != NULL && err == p.res[STEP_STMT]) {
        if (strcmp(db->sqlstate, PG_INVALID_STATEMENT_NAME) == 0) {
            pg_stmt_forget(db);    /* the server may have lost them all */
            *again = 1;
        } else if (strcmp(db->sqlstate, PG_FEATURE_NOT_SUPPORTED) == 0) {
            stmt_drop(db, st);     /* prepared before a change of its tables */
            *again = 1;
        }
    }
done:
    for (int i = 0; i < STEP_COUNT; i++)
        PQclear(p.res[i]);
    PQclear(p.tail);
    return out;
}

/* ---- the statements of the backend ------------------------------------------------------ */

/* res when it is a success; otherwise NULL, with the error recorded and res freed. */
static PGresult *pg_checked(struct db *db, PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        db->sqlstate[0] = '\0';
        return res;
    }
    pg_fail(db, res);
    PQclear(res);
    if (PQstatus(db->conn) != CONNECTION_OK && db->in_tx)
        db->lost_in_tx = 1;
    return NULL;
}

PGresult *pg_exec_raw(struct db *db, const char *sql, int n, const char *const *params)
{
    return pg_checked(db, PQexecParams(db->conn, sql, n, NULL, params, NULL, NULL, 0));
}

PGresult *pg_exec_text(struct db *db, const char *sql)
{
    return pg_checked(db, PQexec(db->conn, sql));
}

int pg_simple(struct db *db, const char *sql)
{
    PGresult *res = pg_exec_raw(db, sql, 0, NULL);

    PQclear(res);
    return res != NULL ? DB_OK : DB_ERROR;
}

static PGresult *pg_exec_opt(struct db *db, const char *sql, int n, const char *const *params,
                             int cache)
{
    PGresult *res;
    int again;

    if (pg_ready(db) != DB_OK)
        return NULL;
    res = pg_pipeline(db, sql, n, params, cache, &again);
    if (res == NULL && again)
        res = pg_pipeline(db, sql, n, params, cache, &again);
    return res;
}

PGresult *pg_exec(struct db *db, const char *sql, int n, const char *const *params)
{
    return pg_exec_opt(db, sql, n, params, 1);
}

int pg_run(struct db *db, const char *sql, int n, const char *const *params, long long *changed)
{
    PGresult *res = pg_exec(db, sql, n, params);

    if (res == NULL)
        return DB_ERROR;
    if (changed != NULL) {
        const char *t = PQcmdTuples(res);

        *changed = t != NULL && *t != '\0' ? strtoll(t, NULL, 10) : 0;
    }
    PQclear(res);
    return DB_OK;
}

int pg_insert(struct db *db, const char *sql, int n, const char *const *params)
{
    if (pg_run(db, sql, n, params, NULL) == DB_OK)
        return DB_OK;
    if (strcmp(db->sqlstate, "23505") == 0)      /* unique_violation */
        return DB_EXISTS;
    if (strcmp(db->sqlstate, "23503") == 0)      /* foreign_key_violation */
        return DB_NOTFOUND;
    return DB_ERROR;
}

static int each_row(PGresult *res,
                    int (*row)(const PGresult *res, int i, void *ctx), void *ctx)
{
    int rows;

    if (res == NULL)
        return DB_ERROR;
    /* The whole result is in memory: a callback may use the database. */
    rows = PQntuples(res);
    for (int i = 0; i < rows; i++)
        if (row(res, i, ctx) != 0)
            break;
    PQclear(res);
    return DB_OK;
}

int pg_each(struct db *db, const char *sql, int n, const char *const *params,
            int (*row)(const PGresult *res, int i, void *ctx), void *ctx)
{
    return each_row(pg_exec_opt(db, sql, n, params, 1), row, ctx);
}

int pg_each_dynamic(struct db *db, const char *sql, int n, const char *const *params,
                    int (*row)(const PGresult *res, int i, void *ctx), void *ctx)
{
    return each_row(pg_exec_opt(db, sql, n, params, 0), row, ctx);
}
