/*
 * The test hooks of the SQLite backend (db_test.h, db_sqlite_test.h). The tamper
 * statements are what an admin could type in the sqlite3 shell; the triggers of
 * migrations 1, 2 and 5 must refuse each of them.
 */
#include "db_sqlite.h"
#include "db_sqlite_test.h"
#include "db_test.h"

int db_sqlite_exec_for_test(struct db *db, const char *sql)
{
    return db_exec(db, sql);
}

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
        db_set_err(db, "unknown tamper");
        return DB_ERROR;
    }
    return db_exec(db, sql[what]);
}

int db_test_forget_prepared(struct db *db)
{
    (void)db;    /* SQLite's prepared statements live in this process, not a server */
    return DB_OK;
}

int db_test_audit_insert_at(struct db *db, const struct db_audit *a, const struct db_stamp *at)
{
    char ts[DB_ISO_LEN];

    db_stamp_text(at, ts, sizeof(ts));
    if (ts[0] == '\0') {
        db_set_err(db, "time out of range");
        return DB_ERROR;
    }
    return db_sqlite_audit_insert_at(db, a, ts);
}
