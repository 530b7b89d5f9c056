/*
 * The admin log (db.h), in SQLite: every change made by submit-admin and submit-ca,
 * and the CA operations among them, read through the ca_log view (migration 5).
 */
#include "db_sqlite.h"
#include "util.h"

#include <string.h>

int db_admin_log_insert(struct db *db, const struct db_admin_log *e)
{
    sqlite3_stmt *st = db_prepare(db, "INSERT INTO admin_log (uid, login, program, command,"
                                      " target, details, unix_user, sudo_user, user, serial)"
                                      " VALUES (?1, coalesce(?8, ?7), ?2, ?3, ?4, ?5, ?7, ?8,"
                                      " ?9, ?10)");
    int ok;

    if (st == NULL)
        return DB_ERROR;
    ok = sqlite3_bind_int64(st, 1, e->uid) == SQLITE_OK &&
         bind_text(st, 2, e->program != NULL ? e->program : "") == SQLITE_OK &&
         bind_text(st, 3, e->command != NULL ? e->command : "") == SQLITE_OK &&
         bind_text_or_null(st, 4, e->target) == SQLITE_OK &&
         bind_text_or_null(st, 5, e->details) == SQLITE_OK &&
         bind_text(st, 7, e->unix_user != NULL ? e->unix_user : "") == SQLITE_OK &&
         bind_text_or_null(st, 8, e->sudo_user) == SQLITE_OK &&
         bind_text_or_null(st, 9, e->user) == SQLITE_OK &&
         bind_text_or_null(st, 10, e->serial) == SQLITE_OK;
    if (!ok) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_run(db, st, 0) == SQLITE_DONE ? DB_OK : DB_ERROR;
}

struct admin_log_iter {
    db_admin_log_cb cb;
    void *arg;
};

static int admin_log_row(sqlite3_stmt *st, void *ctx)
{
    struct admin_log_iter *it = ctx;
    struct db_admin_log_row r;

    memset(&r, 0, sizeof(r));
    r.id = sqlite3_column_int64(st, 0);
    column_stamp(st, 1, &r.ts);
    r.uid = sqlite3_column_int64(st, 2);
    column_text(st, 3, r.login, sizeof(r.login));
    column_text(st, 4, r.program, sizeof(r.program));
    column_text(st, 5, r.command, sizeof(r.command));
    column_text(st, 6, r.target, sizeof(r.target));
    column_text(st, 7, r.details, sizeof(r.details));
    column_text(st, 8, r.user, sizeof(r.user));
    column_text(st, 9, r.serial, sizeof(r.serial));
    return it->cb(it->arg, &r);
}

int db_admin_log_list(struct db *db, int64_t since, const char *user, db_admin_log_cb cb,
                      void *arg)
{
    struct admin_log_iter it = { cb, arg };
    char key[DB_ISO_LEN];
    /* The 19 characters of since include the whole second (db_rules.h). */
    const struct db_cond conds[] = {
        { "ts >= :since", ":since", db_time_key_or_null(since, key) },
        { "(user = :user OR login = :user)", ":user", user },
    };
    sqlite3_stmt *st = db_select(db,
                                 "SELECT id, ts, uid, login, program, command, target, details,"
                                 " user, serial FROM admin_log",
                                 conds, sizeof(conds) / sizeof(conds[0]), "id", 0);

    if (st == NULL)
        return DB_ERROR;
    return db_each(db, st, admin_log_row, &it);
}

struct ca_log_iter {
    db_ca_log_cb cb;
    void *arg;
};

static int ca_log_row(sqlite3_stmt *st, void *ctx)
{
    struct ca_log_iter *it = ctx;
    struct db_ca_log_row r;

    memset(&r, 0, sizeof(r));
    r.id = sqlite3_column_int64(st, 0);
    column_stamp(st, 1, &r.ts);
    r.uid = sqlite3_column_int64(st, 2);
    column_text(st, 3, r.unix_user, sizeof(r.unix_user));
    column_text(st, 4, r.sudo_user, sizeof(r.sudo_user));
    column_text(st, 5, r.command, sizeof(r.command));
    column_text(st, 6, r.serial, sizeof(r.serial));
    column_text(st, 7, r.user, sizeof(r.user));
    column_text(st, 8, r.detail, sizeof(r.detail));
    return it->cb(it->arg, &r);
}

int db_ca_log_list(struct db *db, const char *user, const char *serial, db_ca_log_cb cb,
                   void *arg)
{
    struct ca_log_iter it = { cb, arg };
    const struct db_cond conds[] = {
        { "user = :user", ":user", user },
        { "serial = upper(:serial)", ":serial", serial },
    };
    sqlite3_stmt *st = db_select(db,
                                 "SELECT id, ts, uid, unix_user, sudo_user, command, serial,"
                                 " user, detail FROM ca_log",
                                 conds, sizeof(conds) / sizeof(conds[0]), "id", 0);

    if (st == NULL)
        return DB_ERROR;
    return db_each(db, st, ca_log_row, &it);
}
