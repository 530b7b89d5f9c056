/*
 * The admin log and the CA operations read through the ca_log view, the per-user
 * rate counters, and the test hooks (db.h, db_test.h), in PostgreSQL.
 *
 * Rate counters: several nodes record into the same rows at once. INSERT ... ON
 * CONFLICT DO UPDATE adds to the row atomically (PostgreSQL locks the row it
 * updates), so no count is lost between a read and a write.
 */
#include "db_pg.h"
#include "util.h"

#include <string.h>

int db_admin_log_insert(struct db *db, const struct db_admin_log *e)
{
    char uid[PG_NUM_LEN];
    const char *p[9] = {
        pg_num(uid, e->uid),
        e->program != NULL ? e->program : "",
        e->command != NULL ? e->command : "",
        pg_text_or_null(e->target),
        pg_text_or_null(e->details),
        e->unix_user != NULL ? e->unix_user : "",
        pg_text_or_null(e->sudo_user),
        pg_text_or_null(e->user),
        pg_text_or_null(e->serial),
    };

    return pg_run(db, "INSERT INTO admin_log (uid, login, program, command, target, details,"
                      " unix_user, sudo_user, \"user\", serial)"
                      " VALUES ($1, coalesce($7, $6), $2, $3, $4, $5, $6, $7, $8, $9)",
                  9, p, NULL);
}

struct admin_log_iter {
    db_admin_log_cb cb;
    void *arg;
};

static int admin_log_row(const PGresult *res, int i, void *ctx)
{
    struct admin_log_iter *it = ctx;
    struct db_admin_log_row r;

    memset(&r, 0, sizeof(r));
    r.id = pg_ll(res, i, 0);
    pg_stamp_col(res, i, 1, &r.ts);
    r.uid = pg_ll(res, i, 2);
    pg_text(res, i, 3, r.login, sizeof(r.login));
    pg_text(res, i, 4, r.program, sizeof(r.program));
    pg_text(res, i, 5, r.command, sizeof(r.command));
    pg_text(res, i, 6, r.target, sizeof(r.target));
    pg_text(res, i, 7, r.details, sizeof(r.details));
    pg_text(res, i, 8, r.user, sizeof(r.user));
    pg_text(res, i, 9, r.serial, sizeof(r.serial));
    return it->cb(it->arg, &r);
}

int db_admin_log_list(struct db *db, int64_t since, const char *user, db_admin_log_cb cb,
                      void *arg)
{
    struct admin_log_iter it = { cb, arg };
    char key[DB_ISO_LEN];
    /* The 19 characters of since include the whole second (db_rules.h). */
    const struct pg_cond conds[] = {
        { "ts >= $$", pg_time_key(since, key) },
        { "$$ IN (\"user\", login)", user },
    };

    return pg_select_each(db,
                          "SELECT id, ts, uid, login, program, command, target, details,"
                          " \"user\", serial FROM admin_log",
                          conds, sizeof(conds) / sizeof(conds[0]), "id", 0, admin_log_row, &it);
}

struct ca_log_iter {
    db_ca_log_cb cb;
    void *arg;
};

static int ca_log_row(const PGresult *res, int i, void *ctx)
{
    struct ca_log_iter *it = ctx;
    struct db_ca_log_row r;

    memset(&r, 0, sizeof(r));
    r.id = pg_ll(res, i, 0);
    pg_stamp_col(res, i, 1, &r.ts);
    r.uid = pg_ll(res, i, 2);
    pg_text(res, i, 3, r.unix_user, sizeof(r.unix_user));
    pg_text(res, i, 4, r.sudo_user, sizeof(r.sudo_user));
    pg_text(res, i, 5, r.command, sizeof(r.command));
    pg_text(res, i, 6, r.serial, sizeof(r.serial));
    pg_text(res, i, 7, r.user, sizeof(r.user));
    pg_text(res, i, 8, r.detail, sizeof(r.detail));
    return it->cb(it->arg, &r);
}

int db_ca_log_list(struct db *db, const char *user, const char *serial, db_ca_log_cb cb,
                   void *arg)
{
    struct ca_log_iter it = { cb, arg };
    const struct pg_cond conds[] = {
        { "\"user\" = $$", user },
        { "serial = upper($$)", serial },
    };

    return pg_select_each(db,
                          "SELECT id, ts, uid, unix_user, sudo_user, command, serial, \"user\","
                          " detail FROM ca_log",
                          conds, sizeof(conds) / sizeof(conds[0]), "id", 0, ca_log_row, &it);
}

/* ---- rate limits ------------------------------------------------------------ */

int db_rate_record(struct db *db, const char *user, int64_t now, long long recipients)
{
    char minute[PG_NUM_LEN], rcpts[PG_NUM_LEN], before[PG_NUM_LEN];
    const char *p[3] = { user, pg_num(minute, db_rate_minute(now)), pg_num(rcpts, recipients) };
    const char *q[1] = { pg_num(before, db_rate_prune_before(now)) };

    if (pg_run(db, "INSERT INTO rate_usage (\"user\", minute, messages, recipients)"
                   " VALUES ($1, $2, 1, $3) ON CONFLICT (\"user\", minute) DO UPDATE"
                   " SET messages = rate_usage.messages + 1,"
                   " recipients = rate_usage.recipients + excluded.recipients",
               3, p, NULL) != DB_OK)
        return DB_ERROR;
    /* Drops the minutes that no window can reach any more. */
    if (db_rate_prune_due(now))
        return pg_run(db, "DELETE FROM rate_usage WHERE minute < $1", 1, q, NULL);
    return DB_OK;
}

int db_rate_usage(struct db *db, const char *user, int64_t now, long long *messages,
                  long long *recipients)
{
    char after[PG_NUM_LEN];
    const char *p[2] = { user, pg_num(after, db_rate_window_after(now)) };
    PGresult *res = pg_exec(db, "SELECT coalesce(sum(messages), 0), coalesce(sum(recipients), 0)"
                                " FROM rate_usage WHERE \"user\" = $1 AND minute > $2", 2, p);

    if (res == NULL)
        return DB_ERROR;
    *messages = pg_ll(res, 0, 0);
    *recipients = pg_ll(res, 0, 1);
    PQclear(res);
    return DB_OK;
}

/* ---- test hooks ---------------------------------------------------------------- */

/*
 * What an admin could type at a psql prompt; the triggers of migrations 1, 2 and 5
 * must refuse each of them.
 */
int db_test_tamper(struct db *db, enum db_tamper what)
{
    static const char *const sql[] = {
        [DB_TAMPER_AUDIT_UPDATE] = "UPDATE audit SET reason = 'tampered'",
        [DB_TAMPER_AUDIT_DELETE] = "DELETE FROM audit",
        [DB_TAMPER_ADMIN_LOG_UPDATE] = "UPDATE admin_log SET login = 'tampered'",
        [DB_TAMPER_ADMIN_LOG_DELETE] = "DELETE FROM admin_log",
        [DB_TAMPER_CA_LOG_UPDATE] = "UPDATE ca_log SET command = 'tampered'",
        [DB_TAMPER_CA_LOG_DELETE] = "DELETE FROM ca_log",
        [DB_TAMPER_PRUNE_PERMIT] = "INSERT INTO audit_prune_permit (log_id)"
                                   " SELECT max(id) FROM admin_log",
    };

    if ((unsigned)what >= sizeof(sql) / sizeof(sql[0]) || sql[what] == NULL) {
        pg_set_err(db, "unknown tamper");
        return DB_ERROR;
    }
    return pg_run(db, sql[what], 0, NULL, NULL);
}

int db_test_forget_prepared(struct db *db)
{
    /* Past pg_exec, which would prepare the statement: the list of db_pg_exec.c stays. */
    PGresult *res = PQexec(db->conn, "DEALLOCATE ALL");
    int rc = PQresultStatus(res) == PGRES_COMMAND_OK ? DB_OK : pg_fail(db, res);

    PQclear(res);
    return rc;
}

int db_test_audit_insert_at(struct db *db, const struct db_audit *a, const struct db_stamp *at)
{
    char ts[DB_ISO_LEN];

    db_stamp_text(at, ts, sizeof(ts));
    if (ts[0] == '\0') {
        pg_set_err(db, "time out of range");
        return DB_ERROR;
    }
    return pg_audit_insert_at(db, a, ts);
}
