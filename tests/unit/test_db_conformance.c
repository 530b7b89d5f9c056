/*
 * The conformance suite of db.h: what every backend must do, checked through db.h
 * (and the test hooks of db_test.h) alone, so that a second backend runs it
 * unchanged. The database is the one SUBMITD_TEST_DSN names, which must be new and
 * empty; without it, each test gets a new SQLite file in a temporary directory.
 * Tests use names of their own, so that they also pass when they share a database.
 *
 * SUBMITD_TEST_RESTART, when set, is a command that restarts the database server,
 * SUBMITD_TEST_HALT and SUBMITD_TEST_RESUME commands that stop it and start it again
 * (scripts/run-tests.sh sets them for PostgreSQL); SUBMITD_TEST_DSN_SECRET is the
 * password that SUBMITD_TEST_DSN holds, which no message may show.
 */
#include "db.h"
#include "db_test.h"
#include "unit.h"
#include "util.h"

#include <dirent.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static char tmpdir[PATH_MAX];
static int db_seq;

/* The database of the next test: SUBMITD_TEST_DSN, else a new file in path. */
static const char *next_dsn(char *path, size_t pathlen)
{
    const char *dsn = getenv("SUBMITD_TEST_DSN");

    if (dsn != NULL && *dsn != '\0')
        return dsn;
    (void)str_fmt(path, pathlen, "%s/conformance-%d.db", tmpdir, ++db_seq);
    return path;
}

static struct db *open_dsn(const char *dsn)
{
    char err[1024] = "";
    struct db *db = db_open(dsn, err, sizeof(err));

    if (db == NULL)
        printf("  db_open: %s\n", err);
    return db;
}

static struct db *open_db(void)
{
    char path[PATH_MAX + 32];

    return open_dsn(next_dsn(path, sizeof(path)));
}

static struct db_stamp stamp(int64_t sec, int msec)
{
    struct db_stamp s = { sec, msec };

    return s;
}

/* ---- collectors ---------------------------------------------------------------- */

struct seen {
    int n;
    int stop_after;        /* 0: never stop */
    char text[4096];       /* '|'-separated keys */
};

static int seen_add(struct seen *s, const char *key)
{
    size_t len = strlen(s->text);

    (void)str_fmt(s->text + len, sizeof(s->text) - len, "%s%s", s->n ? "|" : "", key);
    s->n++;
    return s->stop_after != 0 && s->n >= s->stop_after;
}

static int on_user(void *arg, const struct db_user *u)
{
    char key[1200];

    if (strncmp(u->name, "cf-", 3) != 0)
        return 0;
    (void)str_fmt(key, sizeof(key), "%s:%d:%s", u->name, u->enabled, u->senders);
    return seen_add(arg, key);
}

static int on_sender(void *arg, const char *address)
{
    return seen_add(arg, address);
}

static int on_owner(void *arg, const char *user, const char *address, int domain_owner)
{
    char key[512];

    (void)str_fmt(key, sizeof(key), "%s:%s:%d", user, address, domain_owner);
    return seen_add(arg, key);
}

static int on_cert(void *arg, const struct db_cert *c)
{
    return seen_add(arg, c->serial);
}

static int on_audit(void *arg, const struct db_audit_row *r)
{
    return seen_add(arg, r->session);
}

static int on_admin_log(void *arg, const struct db_admin_log_row *r)
{
    char key[1200];

    (void)str_fmt(key, sizeof(key), "%s:%s", r->command, r->target);
    return seen_add(arg, key);
}

static int on_ca_log(void *arg, const struct db_ca_log_row *r)
{
    char key[256];

    (void)str_fmt(key, sizeof(key), "%s:%s:%s", r->command, r->serial, r->user);
    return seen_add(arg, key);
}

static int on_map(void *arg, const char *subject, const char *issuer, const char *user)
{
    char key[1200];

    if (strncmp(user, "cf-", 3) != 0)
        return 0;
    (void)str_fmt(key, sizeof(key), "%s:%s:%s", subject, issuer, user);
    return seen_add(arg, key);
}

static int on_refusal(void *arg, const char *decision, const char *reason, long long sessions)
{
    char key[400];

    if (strncmp(reason, "cf-", 3) != 0)
        return 0;
    (void)str_fmt(key, sizeof(key), "%s:%s:%lld", decision, reason, sessions);
    return seen_add(arg, key);
}

/* ---- open, version, rules ------------------------------------------------------- */

TEST(test_open_and_version)
{
    char err[512] = "";
    struct db *db = open_db();

    CHECK(db != NULL);
    if (db == NULL)
        return;
    CHECK(db_schema_version(db) >= 6);
    CHECK(db_set_lock_timeout(db, 200) == DB_OK);
    db_close(db);
    db_close(NULL);
    /* A backend this build lacks is named, and the URI (which may hold a password) not. */
    CHECK(db_open("postgresql://u:secret@localhost/x", err, sizeof(err)) == NULL ||
          getenv("SUBMITD_TEST_DSN") != NULL);
    CHECK(strstr(err, "secret") == NULL);
}

TEST(test_rules)
{
    struct db_cert c;
    char out[64];

    CHECK(db_user_name_valid("alice.b_c-1"));
    CHECK(!db_user_name_valid(".alice") && !db_user_name_valid("-a") && !db_user_name_valid(""));
    CHECK(!db_user_name_valid("a b") && !db_user_name_valid(NULL));
    CHECK(db_sender_address_valid("a@example.com") && db_sender_address_valid("@example.com"));
    CHECK(!db_sender_address_valid("a@") && !db_sender_address_valid("a@@b") &&
          !db_sender_address_valid("a@b..c") && !db_sender_address_valid("noat"));
    CHECK_STR(db_cert_status_name(CERT_VALID), "valid");
    CHECK_STR(db_cert_status_name(CERT_REVOKED), "revoked");
    memset(&c, 0, sizeof(c));
    c.status = CERT_VALID;
    c.not_after = 2000;
    CHECK(db_cert_in_force(&c, 1999));
    CHECK(!db_cert_in_force(&c, 2000));
    c.status = CERT_REVOKED;
    CHECK(!db_cert_in_force(&c, 1999));
    db_stamp_text(&(struct db_stamp){ 1700000000, 7 }, out, sizeof(out));
    CHECK_STR(out, "2023-11-14T22:13:20.007Z");
}

/* ---- users and senders ---------------------------------------------------------- */

TEST(test_users)
{
    struct db *db = open_db();
    struct seen s = { 0 };
    int enabled = -1;

    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-u1") == DB_OK);
    CHECK(db_user_add(db, "cf-u1") == DB_EXISTS);
    CHECK(db_user_add(db, "bad name") == DB_ERROR);
    CHECK(db_user_add(db, "cf-u2") == DB_OK);
    CHECK(db_user_get(db, "cf-u1", &enabled) == DB_OK && enabled == 1);
    CHECK(db_user_get(db, "cf-nobody", &enabled) == DB_NOTFOUND);
    CHECK(db_user_set_enabled(db, "cf-u1", 0) == DB_OK);
    CHECK(db_user_get(db, "cf-u1", &enabled) == DB_OK && enabled == 0);
    CHECK(db_user_set_enabled(db, "cf-nobody", 1) == DB_NOTFOUND);
    CHECK(db_sender_add(db, "cf-u1", "B@Example.com") == DB_OK);
    CHECK(db_sender_add(db, "cf-u1", "a@example.com") == DB_OK);
    CHECK(db_user_list(db, on_user, &s) == DB_OK);
    CHECK_STR(s.text, "cf-u1:0:a@example.com,b@example.com|cf-u2:1:");
    memset(&s, 0, sizeof(s));
    s.stop_after = 1;
    CHECK(db_user_list(db, on_user, &s) == DB_OK && s.n == 1);
    CHECK(db_user_del(db, "cf-u1") == DB_OK);
    CHECK(db_user_del(db, "cf-u1") == DB_NOTFOUND);
    CHECK(db_sender_owned(db, "cf-u1", "a@example.com") == DB_NOTFOUND);
    /* A user of the same name later starts with nothing. */
    CHECK(db_user_add(db, "cf-u1") == DB_OK);
    memset(&s, 0, sizeof(s));
    CHECK(db_sender_list(db, "cf-u1", on_sender, &s) == DB_OK && s.n == 0);
    db_close(db);
}

static int on_user_created(void *arg, const struct db_user *u)
{
    if (strcmp(u->name, "cf-created") == 0)
        *(int64_t *)arg = u->created_at;
    return 0;
}

TEST(test_user_created_at)
{
    struct db *db = open_db();
    int64_t before = (int64_t)time(NULL), at = DB_TIME_NONE;

    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-created") == DB_OK);
    CHECK(db_user_list(db, on_user_created, &at) == DB_OK);
    CHECK(at >= before - 1 && at <= before + 60);
    db_close(db);
}

TEST(test_senders)
{
    struct db *db = open_db();
    struct seen s = { 0 };
    char owner[128] = "";

    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-s1") == DB_OK && db_user_add(db, "cf-s2") == DB_OK);
    CHECK(db_sender_add(db, "cf-s1", "Alice@Example.org") == DB_OK);
    CHECK(db_sender_add(db, "cf-s1", "alice@example.org") == DB_EXISTS);
    CHECK(db_sender_add(db, "cf-nobody", "x@example.org") == DB_NOTFOUND);
    CHECK(db_sender_add(db, "cf-s1", "not an address") == DB_ERROR);
    CHECK(db_sender_add(db, "cf-s2", "@example.org") == DB_OK);
    CHECK(db_sender_add(db, "cf-s2", "alice@example.org") == DB_OK);
    /* Exact, any case; a domain covers its addresses but not its subdomains. */
    CHECK(db_sender_owned(db, "cf-s1", "ALICE@example.ORG") == DB_OK);
    CHECK(db_sender_owned(db, "cf-s1", "bob@example.org") == DB_NOTFOUND);
    CHECK(db_sender_owned(db, "cf-s2", "bob@Example.org") == DB_OK);
    CHECK(db_sender_owned(db, "cf-s2", "bob@sub.example.org") == DB_NOTFOUND);
    CHECK(db_sender_owned(db, NULL, "bob@example.org") == DB_NOTFOUND);
    CHECK(db_sender_list(db, "cf-s2", on_sender, &s) == DB_OK);
    CHECK_STR(s.text, "@example.org|alice@example.org");
    CHECK(db_sender_list(db, "cf-nobody", on_sender, &s) == DB_NOTFOUND);
    memset(&s, 0, sizeof(s));
    CHECK(db_sender_owners(db, "alice@example.org", on_owner, &s) == DB_OK);
    CHECK_STR(s.text, "cf-s1:alice@example.org:0|cf-s2:alice@example.org:0|"
                      "cf-s2:@example.org:1");
    CHECK(db_sender_other_owner(db, "cf-s1", "alice@example.org", owner, sizeof(owner)) ==
          DB_NOTFOUND);
    CHECK(db_sender_del(db, "cf-s1", "ALICE@example.org") == DB_OK);
    CHECK(db_sender_del(db, "cf-s1", "alice@example.org") == DB_NOTFOUND);
    CHECK(db_sender_other_owner(db, "cf-s1", "alice@example.org", owner, sizeof(owner)) ==
          DB_OK);
    CHECK_STR(owner, "cf-s2");
    db_close(db);
}

TEST(test_transactions)
{
    struct db *db = open_db();

    if (db == NULL)
        return;
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_user_add(db, "cf-tx1") == DB_OK);
    CHECK(db_sender_add(db, "cf-tx1", "tx@example.com") == DB_OK);
    db_rollback(db);
    CHECK(db_user_get(db, "cf-tx1", NULL) == DB_NOTFOUND);
    db_rollback(db);    /* harmless without a transaction */
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_user_add(db, "cf-tx1") == DB_OK);
    CHECK(db_user_del(db, "cf-tx1") == DB_OK);    /* joins the open transaction */
    CHECK(db_user_add(db, "cf-tx1") == DB_OK);
    CHECK(db_commit(db) == DB_OK);
    CHECK(db_user_get(db, "cf-tx1", NULL) == DB_OK);
    db_close(db);
}

/*
 * Refused statements inside a transaction leave it usable, as often as the same
 * statement is refused (a backend may keep it prepared), with the refusal's own
 * result; the statements around them are committed.
 */
TEST(test_refused_in_transaction)
{
    struct db *db = open_db();

    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-rt1") == DB_OK);
    CHECK(db_begin(db) == DB_OK);
    for (int i = 0; i < 3; i++) {
        CHECK(db_user_add(db, "cf-rt1") == DB_EXISTS);
        CHECK(db_sender_add(db, "cf-rt-nobody", "rt@example.com") == DB_NOTFOUND);
        CHECK(db_sender_add(db, "cf-rt1", "not an address") == DB_ERROR);
    }
    CHECK(db_user_add(db, "cf-rt2") == DB_OK);
    CHECK(db_sender_add(db, "cf-rt2", "rt2@example.com") == DB_OK);
    CHECK(db_sender_add(db, "cf-rt2", "rt2@example.com") == DB_EXISTS);
    CHECK(db_user_add(db, "cf-rt3") == DB_OK);
    CHECK(db_commit(db) == DB_OK);
    CHECK(db_user_get(db, "cf-rt2", NULL) == DB_OK);
    CHECK(db_user_get(db, "cf-rt3", NULL) == DB_OK);
    CHECK(db_sender_owned(db, "cf-rt2", "rt2@example.com") == DB_OK);
    CHECK(db_sender_owned(db, "cf-rt-nobody", "rt@example.com") == DB_NOTFOUND);
    db_close(db);
}

/*
 * A server that forgot the statements the connection prepared (a pooler or an
 * administrator may do that unseen): the same calls work, outside and inside a
 * transaction, which stays usable after a refused statement.
 */
TEST(test_forgotten_statements)
{
    struct db *db = open_db();
    int enabled = 0;

    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-fs1") == DB_OK);
    CHECK(db_user_get(db, "cf-fs1", &enabled) == DB_OK && enabled == 1);
    CHECK(db_test_forget_prepared(db) == DB_OK);
    CHECK(db_user_get(db, "cf-fs1", &enabled) == DB_OK && enabled == 1);
    CHECK(db_user_add(db, "cf-fs1") == DB_EXISTS);
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_test_forget_prepared(db) == DB_OK);
    CHECK(db_user_add(db, "cf-fs1") == DB_EXISTS);
    CHECK(db_test_forget_prepared(db) == DB_OK);
    CHECK(db_user_add(db, "cf-fs2") == DB_OK);
    CHECK(db_user_get(db, "cf-fs2", NULL) == DB_OK);
    CHECK(db_commit(db) == DB_OK);
    CHECK(db_user_get(db, "cf-fs2", NULL) == DB_OK);
    db_close(db);
}

/* ---- certificates ----------------------------------------------------------------- */

static void make_cert(struct db_cert *c, const char *serial, const char *user, const char *sha,
                      int64_t not_after)
{
    memset(c, 0, sizeof(*c));
    str_lcpy(c->serial, serial, sizeof(c->serial));
    str_lcpy(c->user, user, sizeof(c->user));
    str_lcpy(c->sha256, sha, sizeof(c->sha256));
    str_lcpy(c->subject, "CN=conformance", sizeof(c->subject));
    str_lcpy(c->issuer, "CN=Conformance CA", sizeof(c->issuer));
    c->not_before = 1735689600;    /* 2025-01-01 */
    c->not_after = not_after;
}

TEST(test_certs)
{
    struct db *db = open_db();
    struct db_cert c, got;
    struct seen s = { 0 };
    int64_t now = (int64_t)time(NULL);

    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-c1") == DB_OK && db_user_add(db, "cf-c2") == DB_OK);
    make_cert(&c, "cf0a", "cf-c1", "CFAA01", 1893456000);    /* 2030-01-01 */
    CHECK(db_cert_insert(db, &c) == DB_OK);
    CHECK(db_cert_insert(db, &c) == DB_EXISTS);
    make_cert(&c, "CF0B", "cf-c1", "cfaa01", 1893456000);
    CHECK(db_cert_insert(db, &c) == DB_EXISTS);               /* same SHA-256 */
    make_cert(&c, "CF0C", "cf-nobody", "cfaa03", 1893456000);
    CHECK(db_cert_insert(db, &c) == DB_NOTFOUND);
    make_cert(&c, "CF0D", "cf-c2", "cfaa04", 1798761600);    /* 2027-01-01 */
    CHECK(db_cert_insert(db, &c) == DB_OK);
    make_cert(&c, "CF0E", "cf-c2", "cfaa05", 1798761600);
    c.status = (enum cert_status)7;
    CHECK(db_cert_insert(db, &c) == DB_ERROR);

    CHECK(db_cert_by_serial(db, "Cf0A", &got) == DB_OK);
    CHECK_STR(got.serial, "CF0A");
    CHECK_STR(got.sha256, "cfaa01");
    CHECK_STR(got.user, "cf-c1");
    CHECK_STR(got.subject, "CN=conformance");
    CHECK_STR(got.issuer, "CN=Conformance CA");
    CHECK(got.not_before == 1735689600 && got.not_after == 1893456000);
    CHECK(got.status == CERT_VALID && got.revoked_at == DB_TIME_NONE);
    CHECK(db_cert_in_force(&got, now));
    CHECK(db_cert_by_sha256(db, "CFAA01", &got) == DB_OK);
    CHECK_STR(got.serial, "CF0A");
    CHECK(db_cert_by_sha256(db, "cfffff", &got) == DB_NOTFOUND);
    CHECK(db_cert_by_serial(db, "CFFF", &got) == DB_NOTFOUND);

    /* Listing by user and by expiry, ordered by not_after. */
    CHECK(db_cert_list(db, "cf-c1", DB_TIME_NONE, on_cert, &s) == DB_OK);
    CHECK_STR(s.text, "CF0A");
    memset(&s, 0, sizeof(s));
    CHECK(db_cert_list(db, "cf-c2", 1893456000, on_cert, &s) == DB_OK);
    CHECK_STR(s.text, "CF0D");
    memset(&s, 0, sizeof(s));
    CHECK(db_cert_list(db, "cf-c2", 1798761600, on_cert, &s) == DB_OK && s.n == 0);

    /* Revocation: once, with its time and reason; again changes nothing. */
    CHECK(db_cert_revoke(db, "cf0a", "keyCompromise") == DB_OK);
    CHECK(db_cert_by_serial(db, "CF0A", &got) == DB_OK);
    CHECK(got.status == CERT_REVOKED && !db_cert_in_force(&got, now));
    CHECK(got.revoked_at >= now - 5 && got.revoked_at <= now + 60);
    CHECK_STR(got.revoke_reason, "keyCompromise");
    CHECK(db_cert_revoke(db, "CF0A", "superseded") == DB_OK);
    CHECK(db_cert_by_serial(db, "CF0A", &got) == DB_OK);
    CHECK_STR(got.revoke_reason, "keyCompromise");
    CHECK(db_cert_revoke(db, "CFFF", NULL) == DB_NOTFOUND);

    /* Recorded as revoked: with the given time, or now. */
    make_cert(&c, "CF10", "cf-c2", "cfaa10", 1893456000);
    c.status = CERT_REVOKED;
    c.revoked_at = 1750000000;
    str_lcpy(c.revoke_reason, "superseded", sizeof(c.revoke_reason));
    CHECK(db_cert_insert(db, &c) == DB_OK);
    CHECK(db_cert_by_serial(db, "CF10", &got) == DB_OK);
    CHECK(got.status == CERT_REVOKED && got.revoked_at == 1750000000);
    make_cert(&c, "CF11", "cf-c2", "cfaa11", 1893456000);
    c.status = CERT_REVOKED;
    CHECK(db_cert_insert(db, &c) == DB_OK);
    CHECK(db_cert_by_serial(db, "CF11", &got) == DB_OK);
    CHECK(got.revoked_at >= now - 5);

    /* Deleting a user revokes its valid certificates, which stay without a user. */
    CHECK(db_user_del(db, "cf-c2") == DB_OK);
    CHECK(db_cert_by_serial(db, "CF0D", &got) == DB_OK);
    CHECK(got.status == CERT_REVOKED && got.user[0] == '\0');
    CHECK_STR(got.revoke_reason, "cessationOfOperation");
    db_close(db);
}

/* ---- audit ------------------------------------------------------------------------ */

static struct db_audit audit_row(const char *session, const char *event, const char *decision,
                                 const char *user)
{
    struct db_audit a = { .session = session, .event = event, .decision = decision,
                          .user = user, .size = -1 };

    return a;
}

static int on_audit_full(void *arg, const struct db_audit_row *r)
{
    struct db_audit_row *out = arg;

    *out = *r;
    return 1;
}

TEST(test_audit_insert_and_read)
{
    struct db *db = open_db();
    struct db_audit a = audit_row("cf-full", "submission", "accept", "cf-a");
    struct db_audit_filter f;
    struct db_audit_row r;
    int64_t now = (int64_t)time(NULL);

    if (db == NULL)
        return;
    a.reason = "ok";
    a.client_ip = "192.0.2.1";
    a.cert_sha256 = "ab12";
    a.cert_subject = "CN=a";
    a.mail_from = "a@example.com";
    a.rcpt = "b@example.net,c@example.net";
    a.queue_id = "cfQ1";
    a.size = 1234;
    a.tls = "TLSv1.3";
    a.nrcpt = 2;
    CHECK(db_audit_insert(db, &a) == DB_OK);
    db_audit_filter_init(&f);
    f.queue_id = "cfQ1";
    memset(&r, 0, sizeof(r));
    CHECK(db_audit_search(db, &f, on_audit_full, &r) == DB_OK);
    CHECK(r.id > 0);
    CHECK(r.ts.sec >= now - 5 && r.ts.sec <= now + 60 && r.ts.msec >= 0 && r.ts.msec <= 999);
    CHECK_STR(r.session, "cf-full");
    CHECK_STR(r.event, "submission");
    CHECK_STR(r.decision, "accept");
    CHECK_STR(r.reason, "ok");
    CHECK_STR(r.client_ip, "192.0.2.1");
    CHECK_STR(r.user, "cf-a");
    CHECK_STR(r.cert_sha256, "ab12");
    CHECK_STR(r.cert_subject, "CN=a");
    CHECK_STR(r.mail_from, "a@example.com");
    CHECK_STR(r.rcpt, "b@example.net,c@example.net");
    CHECK_STR(r.queue_id, "cfQ1");
    CHECK(r.size == 1234);
    CHECK_STR(r.tls, "TLSv1.3");
    /* NULL fields read as "" and size as -1; a decision is one of three. */
    a = audit_row("cf-null", "connect", NULL, NULL);
    a.queue_id = "cfQ2";
    CHECK(db_audit_insert(db, &a) == DB_OK);
    f.queue_id = "cfQ2";
    CHECK(db_audit_search(db, &f, on_audit_full, &r) == DB_OK);
    CHECK_STR(r.session, "cf-null");
    CHECK(r.decision[0] == '\0' && r.user[0] == '\0' && r.size == -1);
    a = audit_row("cf-bad", "connect", "maybe", NULL);
    CHECK(db_audit_insert(db, &a) == DB_ERROR);
    db_close(db);
}

/* Rows of one user at known times: 2001-01-01 00:00:00.500 + 0, 60, 120, 180 s. */
#define T0 978307200
static void audit_rows_at(struct db *db, const char *user)
{
    static const char *const sessions[] = { "cf-r0", "cf-r1", "cf-r2", "cf-r3" };
    static const char *const decisions[] = { "accept", "reject", "accept", "tempfail" };

    for (int i = 0; i < 4; i++) {
        struct db_audit a = audit_row(sessions[i], i == 2 ? "relayed" : "mail", decisions[i],
                                      user);
        struct db_stamp at = stamp(T0 + 60 * i, 500);

        a.client_ip = i % 2 ? "198.51.100.7" : "198.51.100.8";
        a.queue_id = i >= 2 ? "cfQR" : NULL;
        a.reason = i == 1 ? "cf-not owned" : i == 3 ? "cf-database" : NULL;
        CHECK(db_test_audit_insert_at(db, &a, &at) == DB_OK);
    }
}

TEST(test_audit_filters)
{
    struct db *db = open_db();
    struct db_audit_filter f;
    struct db_audit_row r;
    struct seen s = { 0 };

    if (db == NULL)
        return;
    audit_rows_at(db, "cf-f");
    db_audit_filter_init(&f);
    f.user = "cf-f";
    CHECK(db_audit_search(db, &f, on_audit, &s) == DB_OK);
    CHECK_STR(s.text, "cf-r0|cf-r1|cf-r2|cf-r3");
    CHECK(db_audit_search(db, &f, on_audit_full, &r) == DB_OK);
    CHECK(r.ts.sec == T0 && r.ts.msec == 500);
    /* since takes its whole second, until excludes its own. */
    memset(&s, 0, sizeof(s));
    f.since = T0 + 60;
    f.until = T0 + 180;
    CHECK(db_audit_search(db, &f, on_audit, &s) == DB_OK);
    CHECK_STR(s.text, "cf-r1|cf-r2");
    memset(&s, 0, sizeof(s));
    db_audit_filter_init(&f);
    f.user = "cf-f";
    f.decision = "accept";
    f.newest_first = 1;
    CHECK(db_audit_search(db, &f, on_audit, &s) == DB_OK);
    CHECK_STR(s.text, "cf-r2|cf-r0");
    memset(&s, 0, sizeof(s));
    db_audit_filter_init(&f);
    f.user = "cf-f";
    f.limit = 1;
    f.newest_first = 1;
    CHECK(db_audit_search(db, &f, on_audit, &s) == DB_OK);
    CHECK_STR(s.text, "cf-r3");
    memset(&s, 0, sizeof(s));
    db_audit_filter_init(&f);
    f.event = "relayed";
    f.queue_id = "cfQR";
    CHECK(db_audit_search(db, &f, on_audit, &s) == DB_OK);
    CHECK_STR(s.text, "cf-r2");
    memset(&s, 0, sizeof(s));
    db_audit_filter_init(&f);
    f.client_ip = "198.51.100.7";
    f.user = "cf-f";
    CHECK(db_audit_search(db, &f, on_audit, &s) == DB_OK);
    CHECK_STR(s.text, "cf-r1|cf-r3");
    memset(&s, 0, sizeof(s));
    CHECK(db_audit_query(db, "cf-f", T0 + 61, "accept", on_audit, &s) == DB_OK);
    CHECK_STR(s.text, "cf-r2");
    memset(&s, 0, sizeof(s));
    s.stop_after = 2;
    CHECK(db_audit_query(db, "cf-f", DB_TIME_NONE, NULL, on_audit, &s) == DB_OK && s.n == 2);
    db_close(db);
}

TEST(test_audit_figures)
{
    struct db *db = open_db();
    struct db_decision_counts d, d2;
    struct seen s = { 0 };

    if (db == NULL)
        return;
    CHECK(db_audit_decisions(db, T0, &d) == DB_OK);
    audit_rows_at(db, "cf-g");
    CHECK(db_audit_decisions(db, T0, &d2) == DB_OK);
    CHECK(d2.accept - d.accept == 2 && d2.reject - d.reject == 1 &&
          d2.tempfail - d.tempfail == 1);
    CHECK(db_audit_decisions(db, T0 + 61, &d2) == DB_OK);
    CHECK(d2.accept - d.accept <= 1);
    CHECK(db_audit_refusals(db, T0, 100, on_refusal, &s) == DB_OK);
    CHECK(strstr(s.text, "reject:cf-not owned:1") != NULL);
    CHECK(strstr(s.text, "tempfail:cf-database:1") != NULL);
    db_close(db);
}

TEST(test_audit_append_only_and_prune)
{
    struct db *db = open_db();
    struct db_actor actor;
    struct db_admin_log who = { 0 };
    struct db_stamp oldest, newest;
    struct seen s = { 0 };
    long long count = -1;
    char text[64];

    if (db == NULL)
        return;
    audit_rows_at(db, "cf-p");
    CHECK(db_test_tamper(db, DB_TAMPER_AUDIT_UPDATE) == DB_ERROR);
    CHECK(db_test_tamper(db, DB_TAMPER_AUDIT_DELETE) == DB_ERROR);
    CHECK(db_audit_query(db, "cf-p", DB_TIME_NONE, NULL, on_audit, &s) == DB_OK && s.n == 4);

    db_actor_get(&actor);
    db_actor_fill(&who, &actor, "submit-admin");
    CHECK(who.unix_user != NULL && who.program != NULL);
    /* A permit for any admin_log row but a prune is refused. */
    CHECK(db_admin_log_insert(db, &(struct db_admin_log){ .uid = 0, .unix_user = "root",
                                                          .program = "submit-admin",
                                                          .command = "user add",
                                                          .target = "cf-x" }) == DB_OK);
    CHECK(db_test_tamper(db, DB_TAMPER_PRUNE_PERMIT) == DB_ERROR);
    CHECK(db_test_tamper(db, DB_TAMPER_AUDIT_DELETE) == DB_ERROR);

    /* Rows before T0 + 120 s go (the prune rounds down to the second), and are logged. */
    CHECK(db_audit_prune(db, T0 + 120, &who, &count, &oldest, &newest) == DB_OK);
    CHECK(count >= 2);
    db_stamp_text(&newest, text, sizeof(text));
    CHECK_STR(text, "2001-01-01T00:01:00.500Z");
    CHECK(oldest.sec <= T0);
    memset(&s, 0, sizeof(s));
    CHECK(db_audit_query(db, "cf-p", DB_TIME_NONE, NULL, on_audit, &s) == DB_OK);
    CHECK_STR(s.text, "cf-r2|cf-r3");
    memset(&s, 0, sizeof(s));
    CHECK(db_admin_log_list(db, DB_TIME_NONE, NULL, on_admin_log, &s) == DB_OK);
    CHECK(strstr(s.text, "audit prune:2001-01-01T00:02:00.000Z") != NULL);
    /* The permit went with the prune. */
    CHECK(db_test_tamper(db, DB_TAMPER_AUDIT_DELETE) == DB_ERROR);
    /* Nothing before: a prune of nothing is recorded too. */
    CHECK(db_audit_prune(db, T0 - 86400 * 365, &who, &count, &oldest, NULL) == DB_OK);
    CHECK(count == 0 && oldest.sec == DB_TIME_NONE);
    /* A bound that is no time is refused before anything is written. */
    CHECK(db_audit_prune(db, DB_TIME_NONE, &who, &count, &oldest, NULL) == DB_ERROR);
    CHECK(strstr(db_errmsg(db), "time out of range") != NULL);
    db_close(db);
}

/* ---- admin log and CA operations --------------------------------------------------- */

TEST(test_admin_log)
{
    struct db *db = open_db();
    struct seen s = { 0 };
    struct db_admin_log e = { .uid = 1000, .unix_user = "cfop", .program = "submit-admin",
                              .command = "user add", .target = "cf-l1", .user = "cf-l1" };
    struct db_ca_log c = { .uid = 0, .unix_user = "root", .sudo_user = "cfadmin",
                           .command = "issue", .serial = "CF99", .user = "cf-l2",
                           .detail = "days=1" };
    int64_t now = (int64_t)time(NULL);

    if (db == NULL)
        return;
    CHECK(db_admin_log_insert(db, &e) == DB_OK);
    CHECK(db_ca_log_insert(db, &c) == DB_OK);
    e.command = "sender add";
    e.target = "cf-l1 a@example.com";
    e.sudo_user = "cfadmin";
    CHECK(db_admin_log_insert(db, &e) == DB_OK);
    CHECK(db_admin_log_list(db, DB_TIME_NONE, "cf-l1", on_admin_log, &s) == DB_OK);
    CHECK_STR(s.text, "user add:cf-l1|sender add:cf-l1 a@example.com");
    /* login is the sudo user when there is one: --user finds the person too. */
    memset(&s, 0, sizeof(s));
    CHECK(db_admin_log_list(db, DB_TIME_NONE, "cfadmin", on_admin_log, &s) == DB_OK);
    CHECK_STR(s.text, "issue:CF99|sender add:cf-l1 a@example.com");
    memset(&s, 0, sizeof(s));
    CHECK(db_admin_log_list(db, now + 3600, NULL, on_admin_log, &s) == DB_OK && s.n == 0);
    memset(&s, 0, sizeof(s));
    CHECK(db_admin_log_list(db, now - 5, "cf-l1", on_admin_log, &s) == DB_OK && s.n == 2);
    /* The CA operations alone, by user and by serial (any case). */
    memset(&s, 0, sizeof(s));
    CHECK(db_ca_log_list(db, "cf-l2", NULL, on_ca_log, &s) == DB_OK);
    CHECK_STR(s.text, "issue:CF99:cf-l2");
    memset(&s, 0, sizeof(s));
    CHECK(db_ca_log_list(db, NULL, "cf99", on_ca_log, &s) == DB_OK);
    CHECK_STR(s.text, "issue:CF99:cf-l2");
    memset(&s, 0, sizeof(s));
    CHECK(db_ca_log_list(db, "cf-l1", NULL, on_ca_log, &s) == DB_OK && s.n == 0);
    CHECK(db_test_tamper(db, DB_TAMPER_ADMIN_LOG_UPDATE) == DB_ERROR);
    CHECK(db_test_tamper(db, DB_TAMPER_ADMIN_LOG_DELETE) == DB_ERROR);
    CHECK(db_test_tamper(db, DB_TAMPER_CA_LOG_UPDATE) == DB_ERROR);
    CHECK(db_test_tamper(db, DB_TAMPER_CA_LOG_DELETE) == DB_ERROR);
    memset(&s, 0, sizeof(s));
    CHECK(db_admin_log_list(db, DB_TIME_NONE, "cf-l1", on_admin_log, &s) == DB_OK && s.n == 2);
    db_close(db);
}

/* ---- subject maps ------------------------------------------------------------------- */

TEST(test_maps)
{
    struct db *db = open_db();
    struct seen s = { 0 };
    char user[128] = "";

    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-m1") == DB_OK && db_user_add(db, "cf-m2") == DB_OK);
    CHECK(db_map_add(db, "cn=cf x", "", "cf-m1") == DB_OK);
    CHECK(db_map_add(db, "cn=cf x", "", "cf-m2") == DB_EXISTS);
    CHECK(db_map_add_text(db, "cn=cf x", "cn=other ca", "cf-m2", "CN=CF X", "CN=Other CA") ==
          DB_OK);
    CHECK(db_map_add(db, "cn=cf y", NULL, "cf-nobody") == DB_NOTFOUND);
    /* An exact issuer wins over any issuer. */
    CHECK(db_map_lookup(db, "cn=cf x", "cn=other ca", user, sizeof(user)) == DB_OK);
    CHECK_STR(user, "cf-m2");
    CHECK(db_map_lookup(db, "cn=cf x", "cn=third ca", user, sizeof(user)) == DB_OK);
    CHECK_STR(user, "cf-m1");
    CHECK(db_map_lookup(db, "cn=cf z", "cn=other ca", user, sizeof(user)) == DB_NOTFOUND);
    CHECK(db_map_list(db, on_map, &s) == DB_OK);
    CHECK_STR(s.text, "cn=cf x::cf-m1|CN=CF X:CN=Other CA:cf-m2");
    CHECK(db_map_del(db, "cn=cf x", "cn=other ca") == DB_OK);
    CHECK(db_map_del(db, "cn=cf x", "cn=other ca") == DB_NOTFOUND);
    CHECK(db_map_add(db, "cn=cf x", "cn=other ca", "cf-m2") == DB_OK);
    CHECK(db_map_del(db, "cn=cf x", NULL) == DB_OK);
    CHECK(db_map_lookup(db, "cn=cf x", "", user, sizeof(user)) == DB_NOTFOUND);
    /* A user's maps go with the user. */
    CHECK(db_map_add(db, "cn=cf w", "", "cf-m1") == DB_OK);
    CHECK(db_user_del(db, "cf-m1") == DB_OK);
    CHECK(db_map_lookup(db, "cn=cf w", "", user, sizeof(user)) == DB_NOTFOUND);
    db_close(db);
}

/* ---- rule maps, blocks, devices (issue 14) -------------------------------------------- */

static int on_rule(void *arg, const struct db_map_rule *r)
{
    char key[1400];

    if (strncmp(r->issuer, "cn=cf ", 6) != 0)
        return 0;
    (void)str_fmt(key, sizeof(key), "%s:%s:%s:%s:%s", r->issuer, r->issuer_text,
                  db_rule_field_name(r->field), r->strip_domain, r->require_domain);
    return seen_add(arg, key);
}

TEST(test_map_rules)
{
    struct db *db = open_db();
    struct seen s = { 0 };
    struct db_map_rule r, got;

    if (db == NULL)
        return;
    CHECK_STR(db_rule_field_name(DB_RULE_EMAIL), "email");
    CHECK_STR(db_rule_field_name(DB_RULE_SAN_EMAIL), "san-email");
    CHECK_STR(db_rule_field_name(DB_RULE_UPN), "upn");
    CHECK_STR(db_rule_field_name(DB_RULE_CN), "cn");
    memset(&r, 0, sizeof(r));
    str_lcpy(r.issuer, "cn=cf ca1", sizeof(r.issuer));
    str_lcpy(r.issuer_text, "CN=CF CA1", sizeof(r.issuer_text));
    r.field = DB_RULE_UPN;
    str_lcpy(r.strip_domain, "corp.example", sizeof(r.strip_domain));
    str_lcpy(r.require_domain, "corp.example", sizeof(r.require_domain));
    CHECK(db_map_rule_add(db, &r) == DB_OK);
    /* One rule per issuer. */
    r.field = DB_RULE_CN;
    CHECK(db_map_rule_add(db, &r) == DB_EXISTS);
    memset(&r, 0, sizeof(r));
    str_lcpy(r.issuer, "cn=cf ca2", sizeof(r.issuer));
    r.field = DB_RULE_SAN_EMAIL;
    CHECK(db_map_rule_add(db, &r) == DB_OK);
    CHECK(db_map_rule_get(db, "cn=cf ca1", &got) == DB_OK);
    CHECK(got.field == DB_RULE_UPN && got.created_at > 1700000000);
    CHECK_STR(got.strip_domain, "corp.example");
    CHECK(db_map_rule_get(db, "cn=cf ca2", &got) == DB_OK);
    CHECK(got.field == DB_RULE_SAN_EMAIL);
    CHECK_STR(got.issuer_text, "cn=cf ca2");     /* no text given: the canonical name */
    CHECK_STR(got.strip_domain, "");
    CHECK(db_map_rule_get(db, "cn=cf ca3", &got) == DB_NOTFOUND);
    CHECK(db_map_rule_list(db, on_rule, &s) == DB_OK);
    CHECK_STR(s.text, "cn=cf ca1:CN=CF CA1:upn:corp.example:corp.example|"
                      "cn=cf ca2:cn=cf ca2:san-email::");
    CHECK(db_map_rule_del(db, "cn=cf ca1") == DB_OK);
    CHECK(db_map_rule_del(db, "cn=cf ca1") == DB_NOTFOUND);
    CHECK(db_map_rule_get(db, "cn=cf ca1", &got) == DB_NOTFOUND);
    db_close(db);
}

static int on_block(void *arg, const struct db_cert_block *b)
{
    char key[1400];

    if (strncmp(b->blocked_by, "cf-", 3) != 0)
        return 0;
    (void)str_fmt(key, sizeof(key), "%.8s:%s:%s:%s:%s", b->sha256, b->issuer, b->serial,
                  b->reason, b->blocked_by);
    return seen_add(arg, key);
}

TEST(test_cert_blocks)
{
    struct db *db = open_db();
    struct seen s = { 0 };
    struct db_cert_block b, got;
    const char *sha = "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

    if (db == NULL)
        return;
    memset(&b, 0, sizeof(b));
    str_lcpy(b.sha256, sha, sizeof(b.sha256));
    str_lcpy(b.reason, "lost phone", sizeof(b.reason));
    str_lcpy(b.blocked_by, "cf-admin", sizeof(b.blocked_by));
    CHECK(db_cert_block_add(db, &b) == DB_OK);
    CHECK(db_cert_block_add(db, &b) == DB_EXISTS);
    memset(&b, 0, sizeof(b));
    str_lcpy(b.issuer, "cn=cf ca1", sizeof(b.issuer));
    str_lcpy(b.issuer_text, "CN=CF CA1", sizeof(b.issuer_text));
    str_lcpy(b.serial, "1a2b", sizeof(b.serial));
    str_lcpy(b.blocked_by, "cf-admin2", sizeof(b.blocked_by));
    CHECK(db_cert_block_add(db, &b) == DB_OK);
    CHECK(db_cert_block_add(db, &b) == DB_EXISTS);
    /* Neither form: refused. */
    memset(&b, 0, sizeof(b));
    str_lcpy(b.serial, "1A2B", sizeof(b.serial));
    str_lcpy(b.blocked_by, "cf-admin", sizeof(b.blocked_by));
    CHECK(db_cert_block_add(db, &b) == DB_NOTFOUND);
    /* Found by fingerprint in any case, or by issuer and serial in any case. */
    CHECK(db_cert_block_find(db, "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
                             "cn=other", "99", &got) == DB_OK);
    CHECK_STR(got.reason, "lost phone");
    CHECK_STR(got.blocked_by, "cf-admin");
    CHECK(got.blocked_at > 1700000000);
    CHECK(db_cert_block_find(db, "00", "cn=cf ca1", "1A2B", &got) == DB_OK);
    CHECK_STR(got.serial, "1A2B");
    CHECK_STR(got.issuer_text, "CN=CF CA1");
    CHECK(db_cert_block_find(db, "", "cn=cf ca1", "1a2b", NULL) == DB_OK);
    /* Leading zeros do not count: CAs and tools differ on them. */
    CHECK(db_cert_block_find(db, "", "cn=cf ca1", "001A2B", NULL) == DB_OK);
    CHECK(db_cert_block_find(db, "", "cn=cf ca2", "1A2B", NULL) == DB_NOTFOUND);
    CHECK(db_cert_block_find(db, NULL, NULL, NULL, NULL) == DB_NOTFOUND);
    CHECK(db_cert_block_find(db, "", "", "", NULL) == DB_NOTFOUND);
    CHECK(db_cert_block_list(db, on_block, &s) == DB_OK);
    CHECK_STR(s.text, ":cn=cf ca1:1A2B::cf-admin2|abcdef01:::lost phone:cf-admin");
    CHECK(db_cert_block_del(db, sha, NULL, NULL) == DB_OK);
    CHECK(db_cert_block_del(db, sha, NULL, NULL) == DB_NOTFOUND);
    CHECK(db_cert_block_del(db, NULL, "cn=cf ca1", "1a2b") == DB_OK);
    CHECK(db_cert_block_del(db, NULL, "cn=cf ca1", "1a2b") == DB_NOTFOUND);
    CHECK(db_cert_block_find(db, "", "cn=cf ca1", "1A2B", NULL) == DB_NOTFOUND);
    db_close(db);
}

static int on_device(void *arg, const struct db_device *d)
{
    char key[800];

    (void)str_fmt(key, sizeof(key), "%.4s:%s:%s:%s:%lld:%lld:%lld", d->sha256, d->user,
                  d->issuer, d->serial, (long long)d->not_after, (long long)d->first_seen,
                  (long long)d->last_seen);
    return seen_add(arg, key);
}

TEST(test_devices)
{
    struct db *db = open_db();
    struct seen s = { 0 };
    struct db_device d;
    int64_t t = 1800000000;

    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-d1") == DB_OK && db_user_add(db, "cf-d2") == DB_OK);
    memset(&d, 0, sizeof(d));
    str_lcpy(d.sha256, "aaaa000000000000000000000000000000000000000000000000000000000000",
             sizeof(d.sha256));
    str_lcpy(d.user, "cf-d1", sizeof(d.user));
    str_lcpy(d.issuer, "CN=CF CA", sizeof(d.issuer));
    str_lcpy(d.serial, "0a", sizeof(d.serial));
    d.not_after = t + 86400;
    CHECK(db_device_seen(db, &d, t) == DB_OK);
    /* Within the hour: nothing written. */
    CHECK(db_device_seen(db, &d, t + 1800) == DB_OK);
    CHECK(db_device_list(db, "cf-d1", on_device, &s) == DB_OK);
    CHECK_STR(s.text, "aaaa:cf-d1:CN=CF CA:A:1800086400:1800000000:1800000000");
    /* An hour later: last_seen moves. */
    CHECK(db_device_seen(db, &d, t + 3600) == DB_OK);
    memset(&s, 0, sizeof(s));
    CHECK(db_device_list(db, "cf-d1", on_device, &s) == DB_OK);
    CHECK_STR(s.text, "aaaa:cf-d1:CN=CF CA:A:1800086400:1800000000:1800003600");
    /* A second device, seen later, comes first. */
    str_lcpy(d.sha256, "bbbb000000000000000000000000000000000000000000000000000000000000",
             sizeof(d.sha256));
    str_lcpy(d.serial, "0B", sizeof(d.serial));
    CHECK(db_device_seen(db, &d, t + 4000) == DB_OK);
    memset(&s, 0, sizeof(s));
    CHECK(db_device_list(db, "cf-d1", on_device, &s) == DB_OK);
    CHECK(s.n == 2 && strncmp(s.text, "bbbb:", 5) == 0);
    /* A device that changes user moves at once, whatever the hour. */
    str_lcpy(d.user, "cf-d2", sizeof(d.user));
    CHECK(db_device_seen(db, &d, t + 4001) == DB_OK);
    memset(&s, 0, sizeof(s));
    CHECK(db_device_list(db, "cf-d2", on_device, &s) == DB_OK && s.n == 1);
    memset(&s, 0, sizeof(s));
    CHECK(db_device_list(db, "cf-d1", on_device, &s) == DB_OK && s.n == 1);
    /* No such user; and a user's devices go with the user. */
    str_lcpy(d.user, "cf-nobody", sizeof(d.user));
    CHECK(db_device_seen(db, &d, t) == DB_NOTFOUND);
    CHECK(db_user_del(db, "cf-d1") == DB_OK);
    memset(&s, 0, sizeof(s));
    CHECK(db_device_list(db, "cf-d1", on_device, &s) == DB_OK && s.n == 0);
    db_close(db);
}

/* ---- rate limits -------------------------------------------------------------------- */

TEST(test_rates)
{
    struct db *db = open_db();
    int64_t now = 1800000030;    /* within a minute, not on a ten-minute mark */
    long long msgs = -1, rcpts = -1;

    if (db == NULL)
        return;
    CHECK(db_rate_usage(db, "cf-r", now, &msgs, &rcpts) == DB_OK && msgs == 0 && rcpts == 0);
    CHECK(db_rate_record(db, "cf-r", now - 3600, 100) == DB_OK);     /* just out of the hour */
    CHECK(db_rate_record(db, "cf-r", now - 3540, 2) == DB_OK);       /* 59 minutes ago */
    CHECK(db_rate_record(db, "cf-r", now, 3) == DB_OK);
    CHECK(db_rate_record(db, "cf-r", now + 1, 1) == DB_OK);          /* same minute */
    CHECK(db_rate_record(db, "cf-other", now, 50) == DB_OK);
    CHECK(db_rate_usage(db, "cf-r", now, &msgs, &rcpts) == DB_OK);
    CHECK(msgs == 3 && rcpts == 6);
    /* An hour later only the newest minute is left in the window. */
    CHECK(db_rate_usage(db, "cf-r", now + 3540, &msgs, &rcpts) == DB_OK);
    CHECK(msgs == 2 && rcpts == 4);
    /* A record on a ten-minute mark drops what no window reaches; the rest stays. */
    CHECK(db_rate_record(db, "cf-r", 1800000000 + 9000, 1) == DB_OK);
    CHECK(db_rate_usage(db, "cf-r", now + 3540, &msgs, &rcpts) == DB_OK);
    CHECK(msgs == 1 && rcpts == 1);
    CHECK(db_rate_usage(db, "cf-r", 1800000000 + 9000, &msgs, &rcpts) == DB_OK);
    CHECK(msgs == 1 && rcpts == 1);
    db_close(db);
}

/*
 * Several processes (nodes) count into the same minute at once: no count is lost,
 * as it would be if a backend read the row, added and wrote it back.
 */
#define RATE_WRITERS 4
#define RATE_RECORDS 25
TEST(test_rates_concurrent)
{
    char path[PATH_MAX + 32];
    const char *dsn = next_dsn(path, sizeof(path));
    struct db *db = open_dsn(dsn);
    long long msgs = -1, rcpts = -1;
    pid_t pids[RATE_WRITERS];
    int64_t now = 1800000000 + 125;

    if (db == NULL)
        return;
    for (int i = 0; i < RATE_WRITERS; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            struct db *mine = open_dsn(dsn);
            int bad = mine == NULL;

            for (int n = 0; !bad && n < RATE_RECORDS; n++)
                bad = db_rate_record(mine, "cf-rate-nodes", now, 2) != DB_OK;
            if (bad && mine != NULL)
                printf("  writer %d: %s\n", i, db_errmsg(mine));
            db_close(mine);
            fflush(stdout);
            _exit(bad);
        }
        CHECK(pids[i] > 0);
    }
    for (int i = 0; i < RATE_WRITERS; i++) {
        int status = -1;

        CHECK(pids[i] > 0 && waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0);
    }
    CHECK(db_rate_usage(db, "cf-rate-nodes", now, &msgs, &rcpts) == DB_OK);
    CHECK(msgs == RATE_WRITERS * RATE_RECORDS && rcpts == 2 * RATE_WRITERS * RATE_RECORDS);
    db_close(db);
}

/* ---- a lost connection ------------------------------------------------------------ */

/*
 * A server restart between two calls: the call that finds the connection gone fails
 * (DB_ERROR, which authz answers with TEMPFAIL, never ALLOW), without the password in
 * its message, and the next call works on a new connection. A file database has no
 * server to restart: both calls simply work.
 */
TEST(test_reconnect)
{
    const char *restart = getenv("SUBMITD_TEST_RESTART");
    const char *secret = getenv("SUBMITD_TEST_DSN_SECRET");
    struct db *db = open_db();
    int enabled = 0, rc;

    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-reconnect") == DB_OK);
    if (restart != NULL && *restart != '\0') {
        CHECK(system(restart) == 0);
        rc = db_user_get(db, "cf-reconnect", &enabled);
        CHECK(rc == DB_ERROR);
        if (rc == DB_ERROR)
            printf("  after the restart: %s\n", db_errmsg(db));
        CHECK(secret == NULL || *secret == '\0' || strstr(db_errmsg(db), secret) == NULL);
        /* A transaction open when the connection goes is not carried over. */
        CHECK(db_begin(db) == DB_OK);
        CHECK(db_user_add(db, "cf-reconnect-tx") == DB_OK);
        CHECK(system(restart) == 0);
        CHECK(db_user_add(db, "cf-reconnect-tx2") == DB_ERROR);
        CHECK(db_user_add(db, "cf-reconnect-tx3") == DB_ERROR);    /* until the rollback */
        CHECK(db_commit(db) == DB_ERROR);
        db_rollback(db);
        CHECK(db_user_get(db, "cf-reconnect-tx3", NULL) == DB_NOTFOUND);
        CHECK(db_user_get(db, "cf-reconnect-tx", NULL) == DB_NOTFOUND);
    }
    CHECK(db_user_get(db, "cf-reconnect", &enabled) == DB_OK && enabled == 1);
    CHECK(db_rate_record(db, "cf-reconnect", 1800000000, 1) == DB_OK);
    db_close(db);
}

/*
 * A server that stays down: every call fails (the connection lost, then each attempt
 * to connect again), none answers from a stale state, and once the server is back the
 * calls work again within a couple of seconds.
 */
TEST(test_server_down)
{
    const char *halt = getenv("SUBMITD_TEST_HALT"), *resume = getenv("SUBMITD_TEST_RESUME");
    struct db *db;
    int ok = 0;

    if (halt == NULL || *halt == '\0' || resume == NULL || *resume == '\0')
        return;    /* a file database has no server */
    db = open_db();
    if (db == NULL)
        return;
    CHECK(db_user_add(db, "cf-down") == DB_OK);
    CHECK(system(halt) == 0);
    for (int i = 0; i < 4; i++)
        CHECK(db_user_get(db, "cf-down", NULL) == DB_ERROR);
    CHECK(db_rate_record(db, "cf-down", 1800000000, 1) == DB_ERROR);
    CHECK(system(resume) == 0);
    for (int i = 0; i < 30 && !ok; i++) {
        ok = db_user_get(db, "cf-down", NULL) == DB_OK;
        if (!ok)
            usleep(200 * 1000);
    }
    CHECK(ok);
    db_close(db);
}

/* Group commit as the authz process does it (db.h): audit rows and rate records of a
 * turn in one transaction, reads in it seeing its writes, all of them there after the
 * commit, none of them after a rollback. */
TEST(test_group_commit)
{
    struct db *db = open_db();
    struct db_audit a = audit_row("cf-gc1", "identity", "accept", "cf-gc");
    struct db_audit b = audit_row("cf-gc2", "submission", "accept", "cf-gc");
    struct seen s;
    int64_t now = 1800000030;
    long long msgs = -1, rcpts = -1;

    if (db == NULL)
        return;
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_audit_insert(db, &a) == DB_OK);
    CHECK(db_audit_insert(db, &b) == DB_OK);
    CHECK(db_rate_record(db, "cf-gc", now, 2) == DB_OK);
    CHECK(db_rate_usage(db, "cf-gc", now, &msgs, &rcpts) == DB_OK && msgs == 1 && rcpts == 2);
    CHECK(db_commit(db) == DB_OK);
    memset(&s, 0, sizeof(s));
    CHECK(db_audit_query(db, "cf-gc", DB_TIME_NONE, NULL, on_audit, &s) == DB_OK && s.n == 2);
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_audit_insert(db, &a) == DB_OK);
    CHECK(db_rate_record(db, "cf-gc", now, 5) == DB_OK);
    db_rollback(db);
    memset(&s, 0, sizeof(s));
    CHECK(db_audit_query(db, "cf-gc", DB_TIME_NONE, NULL, on_audit, &s) == DB_OK && s.n == 2);
    CHECK(db_rate_usage(db, "cf-gc", now, &msgs, &rcpts) == DB_OK && msgs == 1 && rcpts == 2);
    db_close(db);
}

/*
 * A lazy commit (db.h) ends the transaction like db_commit: its rows are visible at
 * once to another connection, as after a durable commit; db_sync after it, and again
 * with nothing left to sync, succeeds; a durable commit after lazy ones works, and a
 * lazy commit of a transaction that a failed call made unusable is refused like
 * db_commit's. (When the rows reach the disk is the backend's: test_db_sync.c counts
 * the syncs of SQLite.)
 */
TEST(test_lazy_commit)
{
    char path[PATH_MAX + 32];
    const char *dsn = next_dsn(path, sizeof(path));
    struct db *db = open_dsn(dsn), *other;
    struct db_audit a = audit_row("cf-lz1", "identity", "accept", "cf-lz");
    struct seen s;
    int64_t now = 1800000090;
    long long msgs = -1, rcpts = -1;

    if (db == NULL)
        return;
    other = open_dsn(dsn);
    if (other == NULL) {
        db_close(db);
        return;
    }
    CHECK(db_sync(db) == DB_OK);    /* nothing to sync yet */
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_audit_insert(db, &a) == DB_OK);
    CHECK(db_rate_record(db, "cf-lz", now, 3) == DB_OK);
    CHECK(db_commit_lazy(db) == DB_OK);
    /* Visible to every reader now. */
    memset(&s, 0, sizeof(s));
    CHECK(db_audit_query(other, "cf-lz", DB_TIME_NONE, NULL, on_audit, &s) == DB_OK &&
          s.n == 1);
    CHECK(db_rate_usage(other, "cf-lz", now, &msgs, &rcpts) == DB_OK && msgs == 1 &&
          rcpts == 3);
    /* A single call after it, outside a transaction, works as ever. */
    CHECK(db_user_add(db, "cf-lz-user") == DB_OK);
    CHECK(db_user_get(other, "cf-lz-user", NULL) == DB_OK);
    CHECK(db_sync(db) == DB_OK);
    CHECK(db_sync(db) == DB_OK);
    /* Lazy, lazy, durable: all three there. */
    for (int i = 0; i < 2; i++) {
        CHECK(db_begin(db) == DB_OK);
        CHECK(db_audit_insert(db, &a) == DB_OK);
        CHECK(db_commit_lazy(db) == DB_OK);
    }
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_audit_insert(db, &a) == DB_OK);
    CHECK(db_commit(db) == DB_OK);
    memset(&s, 0, sizeof(s));
    CHECK(db_audit_query(other, "cf-lz", DB_TIME_NONE, NULL, on_audit, &s) == DB_OK &&
          s.n == 4);
    /* A lazy commit that another connection's sync follows, then a rollback: the
     * rolled back rows never appear. */
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_audit_insert(db, &a) == DB_OK);
    CHECK(db_commit_lazy(db) == DB_OK);
    CHECK(db_sync(other) == DB_OK);
    CHECK(db_begin(db) == DB_OK);
    CHECK(db_rate_record(db, "cf-lz", now, 7) == DB_OK);
    db_rollback(db);
    CHECK(db_sync(db) == DB_OK);
    memset(&s, 0, sizeof(s));
    CHECK(db_audit_query(other, "cf-lz", DB_TIME_NONE, NULL, on_audit, &s) == DB_OK &&
          s.n == 5);
    CHECK(db_rate_usage(other, "cf-lz", now, &msgs, &rcpts) == DB_OK && msgs == 1 &&
          rcpts == 3);
    db_close(other);
    db_close(db);
}

/* ---- the temporary directory ---------------------------------------------------------- */

static void remove_tmpdir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char path[PATH_MAX + 300];

    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "conformance-", 12) != 0)
            continue;
        (void)str_fmt(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
        (void)unlink(path);
    }
    closedir(d);
    (void)rmdir(tmpdir);
}

int main(void)
{
    const char *base = getenv("TMPDIR");

    if (str_fmt(tmpdir, sizeof(tmpdir), "%s/test_db_conformance.XXXXXX",
                base != NULL && *base != '\0' ? base : "/tmp") != 0 ||
        mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(test_open_and_version);
    RUN(test_rules);
    RUN(test_users);
    RUN(test_user_created_at);
    RUN(test_senders);
    RUN(test_transactions);
    RUN(test_refused_in_transaction);
    RUN(test_forgotten_statements);
    RUN(test_certs);
    RUN(test_audit_insert_and_read);
    RUN(test_audit_filters);
    RUN(test_audit_figures);
    RUN(test_audit_append_only_and_prune);
    RUN(test_admin_log);
    RUN(test_maps);
    RUN(test_map_rules);
    RUN(test_cert_blocks);
    RUN(test_devices);
    RUN(test_rates);
    RUN(test_rates_concurrent);
    RUN(test_reconnect);
    RUN(test_server_down);
    RUN(test_group_commit);
    RUN(test_lazy_commit);
    remove_tmpdir();
    return UNIT_DONE();
}
