/* Answers, audit rows and grants shared by the handlers (see authz_answer.h). */
#include "authz_answer.h"

#include "authz.h"

#include "ipc_codec.h"
#include "log.h"
#include "util.h"

#include <errno.h>
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

int write_audit(const struct db_audit *row)
{
    if (db_audit_insert(db, row) == DB_OK)
        return 0;
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

void send_answer(int chan, uint64_t req, const struct answer *a, struct ipc_msg *m)
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
