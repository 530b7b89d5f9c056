/*
 * Per-user usage by minute for the hourly rate limits (db.h), in SQLite. authz
 * records and checks on every accepted submission, so both statements are prepared
 * once per connection. Which minutes count is db_rules.c's.
 */
#include "db_sqlite.h"

#define SQL_RATE_RECORD                                                                  \
    "INSERT INTO rate_usage (user, minute, messages, recipients) VALUES (?1, ?2, 1, ?3)" \
    " ON CONFLICT (user, minute) DO UPDATE SET messages = messages + 1,"                 \
    " recipients = recipients + excluded.recipients"
#define SQL_RATE_PRUNE "DELETE FROM rate_usage WHERE minute < ?1"
#define SQL_RATE_USAGE                                                                   \
    "SELECT coalesce(sum(messages), 0), coalesce(sum(recipients), 0) FROM rate_usage"    \
    " WHERE user = ?1 AND minute > ?2"

/* Drops the minutes that no window can reach any more. */
static int rate_prune(struct db *db, int64_t now)
{
    sqlite3_stmt *st = db_stmt(db, ST_RATE_PRUNE, SQL_RATE_PRUNE);

    if (st == NULL)
        return DB_ERROR;
    if (bind_int64(st, 1, db_rate_prune_before(now)) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_run(db, st, 1) == SQLITE_DONE ? DB_OK : DB_ERROR;
}

int db_rate_record(struct db *db, const char *user, int64_t now, long long recipients)
{
    sqlite3_stmt *st = db_stmt(db, ST_RATE_RECORD, SQL_RATE_RECORD);

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK ||
        bind_int64(st, 2, db_rate_minute(now)) != SQLITE_OK ||
        bind_int64(st, 3, recipients) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    if (db_run(db, st, 1) != SQLITE_DONE)
        return DB_ERROR;
    return db_rate_prune_due(now) ? rate_prune(db, now) : DB_OK;
}

int db_rate_usage(struct db *db, const char *user, int64_t now, long long *messages,
                  long long *recipients)
{
    sqlite3_stmt *st = db_stmt(db, ST_RATE_USAGE, SQL_RATE_USAGE);
    int rc;

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK ||
        bind_int64(st, 2, db_rate_window_after(now)) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *messages = sqlite3_column_int64(st, 0);
        *recipients = sqlite3_column_int64(st, 1);
    } else {
        db_fail(db);
    }
    db_stmt_done(st);
    return rc == SQLITE_ROW ? DB_OK : DB_ERROR;
}
