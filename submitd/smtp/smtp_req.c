/*
 * Requests of a session to the authz and queue processes (smtp_req.h): typed
 * messages of ipc_codec.h, sent through the session's port. Nothing here knows
 * whether the port is a socketpair or a test driver.
 */
#include "smtp_req.h"

#include "ipc_codec.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t req_id(const struct session *s)
{
    return ((uint64_t)s->slot << 32) | s->gen;
}

/* Every answered request leaves the session waiting for its answer. (Not
 * session_wait(): requests are below the session's ground, which calls them.) */
static void req_wait(struct session *s, enum sess_wait w)
{
    s->wait = w;
    s->wait_since = time(NULL);
}

static int req_send(struct session *s, enum session_peer to, const char *what)
{
    struct ipc_msg *m = s->msg;

    if (s->port->send(s, to, m) == 0)
        return 0;
    log_err("session=%s client=%s cannot send %s request: %s", s->id, s->client_ip,
            what, strerror(errno));
    if (m->fd >= 0)
        close(m->fd);
    return -1;
}

/* Its user and certificate columns are authz's own; the client address and TLS
 * text count only for a session authz has not seen yet. */
int req_audit_id(struct session *s, uint64_t id, const char *event, const char *decision,
                 const char *reason, const char *rcpt, long long size)
{
    struct ipc_msg *m = s->msg;
    struct ipc_audit v;

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, s->id, sizeof(v.session));
    str_lcpy(v.client_ip, s->client_ip, sizeof(v.client_ip));
    str_lcpy(v.tls, s->tls_done ? s->peer.tls : "", sizeof(v.tls));
    str_lcpy(v.event, event, sizeof(v.event));
    str_lcpy(v.decision, decision, sizeof(v.decision));
    str_lcpy(v.reason, reason ? reason : "", sizeof(v.reason));
    str_lcpy(v.mail_from, s->tx ? s->tx->mail_from : "", sizeof(v.mail_from));
    str_lcpy(v.rcpt, rcpt ? rcpt : "", sizeof(v.rcpt));
    str_lcpy(v.queue_id, s->tx ? s->tx->queue_id : "", sizeof(v.queue_id));
    v.size = size;
    v.nrcpt = s->tx != NULL && strcmp(event, "submission") == 0 ? s->tx->nrcpt : 0;
    if (ipc_enc_audit(m, id, &v) == 0 && s->port->send(s, PEER_AUTHZ, m) == 0)
        return 0;
    log_err("session=%s client=%s audit row lost (event %s, decision %s, reason %s): %s",
            s->id, s->client_ip, event, decision ? decision : "-", reason ? reason : "-",
            strerror(errno));
    return -1;
}

void req_audit(struct session *s, const char *event, const char *decision, const char *reason,
               const char *rcpt, long long size)
{
    (void)req_audit_id(s, 0, event, decision, reason, rcpt, size);
}

/* authz verifies the chain itself and answers with the session's identity, or the
 * reason there is none. n < 0: the chain could not be encoded. */
void req_identity(struct session *s, unsigned char **der, const size_t *derlen, int n)
{
    struct ipc_msg *m = s->msg;
    struct ipc_identity v;
    int rc = -1;

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, s->id, sizeof(v.session));
    str_lcpy(v.client_ip, s->client_ip, sizeof(v.client_ip));
    str_lcpy(v.tls, s->peer.tls, sizeof(v.tls));
    for (int i = 0; i < n && i < IPC_CHAIN_MAX; i++) {
        v.cert[i] = der[i];
        v.cert_len[i] = derlen[i];
        v.ncert = i + 1;
    }
    if (n >= 0)
        rc = ipc_enc_identity(m, req_id(s), &v);
    if (rc != 0 && v.ncert > 1) {
        /* A chain too big for one message goes without its intermediates: authz
         * may still find them in client_ca. */
        v.ncert = 1;
        rc = ipc_enc_identity(m, req_id(s), &v);
    }
    s->identity_requested = 1;
    if (rc != 0 || req_send(s, PEER_AUTHZ, "identity") != 0) {
        s->identity_known = 1;
        s->identity_decision = IPC_TEMPFAIL;
        str_lcpy(s->identity_reply, "454 4.7.0 Temporary authentication failure",
                 sizeof(s->identity_reply));
        return;
    }
    req_wait(s, WAIT_IDENTITY);
}

int req_sender(struct session *s, const char *addr)
{
    struct ipc_sender v;
    int bad = 0;

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, s->id, sizeof(v.session));
    bad |= str_lcpy(v.address, addr, sizeof(v.address)) >= sizeof(v.address);
    bad |= ipc_enc_sender(s->msg, req_id(s), &v) != 0;
    if (bad || req_send(s, PEER_AUTHZ, "sender") != 0)
        return -1;
    req_wait(s, WAIT_SENDER);
    return 0;
}

/* authz decides whose password this may be (second-factor: the certificate's
 * user); smtp only passes it on, and wipes every copy it made at once. */
int req_password(struct session *s, const char *authcid, const char *password)
{
    struct ipc_msg *m = s->msg;
    struct ipc_password v;
    int bad = 0;

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, s->id, sizeof(v.session));
    str_lcpy(v.client_ip, s->client_ip, sizeof(v.client_ip));
    str_lcpy(v.tls, s->peer.tls, sizeof(v.tls));
    bad |= str_lcpy(v.authcid, authcid, sizeof(v.authcid)) >= sizeof(v.authcid);
    bad |= str_lcpy(v.password, password, sizeof(v.password)) >= sizeof(v.password);
    bad |= ipc_enc_password(m, req_id(s), &v) != 0;
    explicit_bzero(&v, sizeof(v));
    if (bad || req_send(s, PEER_AUTHZ, "password") != 0) {
        explicit_bzero(m->buf, m->len);
        return -1;
    }
    explicit_bzero(m->buf, m->len);
    req_wait(s, WAIT_PASSWORD);
    return 0;
}

/* Whether the certificate's user may act as authzid (its user name, or an address
 * it owns): authz has the database and audits the answer either way. */
int req_authzid(struct session *s, const char *authzid)
{
    struct ipc_authzid v;

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, s->id, sizeof(v.session));
    if (str_lcpy(v.authzid, authzid, sizeof(v.authzid)) >= sizeof(v.authzid) ||
        ipc_enc_authzid(s->msg, req_id(s), &v) != 0 ||
        req_send(s, PEER_AUTHZ, "authzid") != 0)
        return -1;
    req_wait(s, WAIT_AUTHZID);
    return 0;
}

/* The envelope, for a queue file. No user here: the queue asks authz whose
 * envelope this is. */
int req_open(struct session *s)
{
    const struct smtp_tx *tx = s->tx;
    struct ipc_envelope env;
    int bad = 0;

    memset(&env, 0, sizeof(env));
    str_lcpy(env.session, s->id, sizeof(env.session));
    str_lcpy(env.mail_from, tx->mail_from, sizeof(env.mail_from));
    env.nrcpt = tx->nrcpt;
    env.rcpt = calloc((size_t)tx->nrcpt, sizeof(*env.rcpt));
    bad |= env.rcpt == NULL;
    for (int i = 0; !bad && i < tx->nrcpt; i++)
        str_lcpy(env.rcpt[i], tx->rcpt[i], sizeof(env.rcpt[i]));
    bad = bad || ipc_enc_envelope(s->msg, IPC_QUEUE_OPEN, req_id(s), &env) != 0;
    ipc_envelope_free(&env);
    if (bad || req_send(s, PEER_QUEUE, "queue open") != 0)
        return -1;
    req_wait(s, WAIT_OPEN);
    return 0;
}

int req_commit(struct session *s, const struct ipc_header_from *from)
{
    struct ipc_commit v;

    str_lcpy(v.queue_id, s->tx->queue_id, sizeof(v.queue_id));
    v.size = (uint64_t)s->tx->spooled;
    v.from = *from;
    if (ipc_enc_commit(s->msg, req_id(s), &v) != 0 || req_send(s, PEER_QUEUE, "commit") != 0)
        return -1;
    req_wait(s, WAIT_COMMIT);
    return 0;
}

void req_abort(struct session *s, const char *queue_id)
{
    struct ipc_abort v;

    str_lcpy(v.queue_id, queue_id, sizeof(v.queue_id));
    if (ipc_enc_abort(s->msg, &v) == 0 && s->port->send(s, PEER_QUEUE, s->msg) != 0)
        log_warn("session=%s client=%s cannot abort queue file %s: %s", s->id, s->client_ip,
                 queue_id, strerror(errno));
}

/* authz forgets the session's grant: nothing more can be asked in its name. */
void req_session_end(struct session *s)
{
    struct ipc_session_end v;

    str_lcpy(v.session, s->id, sizeof(v.session));
    if (ipc_enc_session_end(s->msg, &v) != 0 || s->port->send(s, PEER_AUTHZ, s->msg) != 0)
        log_warn("session=%s client=%s cannot tell authz that the session ended: %s",
                 s->id, s->client_ip, strerror(errno));
}
