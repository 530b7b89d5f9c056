/* The admin log, the audit prune and its permit, and address owners (db.c, migration 5). */
#include "db.h"
#include "sqlite/db_sqlite_test.h"
#include "unit.h"
#include "util.h"

static struct db *open_mem(void)
{
    char err[256];
    struct db *db = db_open(":memory:", err, sizeof(err));

    if (db == NULL)
        printf("  db_open: %s\n", err);
    return db;
}

/* Seconds of an ISO-8601 time, for the times of the interface. */
static int64_t T(const char *iso)
{
    long long t = 0;

    if (iso_time_parse(iso, &t) != 0)
        printf("  bad time %s\n", iso);
    return (int64_t)t;
}

static int count_cb(void *arg, const struct db_audit_row *r)
{
    (void)r;
    ++*(int *)arg;
    return 0;
}

static int audit_rows(struct db *db)
{
    int n = 0;

    CHECK(db_audit_query(db, NULL, DB_TIME_NONE, NULL, count_cb, &n) == DB_OK);
    return n;
}

struct log_list {
    int n;
    struct db_admin_log_row last;
};

static int log_cb(void *arg, const struct db_admin_log_row *r)
{
    struct log_list *ll = arg;

    ll->n++;
    ll->last = *r;
    return 0;
}

static const struct db_admin_log who = { 0, "root", "ops", "submit-admin", "x", NULL, NULL,
                                         NULL, NULL };

TEST(prune_deletes_old_rows_and_records_them)
{
    struct db *db = open_mem();
    struct log_list ll = { 0 };
    struct db_stamp oldest, newest;
    char text[32];
    long long count = -1;

    CHECK(db != NULL);
    CHECK(db_sqlite_exec_for_test(db, "INSERT INTO audit(ts, event) VALUES"
                               " ('2000-01-01T00:00:00.000Z', 'a'),"
                               " ('2000-06-01T00:00:00.999Z', 'b'),"
                               " ('2001-01-01T00:00:00.000Z', 'c')") == DB_OK);
    CHECK(db_audit_prune(db, T("2001-01-01T00:00:00Z"), &who, &count, &oldest, &newest) ==
          DB_OK);
    CHECK(count == 2);
    db_stamp_text(&oldest, text, sizeof(text));
    CHECK_STR(text, "2000-01-01T00:00:00.000Z");
    db_stamp_text(&newest, text, sizeof(text));
    CHECK_STR(text, "2000-06-01T00:00:00.999Z");
    CHECK(audit_rows(db) == 1);
    CHECK(db_admin_log_list(db, DB_TIME_NONE, NULL, log_cb, &ll) == DB_OK && ll.n == 1);
    CHECK_STR(ll.last.command, "audit prune");
    CHECK_STR(ll.last.login, "ops");
    CHECK_STR(ll.last.target, "2001-01-01T00:00:00.000Z");
    CHECK(strstr(ll.last.details, "rows=2") != NULL);
    db_close(db);
}

TEST(delete_needs_the_permit_of_the_newest_prune_row)
{
    struct db *db = open_mem();
    struct db_admin_log other = who;

    CHECK(db != NULL);
    CHECK(db_sqlite_exec_for_test(db, "INSERT INTO audit(ts, event) VALUES"
                               " ('2000-01-01T00:00:00.000Z', 'a')") == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "DELETE FROM audit") == DB_ERROR);
    CHECK(db_sqlite_exec_for_test(db, "UPDATE audit SET event = 'b'") == DB_ERROR);
    other.command = "user add";
    CHECK(db_admin_log_insert(db, &other) == DB_OK);
    /* A permit for a row that is not an "audit prune" is refused... */
    CHECK(db_sqlite_exec_for_test(db, "INSERT INTO audit_prune_permit VALUES (1)") == DB_ERROR);
    CHECK(db_sqlite_exec_for_test(db, "INSERT INTO admin_log(uid, login, program, command, target,"
                               " unix_user) VALUES (0, 'x', 'x', 'audit prune',"
                               " '1999-01-01T00:00:00.000Z', 'x')") == DB_OK);
    /* ...and one for the newest prune covers only rows before its recorded time. */
    CHECK(db_sqlite_exec_for_test(db, "INSERT INTO audit_prune_permit VALUES (2)") == DB_OK);
    CHECK(db_sqlite_exec_for_test(db, "DELETE FROM audit") == DB_ERROR);
    CHECK(db_sqlite_exec_for_test(db, "UPDATE audit_prune_permit SET log_id = 1") == DB_ERROR);
    CHECK(audit_rows(db) == 1);
    CHECK(db_sqlite_exec_for_test(db, "DELETE FROM admin_log") == DB_ERROR);
    db_close(db);
}

static int owner_cb(void *arg, const char *user, const char *address, int domain_owner)
{
    char *out = arg;
    size_t n = strlen(out);

    snprintf(out + n, 256 - n, "%s:%s:%d;", user, address, domain_owner);
    return 0;
}

TEST(owners_of_an_address)
{
    struct db *db = open_mem();
    char owners[256] = "", owner[64];

    CHECK(db != NULL);
    CHECK(db_user_add(db, "a") == DB_OK && db_user_add(db, "b") == DB_OK &&
          db_user_add(db, "c") == DB_OK);
    CHECK(db_sender_add(db, "a", "x@d.example") == DB_OK);
    CHECK(db_sender_add(db, "b", "@d.example") == DB_OK);
    CHECK(db_sender_owners(db, "X@D.example", owner_cb, owners) == DB_OK);
    CHECK_STR(owners, "a:x@d.example:0;b:@d.example:1;");
    CHECK(db_sender_other_owner(db, "c", "x@d.example", owner, sizeof(owner)) == DB_OK);
    CHECK_STR(owner, "a");
    CHECK(db_sender_other_owner(db, "a", "x@d.example", owner, sizeof(owner)) == DB_NOTFOUND);
    /* A domain owner does not make an address owned. */
    CHECK(db_sender_other_owner(db, "c", "y@d.example", owner, sizeof(owner)) == DB_NOTFOUND);
    CHECK(db_sender_add(db, "c", "x@d.example") == DB_OK);
    CHECK(db_sender_other_owner(db, "c", "x@d.example", owner, sizeof(owner)) == DB_NOTFOUND);
    db_close(db);
}

static int refusal_cb(void *arg, const char *decision, const char *reason, long long n)
{
    char *out = arg;
    size_t len = strlen(out);

    snprintf(out + len, 512 - len, "%s:%s:%lld;", decision, reason, n);
    return 0;
}

TEST(decisions_and_refusals_since)
{
    struct db *db = open_mem();
    struct db_decision_counts d;
    char out[512] = "";

    CHECK(db != NULL);
    /* Before since: not counted. A session refused twice for one reason counts once. */
    CHECK(db_sqlite_exec_for_test(db, "INSERT INTO audit(ts, session, decision, reason) VALUES"
                               " ('2000-01-01T00:59:59.999Z', 's0', 'reject', 'old'),"
                               " ('2000-01-01T01:00:00.000Z', 's1', 'accept', NULL),"
                               " ('2000-01-01T01:00:01.000Z', 's2', 'reject', 'not owned'),"
                               " ('2000-01-01T01:00:02.000Z', 's2', 'reject', 'not owned'),"
                               " ('2000-01-01T01:00:03.000Z', 's3', 'reject', 'not owned'),"
                               " ('2000-01-01T01:00:04.000Z', NULL, 'reject', 'revoked'),"
                               " ('2000-01-01T01:00:05.000Z', NULL, 'tempfail', 'PAM error'),"
                               " ('2000-01-01T01:00:06.000Z', 's4', NULL, 'relayed')") == DB_OK);
    CHECK(db_audit_decisions(db, T("2000-01-01T01:00:00Z"), &d) == DB_OK);
    CHECK(d.accept == 1 && d.reject == 4 && d.tempfail == 1);
    CHECK(db_audit_refusals(db, T("2000-01-01T01:00:00Z"), 10, refusal_cb, out) == DB_OK);
    CHECK_STR(out, "reject:not owned:2;reject:revoked:1;tempfail:PAM error:1;");
    out[0] = '\0';
    CHECK(db_audit_refusals(db, T("2000-01-01T01:00:00Z"), 1, refusal_cb, out) == DB_OK);
    CHECK_STR(out, "reject:not owned:2;");
    db_close(db);
}

int main(void)
{
    RUN(prune_deletes_old_rows_and_records_them);
    RUN(delete_needs_the_permit_of_the_newest_prune_row);
    RUN(owners_of_an_address);
    RUN(decisions_and_refusals_since);
    return UNIT_DONE();
}
