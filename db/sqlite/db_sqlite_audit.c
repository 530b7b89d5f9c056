/*
 * The audit trail (db.h), in SQLite: appending rows, searching them, the figures of
 * submit-admin stats, and the prune, the one way rows leave the table (migration 5).
 * Rows carry their time as ISO-8601 UTC text with milliseconds, stamped by SQLite.
 */
#include "db_sqlite.h"
#include "util.h"

#include <string.h>

#define SQL_AUDIT_INSERT                                                                \
    "INSERT INTO audit (session, event, decision, reason, client_ip, user, cert_sha256," \
    " cert_subject, mail_from, rcpt, queue_id, size, tls, nrcpt)"                        \
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"

/* A count of zero or less, or a size below zero, is stored as NULL. */
static int bind_count(sqlite3_stmt *st, int idx, long long v, long long min)
{
    return v < min ? sqlite3_bind_null(st, idx) : sqlite3_bind_int64(st, idx, v);
}

/* Binds the fields of a to ?1..?14 of an audit INSERT; 1 when all went in. */
static int audit_bind(sqlite3_stmt *st, const struct db_audit *a)
{
    return bind_text(st, 1, a->session) == SQLITE_OK && bind_text(st, 2, a->event) == SQLITE_OK &&
           bind_text(st, 3, a->decision) == SQLITE_OK && bind_text(st, 4, a->reason) == SQLITE_OK &&
           bind_text(st, 5, a->client_ip) == SQLITE_OK && bind_text(st, 6, a->user) == SQLITE_OK &&
           bind_text(st, 7, a->cert_sha256) == SQLITE_OK &&
           bind_text(st, 8, a->cert_subject) == SQLITE_OK &&
           bind_text(st, 9, a->mail_from) == SQLITE_OK && bind_text(st, 10, a->rcpt) == SQLITE_OK &&
           bind_text(st, 11, a->queue_id) == SQLITE_OK &&
           bind_count(st, 12, a->size, 0) == SQLITE_OK && bind_text(st, 13, a->tls) == SQLITE_OK &&
           bind_count(st, 14, a->nrcpt, 1) == SQLITE_OK;
}

int db_audit_insert(struct db *db, const struct db_audit *a)
{
    sqlite3_stmt *st = db_stmt(db, ST_AUDIT_INSERT, SQL_AUDIT_INSERT);

    if (st == NULL)
        return DB_ERROR;
    if (!audit_bind(st, a)) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_run(db, st, 1) == SQLITE_DONE ? DB_OK : DB_ERROR;
}

int db_sqlite_audit_insert_at(struct db *db, const struct db_audit *a, const char *ts)
{
    sqlite3_stmt *st = db_prepare(db,
        "INSERT INTO audit (session, event, decision, reason, client_ip, user, cert_sha256,"
        " cert_subject, mail_from, rcpt, queue_id, size, tls, nrcpt, ts)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");

    if (st == NULL)
        return DB_ERROR;
    if (!audit_bind(st, a) || bind_text(st, 15, ts) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_run(db, st, 0) == SQLITE_DONE ? DB_OK : DB_ERROR;
}

static void audit_from_row(sqlite3_stmt *st, struct db_audit_row *r)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(st, 0);
    column_stamp(st, 1, &r->ts);
    column_text(st, 2, r->session, sizeof(r->session));
    column_text(st, 3, r->event, sizeof(r->event));
    column_text(st, 4, r->decision, sizeof(r->decision));
    column_text(st, 5, r->reason, sizeof(r->reason));
    column_text(st, 6, r->client_ip, sizeof(r->client_ip));
    column_text(st, 7, r->user, sizeof(r->user));
    column_text(st, 8, r->cert_sha256, sizeof(r->cert_sha256));
    column_text(st, 9, r->cert_subject, sizeof(r->cert_subject));
    column_text(st, 10, r->mail_from, sizeof(r->mail_from));
    column_text(st, 11, r->rcpt, sizeof(r->rcpt));
    column_text(st, 12, r->queue_id, sizeof(r->queue_id));
    r->size = sqlite3_column_type(st, 13) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 13);
    column_text(st, 14, r->tls, sizeof(r->tls));
}

struct audit_iter {
    db_audit_cb cb;
    void *arg;
};

static int audit_row(sqlite3_stmt *st, void *ctx)
{
    struct audit_iter *it = ctx;
    struct db_audit_row r;

    audit_from_row(st, &r);
    return it->cb(it->arg, &r);
}

int db_audit_search(struct db *db, const struct db_audit_filter *f, db_audit_cb cb, void *arg)
{
    char since[DB_ISO_LEN], until[DB_ISO_LEN];
    /*
     * Rows carry milliseconds ("...:SS.mmmZ"); comparing them with the 19 characters
     * "YYYY-MM-DDTHH:MM:SS" includes the whole starting second and excludes the whole
     * second of until.
     */
    const struct db_cond conds[] = {
        { "user = :user", ":user", f->user },
        { "decision = :decision", ":decision", f->decision },
        { "event = :event", ":event", f->event },
        { "client_ip = :ip", ":ip", f->client_ip },
        { "queue_id = :queue_id", ":queue_id", f->queue_id },
        { "ts >= :since", ":since", db_time_key_or_null(f->since, since) },
        { "ts < :until", ":until", db_time_key_or_null(f->until, until) },
    };
    struct audit_iter it = { cb, arg };
    int filtered = 0;
    const char *order;
    sqlite3_stmt *st;

    for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++)
        filtered |= conds[i].value != NULL;
    /*
     * A WHERE made of just the filters in use lets SQLite pick an index on (user, ts),
     * (decision, ts) or (ts); "+id" keeps it from scanning the whole table to avoid
     * a sort.
     */
    if (filtered)
        order = f->newest_first ? "+id DESC" : "+id";
    else
        order = f->newest_first ? "id DESC" : "id";
    st = db_select(db,
                   "SELECT id, ts, session, event, decision, reason, client_ip, user,"
                   " cert_sha256, cert_subject, mail_from, rcpt, queue_id, size, tls FROM audit",
                   conds, sizeof(conds) / sizeof(conds[0]), order, f->limit);
    if (st == NULL)
        return DB_ERROR;
    return db_each(db, st, audit_row, &it);
}

/* ---- figures for submit-admin stats --------------------------------------- */

int db_audit_decisions(struct db *db, int64_t since, struct db_decision_counts *out)
{
    /* One range scan of the (decision, ts) index per decision. */
    static const char sql[] =
        "SELECT (SELECT count(*) FROM audit WHERE decision = 'accept' AND ts >= ?1),"
        " (SELECT count(*) FROM audit WHERE decision = 'reject' AND ts >= ?1),"
        " (SELECT count(*) FROM audit WHERE decision = 'tempfail' AND ts >= ?1)";
    sqlite3_stmt *st = db_prepare(db, sql);
    char key[DB_ISO_LEN];

    memset(out, 0, sizeof(*out));
    if (st == NULL)
        return DB_ERROR;
    db_time_key(since, key);
    if (bind_text(st, 1, key) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    out->accept = sqlite3_column_int64(st, 0);
    out->reject = sqlite3_column_int64(st, 1);
    out->tempfail = sqlite3_column_int64(st, 2);
    sqlite3_finalize(st);
    return DB_OK;
}

struct refusal_iter {
    db_refusal_cb cb;
    void *arg;
};

static int refusal_row(sqlite3_stmt *st, void *ctx)
{
    struct refusal_iter *it = ctx;
    char decision[16], reason[256];

    column_text(st, 0, decision, sizeof(decision));
    column_text(st, 1, reason, sizeof(reason));
    return it->cb(it->arg, decision, reason, sqlite3_column_int64(st, 2));
}

int db_audit_refusals(struct db *db, int64_t since, int limit, db_refusal_cb cb, void *arg)
{
    /*
     * A session is counted once per reason however many of its commands were refused
     * for it; rows without a session (summaries of many refusals) count once each.
     */
    sqlite3_stmt *st = db_prepare(db, "SELECT decision, coalesce(reason, ''),"
                                      " count(DISTINCT coalesce(session, '#' || id)) AS n"
                                      " FROM audit"
                                      " WHERE decision IN ('reject', 'tempfail') AND ts >= ?1"
                                      " GROUP BY decision, coalesce(reason, '')"
                                      " ORDER BY n DESC, decision, 2 LIMIT ?2");
    struct refusal_iter it = { cb, arg };
    char key[DB_ISO_LEN];

    if (st == NULL)
        return DB_ERROR;
    db_time_key(since, key);
    if (bind_text(st, 1, key) != SQLITE_OK || sqlite3_bind_int(st, 2, limit) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, refusal_row, &it);
}

/* ---- pruning the audit -------------------------------------------------- */

/* Count, oldest and newest ts of the rows before key; DB_OK or DB_ERROR. */
static int prune_range(struct db *db, const char *key, long long *count, char *oldest,
                       char *newest)
{
    sqlite3_stmt *st = db_prepare(db, "SELECT count(*), coalesce(min(ts), ''),"
                                      " coalesce(max(ts), '') FROM audit WHERE ts < ?1");

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, key) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    *count = sqlite3_column_int64(st, 0);
    column_text(st, 1, oldest, DB_ISO_LEN);
    column_text(st, 2, newest, DB_ISO_LEN);
    sqlite3_finalize(st);
    return DB_OK;
}

/* Runs one statement with at most one text or one integer parameter. */
static int db_run_once(struct db *db, const char *sql, const char *text, long long num)
{
    sqlite3_stmt *st = db_prepare(db, sql);

    if (st == NULL)
        return DB_ERROR;
    if ((text != NULL && bind_text(st, 1, text) != SQLITE_OK) ||
        (text == NULL && num != 0 && sqlite3_bind_int64(st, 1, num) != SQLITE_OK)) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_run(db, st, 0) == SQLITE_DONE ? DB_OK : DB_ERROR;
}

static int prune_rows(struct db *db, const char *key, const struct db_admin_log *who,
                      long long *count, char *oldest, char *newest)
{
    struct db_admin_log e = *who;
    char details[160];
    long long log_id;

    if (prune_range(db, key, count, oldest, newest) != DB_OK)
        return DB_ERROR;
    (void)str_fmt(details, sizeof(details), "before=%s rows=%lld oldest=%s newest=%s", key,
                  *count, *oldest ? oldest : "-", *newest ? newest : "-");
    e.command = "audit prune";
    e.target = key;
    e.details = details;
    if (db_admin_log_insert(db, &e) != DB_OK)
        return DB_ERROR;
    log_id = sqlite3_last_insert_rowid(db->h);
    if (db_run_once(db, "INSERT INTO audit_prune_permit (log_id) VALUES (?1)", NULL, log_id) !=
            DB_OK ||
        db_run_once(db, "DELETE FROM audit WHERE ts < ?1", key, 0) != DB_OK)
        return DB_ERROR;
    if (sqlite3_changes(db->h) != *count) {
        db_set_err(db, "audit prune: the number of rows changed during the prune");
        return DB_ERROR;
    }
    return db_run_once(db, "DELETE FROM audit_prune_permit", NULL, 0);
}

int db_audit_prune(struct db *db, int64_t before, const struct db_admin_log *who,
                   long long *count, struct db_stamp *oldest, struct db_stamp *newest)
{
    char key[DB_ISO_LEN], first[DB_ISO_LEN] = "", last[DB_ISO_LEN] = "";
    int own, rc;

    if (db_prune_key(before, key) != DB_OK) {
        db_set_err(db, "audit prune: time out of range");
        return DB_ERROR;
    }
    *count = 0;
    if (tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    rc = prune_rows(db, key, who, count, first, last);
    rc = tx_end(db, own, rc);
    if (rc == DB_OK) {
        db_stamp_or_none(first, oldest);
        db_stamp_or_none(last, newest);
    }
    return rc;
}
