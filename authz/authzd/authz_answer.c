/* Answers, audit rows and grants shared by the handlers (see authz_answer.h). */
#include "authz_answer.h"

#include "authz.h"

#include "ipc_codec.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void answer_set(struct answer *a, int decision, const char *reply)
{
    a->decision = decision;
    a->rcpt_budget = UINT64_MAX;
    str_lcpy(a->reply, reply, sizeof(a->reply));
}

const char *decision_word(int decision)
{
    return decision == IPC_ALLOW ? "accept" : decision == IPC_DENY ? "reject" : "tempfail";
}

/* The accept row of a queued message: smtp sends the 250 once it is answered. */
static int row_is_queued_accept(const struct db_audit *row)
{
    return row->decision != NULL && strcmp(row->decision, "accept") == 0 &&
           row->queue_id != NULL && row->queue_id[0] != '\0';
}

int write_audit(const struct db_audit *row)
{
    if (batch_join() == 0) {
        if (row_is_queued_accept(row))
            batch_need_durable();
        if (db_audit_insert(db, row) == DB_OK)
            return 0;
    }
    log_err("session=%s AUDIT ROW NOT WRITTEN (event %s, decision %s): %s",
            row->session ? row->session : "-", row->event ? row->event : "-",
            row->decision ? row->decision : "-", db_errmsg(db));
    return -1;
}

/* authz's own knowledge of the session, whatever smtp says. */
void row_identity(struct db_audit *row, const struct grant *g)
{
    row->session = g->session;
    row->client_ip = OPT(g->client_ip);
    row->tls = OPT(g->tls);
    row->user = g->user[0] ? g->user : OPT(g->cert_user);
    row->cert_sha256 = OPT(g->sha256);
    row->cert_subject = OPT(g->subject);
}

int may_relay(const struct grant *g)
{
    if (g == NULL || g->identity_pending)
        return 0;
    switch (cfg.auth_password) {
    case AUTH_PASSWORD_FALLBACK:
        return g->cert_ok || g->password_ok;
    case AUTH_PASSWORD_SECOND_FACTOR:
        return g->cert_ok && g->password_ok;
    default:
        return g->cert_ok;
    }
}

struct grant *grant_or_stand_in(const char *session, struct grant *stand_in)
{
    struct grant *g = grant_find(session);

    if (g != NULL)
        return g;
    memset(stand_in, 0, sizeof(*stand_in));
    str_lcpy(stand_in->session, session, sizeof(stand_in->session));
    return stand_in;
}

static void send_now(int chan, uint64_t req, const struct answer *a, struct ipc_msg *m)
{
    struct ipc_result r;

    memset(&r, 0, sizeof(r));
    r.decision = a->decision;
    str_lcpy(r.user, a->user, sizeof(r.user));
    str_lcpy(r.reply, a->reply, sizeof(r.reply));
    r.rcpt_budget = a->rcpt_budget;
    if (ipc_enc_result(m, req, &r) != 0 || ipc_send(chan, m) != 0)
        fatal("cannot answer on channel %d: %s", chan, strerror(errno));
}

/* ---- group commit ------------------------------------------------------------------
 * The rows of one turn of the event loop are one transaction, and the answers of the
 * turn wait for its commit: an answer never promises a row that a failed commit then
 * loses.
 *
 * Only the accept row of a queued message must be durable before its answer (DESIGN
 * §3 step 9, §9: the 250 waits for it). A turn that holds one commits durably (one
 * sync); any other turn commits lazily: its rows are committed, visible and safe from
 * a crash of the process before its answers go, and reach the disk with the next
 * durable commit or sync. That comes within BATCH_SYNC_MS of the oldest lazy commit:
 * the first turn after that commits durably, and an idle loop syncs (batch_tick), so
 * that a power loss takes at most about a second of the other rows and rate counts.
 */

#define BATCH_SYNC_MS 1000

static struct {
    int pending;              /* lazy commits not yet durable */
    uint64_t since;           /* now_ms() of the oldest of them */
} lazy;

struct deferred {
    int chan;
    uint64_t req;
    struct answer a;
};

static struct {
    int open;                 /* a transaction is open */
    int durable;              /* it holds a row that must be durable before its answer */
    int begin_failed;         /* the turn could not open its transaction */
    struct deferred *answers;
    size_t n, cap;
} batch;

int batch_join(void)
{
    if (batch.open)
        return 0;
    /* Another writer holds the database: once the busy timeout has run out for the
     * turn, its other writes fail at once rather than wait a second each. */
    if (batch.begin_failed)
        return -1;
    if (db_begin(db) != DB_OK) {
        batch.begin_failed = 1;
        return -1;
    }
    batch.open = 1;
    return 0;
}

/* Room for one more waiting answer; -1 when memory is short. */
static int batch_grow(void)
{
    size_t cap = batch.cap ? batch.cap * 2 : 64;
    struct deferred *p;

    /* realloc with its own overflow check rather than reallocarray, which GCC 12's
     * analyzer takes for a free even when it fails. */
    if (cap > SIZE_MAX / sizeof(*p) || (p = realloc(batch.answers, cap * sizeof(*p))) == NULL)
        return -1;
    batch.answers = p;
    batch.cap = cap;
    return 0;
}

void send_answer(int chan, uint64_t req, const struct answer *a, struct ipc_msg *m)
{
    if (batch.n == batch.cap && batch_grow() != 0) {
        /* Without room to wait, the answer goes now, after a commit of its own. */
        batch_end(m);
        send_now(chan, req, a, m);
        return;
    }
    batch.answers[batch.n].chan = chan;
    batch.answers[batch.n].req = req;
    batch.answers[batch.n].a = *a;
    batch.n++;
}

void batch_need_durable(void)
{
    batch.durable = 1;
}

/* Whether lazy commits have waited long enough to be made durable now. */
static int lazy_due(uint64_t now)
{
    return lazy.pending && now - lazy.since >= BATCH_SYNC_MS;
}

/* Commits the open transaction, durably when it must be or when lazy commits are due. */
static int batch_commit(void)
{
    uint64_t now = now_ms();
    int durable = batch.durable || lazy_due(now), rc;

    batch.open = 0;
    batch.durable = 0;
    rc = durable ? db_commit(db) : db_commit_lazy(db);
    if (rc == DB_OK && durable) {
        lazy.pending = 0;
        return 0;
    }
    /* Lazy, or failed: a commit whose sync failed is there but owed to the disk,
     * and the loop's tick tries db_sync again. */
    if (!lazy.pending) {
        lazy.pending = 1;
        lazy.since = now;
    }
    return rc == DB_OK ? 0 : -1;
}

void batch_end(struct ipc_msg *m)
{
    int failed = 0;

    batch.begin_failed = 0;
    if (batch.open && batch_commit() != 0) {
        log_err("AUDIT ROWS NOT WRITTEN: the commit of a batch failed: %s; its "
                "decisions become temporary failures", db_errmsg(db));
        db_rollback(db);
        failed = 1;
    }
    for (size_t i = 0; i < batch.n; i++) {
        struct answer *a = &batch.answers[i].a;

        /* Any grant of the turn may rest on a row that is now lost. */
        if (failed && a->decision == IPC_ALLOW) {
            answer_set(a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
            memset(a->user, 0, sizeof(a->user));
        }
        send_now(batch.answers[i].chan, batch.answers[i].req, a, m);
    }
    batch.n = 0;
}

void batch_sync(void)
{
    if (!lazy.pending || batch.open)
        return;
    if (db_sync(db) != DB_OK) {
        log_err("audit rows and rate counts of the last commits may not be on disk: %s",
                db_errmsg(db));
        lazy.since = now_ms();    /* try again in a while */
        return;
    }
    lazy.pending = 0;
}

int batch_tick(void)
{
    uint64_t now = now_ms();

    if (lazy_due(now)) {
        batch_sync();
        now = now_ms();
    }
    if (!lazy.pending)
        return -1;
    /* At least a millisecond: the loop must never spin. */
    return now - lazy.since >= BATCH_SYNC_MS ? 1 : (int)(BATCH_SYNC_MS - (now - lazy.since));
}

void batch_free(void)
{
    free(batch.answers);
    memset(&batch, 0, sizeof(batch));
}
