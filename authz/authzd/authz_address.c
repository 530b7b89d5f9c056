/* Sender, header From and AUTH EXTERNAL authzid checks (see authz_address.h). */
#include "authz_address.h"

#include "authz.h"
#include "authz_grant.h"

#include "ipc_codec.h"
#include "log.h"
#include "util.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

/*
 * rate_messages_per_hour, rate_recipients_per_hour: committed submissions are
 * counted by minute in the database (handle_accept), so the limits hold across
 * restarts and for every smtp worker.
 */
static int rate_check(const char *user, uint64_t *rcpt_budget, char *reason, size_t rlen)
{
    long long messages = 0, recipients = 0;

    *rcpt_budget = UINT64_MAX;
    if (cfg.rate_messages_per_hour <= 0 && cfg.rate_recipients_per_hour <= 0)
        return IPC_ALLOW;
    if (db_rate_usage(db, user, (long long)time(NULL), &messages, &recipients) != DB_OK) {
        log_err("rate count for %s failed: %s", user, db_errmsg(db));
        return IPC_TEMPFAIL;
    }
    if (cfg.rate_messages_per_hour > 0 && messages >= cfg.rate_messages_per_hour) {
        str_fmt(reason, rlen, "rate limit: %lld messages in the last hour "
                "(rate_messages_per_hour = %d)", messages, cfg.rate_messages_per_hour);
        return IPC_DENY;
    }
    if (cfg.rate_recipients_per_hour > 0) {
        if (recipients >= cfg.rate_recipients_per_hour) {
            str_fmt(reason, rlen, "rate limit: %lld recipients in the last hour "
                    "(rate_recipients_per_hour = %d)", recipients, cfg.rate_recipients_per_hour);
            return IPC_DENY;
        }
        /* smtp enforces the rest at RCPT, without a question per recipient; the
         * queue's grant check enforces it again. */
        *rcpt_budget = (uint64_t)(cfg.rate_recipients_per_hour - recipients);
    }
    return IPC_ALLOW;
}

/* Answers and audits an address that was not allowed: decision is IPC_DENY or
 * IPC_TEMPFAIL; reply is the SMTP reply for a denial. g may be a stand-in for a
 * session authz does not know. */
static void address_refused(const struct grant *g, const char *event, const char *addr,
                            int decision, const char *reply, const char *reason,
                            struct answer *a)
{
    struct db_audit row;

    answer_set(a, decision, decision == IPC_DENY ? reply : TEMPFAIL_REPLY);
    memset(&row, 0, sizeof(row));
    row_identity(&row, g);
    row.event = event;
    row.mail_from = addr;
    row.size = -1;
    row.decision = decision == IPC_DENY && reply[0] == '5' ? "reject" : "tempfail";
    row.reason = reason;
    write_audit(&row);
    log_info("session=%s client=%s user=%s %s <%s>: %s", g->session, LOG_IP(g->client_ip),
             g->user[0] ? g->user : "-", event, addr, reason);
}

/* The session's grant when it may relay; else the refusal is answered and audited
 * and NULL returned. stand_in receives the session id for the row. */
static struct grant *granted_or_refuse(const char *session, const char *event,
                                       const char *addr, struct grant *stand_in,
                                       struct answer *a)
{
    struct grant *g = grant_or_stand_in(session, stand_in);

    if (may_relay(g))
        return g;
    log_warn("session=%s %s request for a session without a grant: refused", session, event);
    address_refused(g, event, addr, IPC_DENY, "530 5.7.0 Authentication required",
                    "request for a session authz has not granted", a);
    return NULL;
}

void handle_sender(struct ipc_msg *m, struct answer *a)
{
    struct ipc_sender v;
    struct grant *g, stand_in;
    char reply[256], limit_reason[160];
    uint64_t budget;
    int rc, r;

    if (ipc_dec_sender(m, &v) != 0)
        fatal("malformed sender request");
    if ((g = granted_or_refuse(v.session, "mail", v.address, &stand_in, a)) == NULL)
        return;
    g->has_sender = 0;   /* a new MAIL FROM replaces the transaction */
    if (!ipc_text_clean(v.address)) {
        address_refused(g, "mail", v.address, IPC_DENY, "501 5.1.7 Bad sender address syntax",
                        "control character in the sender address", a);
        return;
    }
    rc = db_sender_owned(db, g->user, v.address);
    if (rc == DB_ERROR) {
        log_err("session=%s sender lookup failed: %s", v.session, db_errmsg(db));
        address_refused(g, "mail", v.address, IPC_TEMPFAIL, NULL, "database unavailable", a);
        return;
    }
    if (rc != DB_OK) {
        str_fmt(reply, sizeof(reply), "553 5.7.1 Sender address not owned by user %s", g->user);
        address_refused(g, "mail", v.address, IPC_DENY, reply, "sender address not owned by user",
                        a);
        return;
    }
    r = rate_check(g->user, &budget, limit_reason, sizeof(limit_reason));
    if (r == IPC_DENY) {
        address_refused(g, "mail", v.address, IPC_DENY, "450 4.7.1 Rate limit exceeded",
                        limit_reason, a);
    } else if (r == IPC_TEMPFAIL) {
        address_refused(g, "mail", v.address, IPC_TEMPFAIL, NULL, "database unavailable", a);
    } else {
        answer_set(a, IPC_ALLOW, "");
        a->rcpt_budget = budget; /* the accept is audited with the submission */
        str_lcpy(g->sender, v.address, sizeof(g->sender));
        g->has_sender = 1;
        g->rcpt_budget = budget;
    }
}

int header_from_owned(const struct grant *g, const struct ipc_header_from *from,
                      struct answer *a)
{
    char reply[256];
    const char *bad_addr = NULL;
    int worst = DB_OK;

    for (int i = 0; i < from->naddr && worst != DB_ERROR; i++) {
        int rc = ipc_text_clean(from->addr[i]) ? db_sender_owned(db, g->user, from->addr[i])
                                               : DB_NOTFOUND;
        if (rc != DB_OK) {
            worst = rc;
            bad_addr = from->addr[i];
        }
    }
    if (worst == DB_OK)
        return 1;
    if (worst == DB_ERROR) {
        log_err("session=%s header From lookup failed: %s", g->session, db_errmsg(db));
        address_refused(g, "data", bad_addr, IPC_TEMPFAIL, NULL, "database unavailable", a);
    } else {
        str_fmt(reply, sizeof(reply), "550 5.7.1 Header From address not owned by user %s",
                g->user);
        address_refused(g, "data", bad_addr, IPC_DENY, reply,
                        "header From address not owned by user", a);
    }
    return 0;
}

/* ---- AUTH EXTERNAL with an authorization identity ---------------------------------- */

/* Audits an AUTH EXTERNAL authzid decision; an accept that cannot be audited is not
 * made (the client is told to come back later). g may be a stand-in. */
static void authzid_decided(const struct grant *g, const char *authzid, const char *reason,
                            struct answer *a)
{
    struct db_audit row;

    memset(&row, 0, sizeof(row));
    row_identity(&row, g);
    row.event = "auth";
    row.decision = decision_word(a->decision);
    row.reason = reason;
    row.size = -1;
    if (write_audit(&row) != 0 && a->decision == IPC_ALLOW)
        answer_set(a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
    log_info("session=%s client=%s user=%s AUTH EXTERNAL authzid <%s> %s: %s", g->session,
             LOG_IP(g->client_ip), g->user[0] ? g->user : "-", authzid,
             decision_word(a->decision), reason);
}

/* How authzid names the grant's user (DB_OK, reason set), DB_NOTFOUND when it does
 * not, DB_ERROR when the database cannot tell. */
static int authzid_names_user(const struct grant *g, const char *authzid, char *reason,
                              size_t rlen)
{
    int rc;

    if (strcmp(authzid, g->user) == 0) {
        str_fmt(reason, rlen, "AUTH EXTERNAL authzid %s is the user name", authzid);
        return DB_OK;
    }
    if (strchr(authzid, '@') == NULL)
        rc = DB_NOTFOUND;
    else
        rc = db_sender_owned(db, g->user, authzid);
    if (rc == DB_OK)
        str_fmt(reason, rlen, "AUTH EXTERNAL authzid %s is an address the user owns", authzid);
    else if (rc == DB_ERROR)
        str_lcpy(reason, "database unavailable", rlen);
    else
        str_fmt(reason, rlen, "AUTH EXTERNAL authzid %s is neither the user name nor an "
                "address the user owns", authzid);
    return rc;
}

/*
 * AUTH EXTERNAL with an authzid: Thunderbird for Android sends the account's user
 * name, which is often the e-mail address. The certificate's user may act only as
 * itself, so the authzid must be its user name or an address it owns (exactly or by
 * @domain, as for MAIL FROM); it never switches the session to another user.
 */
void handle_authzid(struct ipc_msg *m, struct answer *a)
{
    struct ipc_authzid v;
    struct grant *g, stand_in;
    char reason[IPC_REASON_MAX + IPC_ADDR_MAX];
    int rc;

    if (ipc_dec_authzid(m, &v) != 0)
        fatal("malformed authzid request");
    g = grant_or_stand_in(v.session, &stand_in);
    /* EXTERNAL is the certificate's identity: a password alone does not do. */
    if (g->identity_pending || !g->cert_ok) {
        log_warn("session=%s AUTH EXTERNAL for a session without an accepted certificate: "
                 "refused", v.session);
        answer_set(a, IPC_DENY, "530 5.7.0 Authentication required");
        authzid_decided(g, "-", "AUTH EXTERNAL for a session without an accepted certificate",
                        a);
        return;
    }
    if (!ipc_text_clean(v.authzid)) {
        answer_set(a, IPC_DENY, "501 5.5.4 Malformed authorization identity");
        authzid_decided(g, "-", "AUTH EXTERNAL authzid holds a control character", a);
        return;
    }
    rc = authzid_names_user(g, v.authzid, reason, sizeof(reason));
    if (rc == DB_OK) {
        answer_set(a, IPC_ALLOW, "");
    } else if (rc == DB_ERROR) {
        log_err("session=%s authzid lookup failed: %s", v.session, db_errmsg(db));
        answer_set(a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
    } else {
        answer_set(a, IPC_DENY,
                   "535 5.7.8 Not authorized: authorization identity does not match certificate");
    }
    authzid_decided(g, v.authzid, reason, a);
}
