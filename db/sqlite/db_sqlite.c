/*
 * The SQLite implementation of db.h: opening and migrating the database file, and
 * every SQL statement of the project. Values always go through bound parameters;
 * the only SQL assembled at run time is made of the constant fragments below.
 */
#include "db.h"
#include "safedir.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Defined in the file that scripts/embed-sql.sh generates from db/NNNN_*.sql. */
extern const char *const db_migrations[];
extern const int db_migrations_count;

#define DB_BUSY_TIMEOUT_MS 5000
#define DB_ADDRESS_MAX 320
#define DB_NOW_SECONDS "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')"

/*
 * Statements on the paths that authz takes for every session are prepared once and
 * kept. Listings are prepared per call, so that a callback may use the database.
 */
enum db_stmt {
    ST_USER_ADD,
    ST_USER_DEL,
    ST_USER_SET_ENABLED,
    ST_USER_GET,
    ST_SENDER_ADD,
    ST_SENDER_DEL,
    ST_SENDER_OWNED,
    ST_CERT_INSERT,
    ST_CERT_BY_SHA256,
    ST_CERT_BY_SERIAL,
    ST_CERT_REVOKE,
    ST_CERT_REVOKE_USER,
    ST_AUDIT_INSERT,
    ST_COUNT
};

#define CERT_COLUMNS                                                                    \
    "serial, coalesce(user, ''), sha256, subject, issuer, not_before, not_after, "      \
    "status, coalesce(revoked_at, ''), coalesce(revoke_reason, '')"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_USER_ADD] = "INSERT INTO users (name) VALUES (?1)",
    [ST_USER_DEL] = "DELETE FROM users WHERE name = ?1",
    [ST_USER_SET_ENABLED] = "UPDATE users SET enabled = ?2 WHERE name = ?1",
    [ST_USER_GET] = "SELECT enabled FROM users WHERE name = ?1",
    [ST_SENDER_ADD] = "INSERT INTO senders (user, address) VALUES (?1, ?2)",
    [ST_SENDER_DEL] = "DELETE FROM senders WHERE user = ?1 AND address = ?2",
    [ST_SENDER_OWNED] = "SELECT 1 FROM senders WHERE user = ?1 AND address IN (?2, ?3) LIMIT 1",
    [ST_CERT_INSERT] =
        "INSERT INTO certs (serial, user, sha256, subject, issuer, not_before, not_after,"
        " status, revoked_at, revoke_reason)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8,"
        " CASE WHEN ?8 = 'revoked' THEN coalesce(?9, " DB_NOW_SECONDS ") END, ?10)",
    [ST_CERT_BY_SHA256] = "SELECT " CERT_COLUMNS " FROM certs WHERE sha256 = ?1",
    [ST_CERT_BY_SERIAL] = "SELECT " CERT_COLUMNS " FROM certs WHERE serial = ?1",
    [ST_CERT_REVOKE] =
        "UPDATE certs SET status = 'revoked', revoked_at = " DB_NOW_SECONDS ","
        " revoke_reason = ?2 WHERE serial = ?1 AND status = 'valid'",
    [ST_CERT_REVOKE_USER] =
        "UPDATE certs SET status = 'revoked', revoked_at = " DB_NOW_SECONDS ","
        " revoke_reason = 'cessationOfOperation' WHERE user = ?1 AND status = 'valid'",
    [ST_AUDIT_INSERT] =
        "INSERT INTO audit (session, event, decision, reason, client_ip, user, cert_sha256,"
        " cert_subject, mail_from, rcpt, queue_id, size, tls, nrcpt)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
};

struct db {
    sqlite3 *h;
    char path[PATH_MAX];
    char err[PATH_MAX + 512];
    sqlite3_stmt *st[ST_COUNT];
};

/* ---- errors ------------------------------------------------------------- */

static void db_set_err(struct db *db, const char *what)
{
    (void)str_fmt(db->err, sizeof(db->err), "%s: %s", db->path, what);
}

/* Records SQLite's message for the last failed call, naming the file. */
static int db_fail(struct db *db)
{
    db_set_err(db, sqlite3_errmsg(db->h));
    return DB_ERROR;
}

const char *db_errmsg(struct db *db)
{
    return db->err;
}

/* ---- statements --------------------------------------------------------- */

static sqlite3_stmt *db_stmt(struct db *db, enum db_stmt id)
{
    if (db->st[id] == NULL &&
        sqlite3_prepare_v3(db->h, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &db->st[id],
                           NULL) != SQLITE_OK) {
        db_fail(db);
        db->st[id] = NULL;
    }
    return db->st[id];
}

static sqlite3_stmt *db_prepare(struct db *db, const char *sql)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/*
 * Returns a cached statement to its idle state. A statement left mid-step would hold
 * a read transaction open and keep WAL checkpoints from completing.
 */
static void db_stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/*
 * Hands every row of a one-off statement to row(), which converts it and calls the
 * caller's callback; a non-zero return stops early (not an error). Finalizes st.
 */
static int db_each(struct db *db, sqlite3_stmt *st, int (*row)(sqlite3_stmt *st, void *ctx),
                   void *ctx)
{
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (row(st, ctx) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE)
        db_fail(db);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? DB_OK : DB_ERROR;
}

/* Binds a string, or NULL. The caller's string outlives the step. */
static int bind_text(sqlite3_stmt *st, int idx, const char *s)
{
    if (s == NULL)
        return sqlite3_bind_null(st, idx);
    return sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
}

static int bind_named(sqlite3_stmt *st, const char *name, const char *s)
{
    return bind_text(st, sqlite3_bind_parameter_index(st, name), s);
}

/* Binds a string, with "" stored as NULL. */
static int bind_text_or_null(sqlite3_stmt *st, int idx, const char *s)
{
    return bind_text(st, idx, (s != NULL && *s != '\0') ? s : NULL);
}

static void column_text(sqlite3_stmt *st, int col, char *out, size_t outlen)
{
    const unsigned char *s = sqlite3_column_text(st, col);

    str_lcpy(out, s != NULL ? (const char *)s : "", outlen);
}

/*
 * Runs a statement that returns no rows. Returns the SQLite result code (extended),
 * with the error message recorded when it is not SQLITE_DONE.
 */
static int db_run(struct db *db, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        db_fail(db);
    db_stmt_done(st);
    return rc == SQLITE_ROW ? SQLITE_DONE : rc;
}

/* Maps the result of an INSERT: a refused duplicate is DB_EXISTS, a missing user
 * (foreign key) DB_NOTFOUND. */
static int db_insert_result(int rc)
{
    switch (rc) {
    case SQLITE_DONE:
        return DB_OK;
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
        return DB_EXISTS;
    case SQLITE_CONSTRAINT_FOREIGNKEY:
        return DB_NOTFOUND;
    default:
        return DB_ERROR;
    }
}

static int db_exec(struct db *db, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        db_set_err(db, msg != NULL ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return DB_ERROR;
    }
    return DB_OK;
}

int db_exec_for_test(struct db *db, const char *sql)
{
    return db_exec(db, sql);
}

/* Runs a query that returns one integer (a PRAGMA); -1 on error. */
static long long db_query_int(struct db *db, const char *sql)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    long long v = -1;
    int rc;

    if (st == NULL)
        return -1;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE)
        db_fail(db);
    else
        db_set_err(db, "no result");
    sqlite3_finalize(st);
    return v;
}

/* ---- transactions ------------------------------------------------------- */

int db_begin(struct db *db)
{
    return db_exec(db, "BEGIN IMMEDIATE");
}

int db_commit(struct db *db)
{
    return db_exec(db, "COMMIT");
}

void db_rollback(struct db *db)
{
    if (!sqlite3_get_autocommit(db->h))
        (void)sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

/*
 * For functions made of several statements: opens a transaction unless the caller
 * already has one. *own says whether tx_end() must finish it.
 */
static int tx_begin(struct db *db, int *own)
{
    *own = sqlite3_get_autocommit(db->h) != 0;
    return *own ? db_begin(db) : DB_OK;
}

/* Commits an own transaction when result is not DB_ERROR, rolls it back otherwise.
 * Returns result, or DB_ERROR when the commit fails. */
static int tx_end(struct db *db, int own, int result)
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

/* ---- open and migrate --------------------------------------------------- */

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
    sqlite3_finalize(st);
    /* In WAL mode NORMAL loses no committed transaction on a crash of the process;
     * only a power loss may lose the last ones, never consistency. */
    if (db_exec(db, "PRAGMA synchronous = NORMAL") != DB_OK ||
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

struct db *db_open(const char *path, char *err, size_t errlen)
{
    struct db *db = calloc(1, sizeof(*db));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;

    if (db == NULL) {
        (void)str_fmt(err, errlen, "%s: out of memory", path);
        return NULL;
    }
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

/* ---- validation --------------------------------------------------------- */

int db_user_name_valid(const char *name)
{
    size_t n = 0;

    if (name == NULL || name[0] == '.' || name[0] == '-')
        return 0;
    for (const char *p = name; *p != '\0'; p++, n++) {
        char c = *p;

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return n >= 1 && n <= 64;
}

/* RFC 5322 atext, plus '.' between atoms. */
static int local_char_valid(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL);
}

int db_sender_address_valid(const char *address)
{
    const char *at, *p;
    size_t label = 0;

    if (address == NULL || strlen(address) > DB_ADDRESS_MAX)
        return 0;
    at = strchr(address, '@');
    if (at == NULL || strchr(at + 1, '@') != NULL)
        return 0;
    for (p = address; p < at; p++)
        if (!local_char_valid(*p))
            return 0;
    if (at > address && (address[0] == '.' || at[-1] == '.' || strstr(address, "..") != NULL))
        return 0;
    if (at[1] == '\0')
        return 0;
    for (p = at + 1; *p != '\0'; p++) {
        char c = *p;

        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0;
}

/* ---- users -------------------------------------------------------------- */

int db_user_add(struct db *db, const char *name)
{
    sqlite3_stmt *st;

    if (!db_user_name_valid(name)) {
        db_set_err(db, "invalid user name");
        return DB_ERROR;
    }
    st = db_stmt(db, ST_USER_ADD);
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, name) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st));
}

int db_user_del(struct db *db, const char *name)
{
    sqlite3_stmt *revoke, *del;
    int own, rc = DB_OK;

    revoke = db_stmt(db, ST_CERT_REVOKE_USER);
    del = db_stmt(db, ST_USER_DEL);
    if (revoke == NULL || del == NULL)
        return DB_ERROR;
    if (tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    /*
     * Revoke first: the rows stay (ON DELETE SET NULL) and must not stay valid, or a
     * later user of the same name could be confused with this one.
     */
    if (bind_text(revoke, 1, name) != SQLITE_OK || bind_text(del, 1, name) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(revoke);
        db_stmt_done(del);
        rc = DB_ERROR;
    } else if (db_run(db, revoke) != SQLITE_DONE) {
        db_stmt_done(del);
        rc = DB_ERROR;
    } else if (db_run(db, del) != SQLITE_DONE) {
        rc = DB_ERROR;
    } else if (sqlite3_changes(db->h) == 0) {
        rc = DB_NOTFOUND;
    }
    return tx_end(db, own, rc);
}

int db_user_set_enabled(struct db *db, const char *name, int enabled)
{
    sqlite3_stmt *st = db_stmt(db, ST_USER_SET_ENABLED);

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, name) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, enabled ? 1 : 0) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    if (db_run(db, st) != SQLITE_DONE)
        return DB_ERROR;
    return sqlite3_changes(db->h) > 0 ? DB_OK : DB_NOTFOUND;
}

int db_user_get(struct db *db, const char *name, int *enabled)
{
    sqlite3_stmt *st = db_stmt(db, ST_USER_GET);
    int rc, result;

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, name) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        if (enabled != NULL)
            *enabled = sqlite3_column_int(st, 0) != 0;
        result = DB_OK;
    } else if (rc == SQLITE_DONE) {
        result = DB_NOTFOUND;
    } else {
        result = db_fail(db);
    }
    db_stmt_done(st);
    return result;
}

/* Copies a comma-separated list, ending it with "..." when it does not fit. */
static void copy_list(char *out, size_t outlen, const char *s)
{
    if (str_lcpy(out, s, outlen) >= outlen && outlen > 4) {
        char *cut = out + outlen - 4;

        memcpy(cut, "...", 4);
    }
}

struct user_iter {
    db_user_cb cb;
    void *arg;
};

static int user_row(sqlite3_stmt *st, void *ctx)
{
    struct user_iter *it = ctx;
    struct db_user u;
    const unsigned char *senders = sqlite3_column_text(st, 3);

    memset(&u, 0, sizeof(u));
    column_text(st, 0, u.name, sizeof(u.name));
    u.enabled = sqlite3_column_int(st, 1) != 0;
    column_text(st, 2, u.created_at, sizeof(u.created_at));
    copy_list(u.senders, sizeof(u.senders), senders != NULL ? (const char *)senders : "");
    return it->cb(it->arg, &u);
}

int db_user_list(struct db *db, db_user_cb cb, void *arg)
{
    /* group_concat keeps the order of its input rows. */
    sqlite3_stmt *st = db_prepare(
        db, "SELECT name, enabled, created_at,"
            " (SELECT group_concat(address, ',') FROM"
            "   (SELECT address FROM senders s WHERE s.user = u.name ORDER BY address))"
            " FROM users u ORDER BY name");
    struct user_iter it = { cb, arg };

    if (st == NULL)
        return DB_ERROR;
    return db_each(db, st, user_row, &it);
}

/* ---- senders ------------------------------------------------------------ */

/* Lower-cases address into out; -1 when it does not fit. */
static int lower_address(const char *address, char *out, size_t outlen)
{
    if (address == NULL || str_lcpy(out, address, outlen) >= outlen)
        return -1;
    str_lower(out);
    return 0;
}

int db_sender_add(struct db *db, const char *user, const char *address)
{
    char addr[DB_ADDRESS_MAX + 1];
    sqlite3_stmt *st;

    if (!db_sender_address_valid(address) || lower_address(address, addr, sizeof(addr)) != 0) {
        db_set_err(db, "invalid sender address");
        return DB_ERROR;
    }
    st = db_stmt(db, ST_SENDER_ADD);
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK || bind_text(st, 2, addr) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st));
}

int db_sender_del(struct db *db, const char *user, const char *address)
{
    char addr[DB_ADDRESS_MAX + 1];
    sqlite3_stmt *st;

    if (lower_address(address, addr, sizeof(addr)) != 0)
        return DB_NOTFOUND;
    st = db_stmt(db, ST_SENDER_DEL);
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK || bind_text(st, 2, addr) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    if (db_run(db, st) != SQLITE_DONE)
        return DB_ERROR;
    return sqlite3_changes(db->h) > 0 ? DB_OK : DB_NOTFOUND;
}

int db_sender_owned(struct db *db, const char *user, const char *address)
{
    char addr[DB_ADDRESS_MAX + 1];
    const char *domain;
    sqlite3_stmt *st;
    int rc, result;

    /* An address too long to be stored cannot be owned. */
    if (user == NULL || lower_address(address, addr, sizeof(addr)) != 0)
        return DB_NOTFOUND;
    /* The domain is what follows the last '@': a quoted local part may hold one. */
    domain = strrchr(addr, '@');
    if (domain == NULL || domain[1] == '\0')
        return DB_NOTFOUND;
    st = db_stmt(db, ST_SENDER_OWNED);
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK || bind_text(st, 2, addr) != SQLITE_OK ||
        bind_text(st, 3, domain) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        result = DB_OK;
    else if (rc == SQLITE_DONE)
        result = DB_NOTFOUND;
    else
        result = db_fail(db);
    db_stmt_done(st);
    return result;
}

struct sender_iter {
    db_sender_cb cb;
    void *arg;
};

static int sender_row(sqlite3_stmt *st, void *ctx)
{
    struct sender_iter *it = ctx;
    const unsigned char *a = sqlite3_column_text(st, 0);

    return it->cb(it->arg, a != NULL ? (const char *)a : "");
}

int db_sender_list(struct db *db, const char *user, db_sender_cb cb, void *arg)
{
    int rc = db_user_get(db, user, NULL);
    struct sender_iter it = { cb, arg };
    sqlite3_stmt *st;

    if (rc != DB_OK)
        return rc;
    st = db_prepare(db, "SELECT address FROM senders WHERE user = ?1 ORDER BY address");
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, sender_row, &it);
}

int db_sender_other_owner(struct db *db, const char *user, const char *address, char *owner,
                          size_t ownerlen)
{
    char addr[DB_ADDRESS_MAX + 1];
    sqlite3_stmt *st;
    int rc;

    if (lower_address(address, addr, sizeof(addr)) != 0)
        return DB_NOTFOUND;
    /* A user who owns the address already gains nothing: no one is surprised. */
    st = db_prepare(db, "SELECT user FROM senders WHERE address = ?1 AND user <> ?2"
                        " AND NOT EXISTS (SELECT 1 FROM senders WHERE address = ?1"
                        "                 AND user = ?2)"
                        " ORDER BY user LIMIT 1");
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, addr) != SQLITE_OK || bind_text(st, 2, user) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        column_text(st, 0, owner, ownerlen);
    else if (rc != SQLITE_DONE)
        db_fail(db);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? DB_OK : rc == SQLITE_DONE ? DB_NOTFOUND : DB_ERROR;
}

struct owner_iter {
    db_owner_cb cb;
    void *arg;
};

static int owner_row(sqlite3_stmt *st, void *ctx)
{
    struct owner_iter *it = ctx;
    const unsigned char *u = sqlite3_column_text(st, 0), *a = sqlite3_column_text(st, 1);

    return it->cb(it->arg, u != NULL ? (const char *)u : "", a != NULL ? (const char *)a : "",
                  sqlite3_column_int(st, 2));
}

int db_sender_owners(struct db *db, const char *address, db_owner_cb cb, void *arg)
{
    char addr[DB_ADDRESS_MAX + 1];
    const char *domain;
    struct owner_iter it = { cb, arg };
    sqlite3_stmt *st;

    if (lower_address(address, addr, sizeof(addr)) != 0)
        return DB_OK;
    domain = strrchr(addr, '@');
    /* "@domain" itself has no wider owner; ?2 then repeats ?1 and matches nothing new. */
    if (domain == NULL || domain == addr)
        domain = addr;
    st = db_prepare(db, "SELECT user, address, address <> ?1 FROM senders"
                        " WHERE address IN (?1, ?2) ORDER BY address <> ?1, user");
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, addr) != SQLITE_OK || bind_text(st, 2, domain) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, owner_row, &it);
}

/* ---- certificates ------------------------------------------------------- */

static void cert_from_row(sqlite3_stmt *st, struct db_cert *c)
{
    memset(c, 0, sizeof(*c));
    column_text(st, 0, c->serial, sizeof(c->serial));
    column_text(st, 1, c->user, sizeof(c->user));
    column_text(st, 2, c->sha256, sizeof(c->sha256));
    column_text(st, 3, c->subject, sizeof(c->subject));
    column_text(st, 4, c->issuer, sizeof(c->issuer));
    column_text(st, 5, c->not_before, sizeof(c->not_before));
    column_text(st, 6, c->not_after, sizeof(c->not_after));
    column_text(st, 7, c->status, sizeof(c->status));
    column_text(st, 8, c->revoked_at, sizeof(c->revoked_at));
    column_text(st, 9, c->revoke_reason, sizeof(c->revoke_reason));
}

static void str_upper(char *s)
{
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
}

int db_cert_insert(struct db *db, const struct db_cert *c)
{
    char serial[sizeof(c->serial)], sha256[sizeof(c->sha256)];
    const char *status = c->status[0] != '\0' ? c->status : "valid";
    sqlite3_stmt *st = db_stmt(db, ST_CERT_INSERT);
    int ok;

    if (st == NULL)
        return DB_ERROR;
    str_lcpy(serial, c->serial, sizeof(serial));
    str_upper(serial);
    str_lcpy(sha256, c->sha256, sizeof(sha256));
    str_lower(sha256);
    ok = bind_text(st, 1, serial) == SQLITE_OK && bind_text_or_null(st, 2, c->user) == SQLITE_OK &&
         bind_text(st, 3, sha256) == SQLITE_OK && bind_text(st, 4, c->subject) == SQLITE_OK &&
         bind_text(st, 5, c->issuer) == SQLITE_OK && bind_text(st, 6, c->not_before) == SQLITE_OK &&
         bind_text(st, 7, c->not_after) == SQLITE_OK && bind_text(st, 8, status) == SQLITE_OK &&
         bind_text_or_null(st, 9, c->revoked_at) == SQLITE_OK &&
         bind_text_or_null(st, 10, c->revoke_reason) == SQLITE_OK;
    if (!ok) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    return db_insert_result(db_run(db, st));
}

static int db_cert_get(struct db *db, enum db_stmt id, const char *key, struct db_cert *out)
{
    sqlite3_stmt *st = db_stmt(db, id);
    int rc, result;

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, key) != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        cert_from_row(st, out);
        result = DB_OK;
    } else if (rc == SQLITE_DONE) {
        result = DB_NOTFOUND;
    } else {
        result = db_fail(db);
    }
    db_stmt_done(st);
    return result;
}

int db_cert_by_sha256(struct db *db, const char *sha256, struct db_cert *out)
{
    char key[sizeof(out->sha256)];

    if (sha256 == NULL || str_lcpy(key, sha256, sizeof(key)) >= sizeof(key))
        return DB_NOTFOUND;
    str_lower(key);
    return db_cert_get(db, ST_CERT_BY_SHA256, key, out);
}

int db_cert_by_serial(struct db *db, const char *serial, struct db_cert *out)
{
    char key[sizeof(out->serial)];

    if (serial == NULL || str_lcpy(key, serial, sizeof(key)) >= sizeof(key))
        return DB_NOTFOUND;
    str_upper(key);
    return db_cert_get(db, ST_CERT_BY_SERIAL, key, out);
}

struct cert_iter {
    db_cert_cb cb;
    void *arg;
};

static int cert_row(sqlite3_stmt *st, void *ctx)
{
    struct cert_iter *it = ctx;
    struct db_cert c;

    cert_from_row(st, &c);
    return it->cb(it->arg, &c);
}

int db_cert_list(struct db *db, const char *user, const char *not_after_before,
                 db_cert_cb cb, void *arg)
{
    struct cert_iter it = { cb, arg };
    sqlite3_stmt *st = db_prepare(db, "SELECT " CERT_COLUMNS " FROM certs"
                                      " WHERE (?1 IS NULL OR user = ?1)"
                                      " AND (?2 IS NULL OR not_after < ?2)"
                                      " ORDER BY not_after, serial");

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK || bind_text(st, 2, not_after_before) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, cert_row, &it);
}

int db_cert_revoke(struct db *db, const char *serial, const char *reason)
{
    char key[sizeof(((struct db_cert *)0)->serial)];
    sqlite3_stmt *st;
    struct db_cert c;
    int own, rc;

    if (serial == NULL || str_lcpy(key, serial, sizeof(key)) >= sizeof(key))
        return DB_NOTFOUND;
    str_upper(key);
    st = db_stmt(db, ST_CERT_REVOKE);
    if (st == NULL || tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    if (bind_text(st, 1, key) != SQLITE_OK ||
        bind_text(st, 2, reason != NULL && *reason != '\0' ? reason : "unspecified") != SQLITE_OK) {
        db_fail(db);
        db_stmt_done(st);
        return tx_end(db, own, DB_ERROR);
    }
    if (db_run(db, st) != SQLITE_DONE)
        return tx_end(db, own, DB_ERROR);
    /* Nothing changed: either unknown, or revoked already (kept as it was). */
    rc = sqlite3_changes(db->h) > 0 ? DB_OK : db_cert_get(db, ST_CERT_BY_SERIAL, key, &c);
    return tx_end(db, own, rc);
}

/* ---- audit -------------------------------------------------------------- */

/* Appends a constant SQL fragment; the buffer is sized for every combination. */
static void sql_append(char *sql, size_t size, const char *frag)
{
    size_t n = strlen(sql);

    str_lcpy(sql + n, frag, size - n);
}

int db_audit_insert(struct db *db, const struct db_audit *a)
{
    sqlite3_stmt *st = db_stmt(db, ST_AUDIT_INSERT);
    int ok, rc;

    if (st == NULL)
        return DB_ERROR;
    ok = bind_text(st, 1, a->session) == SQLITE_OK && bind_text(st, 2, a->event) == SQLITE_OK &&
         bind_text(st, 3, a->decision) == SQLITE_OK && bind_text(st, 4, a->reason) == SQLITE_OK &&
         bind_text(st, 5, a->client_ip) == SQLITE_OK && bind_text(st, 6, a->user) == SQLITE_OK &&
         bind_text(st, 7, a->cert_sha256) == SQLITE_OK &&
         bind_text(st, 8, a->cert_subject) == SQLITE_OK &&
         bind_text(st, 9, a->mail_from) == SQLITE_OK && bind_text(st, 10, a->rcpt) == SQLITE_OK &&
         bind_text(st, 11, a->queue_id) == SQLITE_OK &&
         (a->size < 0 ? sqlite3_bind_null(st, 12)
                      : sqlite3_bind_int64(st, 12, a->size)) == SQLITE_OK &&
         bind_text(st, 13, a->tls) == SQLITE_OK &&
         (a->nrcpt <= 0 ? sqlite3_bind_null(st, 14)
                        : sqlite3_bind_int64(st, 14, a->nrcpt)) == SQLITE_OK;
    if (!ok) {
        db_fail(db);
        db_stmt_done(st);
        return DB_ERROR;
    }
    rc = db_run(db, st);
    return rc == SQLITE_DONE ? DB_OK : DB_ERROR;
}

static void audit_from_row(sqlite3_stmt *st, struct db_audit_row *r)
{
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(st, 0);
    column_text(st, 1, r->ts, sizeof(r->ts));
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

/* Binds the filter values that appear in the statement (by name). */
static int audit_bind(sqlite3_stmt *st, const struct db_audit_filter *f, const char *since,
                      const char *until)
{
    const struct {
        const char *name, *value;
    } binds[] = {
        { ":user", f->user },       { ":decision", f->decision }, { ":event", f->event },
        { ":ip", f->client_ip },    { ":queue_id", f->queue_id }, { ":since", since },
        { ":until", until },
    };

    for (size_t i = 0; i < sizeof(binds) / sizeof(binds[0]); i++)
        if (binds[i].value != NULL && bind_named(st, binds[i].name, binds[i].value) != SQLITE_OK)
            return -1;
    if (f->limit > 0 &&
        sqlite3_bind_int64(st, sqlite3_bind_parameter_index(st, ":limit"), f->limit) != SQLITE_OK)
        return -1;
    return 0;
}

/* The 19 characters "YYYY-MM-DDTHH:MM:SS" of an ISO time, into key[20]. */
static const char *second_key(const char *iso, char key[20])
{
    if (iso == NULL)
        return NULL;
    str_lcpy(key, iso, 20);
    return key;
}

int db_audit_search(struct db *db, const struct db_audit_filter *f, db_audit_cb cb, void *arg)
{
    const struct {
        const char *value, *frag;
    } conds[] = {
        { f->user, "user = :user" },
        { f->decision, "decision = :decision" },
        { f->event, "event = :event" },
        { f->client_ip, "client_ip = :ip" },
        { f->queue_id, "queue_id = :queue_id" },
        /*
         * Rows carry milliseconds ("...:SS.mmmZ"); comparing them with the 19
         * characters "YYYY-MM-DDTHH:MM:SS" includes the whole starting second and
         * excludes the whole second of until.
         */
        { f->since, "ts >= :since" },
        { f->until, "ts < :until" },
    };
    struct audit_iter it = { cb, arg };
    char sql[768], since_key[20], until_key[20];
    const char *sep = " WHERE ";
    sqlite3_stmt *st;
    int filtered = 0;

    /*
     * Only constant fragments go into the text; the values are bound. A WHERE made of
     * just the filters in use lets SQLite pick an index on (user, ts), (decision, ts)
     * or (ts); "+id" keeps it from scanning the whole table to avoid a sort.
     */
    str_lcpy(sql,
             "SELECT id, ts, session, event, decision, reason, client_ip, user, cert_sha256,"
             " cert_subject, mail_from, rcpt, queue_id, size, tls FROM audit",
             sizeof(sql));
    for (size_t i = 0; i < sizeof(conds) / sizeof(conds[0]); i++) {
        if (conds[i].value == NULL)
            continue;
        sql_append(sql, sizeof(sql), sep);
        sql_append(sql, sizeof(sql), conds[i].frag);
        sep = " AND ";
        filtered = 1;
    }
    if (filtered)
        sql_append(sql, sizeof(sql), f->newest_first ? " ORDER BY +id DESC" : " ORDER BY +id");
    else
        sql_append(sql, sizeof(sql), f->newest_first ? " ORDER BY id DESC" : " ORDER BY id");
    if (f->limit > 0)
        sql_append(sql, sizeof(sql), " LIMIT :limit");

    st = db_prepare(db, sql);
    if (st == NULL)
        return DB_ERROR;
    if (audit_bind(st, f, second_key(f->since, since_key), second_key(f->until, until_key)) != 0) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, audit_row, &it);
}

int db_audit_query(struct db *db, const char *user, const char *since, const char *decision,
                   db_audit_cb cb, void *arg)
{
    struct db_audit_filter f = { .user = user, .since = since, .decision = decision };

    return db_audit_search(db, &f, cb, arg);
}

/* ---- figures for submit-admin stats --------------------------------------- */

int db_audit_decisions(struct db *db, const char *since, struct db_decision_counts *out)
{
    /* One range scan of the (decision, ts) index per decision. */
    static const char sql[] =
        "SELECT (SELECT count(*) FROM audit WHERE decision = 'accept' AND ts >= ?1),"
        " (SELECT count(*) FROM audit WHERE decision = 'reject' AND ts >= ?1),"
        " (SELECT count(*) FROM audit WHERE decision = 'tempfail' AND ts >= ?1)";
    sqlite3_stmt *st = db_prepare(db, sql);
    char key[20];

    memset(out, 0, sizeof(*out));
    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, second_key(since, key)) != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
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

int db_audit_refusals(struct db *db, const char *since, int limit, db_refusal_cb cb, void *arg)
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
    char key[20];

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, second_key(since, key)) != SQLITE_OK ||
        sqlite3_bind_int(st, 2, limit) != SQLITE_OK) {
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
    int rc;

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, key) != SQLITE_OK || (rc = sqlite3_step(st)) != SQLITE_ROW) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    *count = sqlite3_column_int64(st, 0);
    column_text(st, 1, oldest, 32);
    column_text(st, 2, newest, 32);
    sqlite3_finalize(st);
    return DB_OK;
}

/* Runs one statement with at most one text and one integer parameter. */
static int db_run_once(struct db *db, const char *sql, const char *text, long long num)
{
    sqlite3_stmt *st = db_prepare(db, sql);
    int rc;

    if (st == NULL)
        return DB_ERROR;
    if ((text != NULL && bind_text(st, 1, text) != SQLITE_OK) ||
        (text == NULL && num != 0 && sqlite3_bind_int64(st, 1, num) != SQLITE_OK)) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        db_fail(db);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? DB_OK : DB_ERROR;
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

int db_audit_prune(struct db *db, const char *before, const struct db_admin_log *who,
                   long long *count, char oldest[32], char newest[32])
{
    char key[32], first[32], last[32];
    long long epoch;
    int own, rc;

    /* Rows carry milliseconds: "...:SS.000Z" is the first instant of that second. */
    if (before == NULL || iso_time_parse(before, &epoch) != 0) {
        db_set_err(db, "audit prune: expected an ISO-8601 UTC time");
        return DB_ERROR;
    }
    iso_time_utc(key, sizeof(key), epoch);
    if (strlen(key) != 20) {
        db_set_err(db, "audit prune: time out of range");
        return DB_ERROR;
    }
    memcpy(key + 19, ".000Z", 6);
    *count = 0;
    if (tx_begin(db, &own) != DB_OK)
        return DB_ERROR;
    rc = prune_rows(db, key, who, count, first, last);
    rc = tx_end(db, own, rc);
    if (rc == DB_OK && oldest != NULL)
        str_lcpy(oldest, first, 32);
    if (rc == DB_OK && newest != NULL)
        str_lcpy(newest, last, 32);
    return rc;
}

/* ---- CA operations ------------------------------------------------------ */

int db_admin_log_insert(struct db *db, const struct db_admin_log *e)
{
    sqlite3_stmt *st = db_prepare(db, "INSERT INTO admin_log (uid, login, program, command,"
                                      " target, details, unix_user, sudo_user, user, serial)"
                                      " VALUES (?1, coalesce(?8, ?7), ?2, ?3, ?4, ?5, ?7, ?8,"
                                      " ?9, ?10)");
    int ok, rc;

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
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        db_fail(db);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? DB_OK : DB_ERROR;
}

/* ca_log is a view over admin_log (migration 5): a CA operation is an admin_log row. */
int db_ca_log_insert(struct db *db, const struct db_ca_log *e)
{
    struct db_admin_log a = {
        .uid = e->uid,
        .unix_user = e->unix_user,
        .sudo_user = e->sudo_user,
        .program = "submit-ca",
        .command = e->command,
        .target = e->serial != NULL && *e->serial != '\0' ? e->serial : e->user,
        .details = e->detail,
        .user = e->user,
        .serial = e->serial,
    };

    return db_admin_log_insert(db, &a);
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
    column_text(st, 1, r.ts, sizeof(r.ts));
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

int db_admin_log_list(struct db *db, const char *since, const char *user, db_admin_log_cb cb,
                      void *arg)
{
    struct admin_log_iter it = { cb, arg };
    char since_key[20];
    sqlite3_stmt *st = db_prepare(db, "SELECT id, ts, uid, login, program, command, target,"
                                      " details, user, serial FROM admin_log"
                                      " WHERE (?1 IS NULL OR ts >= ?1)"
                                      " AND (?2 IS NULL OR user = ?2 OR login = ?2)"
                                      " ORDER BY id");

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, second_key(since, since_key)) != SQLITE_OK ||
        bind_text(st, 2, user) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
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
    column_text(st, 1, r.ts, sizeof(r.ts));
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
    sqlite3_stmt *st = db_prepare(db, "SELECT id, ts, uid, unix_user, sudo_user, command,"
                                      " serial, user, detail FROM ca_log"
                                      " WHERE (?1 IS NULL OR user = ?1)"
                                      " AND (?2 IS NULL OR serial = upper(?2))"
                                      " ORDER BY id");

    if (st == NULL)
        return DB_ERROR;
    if (bind_text(st, 1, user) != SQLITE_OK || bind_text(st, 2, serial) != SQLITE_OK) {
        db_fail(db);
        sqlite3_finalize(st);
        return DB_ERROR;
    }
    return db_each(db, st, ca_log_row, &it);
}

/* ---- subject maps and rate limits ---------------------------------------------- */

int db_map_add(struct db *db, const char *subject, const char *issuer, const char *user)
{
    return db_map_add_text(db, subject, issuer, user, NULL, NULL);
}

int db_map_add_text(struct db *db, const char *subject, const char *issuer, const char *user,
                    const char *subject_text, const char *issuer_text)
{
    sqlite3_stmt *st = db_prepare(db,
        "INSERT INTO subject_maps(subject, issuer, user, subject_text, issuer_text)"
        " VALUES (?1, ?2, ?3, ?4, ?5)");
    int rc;

    if (st == NULL)
        return DB_ERROR;
    bind_text(st, 1, subject);
    bind_text(st, 2, issuer ? issuer : "");
    bind_text(st, 3, user);
    bind_text_or_null(st, 4, subject_text);
    bind_text_or_null(st, 5, issuer_text);
    rc = sqlite3_step(st);
    if (rc != SQLITE_DONE)
        db_fail(db);
    sqlite3_finalize(st);
    return db_insert_result(rc);
}

int db_map_del(struct db *db, const char *subject, const char *issuer)
{
    sqlite3_stmt *st = db_prepare(db, issuer
        ? "DELETE FROM subject_maps WHERE subject = ?1 AND issuer = ?2"
        : "DELETE FROM subject_maps WHERE subject = ?1");
    int rc;

    if (st == NULL)
        return DB_ERROR;
    bind_text(st, 1, subject);
    if (issuer)
        bind_text(st, 2, issuer);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(db);
    return sqlite3_changes(db->h) > 0 ? DB_OK : DB_NOTFOUND;
}

int db_map_lookup(struct db *db, const char *subject, const char *issuer, char *user,
                  size_t userlen)
{
    /* An exact issuer wins over a map for any issuer. */
    sqlite3_stmt *st = db_prepare(db,
        "SELECT user FROM subject_maps WHERE subject = ?1 AND issuer IN (?2, '') "
        "ORDER BY issuer = '' LIMIT 1");
    int rc;

    if (st == NULL)
        return DB_ERROR;
    bind_text(st, 1, subject);
    bind_text(st, 2, issuer);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        str_lcpy(user, (const char *)sqlite3_column_text(st, 0), userlen);
        sqlite3_finalize(st);
        return DB_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(db);
    return DB_NOTFOUND;
}

struct map_iter {
    db_map_cb cb;
    void *arg;
};

static int map_row(sqlite3_stmt *st, void *ctx)
{
    struct map_iter *it = ctx;

    return it->cb(it->arg, (const char *)sqlite3_column_text(st, 0),
                  (const char *)sqlite3_column_text(st, 1),
                  (const char *)sqlite3_column_text(st, 2));
}

int db_map_list(struct db *db, db_map_cb cb, void *arg)
{
    sqlite3_stmt *st = db_prepare(db,
        "SELECT coalesce(subject_text, subject), coalesce(issuer_text, issuer), user"
        " FROM subject_maps ORDER BY user, subject, issuer");
    struct map_iter it = { cb, arg };

    if (st == NULL)
        return DB_ERROR;
    return db_each(db, st, map_row, &it);
}

int db_rate_record(struct db *db, const char *user, long long now, long long recipients)
{
    sqlite3_stmt *st = db_prepare(db,
        "INSERT INTO rate_usage (user, minute, messages, recipients) VALUES (?1, ?2, 1, ?3) "
        "ON CONFLICT (user, minute) DO UPDATE SET messages = messages + 1, "
        "recipients = recipients + excluded.recipients");
    int rc;

    if (st == NULL)
        return DB_ERROR;
    bind_text(st, 1, user);
    sqlite3_bind_int64(st, 2, now / 60);
    sqlite3_bind_int64(st, 3, recipients);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return db_fail(db);
    /* Now and then, drop what no window can reach any more. */
    if (now % 600 == 0) {
        st = db_prepare(db, "DELETE FROM rate_usage WHERE minute < ?1");
        if (st == NULL)
            return DB_ERROR;
        sqlite3_bind_int64(st, 1, now / 60 - 120);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc != SQLITE_DONE)
            return db_fail(db);
    }
    return DB_OK;
}

int db_rate_usage(struct db *db, const char *user, long long now, long long *messages,
                  long long *recipients)
{
    sqlite3_stmt *st = db_prepare(db,
        "SELECT coalesce(sum(messages), 0), coalesce(sum(recipients), 0) FROM rate_usage "
        "WHERE user = ?1 AND minute > ?2");
    int rc;

    if (st == NULL)
        return DB_ERROR;
    bind_text(st, 1, user);
    /* The last sixty minutes, the current one included. */
    sqlite3_bind_int64(st, 2, now / 60 - 60);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *messages = sqlite3_column_int64(st, 0);
        *recipients = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? DB_OK : db_fail(db);
}

int db_set_busy_timeout(struct db *db, int ms)
{
    return sqlite3_busy_timeout(db->h, ms) == SQLITE_OK ? DB_OK : db_fail(db);
}
