/* Audit rows, session ends and the queue's questions (see authz_audit.h). */
#include "authz_audit.h"

#include "authz.h"
#include "authz_address.h"
#include "authz_answer.h"
#include "authz_grant.h"

#include "ipc_codec.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define FORGED_ACCEPT "accept row from the smtp process refused: only the queue reports " \
                      "accepted messages"

static int audit_decision_valid(const char *d)
{
    return strcmp(d, "accept") == 0 || strcmp(d, "reject") == 0 || strcmp(d, "tempfail") == 0;
}

/*
 * A row about a session from smtp. Its identity columns are authz's: a session
 * with a record gets that record's user, certificate and address whatever smtp
 * says; only a session authz never saw (refused before TLS) takes smtp's client
 * address. Nothing here counts against a rate limit (the queue reports commits).
 */
void handle_audit(int chan, struct ipc_msg *m)
{
    struct ipc_audit v;
    struct db_audit row;
    struct answer a;
    struct grant *g;
    uint64_t req = m->id;
    int forged;

    if (ipc_dec_audit(m, &v) != 0)
        fatal("malformed audit message");
    if (v.event[0] == '\0' || !ipc_text_clean(v.event) || !audit_decision_valid(v.decision))
        fatal("audit message with bad event/decision");
    /* What was accepted is the queue's word (ACCEPT), which holds the message: an
     * accept row from smtp could only be a forgery. It is recorded as what it is, and
     * refused; the set keeps serving. */
    forged = strcmp(v.decision, "accept") == 0;
    if (forged) {
        log_warn("session=%s accept row from the smtp process refused (event %s, id %s): "
                 "only the queue reports accepted messages", v.session, v.event, v.queue_id);
        str_lcpy(v.decision, "reject", sizeof(v.decision));
        str_lcpy(v.reason, FORGED_ACCEPT, sizeof(v.reason));
    }
    memset(&row, 0, sizeof(row));
    g = grant_find(v.session);
    if (g != NULL) {
        row_identity(&row, g);
    } else {
        row.session = OPT(v.session);
        row.client_ip = OPT(v.client_ip);
        row.tls = OPT(v.tls);
    }
    row.event = v.event;
    row.decision = v.decision;
    row.reason = OPT(v.reason);
    row.mail_from = OPT(v.mail_from);
    row.rcpt = OPT(v.rcpt);
    row.queue_id = OPT(v.queue_id);
    row.size = v.size;
    row.nrcpt = v.nrcpt;
    /* A row asked for with a request id is answered once it is committed (the answer
     * waits for the end of the turn, batch_end). */
    if (write_audit(&row) != 0)
        answer_set(&a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
    else if (forged)
        answer_set(&a, IPC_DENY, "554 5.7.0 " FORGED_ACCEPT);
    else
        answer_set(&a, IPC_ALLOW, "");
    if (req != 0 && chan >= 0) {
        memset(a.user, 0, sizeof(a.user));
        send_answer(chan, req, &a, m);
    }
}

void handle_session_end(struct ipc_msg *m)
{
    struct ipc_session_end v;

    if (ipc_dec_session_end(m, &v) != 0)
        fatal("malformed session end");
    grant_end(v.session);
}

/* Why the envelope is not what authz granted, or NULL when it is. */
static const char *envelope_refusal(const struct grant *g, const struct ipc_envelope *v)
{
    if (!may_relay(g))
        return "session not granted";
    if (!g->has_sender)
        return "no sender approved for the session";
    if (strcmp(g->sender, v->mail_from) != 0)
        return "sender is not the one approved for the session";
    if (v->nrcpt > cfg.max_recipients)
        return "more recipients than max_recipients";
    if (g->rcpt_budget != UINT64_MAX && (uint64_t)v->nrcpt > g->rcpt_budget)
        return "more recipients than the rate limit leaves";
    for (int i = 0; i < v->nrcpt; i++)
        if (v->rcpt[i][0] == '\0' || !ipc_text_clean(v->rcpt[i]))
            return "empty recipient or control character in a recipient";
    return NULL;
}

/* GRANT_CHECK: the queue opens a spool file only for an envelope authz granted,
 * and writes the user and client address authz gives it. The approved sender is
 * used up: one MAIL FROM, one message. */
void handle_grant_check(int chan, struct ipc_msg *m)
{
    struct ipc_envelope v;
    struct ipc_grant ans;
    struct grant *g;
    const char *why;
    uint64_t req = m->id;

    if (ipc_dec_envelope(m, &v) != 0)
        fatal("malformed grant check from the queue");
    memset(&ans, 0, sizeof(ans));
    g = grant_find(v.session);
    why = envelope_refusal(g, &v);
    if (why == NULL) {
        ans.decision = IPC_ALLOW;
        str_lcpy(ans.user, g->user, sizeof(ans.user));
        str_lcpy(ans.client_ip, g->client_ip, sizeof(ans.client_ip));
        g->has_sender = 0;
    } else {
        struct db_audit row;
        struct grant none;

        g = grant_or_stand_in(v.session, &none);
        ans.decision = IPC_DENY;
        str_lcpy(ans.reason, why, sizeof(ans.reason));
        memset(&row, 0, sizeof(row));
        row_identity(&row, g);
        row.event = "data";
        row.decision = "reject";
        row.reason = why;
        row.mail_from = v.mail_from;
        row.size = -1;
        write_audit(&row);
        log_warn("session=%s queue file refused for an envelope authz did not grant: %s",
                 v.session, why);
    }
    ipc_envelope_free(&v);
    if (ipc_enc_grant(m, req, &ans) != 0 || ipc_send(chan, m) != 0)
        fatal("cannot answer the queue: %s", strerror(errno));
}

/* Relay outcomes from the queue, which knows them first-hand. */
void handle_relay_audit(struct ipc_msg *m)
{
    struct ipc_relay_audit v;
    struct db_audit row;

    if (ipc_dec_relay_audit(m, &v) != 0 || v.event[0] == '\0' || !ipc_text_clean(v.event))
        fatal("malformed relay audit message");
    memset(&row, 0, sizeof(row));
    row.session = OPT(v.session);
    row.event = v.event;
    row.reason = OPT(v.reason);
    row.user = OPT(v.user);
    row.client_ip = OPT(v.client_ip);
    row.mail_from = OPT(v.mail_from);
    row.rcpt = OPT(v.rcpt);
    row.queue_id = OPT(v.queue_id);
    row.size = v.size;
    write_audit(&row);
}

/*
 * ACCEPT: the queue holds the message fsynced and makes it relayable only once this
 * is answered ALLOW, which batch_end sends after a durable commit of the turn. First
 * check_header_from: a From address the user does not own is a DENY with its reply
 * (and a reject row). The charge comes next: when it fails, no accept row is written
 * and the message is not queued (its client sends it again), so nobody outruns a
 * rate limit through a database error. A row that fails after its charge leaves the
 * user charged for a message that was refused, the safe side of a limit.
 */
void handle_accept(int chan, struct ipc_msg *m)
{
    struct ipc_accept v;
    struct db_audit row;
    struct answer a;
    const struct grant *g;
    struct grant who;
    uint64_t req = m->id;

    if (ipc_dec_accept(m, &v) != 0 || v.session[0] == '\0' || v.user[0] == '\0' ||
        v.queue_id[0] == '\0')
        fatal("malformed accept message from the queue");
    /* The user and address are the ones authz confirmed to the queue at OPEN. smtp
     * names sessions: it may have ended this one and had its id granted anew since,
     * so the certificate columns come from a grant only while it is that user's. */
    g = grant_find(v.session);
    memset(&who, 0, sizeof(who));
    if (g != NULL && strcmp(g->user, v.user) == 0) {
        str_lcpy(who.tls, g->tls, sizeof(who.tls));
        str_lcpy(who.sha256, g->sha256, sizeof(who.sha256));
        str_lcpy(who.subject, g->subject, sizeof(who.subject));
    }
    str_lcpy(who.session, v.session, sizeof(who.session));
    str_lcpy(who.user, v.user, sizeof(who.user));
    str_lcpy(who.client_ip, v.client_ip, sizeof(who.client_ip));
    if (!header_from_owned(&who, &v.from, &a)) {
        if (chan >= 0)
            send_answer(chan, req, &a, m);
        return;
    }
    memset(&row, 0, sizeof(row));
    row_identity(&row, &who);
    row.event = "submission";
    row.decision = "accept";
    row.mail_from = OPT(v.mail_from);
    row.rcpt = OPT(v.rcpt);
    row.queue_id = v.queue_id;
    row.size = (long long)v.size;
    row.nrcpt = (long long)v.nrcpt;
    if (batch_join() != 0 ||
        db_rate_record(db, v.user, (long long)time(NULL), (long long)v.nrcpt) != DB_OK) {
        log_err("session=%s id=%s not queued: rate usage of %s not recorded: %s", v.session,
                v.queue_id, v.user, db_errmsg(db));
        answer_set(&a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
    } else if (write_audit(&row) != 0) {
        answer_set(&a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
    } else {
        answer_set(&a, IPC_ALLOW, "");
    }
    if (chan >= 0)
        send_answer(chan, req, &a, m);
}
