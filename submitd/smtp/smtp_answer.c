/*
 * Answers of authz and queue (smtp_answer.h): decoded here, and handed to the part
 * of the session that asked.
 */
#include "smtp_answer.h"

#include "ipc_codec.h"
#include "log.h"
#include "smtp_data.h"
#include "smtp_sasl.h"
#include "spool.h"
#include "util.h"

#include <openssl/ssl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

static void on_identity(struct session *s, const struct ipc_result *r)
{
    s->identity_known = 1;
    s->identity_decision = r->decision;
    if (r->decision == IPC_ALLOW) {
        str_lcpy(s->user, r->user, sizeof(s->user));
        log_info("session=%s client=%s identity user=%s", s->id, s->client_ip, s->user);
    } else {
        str_lcpy(s->identity_reply, r->reply, sizeof(s->identity_reply));
        log_info("session=%s client=%s no identity: %s", s->id, s->client_ip, r->reply);
        /* A refused client's TLS session leaves the resumption cache at once: its
         * entries, with whatever certificates it sent, would otherwise fill the cache
         * for their lifetime and push out the sessions of honest clients. */
        if (s->ssl != NULL)
            SSL_CTX_remove_session(SSL_get_SSL_CTX(s->ssl), SSL_get0_session(s->ssl));
    }
}

/* MAIL: the transaction holds an accepted sender from here on; a refused one ends
 * it. */
static void on_sender(struct session *s, const struct ipc_result *r)
{
    s->tx->rcpt_budget = r->rcpt_budget > (uint64_t)LLONG_MAX ? -1 : (long long)r->rcpt_budget;
    if (r->decision == IPC_ALLOW) {
        session_set_state(s, SS_MAIL);
        session_reply(s, "250 2.1.0 Ok");
    } else {
        session_reply(s, "%s", r->reply);
        tx_end(s);
    }
}

static void on_authz_result(struct session *s, const struct ipc_result *r)
{
    switch (s->wait) {
    case WAIT_IDENTITY:
        on_identity(s, r);
        break;
    case WAIT_SENDER:
        on_sender(s, r);
        break;
    case WAIT_PASSWORD:
        sasl_on_password(s, r);
        break;
    case WAIT_AUTHZID:
        sasl_on_authzid(s, r);
        break;
    default:
        fatal("session=%s unexpected authz answer", s->id);
    }
}

enum answer_next session_answer(struct session *s, struct ipc_msg *m)
{
    struct ipc_result r;
    struct ipc_queue_answer q;

    /* Only an OPENED answer carries a descriptor. */
    if (m->fd >= 0 && m->type != IPC_QUEUE_OPENED)
        fatal("unexpected descriptor with message type %u", m->type);
    switch (m->type) {
    case IPC_AUTHZ_RESULT:
        if (ipc_dec_result(m, &r) != 0)
            fatal("malformed authz answer");
        on_authz_result(s, &r);
        break;
    case IPC_QUEUE_OPENED:
    case IPC_QUEUE_COMMITTED:
        if (ipc_dec_queue_answer(m, &q) != 0)
            fatal("malformed queue answer");
        if (m->fd >= 0 && (q.status != 0 || s->wait != WAIT_OPEN)) {
            close(m->fd);
            m->fd = -1;
        }
        if (m->type == IPC_QUEUE_OPENED && s->wait == WAIT_OPEN) {
            data_on_opened(s, q.status, q.queue_id, q.reason, m->fd);
        } else if (m->type == IPC_QUEUE_COMMITTED && s->wait == WAIT_COMMIT) {
            s->wait = WAIT_NONE;
            data_on_committed(s, q.status, q.queue_id, q.reason);
        } else {
            fatal("session=%s unexpected queue answer", s->id);
        }
        break;
    default:
        fatal("unexpected message type %u from authz/queue", m->type);
    }
    s->wait = WAIT_NONE;
    return s->detached ? ANSWER_CLOSE : ANSWER_RESUME;
}

int session_answer_orphan(struct ipc_msg *m)
{
    struct ipc_result r;
    struct ipc_queue_answer q;
    struct ipc_abort v;

    if (m->fd >= 0 && m->type != IPC_QUEUE_OPENED)
        fatal("unexpected descriptor with message type %u", m->type);
    switch (m->type) {
    case IPC_AUTHZ_RESULT:
        if (ipc_dec_result(m, &r) != 0)
            fatal("malformed authz answer");
        return 0;
    case IPC_QUEUE_OPENED:
    case IPC_QUEUE_COMMITTED:
        if (ipc_dec_queue_answer(m, &q) != 0)
            fatal("malformed queue answer");
        if (m->fd >= 0)
            close(m->fd);
        m->fd = -1;
        if (m->type != IPC_QUEUE_OPENED || q.status != 0 || !spool_id_valid(q.queue_id))
            return 0;
        str_lcpy(v.queue_id, q.queue_id, sizeof(v.queue_id));
        return ipc_enc_abort(m, &v) == 0;
    default:
        fatal("unexpected message type %u from authz/queue", m->type);
    }
    return 0;
}
