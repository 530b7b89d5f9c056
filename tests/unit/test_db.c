/* Unit tests of db/db.c against an in-memory database and a temporary file. */
#include "db.h"
#include "sqlite/db_sqlite_test.h"
#include "unit.h"

/* Generated from db/NNNN_*.sql: the schema version after every migration. */
extern const int db_migrations_count;
#include "util.h"

#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];

static struct db *mem_db(void)
{
    char err[512] = "";
    struct db *db = db_open(":memory:", err, sizeof(err));

    if (db == NULL)
        printf("  db_open(:memory:): %s\n", err);
    return db;
}

static void tmp_path(char *out, size_t outlen, const char *name)
{
    if (str_fmt(out, outlen, "%s/%s", tmpdir, name) != 0)
        out[0] = '\0';
}

/* Seconds of an ISO-8601 time, for the times of the interface. */
static int64_t T(const char *iso)
{
    long long t = 0;

    if (iso_time_parse(iso, &t) != 0)
        printf("  bad time %s\n", iso);
    return (int64_t)t;
}

static void make_cert(struct db_cert *c, const char *serial, const char *user,
                      const char *sha256, const char *not_after)
{
    memset(c, 0, sizeof(*c));
    str_lcpy(c->serial, serial, sizeof(c->serial));
    str_lcpy(c->user, user, sizeof(c->user));
    str_lcpy(c->sha256, sha256, sizeof(c->sha256));
    str_lcpy(c->subject, "CN=test", sizeof(c->subject));
    str_lcpy(c->issuer, "CN=Test CA", sizeof(c->issuer));
    c->not_before = T("2025-01-01T00:00:00Z");
    c->not_after = T(not_after);
}

/* ---- collectors for the list callbacks ---------------------------------- */

struct collect {
    int n;
    int stop_after;      /* 0: never stop */
    char text[2048];     /* '|'-separated keys of the rows seen */
};

static void collect_add(struct collect *c, const char *key)
{
    size_t len = strlen(c->text);

    (void)str_fmt(c->text + len, sizeof(c->text) - len, "%s%s", c->n ? "|" : "", key);
    c->n++;
}

static int collect_user(void *arg, const struct db_user *u)
{
    struct collect *c = arg;
    char key[1300];

    (void)str_fmt(key, sizeof(key), "%s:%d:%s", u->name, u->enabled, u->senders);
    collect_add(c, key);
    return c->stop_after && c->n >= c->stop_after;
}

static int collect_sender(void *arg, const char *address)
{
    collect_add(arg, address);
    return 0;
}

static int collect_cert(void *arg, const struct db_cert *cert)
{
    collect_add(arg, cert->serial);
    return 0;
}

static int collect_audit(void *arg, const struct db_audit_row *r)
{
    struct collect *c = arg;

    collect_add(c, r->event);
    return c->stop_after && c->n >= c->stop_after;
}

/* ---- tests -------------------------------------------------------------- */

TEST(test_open_memory_migrates)
{
    struct db *db = mem_db();

    CHECK(db != NULL);
    if (db == NULL)
        return;
    CHECK(db_schema_version(db) == db_migrations_count);
    /* The tables of DESIGN §7 exist with their contract columns. */
    CHECK(db_sqlite_exec_for_test(db, "SELECT name, enabled, created_at FROM users") == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "SELECT user, address FROM senders") == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "SELECT serial, user, sha256, subject, issuer, not_before,"
                               " not_after, status, revoked_at, revoke_reason"
                               " FROM certs") == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "SELECT subject, issuer, user FROM subject_maps") == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "SELECT id, ts, session, event, decision, reason, client_ip, user,"
                               " cert_sha256, cert_subject, mail_from, rcpt, queue_id, size, tls"
                               " FROM audit") == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "SELECT nosuchcolumn FROM users") == DB_ERROR);
    CHECK(strstr(db_errmsg(db), ":memory:: ") == db_errmsg(db));
    db_close(db);
}

TEST(test_open_file_reopen_and_mode)
{
    char path[PATH_MAX], wal[PATH_MAX + 8], err[512] = "";
    struct db *db;
    struct stat sb;

    tmp_path(path, sizeof(path), "reopen.db");
    db = db_open(path, err, sizeof(err));
    CHECK(db != NULL);
    if (db == NULL) {
        printf("  %s\n", err);
        return;
    }
    CHECK(db_user_add(db, "alice") == DB_OK);
    /* WAL mode: the -wal file exists while the connection is open. */
    (void)str_fmt(wal, sizeof(wal), "%s-wal", path);
    CHECK(stat(wal, &sb) == 0);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    db_close(db);

    /* Opening again applies nothing and keeps the data. */
    db = db_open(path, err, sizeof(err));
    CHECK(db != NULL);
    if (db == NULL)
        return;
    CHECK(db_schema_version(db) == db_migrations_count);
    CHECK(db_user_get(db, "alice", NULL) == DB_OK);
    db_close(db);
}

TEST(test_open_refuses_newer_schema)
{
    char path[PATH_MAX], err[512] = "";
    struct db *db;

    tmp_path(path, sizeof(path), "newer.db");
    db = db_open(path, err, sizeof(err));
    CHECK(db != NULL);
    if (db == NULL)
        return;
    CHECK(db_sqlite_exec_for_test(db, "PRAGMA user_version = 99") == DB_OK);
    db_close(db);

    db = db_open(path, err, sizeof(err));
    CHECK(db == NULL);
    db_close(db);
    CHECK(strncmp(err, path, strlen(path)) == 0);
    CHECK(strstr(err, "schema version 99 is newer") != NULL);
}

TEST(test_open_error_names_file)
{
    char path[PATH_MAX], err[512] = "";
    struct db *db;

    tmp_path(path, sizeof(path), "no/such/dir/x.db");
    db = db_open(path, err, sizeof(err));
    CHECK(db == NULL);
    db_close(db);
    CHECK(strncmp(err, path, strlen(path)) == 0);
    CHECK(strstr(err, "No such file") != NULL);
}

/* A link in place of the database could lead out of its root-only directory. */
TEST(test_open_refuses_a_link)
{
    char path[PATH_MAX], link[PATH_MAX], err[512] = "";
    struct db *db;

    tmp_path(path, sizeof(path), "target.db");
    tmp_path(link, sizeof(link), "link.db");
    CHECK(symlink(path, link) == 0);
    db = db_open(link, err, sizeof(err));
    CHECK(db == NULL);
    db_close(db);
    CHECK(strncmp(err, link, strlen(link)) == 0 && strstr(err, "symbolic link") != NULL);
    CHECK(access(path, F_OK) != 0);
}

/* Whoever owns the directory could put a database or -wal file of their own there. */
TEST(test_open_refuses_a_directory_another_user_owns)
{
    char dir[PATH_MAX], path[PATH_MAX], err[512] = "";
    struct db *db;

    if (geteuid() != 0)
        SKIP("needs root to chown a directory to another user");
    tmp_path(dir, sizeof(dir), "theirs");
    CHECK(mkdir(dir, 0755) == 0 && chown(dir, 4242, 4242) == 0);
    (void)str_fmt(path, sizeof(path), "%s/x.db", dir);
    db = db_open(path, err, sizeof(err));
    CHECK(db == NULL);
    db_close(db);
    CHECK(strstr(err, "is owned by uid 4242, expected root") != NULL);
    CHECK(access(path, F_OK) != 0);
}

TEST(test_user_add_exists_del)
{
    struct db *db = mem_db();
    int enabled = -1;

    if (db == NULL) {
        CHECK(0);
        return;
    }
    CHECK(db_user_add(db, "alice") == DB_OK);
    CHECK(db_user_add(db, "alice") == DB_EXISTS);
    CHECK(db_user_add(db, "bad name") == DB_ERROR);
    CHECK(db_user_add(db, "-x") == DB_ERROR);
    CHECK(db_user_get(db, "alice", &enabled) == DB_OK && enabled == 1);
    CHECK(db_user_get(db, "Alice", NULL) == DB_NOTFOUND);
    CHECK(db_user_get(db, "bob", &enabled) == DB_NOTFOUND);

    CHECK(db_user_set_enabled(db, "alice", 0) == DB_OK);
    CHECK(db_user_get(db, "alice", &enabled) == DB_OK && enabled == 0);
    CHECK(db_user_set_enabled(db, "alice", 1) == DB_OK);
    CHECK(db_user_get(db, "alice", &enabled) == DB_OK && enabled == 1);
    CHECK(db_user_set_enabled(db, "bob", 0) == DB_NOTFOUND);

    CHECK(db_user_del(db, "alice") == DB_OK);
    CHECK(db_user_get(db, "alice", NULL) == DB_NOTFOUND);
    CHECK(db_user_del(db, "alice") == DB_NOTFOUND);
    db_close(db);
}

TEST(test_user_del_cascades)
{
    struct db *db = mem_db();
    struct db_cert c;
    struct collect col;

    if (db == NULL) {
        CHECK(0);
        return;
    }
    CHECK(db_user_add(db, "alice") == DB_OK);
    CHECK(db_sender_add(db, "alice", "alice@example.com") == DB_OK);
    CHECK(db_sender_add(db, "alice", "@example.org") == DB_OK);
    make_cert(&c, "0A", "alice", "aa", "2030-01-01T00:00:00Z");
    CHECK(db_cert_insert(db, &c) == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "INSERT INTO subject_maps (subject, user)"
                               " VALUES ('CN=alice,O=Other', 'alice')") == DB_OK);

    CHECK(db_user_del(db, "alice") == DB_OK);
    CHECK(db_sender_owned(db, "alice", "alice@example.com") == DB_NOTFOUND);

    /* A new user of the same name inherits nothing. */
    CHECK(db_user_add(db, "alice") == DB_OK);
    memset(&col, 0, sizeof(col));
    CHECK(db_sender_list(db, "alice", collect_sender, &col) == DB_OK && col.n == 0);
    CHECK(db_sender_owned(db, "alice", "x@example.org") == DB_NOTFOUND);
    CHECK(db_sqlite_exec_for_test(db, "INSERT INTO subject_maps (subject, user)"
                               " VALUES ('CN=alice,O=Other', 'alice')") == DB_OK);

    /* The certificate stays, revoked and without a user, for the CRL. */
    CHECK(db_cert_by_serial(db, "0A", &c) == DB_OK);
    CHECK(c.status == CERT_REVOKED);
    CHECK_STR(c.user, "");
    CHECK_STR(c.revoke_reason, "cessationOfOperation");
    CHECK(c.revoked_at > T("2024-01-01T00:00:00Z"));
    db_close(db);
}

TEST(test_user_list)
{
    struct db *db = mem_db();
    struct collect col;

    if (db == NULL) {
        CHECK(0);
        return;
    }
    CHECK(db_user_add(db, "bob") == DB_OK);
    CHECK(db_user_add(db, "alice") == DB_OK);
    CHECK(db_sender_add(db, "alice", "Zed@Example.com") == DB_OK);
    CHECK(db_sender_add(db, "alice", "@example.org") == DB_OK);
    CHECK(db_user_set_enabled(db, "bob", 0) == DB_OK);

    memset(&col, 0, sizeof(col));
    CHECK(db_user_list(db, collect_user, &col) == DB_OK);
    CHECK_STR(col.text, "alice:1:@example.org,zed@example.com|bob:0:");

    memset(&col, 0, sizeof(col));
    col.stop_after = 1;
    CHECK(db_user_list(db, collect_user, &col) == DB_OK);
    CHECK(col.n == 1);

    memset(&col, 0, sizeof(col));
    CHECK(db_sender_list(db, "alice", collect_sender, &col) == DB_OK);
    CHECK_STR(col.text, "@example.org|zed@example.com");
    CHECK(db_sender_list(db, "carol", collect_sender, &col) == DB_NOTFOUND);
    db_close(db);
}

TEST(test_user_list_truncates_senders)
{
    struct db *db = mem_db();
    struct collect col;
    char addr[64];

    if (db == NULL) {
        CHECK(0);
        return;
    }
    CHECK(db_user_add(db, "alice") == DB_OK);
    for (int i = 0; i < 100; i++) {
        (void)str_fmt(addr, sizeof(addr), "user%03d@example.com", i);
        CHECK(db_sender_add(db, "alice", addr) == DB_OK);
    }
    memset(&col, 0, sizeof(col));
    CHECK(db_user_list(db, collect_user, &col) == DB_OK);
    CHECK(strlen(col.text) > 4 && strcmp(col.text + strlen(col.text) - 3, "...") == 0);
    db_close(db);
}

TEST(test_sender_ownership)
{
    struct db *db = mem_db();

    if (db == NULL) {
        CHECK(0);
        return;
    }
    CHECK(db_user_add(db, "alice") == DB_OK);
    CHECK(db_user_add(db, "bob") == DB_OK);
    CHECK(db_sender_add(db, "alice", "Alice@Example.COM") == DB_OK);
    CHECK(db_sender_add(db, "alice", "alice@example.com") == DB_EXISTS);
    CHECK(db_sender_add(db, "bob", "@Corp.example") == DB_OK);
    CHECK(db_sender_add(db, "carol", "carol@example.com") == DB_NOTFOUND);
    CHECK(db_sender_add(db, "alice", "no-at-sign") == DB_ERROR);

    /* Exact address, any case. */
    CHECK(db_sender_owned(db, "alice", "alice@example.com") == DB_OK);
    CHECK(db_sender_owned(db, "alice", "ALICE@EXAMPLE.COM") == DB_OK);
    /* Not owned: another local part, another user, a look-alike domain. */
    CHECK(db_sender_owned(db, "alice", "bob@example.com") == DB_NOTFOUND);
    CHECK(db_sender_owned(db, "bob", "alice@example.com") == DB_NOTFOUND);
    CHECK(db_sender_owned(db, "alice", "alice@example.com.evil") == DB_NOTFOUND);
    CHECK(db_sender_owned(db, "nobody", "alice@example.com") == DB_NOTFOUND);
    CHECK(db_sender_owned(db, "alice", "") == DB_NOTFOUND);
    CHECK(db_sender_owned(db, "alice", "alice@") == DB_NOTFOUND);

    /* @domain covers the whole domain, any case, but not its subdomains. */
    CHECK(db_sender_owned(db, "bob", "anyone@corp.example") == DB_OK);
    CHECK(db_sender_owned(db, "bob", "Anyone@CORP.Example") == DB_OK);
    CHECK(db_sender_owned(db, "bob", "x@sub.corp.example") == DB_NOTFOUND);
    CHECK(db_sender_owned(db, "bob", "x@corp.example.org") == DB_NOTFOUND);
    /* The domain is what follows the last '@'. */
    CHECK(db_sender_owned(db, "bob", "\"a@evil.example\"@corp.example") == DB_OK);
    CHECK(db_sender_owned(db, "bob", "\"a@corp.example\"@evil.example") == DB_NOTFOUND);

    CHECK(db_sender_del(db, "alice", "ALICE@example.com") == DB_OK);
    CHECK(db_sender_owned(db, "alice", "alice@example.com") == DB_NOTFOUND);
    CHECK(db_sender_del(db, "alice", "alice@example.com") == DB_NOTFOUND);
    db_close(db);
}

TEST(test_validation)
{
    CHECK(db_user_name_valid("alice"));
    CHECK(db_user_name_valid("a.b_c-D9"));
    CHECK(db_user_name_valid("0123456789012345678901234567890123456789012345678901234567890123"));
    CHECK(!db_user_name_valid("01234567890123456789012345678901234567890123456789012345678901234"));
    CHECK(!db_user_name_valid(""));
    CHECK(!db_user_name_valid(".alice"));
    CHECK(!db_user_name_valid("-alice"));
    CHECK(!db_user_name_valid("al ice"));
    CHECK(!db_user_name_valid("al/ice"));
    CHECK(!db_user_name_valid("al\xc3\xa9"));

    CHECK(db_sender_address_valid("alice@example.com"));
    CHECK(db_sender_address_valid("@example.com"));
    CHECK(db_sender_address_valid("a.b+tag@localhost"));
    CHECK(!db_sender_address_valid("alice"));
    CHECK(!db_sender_address_valid("alice@"));
    CHECK(!db_sender_address_valid("@"));
    CHECK(!db_sender_address_valid("a@b@c"));
    CHECK(!db_sender_address_valid("a b@example.com"));
    CHECK(!db_sender_address_valid("a@exa mple.com"));
    CHECK(!db_sender_address_valid("a\n@example.com"));
    CHECK(!db_sender_address_valid("a,b@example.com"));
    CHECK(!db_sender_address_valid("a@example..com"));
    CHECK(!db_sender_address_valid("a@.example.com"));
    CHECK(!db_sender_address_valid("a@example.com."));
    CHECK(!db_sender_address_valid(".a@example.com"));
    CHECK(!db_sender_address_valid("a..b@example.com"));
}

TEST(test_certs)
{
    struct db *db = mem_db();
    struct db_cert c, got;
    struct collect col;

    if (db == NULL) {
        CHECK(0);
        return;
    }
    CHECK(db_user_add(db, "alice") == DB_OK);
    CHECK(db_user_add(db, "bob") == DB_OK);
    make_cert(&c, "0a1b", "alice", "ABCDEF01", "2030-01-01T00:00:00Z");
    CHECK(db_cert_insert(db, &c) == DB_OK);
    CHECK(db_cert_insert(db, &c) == DB_EXISTS);
    make_cert(&c, "0B", "alice", "abcdef01", "2031-01-01T00:00:00Z");
    CHECK(db_cert_insert(db, &c) == DB_EXISTS);           /* same SHA-256 */
    make_cert(&c, "0C", "alice", "cc", "2026-01-01T00:00:00Z");
    CHECK(db_cert_insert(db, &c) == DB_OK);
    make_cert(&c, "0D", "bob", "dd", "2027-06-01T00:00:00Z");
    CHECK(db_cert_insert(db, &c) == DB_OK);
    make_cert(&c, "0E", "nobody", "ee", "2027-06-01T00:00:00Z");
    CHECK(db_cert_insert(db, &c) == DB_NOTFOUND);

    /* Lookups normalise the case of serial and fingerprint. */
    CHECK(db_cert_by_sha256(db, "abcdef01", &got) == DB_OK);
    CHECK_STR(got.serial, "0A1B");
    CHECK_STR(got.user, "alice");
    CHECK_STR(got.sha256, "abcdef01");
    CHECK_STR(got.subject, "CN=test");
    CHECK_STR(got.issuer, "CN=Test CA");
    CHECK(got.not_before == T("2025-01-01T00:00:00Z"));
    CHECK(got.not_after == T("2030-01-01T00:00:00Z"));
    CHECK(got.status == CERT_VALID);
    CHECK(got.revoked_at == DB_TIME_NONE);
    CHECK(db_cert_by_sha256(db, "ABCDEF01", &got) == DB_OK);
    CHECK(db_cert_by_sha256(db, "ff", &got) == DB_NOTFOUND);
    CHECK(db_cert_by_serial(db, "0a1b", &got) == DB_OK);
    CHECK_STR(got.sha256, "abcdef01");
    CHECK(db_cert_by_serial(db, "FF", &got) == DB_NOTFOUND);

    /* Listing: all, by user, by expiry, both; ordered by not_after. */
    memset(&col, 0, sizeof(col));
    CHECK(db_cert_list(db, NULL, DB_TIME_NONE, collect_cert, &col) == DB_OK);
    CHECK_STR(col.text, "0C|0D|0A1B");
    memset(&col, 0, sizeof(col));
    CHECK(db_cert_list(db, "alice", DB_TIME_NONE, collect_cert, &col) == DB_OK);
    CHECK_STR(col.text, "0C|0A1B");
    memset(&col, 0, sizeof(col));
    CHECK(db_cert_list(db, NULL, T("2028-01-01T00:00:00Z"), collect_cert, &col) == DB_OK);
    CHECK_STR(col.text, "0C|0D");
    memset(&col, 0, sizeof(col));
    CHECK(db_cert_list(db, "alice", T("2028-01-01T00:00:00Z"), collect_cert, &col) == DB_OK);
    CHECK_STR(col.text, "0C");
    memset(&col, 0, sizeof(col));
    CHECK(db_cert_list(db, "carol", DB_TIME_NONE, collect_cert, &col) == DB_OK && col.n == 0);

    /* Revocation: once, with its date and reason; a second one changes nothing. */
    CHECK(db_cert_revoke(db, "0c", "keyCompromise") == DB_OK);
    CHECK(db_cert_by_serial(db, "0C", &got) == DB_OK);
    CHECK(got.status == CERT_REVOKED);
    CHECK_STR(got.revoke_reason, "keyCompromise");
    CHECK(got.revoked_at > T("2024-01-01T00:00:00Z"));
    CHECK(db_sqlite_exec_for_test(db, "UPDATE certs SET revoked_at = '2020-01-01T00:00:00Z'"
                               " WHERE serial = '0C'") == DB_OK);
    CHECK(db_cert_revoke(db, "0C", "superseded") == DB_OK);
    CHECK(db_cert_by_serial(db, "0C", &got) == DB_OK);
    CHECK_STR(got.revoke_reason, "keyCompromise");
    CHECK(got.revoked_at == T("2020-01-01T00:00:00Z"));
    CHECK(db_cert_revoke(db, "0D", NULL) == DB_OK);
    CHECK(db_cert_by_serial(db, "0D", &got) == DB_OK);
    CHECK_STR(got.revoke_reason, "unspecified");
    CHECK(db_cert_revoke(db, "FF", NULL) == DB_NOTFOUND);
    CHECK(db_cert_by_serial(db, "0A1B", &got) == DB_OK);
    CHECK(got.status == CERT_VALID);

    /* A certificate recorded as revoked gets a revocation date. */
    make_cert(&c, "10", "bob", "1010", "2030-01-01T00:00:00Z");
    c.status = CERT_REVOKED;
    CHECK(db_cert_insert(db, &c) == DB_OK);
    CHECK(db_cert_by_serial(db, "10", &got) == DB_OK);
    CHECK(got.status == CERT_REVOKED);
    CHECK(got.revoked_at != DB_TIME_NONE);
    make_cert(&c, "11", "bob", "1111", "2030-01-01T00:00:00Z");
    c.status = (enum cert_status)9;
    CHECK(db_cert_insert(db, &c) == DB_ERROR);
    db_close(db);
}

static int audit_row(struct db *db, const char *event, const char *decision, const char *user,
                     long long size)
{
    struct db_audit a;

    memset(&a, 0, sizeof(a));
    a.session = "s1";
    a.event = event;
    a.decision = decision;
    a.user = user;
    a.reason = decision != NULL && strcmp(decision, "reject") == 0 ? "sender not owned" : NULL;
    a.client_ip = "192.0.2.1";
    a.mail_from = "alice@example.com";
    a.rcpt = "x@example.net,y@example.net";
    a.size = size;
    a.tls = "TLSv1.3 TLS_AES_256_GCM_SHA384";
    return db_audit_insert(db, &a);
}

static int first_row(void *arg, const struct db_audit_row *r)
{
    *(struct db_audit_row *)arg = *r;
    return 1;
}

TEST(test_audit_insert_query)
{
    struct db *db = mem_db();
    struct db_audit_row row;
    struct collect col;

    if (db == NULL) {
        CHECK(0);
        return;
    }
    CHECK(audit_row(db, "connect", NULL, NULL, -1) == DB_OK);
    CHECK(audit_row(db, "identity", "accept", "alice", -1) == DB_OK);
    CHECK(audit_row(db, "mail", "reject", "alice", 1234) == DB_OK);
    CHECK(audit_row(db, "identity", "tempfail", "bob", -1) == DB_OK);
    CHECK(audit_row(db, "data", "accept", "bob", 99) == DB_OK);
    CHECK(audit_row(db, "x", "maybe", "bob", -1) == DB_ERROR);
    /* Rows older than "since": ts is set by the database, so write one directly. */
    CHECK(db_sqlite_exec_for_test(db, "INSERT INTO audit (ts, event, decision, user) VALUES"
                               " ('2000-01-01T00:00:00.000Z', 'old', 'accept', 'alice')") == DB_OK);

    memset(&col, 0, sizeof(col));
    CHECK(db_audit_query(db, NULL, DB_TIME_NONE, NULL, collect_audit, &col) == DB_OK);
    CHECK_STR(col.text, "connect|identity|mail|identity|data|old");

    memset(&col, 0, sizeof(col));
    CHECK(db_audit_query(db, "alice", DB_TIME_NONE, NULL, collect_audit, &col) == DB_OK);
    CHECK_STR(col.text, "identity|mail|old");

    memset(&col, 0, sizeof(col));
    CHECK(db_audit_query(db, NULL, DB_TIME_NONE, "accept", collect_audit, &col) == DB_OK);
    CHECK_STR(col.text, "identity|data|old");

    memset(&col, 0, sizeof(col));
    CHECK(db_audit_query(db, NULL, T("2001-01-01T00:00:00Z"), NULL, collect_audit, &col) == DB_OK);
    CHECK_STR(col.text, "connect|identity|mail|identity|data");

    /* The second of "since" itself is included, despite the milliseconds. */
    memset(&col, 0, sizeof(col));
    CHECK(db_audit_query(db, NULL, T("2000-01-01T00:00:00Z"), NULL, collect_audit, &col) == DB_OK);
    CHECK(col.n == 6);

    memset(&col, 0, sizeof(col));
    CHECK(db_audit_query(db, "alice", T("2001-01-01T00:00:00Z"), "reject", collect_audit,
                         &col) == DB_OK);
    CHECK_STR(col.text, "mail");

    memset(&col, 0, sizeof(col));
    CHECK(db_audit_query(db, "bob", DB_TIME_NONE, "tempfail", collect_audit, &col) == DB_OK);
    CHECK_STR(col.text, "identity");

    memset(&col, 0, sizeof(col));
    CHECK(db_audit_query(db, "carol", DB_TIME_NONE, NULL, collect_audit, &col) == DB_OK && col.n == 0);

    memset(&col, 0, sizeof(col));
    col.stop_after = 2;
    CHECK(db_audit_query(db, NULL, DB_TIME_NONE, NULL, collect_audit, &col) == DB_OK && col.n == 2);

    /* Every column comes back; NULL is "" (and -1 for size). */
    memset(&row, 0, sizeof(row));
    CHECK(db_audit_query(db, "alice", DB_TIME_NONE, "reject", first_row, &row) == DB_OK);
    CHECK(row.id == 3);
    CHECK(row.ts.sec > T("2024-01-01T00:00:00Z") && row.ts.msec >= 0 && row.ts.msec < 1000);
    CHECK_STR(row.session, "s1");
    CHECK_STR(row.event, "mail");
    CHECK_STR(row.decision, "reject");
    CHECK_STR(row.reason, "sender not owned");
    CHECK_STR(row.client_ip, "192.0.2.1");
    CHECK_STR(row.user, "alice");
    CHECK_STR(row.cert_sha256, "");
    CHECK_STR(row.mail_from, "alice@example.com");
    CHECK_STR(row.rcpt, "x@example.net,y@example.net");
    CHECK(row.size == 1234);
    CHECK_STR(row.tls, "TLSv1.3 TLS_AES_256_GCM_SHA384");
    memset(&row, 0, sizeof(row));
    CHECK(db_audit_query(db, NULL, DB_TIME_NONE, NULL, first_row, &row) == DB_OK);
    CHECK(row.size == -1);
    CHECK_STR(row.decision, "");
    db_close(db);
}

TEST(test_audit_append_only)
{
    struct db *db = mem_db();
    struct collect col;

    if (db == NULL) {
        CHECK(0);
        return;
    }
    CHECK(audit_row(db, "identity", "accept", "alice", -1) == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "UPDATE audit SET decision = 'reject'") == DB_ERROR);
    CHECK(strstr(db_errmsg(db), "audit is append-only") != NULL);
    CHECK(db_sqlite_exec_for_test(db, "DELETE FROM audit") == DB_ERROR);
    CHECK(strstr(db_errmsg(db), "audit is append-only") != NULL);
    memset(&col, 0, sizeof(col));
    CHECK(db_audit_query(db, NULL, DB_TIME_NONE, "accept", collect_audit, &col) == DB_OK && col.n == 1);
    db_close(db);
}

TEST(test_transactions)
{
    struct db *db = mem_db();
    struct db_cert c;

    if (db == NULL) {
        CHECK(0);
        return;
    }
    /* A rolled-back group leaves nothing; functions with their own transaction
     * (db_user_del) join the caller's. */
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_user_add(db, "alice") == DB_OK);
    CHECK(db_sender_add(db, "alice", "alice@example.com") == DB_OK);
    db_rollback(db);
    CHECK(db_user_get(db, "alice", NULL) == DB_NOTFOUND);

    CHECK(db_begin(db) == DB_OK);
    CHECK(db_user_add(db, "alice") == DB_OK);
    make_cert(&c, "01", "alice", "01", "2030-01-01T00:00:00Z");
    CHECK(db_cert_insert(db, &c) == DB_OK);
    CHECK(db_user_del(db, "alice") == DB_OK);
    CHECK(db_user_add(db, "alice") == DB_OK);
    CHECK(db_commit(db) == DB_OK);
    CHECK(db_user_get(db, "alice", NULL) == DB_OK);
    CHECK(db_cert_by_serial(db, "01", &c) == DB_OK);
    CHECK(c.status == CERT_REVOKED);
    db_rollback(db);    /* harmless without a transaction */
    db_close(db);
}

TEST(test_two_connections)
{
    char path[PATH_MAX], err[512] = "";
    struct db *a, *b;

    tmp_path(path, sizeof(path), "two.db");
    a = db_open(path, err, sizeof(err));
    b = db_open(path, err, sizeof(err));
    CHECK(a != NULL && b != NULL);
    if (a != NULL && b != NULL) {
        /* A reader sees what another connection committed (authz and the CLIs). */
        CHECK(db_user_add(a, "alice") == DB_OK);
        CHECK(db_sender_add(a, "alice", "@example.com") == DB_OK);
        CHECK(db_sender_owned(b, "alice", "x@example.com") == DB_OK);
        CHECK(db_user_set_enabled(b, "alice", 0) == DB_OK);
        CHECK(db_user_get(a, "alice", NULL) == DB_OK);
    }
    db_close(a);
    db_close(b);
}

static void remove_tmpdir(void)
{
    static const char *const names[] = { "reopen.db", "newer.db", "two.db" };
    static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
    char path[PATH_MAX];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        for (size_t j = 0; j < sizeof(suffixes) / sizeof(suffixes[0]); j++) {
            (void)str_fmt(path, sizeof(path), "%s/%s%s", tmpdir, names[i], suffixes[j]);
            (void)unlink(path);
        }
    (void)rmdir(tmpdir);
}

TEST(test_rate_usage_window)
{
    struct db *db = mem_db();
    long long now = 1800000000, msgs = -1, rcpts = -1;
    char user[128];

    CHECK(db != NULL);
    if (db == NULL)
        return;
    CHECK(db_rate_record(db, "alice", now - 3700, 50) == DB_OK);   /* outside the hour */
    CHECK(db_rate_record(db, "alice", now - 1800, 2) == DB_OK);
    CHECK(db_rate_record(db, "alice", now - 1790, 3) == DB_OK);   /* same minute: summed */
    CHECK(db_rate_record(db, "alice", now, 1) == DB_OK);
    CHECK(db_rate_record(db, "bob", now, 9) == DB_OK);
    CHECK(db_rate_usage(db, "alice", now, &msgs, &rcpts) == DB_OK);
    CHECK(msgs == 3);
    CHECK(rcpts == 6);
    CHECK(db_rate_usage(db, "carol", now, &msgs, &rcpts) == DB_OK);
    CHECK(msgs == 0 && rcpts == 0);
    /* Maps: exact issuer first, then any issuer. */
    CHECK(db_user_add(db, "alice") == DB_OK);
    CHECK(db_map_add(db, "cn=x", "", "alice") == DB_OK);
    CHECK(db_map_add(db, "cn=x", "", "alice") == DB_EXISTS);
    CHECK(db_map_add(db, "cn=y", "", "nobody-here") == DB_NOTFOUND);
    CHECK(db_map_lookup(db, "cn=x", "cn=ca2", user, sizeof(user)) == DB_OK);
    CHECK_STR(user, "alice");
    CHECK(db_map_lookup(db, "cn=z", "cn=ca2", user, sizeof(user)) == DB_NOTFOUND);
    CHECK(db_map_del(db, "cn=x", NULL) == DB_OK);
    CHECK(db_map_del(db, "cn=x", NULL) == DB_NOTFOUND);
    db_close(db);
}

int main(void)
{
    const char *base = getenv("TMPDIR");

    if (str_fmt(tmpdir, sizeof(tmpdir), "%s/test_db.XXXXXX",
                base != NULL && *base != '\0' ? base : "/tmp") != 0 ||
        mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_open_memory_migrates);
    RUN(test_open_file_reopen_and_mode);
    RUN(test_open_refuses_newer_schema);
    RUN(test_open_error_names_file);
    RUN(test_open_refuses_a_link);
    RUN(test_open_refuses_a_directory_another_user_owns);
    RUN(test_user_add_exists_del);
    RUN(test_user_del_cascades);
    RUN(test_user_list);
    RUN(test_user_list_truncates_senders);
    RUN(test_sender_ownership);
    RUN(test_validation);
    RUN(test_certs);
    RUN(test_audit_insert_query);
    RUN(test_audit_append_only);
    RUN(test_transactions);
    RUN(test_two_connections);
    RUN(test_rate_usage_window);
    remove_tmpdir();
    return UNIT_DONE();
}
