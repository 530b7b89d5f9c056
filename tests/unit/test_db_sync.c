/*
 * When the SQLite backend syncs its write-ahead log (db.h: db_commit, db_commit_lazy,
 * db_sync): counted by a VFS that passes every call on (sync_count.h). A durable
 * commit is one sync of the log, a lazy one none, and a lazy commit is visible to
 * another connection at once and durable after the next db_sync or db_commit.
 */
#include "db.h"
#include "sync_count.h"
#include "unit.h"
#include "util.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];
static int db_seq;

/* A new database file, written once so that its log exists and has its header. */
static struct db *open_new(char *path, size_t pathlen)
{
    char err[1024] = "";
    struct db *db;

    (void)str_fmt(path, pathlen, "%s/sync-%d.db", tmpdir, ++db_seq);
    db = db_open(path, err, sizeof(err));
    if (db == NULL) {
        printf("  db_open: %s\n", err);
        return NULL;
    }
    if (db_user_add(db, "warm-up") != DB_OK) {
        printf("  warm-up: %s\n", db_errmsg(db));
        db_close(db);
        return NULL;
    }
    return db;
}

static struct db *open_path(const char *path)
{
    char err[1024] = "";
    struct db *db = db_open(path, err, sizeof(err));

    if (db == NULL)
        printf("  db_open: %s\n", err);
    return db;
}

static int add_in_tx(struct db *db, const char *user, int (*end)(struct db *))
{
    if (db_begin(db) != DB_OK || db_user_add(db, user) != DB_OK)
        return DB_ERROR;
    return end(db);
}

/* The counting VFS is in the path: without it the counts below would mean nothing. */
TEST(test_counting_vfs)
{
    char path[PATH_MAX + 32];
    struct db *db;

    sync_count_reset();
    db = open_new(path, sizeof(path));
    if (db == NULL)
        return;
    CHECK(sync_count.log + sync_count.database > 0);
    db_close(db);
}

TEST(test_durable_commit_syncs_the_log_once)
{
    char path[PATH_MAX + 32];
    struct db *db = open_new(path, sizeof(path));

    if (db == NULL)
        return;
    sync_count_reset();
    CHECK(add_in_tx(db, "dur-1", db_commit) == DB_OK);
    CHECK(sync_count.log == 1);
    CHECK(sync_count.database == 0);
    db_close(db);
}

TEST(test_lazy_commit_does_not_sync)
{
    char path[PATH_MAX + 32];
    struct db *db = open_new(path, sizeof(path)), *other;
    int enabled = 0;

    if (db == NULL)
        return;
    other = open_path(path);
    if (other == NULL) {
        db_close(db);
        return;
    }
    sync_count_reset();
    CHECK(add_in_tx(db, "lazy-1", db_commit_lazy) == DB_OK);
    CHECK(add_in_tx(db, "lazy-2", db_commit_lazy) == DB_OK);
    CHECK(sync_count.log == 0 && sync_count.database == 0 && sync_count.other == 0);
    /* Committed: another connection sees it now. */
    CHECK(db_user_get(other, "lazy-1", &enabled) == DB_OK && enabled == 1);
    CHECK(db_user_get(other, "lazy-2", NULL) == DB_OK);
    /* db_sync makes both durable with one sync, and then has nothing left to do. */
    CHECK(db_sync(db) == DB_OK);
    CHECK(sync_count.log == 1);
    CHECK(db_sync(db) == DB_OK);
    CHECK(sync_count.log == 1);
    /* A durable commit after lazy ones: one sync carries them all. */
    sync_count_reset();
    CHECK(add_in_tx(db, "lazy-3", db_commit_lazy) == DB_OK);
    CHECK(add_in_tx(db, "dur-2", db_commit) == DB_OK);
    CHECK(sync_count.log == 1);
    CHECK(db_sync(db) == DB_OK);
    CHECK(sync_count.log == 1);
    db_close(other);
    db_close(db);
}

/* A write outside a transaction (what submit-admin does) stays durable. */
TEST(test_single_call_is_durable)
{
    char path[PATH_MAX + 32];
    struct db *db = open_new(path, sizeof(path));
    struct db_audit a;

    if (db == NULL)
        return;
    sync_count_reset();
    CHECK(db_user_add(db, "single-1") == DB_OK);
    CHECK(sync_count.log == 1);
    memset(&a, 0, sizeof(a));
    a.session = "single";
    a.event = "connect";
    a.size = -1;
    CHECK(db_audit_insert(db, &a) == DB_OK);
    CHECK(sync_count.log == 2);
    /* Reads sync nothing. */
    CHECK(db_user_get(db, "single-1", NULL) == DB_OK);
    CHECK(sync_count.log == 2);
    db_close(db);
}

/* A sync that fails is a failed commit (the caller's answers become TEMPFAIL). */
TEST(test_failed_sync)
{
    char path[PATH_MAX + 32];
    struct db *db = open_new(path, sizeof(path));

    if (db == NULL)
        return;
    sync_count.fail = 1;
    CHECK(add_in_tx(db, "fail-1", db_commit) == DB_ERROR);
    db_rollback(db);
    CHECK(db_user_add(db, "fail-2") == DB_ERROR);
    CHECK(add_in_tx(db, "fail-3", db_commit_lazy) == DB_OK);
    CHECK(db_sync(db) == DB_ERROR);
    sync_count.fail = 0;
    /* Still owed: the next db_sync does it. */
    sync_count_reset();
    CHECK(db_sync(db) == DB_OK);
    CHECK(sync_count.log == 1);
    db_close(db);
}

int main(void)
{
    const char *base = getenv("TMPDIR");

    if (sync_count_install() != 0) {
        printf("cannot install the counting VFS\n");
        return 1;
    }
    if (str_fmt(tmpdir, sizeof(tmpdir), "%s/test_db_sync.XXXXXX",
                base != NULL && *base != '\0' ? base : "/tmp") != 0 ||
        mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_counting_vfs);
    RUN(test_durable_commit_syncs_the_log_once);
    RUN(test_lazy_commit_does_not_sync);
    RUN(test_single_call_is_durable);
    RUN(test_failed_sync);
    for (int i = 1; i <= db_seq; i++) {
        char path[PATH_MAX + 40];

        (void)str_fmt(path, sizeof(path), "%s/sync-%d.db", tmpdir, i);
        (void)unlink(path);
        (void)str_fmt(path, sizeof(path), "%s/sync-%d.db-wal", tmpdir, i);
        (void)unlink(path);
        (void)str_fmt(path, sizeof(path), "%s/sync-%d.db-shm", tmpdir, i);
        (void)unlink(path);
    }
    (void)rmdir(tmpdir);
    return UNIT_DONE();
}
