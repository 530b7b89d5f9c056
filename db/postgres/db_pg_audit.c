/*
 * The audit trail (db.h), in PostgreSQL: appending rows, searching them, the figures
 * of submit-admin stats, and the prune, the one way rows leave the table (migration
 * 5). Rows carry their time as ISO-8601 UTC text with milliseconds, stamped by the
 * server (submitd_now_ms), as in SQLite.
 */
#include "db_pg.h"
#include "util.h"

#include <string.h>

#define AUDIT_COLUMNS                                                                    \
    "session, event, decision, reason, client_ip, \"user\", cert_sha256, cert_subject,"  \
    " mail_from, rcpt, queue_id, size, tls, nrcpt"
#define AUDIT_VALUES "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14"

/* The values of a as the parameters $1..$14 of an audit INSERT, numbers in nums. */
static void audit_params(const struct db_audit *a, const char *p[14],
                         char nums[2][PG_NUM_LEN])
{
    p[0] = a->session;
    p[1] = a->event;
    p[2] = a->decision;
    p[3] = a->reason;
    p[4] = a->client_ip;
    p[5] = a->user;
    p[6] = a->cert_sha256;
    p[7] = a->cert_subject;
    p[8] = a->mail_from;
    p[9] = a->rcpt;
    p[10] = a->queue_id;
    /* A size below zero, or a count of zero or less, is stored as NULL. */
    p[11] = a->size < 0 ? NULL : pg_num(nums[0], a->size);
    p[12] = a->tls;
    p[13] = a->nrcpt < 1 ? NULL : pg_num(nums[1], a->nrcpt);
}

int db_audit_insert(struct db *db, const struct db_audit *a)
{
    const char *p[14];
    char nums[2][PG_NUM_LEN];

    audit_params(a, p, nums);
    return pg_run(db, "INSERT INTO audit (" AUDIT_COLUMNS ") VALUES (" AUDIT_VALUES ")", 14, p,
                  NULL);
}

int pg_audit_insert_at(struct db *db, const struct db_audit *a, const char *ts)
{
    const char *p[15];
    char nums[2][PG_NUM_LEN];

    audit_params(a, p, nums);
    p[14] = ts;
    return pg_run(db, "INSERT INTO audit (" AUDIT_COLUMNS ", ts) VALUES (" AUDIT_VALUES ", $15)",
                  15, p, NULL);
}

struct audit_iter {
    db_audit_cb cb;
    void *arg;
};

static int audit_row(const PGresult *res, int i, void *ctx)
{
    struct audit_iter *it = ctx;
    struct db_audit_row r;

    memset(&r, 0, sizeof(r));
    r.id = pg_ll(res, i, 0);
    pg_stamp_col(res, i, 1, &r.ts);
    pg_text(res, i, 2, r.session, sizeof(r.session));
    pg_text(res, i, 3, r.event, sizeof(r.event));
    pg_text(res, i, 4, r.decision, sizeof(r.decision));
    pg_text(res, i, 5, r.reason, sizeof(r.reason));
    pg_text(res, i, 6, r.client_ip, sizeof(r.client_ip));
    pg_text(res, i, 7, r.user, sizeof(r.user));
    pg_text(res, i, 8, r.cert_sha256, sizeof(r.cert_sha256));
    pg_text(res, i, 9, r.cert_subject, sizeof(r.cert_subject));
    pg_text(res, i, 10, r.mail_from, sizeof(r.mail_from));
    pg_text(res, i, 11, r.rcpt, sizeof(r.rcpt));
    pg_text(res, i, 12, r.queue_id, sizeof(r.queue_id));
    r.size = PQgetisnull(res, i, 13) ? -1 : pg_ll(res, i, 13);
    pg_text(res, i, 14, r.tls, sizeof(r.tls));
    return it->cb(it->arg, &r);
}

int db_audit_search(struct db *db, const struct db_audit_filter *f, db_audit_cb cb, void *arg)
{
    char since[DB_ISO_LEN], until[DB_ISO_LEN];
    /*
     * Rows carry milliseconds ("...:SS.mmmZ"); comparing them with the 19 characters
     * "YYYY-MM-DDTHH:MM:SS" includes the whole starting second and excludes the whole
     * second of until (the columns compare byte by byte: COLLATE "C").
     */
    const struct pg_cond conds[] = {
        { "\"user\" = $$", f->user },
        { "decision = $$", f->decision },
        { "event = $$", f->event },
        { "client_ip = $$", f->client_ip },
        { "queue_id = $$", f->queue_id },
        { "ts >= $$", pg_time_key(f->since, since) },
        { "ts < $$", pg_time_key(f->until, until) },
    };
    struct audit_iter it = { cb, arg };

    return pg_select_each(db,
                          "SELECT id, ts, session, event, decision, reason, client_ip, \"user\","
                          " cert_sha256, cert_subject, mail_from, rcpt, queue_id, size, tls"
                          " FROM audit",
                          conds, sizeof(conds) / sizeof(conds[0]),
                          f->newest_first ? "id DESC" : "id", f->limit, audit_row, &it);
}

/* ---- figures for submit-admin stats --------------------------------------- */

int db_audit_decisions(struct db *db, int64_t since, struct db_decision_counts *out)
{
    char key[DB_ISO_LEN];
    const char *p[1] = { key };
    PGresult *res;

    memset(out, 0, sizeof(*out));
    db_time_key(since, key);
    res = pg_exec(db, "SELECT count(*) FILTER (WHERE decision = 'accept'),"
                      " count(*) FILTER (WHERE decision = 'reject'),"
                      " count(*) FILTER (WHERE decision = 'tempfail')"
                      " FROM audit WHERE decision IS NOT NULL AND ts >= $1", 1, p);
    if (res == NULL)
        return DB_ERROR;
    out->accept = pg_ll(res, 0, 0);
    out->reject = pg_ll(res, 0, 1);
    out->tempfail = pg_ll(res, 0, 2);
    PQclear(res);
    return DB_OK;
}

struct refusal_iter {
    db_refusal_cb cb;
    void *arg;
};

static int refusal_row(const PGresult *res, int i, void *ctx)
{
    struct refusal_iter *it = ctx;
    char decision[16], reason[256];

    pg_text(res, i, 0, decision, sizeof(decision));
    pg_text(res, i, 1, reason, sizeof(reason));
    return it->cb(it->arg, decision, reason, pg_ll(res, i, 2));
}

int db_audit_refusals(struct db *db, int64_t since, int limit, db_refusal_cb cb, void *arg)
{
    struct refusal_iter it = { cb, arg };
    char key[DB_ISO_LEN], lim[PG_NUM_LEN];
    const char *p[2] = { key, pg_num(lim, limit) };

    db_time_key(since, key);
    /*
     * A session is counted once per reason however many of its commands were refused
     * for it; rows without a session (summaries of many refusals) count once each.
     */
    return pg_each(db, "SELECT decision, coalesce(reason, ''),"
                       " count(DISTINCT coalesce(session, '#' || id)) AS n"
                       " FROM audit"
                       " WHERE decision IN ('reject', 'tempfail') AND ts >= $1"
                       " GROUP BY decision, coalesce(reason, '')"
                       " ORDER BY n DESC, decision, 2 LIMIT $2", 2, p, refusal_row, &it);
}

/* ---- pruning the audit -------------------------------------------------- */

/* Count, oldest and newest ts of the rows before key; DB_OK or DB_ERROR. */
static int prune_range(struct db *db, const char *key, long long *count, char *oldest,
                       char *newest)
{
    const char *p[1] = { key };
    PGresult *res = pg_exec(db, "SELECT count(*), coalesce(min(ts), ''), coalesce(max(ts), '')"
                                " FROM audit WHERE ts < $1", 1, p);

    if (res == NULL)
        return DB_ERROR;
    *count = pg_ll(res, 0, 0);
    pg_text(res, 0, 1, oldest, DB_ISO_LEN);
    pg_text(res, 0, 2, newest, DB_ISO_LEN);
    PQclear(res);
    return DB_OK;
}

static int prune_rows(struct db *db, const char *key, const struct db_admin_log *who,
                      long long *count, char *oldest, char *newest)
{
    struct db_admin_log e = *who;
    char details[160];
    const char *p[1] = { key };
    long long deleted = 0;
    PGresult *res;

    /* Rows appended by other nodes during the prune wait: the count stays exact. */
    if (pg_run(db, "LOCK TABLE audit IN SHARE ROW EXCLUSIVE MODE", 0, NULL, NULL) != DB_OK ||
        prune_range(db, key, count, oldest, newest) != DB_OK)
        return DB_ERROR;
    (void)str_fmt(details, sizeof(details), "before=%s rows=%lld oldest=%s newest=%s", key,
                  *count, *oldest ? oldest : "-", *newest ? newest : "-");
    e.command = "audit prune";
    e.target = key;
    e.details = details;
    if (db_admin_log_insert(db, &e) != DB_OK)
        return DB_ERROR;
    /* The permit names the row just written: the newest of this transaction. */
    res = pg_exec(db, "INSERT INTO audit_prune_permit (log_id)"
                      " VALUES (currval(pg_get_serial_sequence('admin_log', 'id')))", 0, NULL);
    if (res == NULL)
        return DB_ERROR;
    PQclear(res);
    if (pg_run(db, "DELETE FROM audit WHERE ts < $1", 1, p, &deleted) != DB_OK)
        return DB_ERROR;
    if (deleted != *count) {
        pg_set_err(db, "audit prune: the number of rows changed during the prune");
        return DB_ERROR;
    }
    return pg_run(db, "DELETE FROM audit_prune_permit", 0, NULL, NULL);
}

int db_audit_prune(struct db *db, int64_t before, const struct db_admin_log *who,
                   long long *count, struct db_stamp *oldest, struct db_stamp *newest)
{
    char key[DB_ISO_LEN], first[DB_ISO_LEN] = "", last[DB_ISO_LEN] = "";
    int own, rc;

    if (db_prune_key(before, key) != DB_OK) {
        pg_set_err(db, "audit prune: time out of range");
        return DB_ERROR;
    }
    *count = 0;
    if (pg_tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    rc = prune_rows(db, key, who, count, first, last);
    rc = pg_tx_end(db, own, rc);
    if (rc == DB_OK) {
        db_stamp_or_none(first, oldest);
        db_stamp_or_none(last, newest);
    }
    return rc;
}
