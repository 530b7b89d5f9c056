/*
 * The authz process's group commit (authz_answer.c) with its handlers of audit rows
 * and of the queue's accepts (authz_audit.c), against an SQLite file whose syncs are
 * counted (sync_count.h): the turn that holds the accept row of a queued message is
 * synced before its answer goes (the queue makes the message relayable and smtp
 * sends the 250 only after that answer, DESIGN §9); other turns are
 * committed, visible to another connection, but not synced; the lazy commits are
 * synced within a second, by the next turn or by the idle loop's tick; and a sync
 * that fails turns the answers into temporary failures.
 */
#include "../../authz/authzd/authz.h"
#include "../../authz/authzd/authz_answer.h"
#include "../../authz/authzd/authz_audit.h"
#include "db.h"
#include "ipc.h"
#include "ipc_codec.h"
#include "log.h"
#include "sync_count.h"
#include "unit.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct config cfg;
struct db *db;

static char tmpdir[PATH_MAX];
static char dbpath[PATH_MAX + 32];
static struct db *reader;       /* a second connection, as submit-admin's */
static int chan[2];             /* [0] authz's end, [1] smtp's */
static struct ipc_msg msg;
static int answer_before_sync;  /* an answer was on its way when the log was synced */

/* Runs before each sync of the log: has smtp got an answer already? */
static void at_log_sync(void)
{
    char b;

    if (recv(chan[1], &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
        answer_before_sync = 1;
}

/* smtp sends an audit row (req 0: no answer wanted); authz reads and handles it. */
static void audit_from_smtp(uint64_t req, const char *session, const char *event,
                            const char *decision, const char *queue_id)
{
    struct ipc_audit v;

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, session, sizeof(v.session));
    str_lcpy(v.client_ip, "192.0.2.1", sizeof(v.client_ip));
    str_lcpy(v.event, event, sizeof(v.event));
    str_lcpy(v.decision, decision, sizeof(v.decision));
    str_lcpy(v.queue_id, queue_id, sizeof(v.queue_id));
    v.size = 100;
    if (ipc_enc_audit(&msg, req, &v) != 0 || ipc_send(chan[1], &msg) != 0 ||
        ipc_recv(chan[0], &msg) <= 0) {
        printf("  cannot pass the audit message: %s\n", strerror(errno));
        return;
    }
    handle_audit(chan[0], &msg);
}

/* The queue asks for the accept row and rate charge of a message about to be queued. */
static void accept_from(uint64_t req, const char *session, const char *user,
                        const char *queue_id, const char *header_from)
{
    struct ipc_accept v;

    memset(&v, 0, sizeof(v));
    if (header_from != NULL) {
        v.from.naddr = 1;
        str_lcpy(v.from.addr[0], header_from, sizeof(v.from.addr[0]));
    }
    str_lcpy(v.session, session, sizeof(v.session));
    str_lcpy(v.user, user, sizeof(v.user));
    str_lcpy(v.client_ip, "192.0.2.7", sizeof(v.client_ip));
    str_lcpy(v.queue_id, queue_id, sizeof(v.queue_id));
    str_lcpy(v.mail_from, "a@example.com", sizeof(v.mail_from));
    str_lcpy(v.rcpt, "b@example.com,c@example.com", sizeof(v.rcpt));
    v.nrcpt = 2;
    v.size = 1234;
    if (ipc_enc_accept(&msg, req, &v) != 0 || ipc_send(chan[1], &msg) != 0 ||
        ipc_recv(chan[0], &msg) <= 0) {
        printf("  cannot pass the accept message: %s\n", strerror(errno));
        return;
    }
    handle_accept(chan[0], &msg);
}

static void accept_from_queue(uint64_t req, const char *session, const char *user,
                              const char *queue_id)
{
    accept_from(req, session, user, queue_id, NULL);
}

/* Messages charged to user in the last hour, or -1. */
static long long charged(const char *user)
{
    long long messages = -1, recipients = -1;

    if (db_rate_usage(reader, user, (int64_t)time(NULL), &messages, &recipients) != DB_OK)
        return -1;
    return messages;
}

/* The answer smtp got for request req: IPC_ALLOW, IPC_TEMPFAIL..., or -1 for none. */
static int answer_to(uint64_t req)
{
    struct ipc_result r;
    struct ipc_msg m;

    if (recv(chan[1], &r, 1, MSG_PEEK | MSG_DONTWAIT) <= 0)
        return -1;
    if (ipc_recv(chan[1], &m) <= 0 || m.id != req || ipc_dec_result(&m, &r) != 0)
        return -2;
    return r.decision;
}

struct count {
    const char *session;
    int n;
};

static int count_row(void *arg, const struct db_audit_row *r)
{
    struct count *c = arg;

    c->n += strcmp(r->session, c->session) == 0;
    return 0;
}

/* The rows of session that the second connection sees. */
static int rows_of(const char *session)
{
    struct db_audit_filter f;
    struct count c = { session, 0 };

    db_audit_filter_init(&f);
    return db_audit_search(reader, &f, count_row, &c) == DB_OK ? c.n : -1;
}

/* Ends a turn as the main loop does. */
static void turn_end(void)
{
    batch_end(&msg);
}

/* Leaves nothing owed from an earlier test. */
static void settle(void)
{
    batch_sync();
    sync_count_reset();
    sync_count.fail = 0;
    answer_before_sync = 0;
}

/* The rows of one session: how many, and the last one's columns. */
struct last_row {
    const char *session;
    int n;
    char decision[16], user[64], client_ip[64], cert_sha256[65], rcpt[128], queue_id[32];
    long long size;
};

static int find_last(void *arg, const struct db_audit_row *r)
{
    struct last_row *l = arg;

    if (strcmp(r->session, l->session) != 0)
        return 0;
    l->n++;
    str_lcpy(l->decision, r->decision, sizeof(l->decision));
    str_lcpy(l->user, r->user, sizeof(l->user));
    str_lcpy(l->client_ip, r->client_ip, sizeof(l->client_ip));
    str_lcpy(l->cert_sha256, r->cert_sha256, sizeof(l->cert_sha256));
    str_lcpy(l->rcpt, r->rcpt, sizeof(l->rcpt));
    str_lcpy(l->queue_id, r->queue_id, sizeof(l->queue_id));
    l->size = r->size;
    return 0;
}

static int last_row_of(const char *session, struct last_row *l)
{
    struct db_audit_filter f;

    memset(l, 0, sizeof(*l));
    l->session = session;
    db_audit_filter_init(&f);
    return db_audit_search(reader, &f, find_last, l) == DB_OK ? 0 : -1;
}

TEST(test_accept_row_is_synced_before_its_answer)
{
    struct last_row row;
    long long before = charged("acc-user");

    settle();
    accept_from_queue(11, "batch-acc", "acc-user", "QACCEPT1");
    CHECK(answer_to(11) == -1);            /* waits for the end of the turn */
    turn_end();
    CHECK(sync_count.log == 1);
    CHECK(!answer_before_sync);
    CHECK(answer_to(11) == IPC_ALLOW);
    CHECK(batch_tick() == -1);             /* nothing owed */
    /* The row, from the queue's fields (the session has no grant here), and the
     * charge, in the same commit. */
    CHECK(last_row_of("batch-acc", &row) == 0);
    CHECK(row.n == 1);
    CHECK_STR(row.decision, "accept");
    CHECK_STR(row.user, "acc-user");
    CHECK_STR(row.client_ip, "192.0.2.7");
    CHECK_STR(row.rcpt, "b@example.com,c@example.com");
    CHECK_STR(row.queue_id, "QACCEPT1");
    CHECK(row.size == 1234);
    CHECK(charged("acc-user") == before + 1);
}

TEST(test_accepts_of_one_turn_share_one_sync)
{
    long long before = charged("acc-many");

    settle();
    accept_from_queue(12, "batch-many", "acc-many", "QMANY1");
    accept_from_queue(13, "batch-many", "acc-many", "QMANY2");
    accept_from_queue(14, "batch-many", "acc-many", "QMANY3");
    turn_end();
    CHECK(sync_count.log == 1);
    CHECK(answer_to(12) == IPC_ALLOW);
    CHECK(answer_to(13) == IPC_ALLOW);
    CHECK(answer_to(14) == IPC_ALLOW);
    CHECK(rows_of("batch-many") == 3);
    CHECK(charged("acc-many") == before + 3);
}

static int count_forged(void *arg, const struct db_audit_row *r)
{
    int *n = arg;

    if (strcmp(r->session, "batch-forged") == 0)
        *n += strcmp(r->decision, "reject") == 0 && strstr(r->reason, "only the queue") != NULL
                  ? 1
                  : 1000;
    return 0;
}

static int reply_to(uint64_t req, char *reply, size_t len)
{
    struct ipc_result r;
    struct ipc_msg m;

    if (recv(chan[1], &r, 1, MSG_PEEK | MSG_DONTWAIT) <= 0 || ipc_recv(chan[1], &m) <= 0 ||
        m.id != req || ipc_dec_result(&m, &r) != 0)
        return -1;
    str_lcpy(reply, r.reply, len);
    return r.decision;
}

/* check_header_from at the accept: the user's own From is recorded; another's is a
 * DENY with its reply and a reject row, and neither charged nor recorded as accepted. */
TEST(test_header_from_is_checked_at_the_accept)
{
    char reply[IPC_REPLY_MAX] = "";
    long long before;

    settle();
    CHECK(db_user_add(db, "from-user") == DB_OK);
    CHECK(db_sender_add(db, "from-user", "from@example.com") == DB_OK);
    before = charged("from-user");
    accept_from(71, "batch-from-ok", "from-user", "QFROMOK", "from@example.com");
    accept_from(72, "batch-from-bad", "from-user", "QFROMBAD", "ceo@example.com");
    turn_end();
    CHECK(answer_to(71) == IPC_ALLOW);
    CHECK(reply_to(72, reply, sizeof(reply)) == IPC_DENY);
    CHECK_STR(reply, "550 5.7.1 Header From address not owned by user from-user");
    CHECK(charged("from-user") == before + 1);
    CHECK(rows_of("batch-from-ok") == 1);
    CHECK(rows_of("batch-from-bad") == 1);   /* the reject row, not an accept */
}

/* smtp names sessions: it can end one after its OPEN and have the id granted anew to
 * another certificate before the commit. The accept row still names the user and
 * address authz confirmed at OPEN, never the new grant's certificate. */
TEST(test_accept_row_ignores_a_grant_of_another_user)
{
    struct grant *g = grant_create("batch-regrant");
    struct last_row row;

    settle();
    CHECK(g != NULL);
    if (g == NULL)
        return;
    str_lcpy(g->user, "mallory", sizeof(g->user));
    str_lcpy(g->client_ip, "203.0.113.9", sizeof(g->client_ip));
    str_lcpy(g->sha256, "ab12", sizeof(g->sha256));
    g->cert_ok = 1;
    accept_from_queue(81, "batch-regrant", "acc-user", "QREGRANT");
    turn_end();
    CHECK(answer_to(81) == IPC_ALLOW);
    CHECK(last_row_of("batch-regrant", &row) == 0);
    CHECK(row.n == 1);
    CHECK_STR(row.user, "acc-user");
    CHECK_STR(row.client_ip, "192.0.2.7");
    CHECK_STR(row.cert_sha256, "");
    grant_end("batch-regrant");
}

/* Another writer holds the database: the first accept of the turn waits out the busy
 * timeout, the others of the same turn fail at once, and all are TEMPFAIL. */
TEST(test_locked_database_fails_the_turn_fast)
{
    uint64_t t0;

    settle();
    CHECK(db_set_lock_timeout(db, 300) == DB_OK);
    CHECK(db_begin(reader) == DB_OK);
    t0 = now_ms();
    accept_from_queue(91, "batch-locked", "lock-user", "QLOCK1");
    accept_from_queue(92, "batch-locked", "lock-user", "QLOCK2");
    accept_from_queue(93, "batch-locked", "lock-user", "QLOCK3");
    turn_end();
    CHECK(now_ms() - t0 < 600);
    CHECK(answer_to(91) == IPC_TEMPFAIL);
    CHECK(answer_to(92) == IPC_TEMPFAIL);
    CHECK(answer_to(93) == IPC_TEMPFAIL);
    db_rollback(reader);
    CHECK(db_set_lock_timeout(db, 1000) == DB_OK);
    /* The next turn opens its transaction again. */
    accept_from_queue(94, "batch-locked", "lock-user", "QLOCK4");
    turn_end();
    CHECK(answer_to(94) == IPC_ALLOW);
    CHECK(rows_of("batch-locked") == 1);
}

/* smtp may be compromised: an accept row from it is a forgery. authz writes a reject
 * row that says so, answers DENY, and serves on. */
TEST(test_accept_row_from_smtp_is_refused)
{
    struct db_audit_filter f;
    int n = 0;

    settle();
    audit_from_smtp(61, "batch-forged", "submission", "accept", "QFORGED");
    turn_end();
    CHECK(answer_to(61) == IPC_DENY);
    db_audit_filter_init(&f);
    CHECK(db_audit_search(reader, &f, count_forged, &n) == DB_OK);
    CHECK(n == 1);
    /* The forged row did not make the turn durable, as an accept row would. */
    CHECK(sync_count.log == 0);
}

TEST(test_other_rows_are_committed_lazily)
{
    settle();
    audit_from_smtp(21, "batch-rej", "rcpt", "reject", "");
    audit_from_smtp(0, "batch-rej", "data", "tempfail", "QTEMP");
    turn_end();
    CHECK(sync_count.log == 0);
    CHECK(answer_to(21) == IPC_ALLOW);
    /* Committed: another connection sees the rows. */
    CHECK(rows_of("batch-rej") == 2);
    /* Owed within a second: the loop waits no longer than that for its tick. */
    {
        int in = batch_tick();

        CHECK(in > 0 && in <= 1000);
    }
    CHECK(sync_count.log == 0);
}

TEST(test_idle_tick_syncs_within_a_second)
{
    settle();
    audit_from_smtp(31, "batch-idle", "rcpt", "reject", "");
    turn_end();
    CHECK(sync_count.log == 0);
    CHECK(answer_to(31) == IPC_ALLOW);
    usleep(1100 * 1000);
    CHECK(batch_tick() == -1);
    CHECK(sync_count.log == 1);
    CHECK(batch_tick() == -1);
    CHECK(sync_count.log == 1);
}

TEST(test_turn_after_a_second_is_durable)
{
    settle();
    audit_from_smtp(41, "batch-late", "rcpt", "reject", "");
    turn_end();
    CHECK(sync_count.log == 0);
    CHECK(answer_to(41) == IPC_ALLOW);
    usleep(1100 * 1000);
    audit_from_smtp(42, "batch-late", "rcpt", "reject", "");
    turn_end();
    CHECK(sync_count.log == 1);
    CHECK(!answer_before_sync);
    CHECK(answer_to(42) == IPC_ALLOW);
    CHECK(batch_tick() == -1);
}

TEST(test_failed_sync_is_a_tempfail)
{
    settle();
    sync_count.fail = 1;
    accept_from_queue(51, "batch-fail", "fail-user", "QFAIL1");
    turn_end();
    CHECK(sync_count.log == 1);
    CHECK(answer_to(51) == IPC_TEMPFAIL);
    sync_count.fail = 0;
    /* The row was committed all the same: it is still owed to the disk. */
    CHECK(batch_tick() > 0);
    batch_sync();
    CHECK(sync_count.log == 2);
    CHECK(batch_tick() == -1);
}

TEST(test_shutdown_syncs)
{
    settle();
    audit_from_smtp(0, "batch-stop", "rcpt", "reject", "");
    turn_end();
    CHECK(sync_count.log == 0);
    batch_sync();
    CHECK(sync_count.log == 1);
    CHECK(rows_of("batch-stop") == 1);
}

static void remove_tmp(void)
{
    static const char *const suffix[] = { "", "-wal", "-shm" };

    for (size_t i = 0; i < sizeof(suffix) / sizeof(suffix[0]); i++) {
        char path[PATH_MAX + 40];

        (void)str_fmt(path, sizeof(path), "%s%s", dbpath, suffix[i]);
        (void)unlink(path);
    }
    (void)rmdir(tmpdir);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    char err[1024] = "";

    log_init("test_authz_batch", 1, LOG_LVL_ERR);
    if (sync_count_install() != 0 || ipc_socketpair(chan) != 0 ||
        str_fmt(tmpdir, sizeof(tmpdir), "%s/test_authz_batch.XXXXXX",
                base != NULL && *base != '\0' ? base : "/tmp") != 0 ||
        mkdtemp(tmpdir) == NULL) {
        printf("set-up failed: %s\n", strerror(errno));
        return 1;
    }
    (void)str_fmt(dbpath, sizeof(dbpath), "%s/authz.db", tmpdir);
    db = db_open(dbpath, err, sizeof(err));
    reader = db != NULL ? db_open(dbpath, err, sizeof(err)) : NULL;
    if (reader == NULL || grant_init(16) != 0) {
        printf("set-up failed: %s\n", err);
        return 1;
    }
    sync_count.hook = at_log_sync;
    RUN(test_accept_row_is_synced_before_its_answer);
    RUN(test_accepts_of_one_turn_share_one_sync);
    RUN(test_accept_row_from_smtp_is_refused);
    RUN(test_header_from_is_checked_at_the_accept);
    RUN(test_accept_row_ignores_a_grant_of_another_user);
    RUN(test_locked_database_fails_the_turn_fast);
    RUN(test_other_rows_are_committed_lazily);
    RUN(test_idle_tick_syncs_within_a_second);
    RUN(test_turn_after_a_second_is_durable);
    RUN(test_failed_sync_is_a_tempfail);
    RUN(test_shutdown_syncs);
    batch_free();
    grant_free_all();
    db_close(reader);
    db_close(db);
    remove_tmp();
    return UNIT_DONE();
}
