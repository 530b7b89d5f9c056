/* Encoders and decoders of every message type (see ipc_codec.h). */
#include "ipc_codec.h"

#include <stdlib.h>
#include <string.h>

/* Shorthands: a failed put or get makes the whole message fail. */
#define PUT_STR(f) bad |= ipc_put_str(m, v->f)
#define GET_STR(f) bad |= ipc_get_str(m, v->f, sizeof(v->f))

static int put_i64(struct ipc_msg *m, long long v)
{
    return ipc_put_u64(m, v < 0 ? UINT64_MAX : (uint64_t)v);
}

static int get_i64(struct ipc_msg *m, long long *v)
{
    uint64_t u;

    if (ipc_get_u64(m, &u) != 0 || (u > (uint64_t)INT64_MAX && u != UINT64_MAX))
        return -1;
    *v = u == UINT64_MAX ? -1 : (long long)u;
    return 0;
}

static int get_decision(struct ipc_msg *m, int *d)
{
    uint64_t u;

    if (ipc_get_u64(m, &u) != 0 || u > IPC_TEMPFAIL)
        return -1;
    *d = (int)u;
    return 0;
}

/* A count field in [lo, hi]. */
static int get_count(struct ipc_msg *m, int lo, int hi, int *n)
{
    uint64_t u;

    if (ipc_get_u64(m, &u) != 0 || u < (uint64_t)lo || u > (uint64_t)hi)
        return -1;
    *n = (int)u;
    return 0;
}

static int finish(const struct ipc_msg *m, int bad)
{
    return bad || ipc_end(m) != 0 ? -1 : 0;
}

int ipc_text_clean(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* ---- smtp -> authz ------------------------------------------------------------- */

int ipc_enc_identity(struct ipc_msg *m, uint64_t id, const struct ipc_identity *v)
{
    int bad = 0;

    if (v->ncert < 0 || v->ncert > IPC_CHAIN_MAX)
        return -1;
    ipc_init(m, IPC_AUTHZ_IDENTITY, id);
    PUT_STR(session);
    PUT_STR(client_ip);
    PUT_STR(tls);
    bad |= ipc_put_u64(m, (uint64_t)v->ncert);
    for (int i = 0; i < v->ncert; i++)
        bad |= ipc_put_bytes(m, v->cert[i], v->cert_len[i]);
    return bad ? -1 : 0;
}

int ipc_dec_identity(struct ipc_msg *m, struct ipc_identity *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(session);
    GET_STR(client_ip);
    GET_STR(tls);
    bad |= get_count(m, 0, IPC_CHAIN_MAX, &v->ncert);
    for (int i = 0; !bad && i < v->ncert; i++)
        bad |= ipc_get_bytes(m, &v->cert[i], &v->cert_len[i], IPC_MAX_MSG);
    for (int i = 0; !bad && i < v->ncert; i++)
        bad |= v->cert_len[i] == 0;
    return finish(m, bad);
}

int ipc_enc_password(struct ipc_msg *m, uint64_t id, const struct ipc_password *v)
{
    int bad = 0;

    ipc_init(m, IPC_AUTHZ_PASSWORD, id);
    PUT_STR(session);
    PUT_STR(client_ip);
    PUT_STR(tls);
    PUT_STR(authcid);
    PUT_STR(password);
    return bad ? -1 : 0;
}

int ipc_dec_password(struct ipc_msg *m, struct ipc_password *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(session);
    GET_STR(client_ip);
    GET_STR(tls);
    GET_STR(authcid);
    GET_STR(password);
    return finish(m, bad || v->password[0] == '\0');
}

int ipc_enc_sender(struct ipc_msg *m, uint64_t id, const struct ipc_sender *v)
{
    int bad = 0;

    ipc_init(m, IPC_AUTHZ_SENDER, id);
    PUT_STR(session);
    PUT_STR(address);
    return bad ? -1 : 0;
}

int ipc_dec_sender(struct ipc_msg *m, struct ipc_sender *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(session);
    GET_STR(address);
    return finish(m, bad);
}

int ipc_enc_authzid(struct ipc_msg *m, uint64_t id, const struct ipc_authzid *v)
{
    int bad = 0;

    if (v->authzid[0] == '\0')
        return -1;
    ipc_init(m, IPC_AUTHZ_AUTHZID, id);
    PUT_STR(session);
    PUT_STR(authzid);
    return bad ? -1 : 0;
}

int ipc_dec_authzid(struct ipc_msg *m, struct ipc_authzid *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(session);
    GET_STR(authzid);
    return finish(m, bad || v->authzid[0] == '\0');
}

static int put_header_from(struct ipc_msg *m, const struct ipc_header_from *v)
{
    int bad = 0;

    if (v->naddr < 0 || v->naddr > IPC_FROM_MAX)
        return -1;
    bad |= ipc_put_u64(m, (uint64_t)v->naddr);
    for (int i = 0; i < v->naddr; i++)
        PUT_STR(addr[i]);
    return bad;
}

static int get_header_from(struct ipc_msg *m, struct ipc_header_from *v)
{
    int bad = get_count(m, 0, IPC_FROM_MAX, &v->naddr);

    for (int i = 0; !bad && i < v->naddr; i++)
        GET_STR(addr[i]);
    return bad;
}

int ipc_enc_audit(struct ipc_msg *m, uint64_t id, const struct ipc_audit *v)
{
    int bad = 0;

    ipc_init(m, IPC_AUTHZ_AUDIT, id);
    PUT_STR(session);
    PUT_STR(client_ip);
    PUT_STR(tls);
    PUT_STR(event);
    PUT_STR(decision);
    PUT_STR(reason);
    PUT_STR(mail_from);
    PUT_STR(rcpt);
    PUT_STR(queue_id);
    bad |= put_i64(m, v->size);
    bad |= put_i64(m, v->nrcpt);
    return bad ? -1 : 0;
}

int ipc_dec_audit(struct ipc_msg *m, struct ipc_audit *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(session);
    GET_STR(client_ip);
    GET_STR(tls);
    GET_STR(event);
    GET_STR(decision);
    GET_STR(reason);
    GET_STR(mail_from);
    GET_STR(rcpt);
    GET_STR(queue_id);
    bad |= get_i64(m, &v->size);
    bad |= get_i64(m, &v->nrcpt);
    return finish(m, bad || v->nrcpt > IPC_RCPT_MAX);
}

int ipc_enc_session_end(struct ipc_msg *m, const struct ipc_session_end *v)
{
    int bad = 0;

    ipc_init(m, IPC_AUTHZ_SESSION_END, 0);
    PUT_STR(session);
    return bad ? -1 : 0;
}

int ipc_dec_session_end(struct ipc_msg *m, struct ipc_session_end *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(session);
    return finish(m, bad);
}

/* ---- authz -> smtp -------------------------------------------------------------- */

int ipc_enc_result(struct ipc_msg *m, uint64_t id, const struct ipc_result *v)
{
    int bad = 0;

    ipc_init(m, IPC_AUTHZ_RESULT, id);
    bad |= ipc_put_u64(m, (uint64_t)v->decision);
    PUT_STR(user);
    PUT_STR(reply);
    bad |= ipc_put_u64(m, v->rcpt_budget);
    return bad ? -1 : 0;
}

int ipc_dec_result(struct ipc_msg *m, struct ipc_result *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    bad |= get_decision(m, &v->decision);
    GET_STR(user);
    GET_STR(reply);
    bad |= ipc_get_u64(m, &v->rcpt_budget);
    return finish(m, bad);
}

/* ---- envelopes: smtp -> queue, queue -> authz ---------------------------------------- */

int ipc_enc_envelope(struct ipc_msg *m, enum ipc_type type, uint64_t id,
                     const struct ipc_envelope *v)
{
    int bad = 0;

    if (type != IPC_QUEUE_OPEN && type != IPC_AUTHZ_GRANT_CHECK)
        return -1;
    if (v->nrcpt < 1 || v->nrcpt > IPC_RCPT_MAX)
        return -1;
    ipc_init(m, type, id);
    PUT_STR(session);
    PUT_STR(mail_from);
    bad |= ipc_put_u64(m, (uint64_t)v->nrcpt);
    for (int i = 0; i < v->nrcpt && !bad; i++)
        PUT_STR(rcpt[i]);
    return bad ? -1 : 0;
}

int ipc_dec_envelope(struct ipc_msg *m, struct ipc_envelope *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(session);
    GET_STR(mail_from);
    bad |= get_count(m, 1, IPC_RCPT_MAX, &v->nrcpt);
    /* Each recipient takes at least 3 bytes: a count beyond what is left is a lie,
     * and must not make us allocate for it. */
    if (!bad && (size_t)v->nrcpt * 3 > m->len - m->rpos)
        bad = 1;
    if (!bad && (v->rcpt = calloc((size_t)v->nrcpt, sizeof(*v->rcpt))) == NULL)
        bad = 1;
    for (int i = 0; !bad && i < v->nrcpt; i++)
        GET_STR(rcpt[i]);
    if (finish(m, bad) != 0) {
        ipc_envelope_free(v);
        return -1;
    }
    return 0;
}

void ipc_envelope_free(struct ipc_envelope *v)
{
    free(v->rcpt);
    v->rcpt = NULL;
    v->nrcpt = 0;
}

int ipc_enc_grant(struct ipc_msg *m, uint64_t id, const struct ipc_grant *v)
{
    int bad = 0;

    ipc_init(m, IPC_AUTHZ_GRANT, id);
    bad |= ipc_put_u64(m, (uint64_t)v->decision);
    PUT_STR(user);
    PUT_STR(client_ip);
    PUT_STR(reason);
    return bad ? -1 : 0;
}

int ipc_dec_grant(struct ipc_msg *m, struct ipc_grant *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    bad |= get_decision(m, &v->decision);
    GET_STR(user);
    GET_STR(client_ip);
    GET_STR(reason);
    return finish(m, bad);
}

/* ---- smtp <-> queue ------------------------------------------------------------- */

int ipc_enc_queue_answer(struct ipc_msg *m, enum ipc_type type, uint64_t id,
                         const struct ipc_queue_answer *v)
{
    int bad = 0;

    if ((type != IPC_QUEUE_OPENED && type != IPC_QUEUE_COMMITTED) || v->status < 0 ||
        v->status > IPC_QUEUE_REFUSED)
        return -1;
    ipc_init(m, type, id);
    bad |= ipc_put_u64(m, (uint64_t)v->status);
    PUT_STR(queue_id);
    PUT_STR(reason);
    return bad ? -1 : 0;
}

int ipc_dec_queue_answer(struct ipc_msg *m, struct ipc_queue_answer *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    bad |= get_count(m, 0, IPC_QUEUE_REFUSED, &v->status);
    GET_STR(queue_id);
    GET_STR(reason);
    return finish(m, bad);
}

int ipc_enc_commit(struct ipc_msg *m, uint64_t id, const struct ipc_commit *v)
{
    int bad = 0;

    ipc_init(m, IPC_QUEUE_COMMIT, id);
    PUT_STR(queue_id);
    bad |= ipc_put_u64(m, v->size);
    bad |= put_header_from(m, &v->from);
    return bad ? -1 : 0;
}

int ipc_dec_commit(struct ipc_msg *m, struct ipc_commit *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(queue_id);
    bad |= ipc_get_u64(m, &v->size);
    bad |= bad ? 0 : get_header_from(m, &v->from);
    return finish(m, bad);
}

int ipc_enc_abort(struct ipc_msg *m, const struct ipc_abort *v)
{
    int bad = 0;

    ipc_init(m, IPC_QUEUE_ABORT, 0);
    PUT_STR(queue_id);
    return bad ? -1 : 0;
}

int ipc_dec_abort(struct ipc_msg *m, struct ipc_abort *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(queue_id);
    return finish(m, bad);
}

/* ---- queue -> authz ------------------------------------------------------------- */

int ipc_enc_relay_audit(struct ipc_msg *m, const struct ipc_relay_audit *v)
{
    int bad = 0;

    ipc_init(m, IPC_AUTHZ_RELAY_AUDIT, 0);
    PUT_STR(session);
    PUT_STR(event);
    PUT_STR(reason);
    PUT_STR(user);
    PUT_STR(client_ip);
    PUT_STR(mail_from);
    PUT_STR(rcpt);
    PUT_STR(queue_id);
    bad |= put_i64(m, v->size);
    return bad ? -1 : 0;
}

int ipc_dec_relay_audit(struct ipc_msg *m, struct ipc_relay_audit *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(session);
    GET_STR(event);
    GET_STR(reason);
    GET_STR(user);
    GET_STR(client_ip);
    GET_STR(mail_from);
    GET_STR(rcpt);
    GET_STR(queue_id);
    bad |= get_i64(m, &v->size);
    return finish(m, bad);
}

int ipc_enc_accept(struct ipc_msg *m, uint64_t id, const struct ipc_accept *v)
{
    int bad = 0;

    ipc_init(m, IPC_AUTHZ_ACCEPT, id);
    PUT_STR(session);
    PUT_STR(user);
    PUT_STR(client_ip);
    PUT_STR(queue_id);
    PUT_STR(mail_from);
    PUT_STR(rcpt);
    bad |= ipc_put_u64(m, v->nrcpt);
    bad |= ipc_put_u64(m, v->size);
    bad |= put_header_from(m, &v->from);
    return bad ? -1 : 0;
}

int ipc_dec_accept(struct ipc_msg *m, struct ipc_accept *v)
{
    int bad = 0;

    memset(v, 0, sizeof(*v));
    GET_STR(session);
    GET_STR(user);
    GET_STR(client_ip);
    GET_STR(queue_id);
    GET_STR(mail_from);
    GET_STR(rcpt);
    bad |= ipc_get_u64(m, &v->nrcpt);
    bad |= ipc_get_u64(m, &v->size);
    bad |= bad ? 0 : get_header_from(m, &v->from);
    return finish(m, bad || v->nrcpt > IPC_RCPT_MAX || v->size > (uint64_t)INT64_MAX);
}

/* ---- control: master <-> worker ------------------------------------------------------ */

int ipc_enc_ctl_file(struct ipc_msg *m, int kind, int fd)
{
    if (kind < 0 || kind >= CTL_FILE_KINDS || fd < 0)
        return -1;
    ipc_init(m, IPC_CTL_FILE, 0);
    m->fd = fd;
    return ipc_put_u64(m, (uint64_t)kind);
}

int ipc_dec_ctl_file(struct ipc_msg *m, int *kind)
{
    uint64_t k;
    int bad = ipc_get_u64(m, &k);

    if (bad == 0 && k >= CTL_FILE_KINDS)
        bad = -1;
    *kind = bad ? -1 : (int)k;
    return finish(m, bad);
}

int ipc_enc_ctl_reloaded(struct ipc_msg *m, const struct ipc_reloaded *v)
{
    int bad = 0;

    ipc_init(m, IPC_CTL_RELOADED, 0);
    bad |= ipc_put_u64(m, v->ok ? 1 : 0);
    PUT_STR(why);
    return bad ? -1 : 0;
}

int ipc_dec_ctl_reloaded(struct ipc_msg *m, struct ipc_reloaded *v)
{
    uint64_t ok;
    int bad = 0;

    memset(v, 0, sizeof(*v));
    bad |= ipc_get_u64(m, &ok);
    if (bad == 0 && ok > 1)
        bad = -1;
    v->ok = (int)ok;
    GET_STR(why);
    return finish(m, bad);
}
