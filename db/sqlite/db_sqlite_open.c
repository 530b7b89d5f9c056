/*
 * Opening an SQLite database (db.h db_open): where the file may be, the pragmas every
 * connection needs, and the numbered migrations of db/sqlite/migrations/, embedded
 * at build time and applied in order under the write lock.
 */
#include "db_sqlite.h"
#include "safedir.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Defined in the file that scripts/embed-sql.sh generates from the migrations. */
extern const char *const db_migrations[];
extern const int db_migrations_count;

#define DB_BUSY_TIMEOUT_MS 5000

static int db_is_file(const char *path)
{
    return strcmp(path, ":memory:") != 0 && strncmp(path, "file:", 5) != 0 && path[0] != '\0';
}

/*
 * Creates the file with mode 0600 before SQLite does (it would use 0644 and the
 * umask): the audit trail holds addresses and client IPs. SQLite gives its -wal and
 * -shm files the mode of the database file.
 *
 * authz and the admin tools run as root. Whoever can write the database's directory
 * (the spool, a directory the daemon user owns) can put a database, -wal or -shm
 * file of their own there, which SQLite as root would use, replay or chown, and so
 * decide which users, senders and certificates authz believes. So the directory
 * must be one only root can change (safedir.h), and the file is opened without
 * following a link: a link could lead out of that directory.
 */
static int db_precreate(struct db *db)
{
    char base[NAME_MAX + 1], why[PATH_MAX + 128];
    struct stat st;
    int dir, fd;

    dir = safedir_open_parent(db->path, base, sizeof(base), 0, why, sizeof(why));
    if (dir < 0) {
        db_set_err(db, why);
        return -1;
    }
    fd = openat(dir, base, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    close(dir);
    if (fd < 0) {
        db_set_err(db, errno == ELOOP ? "is a symbolic link; name the database file itself"
                                      : strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        db_set_err(db, "is not a regular file");
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

static int db_set_pragmas(struct db *db)
{
    sqlite3_stmt *st;

    if (sqlite3_busy_timeout(db->h, DB_BUSY_TIMEOUT_MS) != SQLITE_OK)
        return db_fail(db);
    /*
     * WAL lets the admin tools write while authz reads. The pragma answers with the
     * mode in force; ":memory:" stays "memory", which is fine for tests.
     */
    st = db_prepare(db, "PRAGMA journal_mode = WAL");
    if (st == NULL)
        return DB_ERROR;
    if (sqlite3_step(st) != SQLITE_ROW) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    db->wal = sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    /*
     * db_commit is durable when it returns, db_commit_lazy at the next db_commit or
     * db_sync (db.h). In WAL mode NORMAL writes the log at a commit without syncing
     * it, and db_commit syncs it itself (db_log_sync), as FULL would at every commit;
     * SQLite refuses to change this setting inside a transaction, so the choice
     * cannot be made per commit by the pragma. Outside WAL mode FULL keeps every
     * commit durable (and lazy ones too).
     */
    if (db_exec(db, db->wal ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL") !=
            DB_OK ||
        db_exec(db, "PRAGMA foreign_keys = ON") != DB_OK)
        return DB_ERROR;
    /* A SQLite built without foreign keys accepts the pragma and ignores it. */
    if (db_query_int(db, "PRAGMA foreign_keys") != 1) {
        db_set_err(db, "SQLite does not enforce foreign keys");
        return DB_ERROR;
    }
    return DB_OK;
}

static int db_migrate(struct db *db)
{
    for (;;) {
        long long v = db_query_int(db, "PRAGMA user_version");
        char *errmsg = NULL;
        char sql[64];

        if (v < 0)
            return DB_ERROR;
        if (v > db_migrations_count) {
            char msg[160];

            (void)str_fmt(msg, sizeof(msg),
                          "schema version %lld is newer than this program knows (%d)", v,
                          db_migrations_count);
            db_set_err(db, msg);
            db_rollback(db);
            return DB_ERROR;
        }
        if (v == db_migrations_count) {
            db_rollback(db);    /* another program migrated while we waited for the lock */
            return DB_OK;
        }
        /*
         * Another program may be migrating the same file: take the write lock, then
         * read the version again before applying anything.
         */
        if (sqlite3_get_autocommit(db->h)) {
            if (db_begin(db) != DB_OK)
                return DB_ERROR;
            continue;
        }
        if (sqlite3_exec(db->h, db_migrations[v], NULL, NULL, &errmsg) != SQLITE_OK) {
            char msg[512];

            (void)str_fmt(msg, sizeof(msg), "migration %lld: %s", v + 1,
                          errmsg != NULL ? errmsg : sqlite3_errmsg(db->h));
            sqlite3_free(errmsg);
            db_rollback(db);
            db_set_err(db, msg);
            return DB_ERROR;
        }
        /* PRAGMA takes no parameters; the value is our own integer. */
        (void)str_fmt(sql, sizeof(sql), "PRAGMA user_version = %lld", v + 1);
        if (db_exec(db, sql) != DB_OK || db_commit(db) != DB_OK) {
            db_rollback(db);
            return DB_ERROR;
        }
    }
}

struct db *db_open(const char *dsn, char *err, size_t errlen)
{
    const char *path = dsn;
    struct db *db;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

    if (dsn == NULL || dsn[0] == '\0') {
        (void)str_fmt(err, errlen, "no database named");
        return NULL;
    }
    db = calloc(1, sizeof(*db));
    if (db == NULL) {
        (void)str_fmt(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    db->head.backend = &db_sqlite_backend;
    if (str_lcpy(db->path, path, sizeof(db->path)) >= sizeof(db->path)) {
        (void)str_fmt(err, errlen, "%.64s...: path too long", path);
        free(db);
        return NULL;
    }
    if (db_is_file(path) && db_precreate(db) != 0)
        goto fail;
    if (strncmp(path, "file:", 5) == 0)
        flags |= SQLITE_OPEN_URI;
    if (sqlite3_open_v2(path, &db->h, flags, NULL) != SQLITE_OK) {
        if (db->h != NULL)
            db_fail(db);
        else
            db_set_err(db, "out of memory");
        goto fail;
    }
    sqlite3_extended_result_codes(db->h, 1);
    if (db_set_pragmas(db) != DB_OK || db_migrate(db) != DB_OK)
        goto fail;
    return db;

fail:
    str_lcpy(err, db->err, errlen);
    db_close(db);
    return NULL;
}

void db_close(struct db *db)
{
    if (db == NULL)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(db->st[i]);
    sqlite3_close(db->h);
    free(db);
}

int db_schema_version(struct db *db)
{
    long long v = db_query_int(db, "PRAGMA user_version");

    return v < 0 ? DB_ERROR : (int)v;
}

int db_set_lock_timeout(struct db *db, int ms)
{
    return sqlite3_busy_timeout(db->h, ms) == SQLITE_OK ? DB_OK : db_fail(db);
}

const struct db_backend db_sqlite_backend = {
    .name = "sqlite",
    .open = db_sqlite_open,
    .close = db_sqlite_close,
    .rollback = db_sqlite_rollback,
#define DB_SQLITE_FN(ret, fn, params, args) .fn = db_sqlite_##fn,
    DB_BACKEND_FUNCS(DB_SQLITE_FN)
#undef DB_SQLITE_FN
};
