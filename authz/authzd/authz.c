/*
 * submitd-authz: the only process of the daemon that opens the database and calls
 * PAM, and the one that decides identity (DESIGN §2). It verifies the client
 * certificates that the smtp workers relay, keeps a grant per session, answers
 * sender, header-From and AUTH EXTERNAL authzid questions for the user of its own
 * grant, confirms envelopes to the queue, and writes every audit row, from smtp and
 * from queue.
 *
 *   submitd-authz -c CONF [-f] -s FD... -q FD
 *
 * It treats the smtp process as compromised: smtp names sessions, never users,
 * and a request for a session authz did not grant is refused. Answers are
 * tri-state; any database or PAM error is TEMPFAIL, never ALLOW.
 */
#include "authz_cert.h"
#include "ctl.h"
#include "authz_grant.h"
#include "authz_pam.h"
#include "authz_refusals.h"
#include "config.h"
#include "dn.h"
#include "db.h"
#include "ipc.h"
#include "ipc_codec.h"
#include "log.h"
#include "proc.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <openssl/pem.h>
#include <time.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CHANNELS 65
#define TEMPFAIL_REPLY "454 4.7.0 Temporary authentication failure"
#define AUTHZ_BUSY_TIMEOUT_MS 1000

static struct config cfg;
static struct db *db;
static char own_ca_canon[1024];   /* subject of ca_dir/ca.crt, canonical */
static volatile sig_atomic_t stopping;

struct answer {
    int decision;
    char user[IPC_USER_MAX];
    char reply[IPC_REPLY_MAX];
    uint64_t rcpt_budget;   /* recipients the user may still send to; UINT64_MAX: no limit */
};

static void answer_set(struct answer *a, int decision, const char *reply)
{
    a->decision = decision;
    a->rcpt_budget = UINT64_MAX;
    str_lcpy(a->reply, reply, sizeof(a->reply));
}

static const char *decision_word(int decision)
{
    return decision == IPC_ALLOW ? "accept" : decision == IPC_DENY ? "reject" : "tempfail";
}

static int write_audit(const struct db_audit *row)
{
    if (db_audit_insert(db, row) == DB_OK)
        return 0;
    log_err("session=%s AUDIT ROW NOT WRITTEN (event %s, decision %s): %s",
            row->session ? row->session : "-", row->event ? row->event : "-",
            row->decision ? row->decision : "-", db_errmsg(db));
    return -1;
}

#define OPT(s) ((s) != NULL && (s)[0] ? (s) : NULL)

/* The identity columns of an audit row: authz's own knowledge of the session. */
static void row_identity(struct db_audit *row, const struct grant *g)
{
    row->session = g->session;
    row->client_ip = OPT(g->client_ip);
    row->tls = OPT(g->tls);
    row->user = g->user[0] ? g->user : OPT(g->cert_user);
    row->cert_sha256 = OPT(g->sha256);
    row->cert_subject = OPT(g->subject);
}

/* May this session relay, under auth_password (DESIGN §3.5)? */
static int may_relay(const struct grant *g)
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

/* The session's record, or stand_in made to name the session: audit rows about a
 * session authz does not know (it ended, or was never granted) still carry its id. */
static struct grant *grant_or_stand_in(const char *session, struct grant *stand_in)
{
    struct grant *g = grant_find(session);

    if (g != NULL)
        return g;
    memset(stand_in, 0, sizeof(*stand_in));
    str_lcpy(stand_in->session, session, sizeof(stand_in->session));
    return stand_in;
}

/* ---- identity: certificate, then database, then PAM ------------------------------ */

/*
 * A certificate of another CA that client_ca trusts is known by its subject (and
 * issuer), mapped with "submit-admin map add". Certificates of our own CA are
 * never mapped by name: ours are known by fingerprint only, so a certificate
 * that submit-ca did not record cannot borrow a user's name.
 */
static int identity_from_map(const struct cert_result *cr, struct db_cert *cert)
{
    int rc;

    if (cr->subject_canon[0] == '\0' ||
        (own_ca_canon[0] && strcmp(cr->issuer_canon, own_ca_canon) == 0))
        return DB_NOTFOUND;
    rc = db_map_lookup(db, cr->subject_canon, cr->issuer_canon, cert->user, sizeof(cert->user));
    if (rc == DB_OK)
        cert->status = CERT_VALID;
    return rc;
}

/* An identity question, kept while its PAM check runs in a child process. Only
 * the session id is kept, never a pointer to its record: the session may end
 * before PAM answers. */
struct identity {
    int chan;
    uint64_t req;
    const char *event;   /* "identity" (certificate) or "auth" (AUTH PLAIN) */
    char session[IPC_SESSION_MAX];
    char known_user[IPC_USER_MAX];   /* the certificate's user, even when refused */
    char password[IPC_PASSWORD_MAX]; /* AUTH PLAIN only; wiped when done */
    char reason[512];
    struct answer a;
    /* PAM in progress */
    int worker;          /* index in pam_pool, -1 while waiting for a free worker */
    uint64_t deadline;   /* now_ms() */
};

/* Maps a verified certificate to an enabled user (DESIGN §3.4). Returns 1 when
 * the user is known and enabled but PAM still has to be asked, else 0 with the
 * answer in id->a. */
static int identity_from_db(const struct cert_result *cr, struct identity *id)
{
    struct db_cert cert;
    struct answer *a = &id->a;
    int enabled = 0, rc, mapped = 0;

    memset(&cert, 0, sizeof(cert));
    rc = db_cert_by_sha256(db, cr->sha256, &cert);
    if (rc == DB_NOTFOUND) {
        rc = identity_from_map(cr, &cert);
        mapped = rc == DB_OK;
    }
    if (rc == DB_ERROR) {
        log_err("identity lookup failed: %s", db_errmsg(db));
        answer_set(a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_lcpy(id->reason, "database unavailable", sizeof(id->reason));
        return 0;
    }
    if (rc == DB_NOTFOUND) {
        answer_set(a, IPC_DENY, "535 5.7.8 Not authorized: unknown certificate");
        str_lcpy(id->reason, "unknown certificate (not in the certs table)", sizeof(id->reason));
        return 0;
    }
    str_lcpy(id->known_user, cert.user, sizeof(id->known_user));
    if (cert.status != CERT_VALID) {
        answer_set(a, IPC_DENY, "535 5.7.8 Client certificate rejected: revoked");
        str_fmt(id->reason, sizeof(id->reason), "certificate %s revoked (%s)", cert.serial,
                cert.revoke_reason);
        return 0;
    }
    rc = db_user_get(db, cert.user, &enabled);
    if (rc == DB_ERROR) {
        log_err("user lookup failed: %s", db_errmsg(db));
        answer_set(a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_lcpy(id->reason, "database unavailable", sizeof(id->reason));
        return 0;
    }
    if (rc == DB_NOTFOUND) {
        answer_set(a, IPC_DENY, "535 5.7.8 Not authorized: unknown user");
        str_fmt(id->reason, sizeof(id->reason), "user %s of the certificate does not exist",
                cert.user);
        return 0;
    }
    if (!enabled) {
        answer_set(a, IPC_DENY, "535 5.7.8 Not authorized: user disabled");
        str_fmt(id->reason, sizeof(id->reason), "user %s disabled", cert.user);
        return 0;
    }
    str_lcpy(a->user, cert.user, sizeof(a->user));
    str_lcpy(id->reason, mapped ? "certificate mapped by subject" : "certificate mapped",
             sizeof(id->reason));
    if (cfg.pam_account_check)
        return 1;
    answer_set(a, IPC_ALLOW, "");
    return 0;
}

#define MAX_PENDING 256
#define PAM_WORKERS 4
static struct identity *pending[MAX_PENDING];
static int npending;
static struct pam_worker pam_pool[PAM_WORKERS];

static void send_answer(int chan, uint64_t req, const struct answer *a, struct ipc_msg *m)
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

/* Records the outcome in the session's grant, writes the audit row, answers smtp. */
static void identity_done(struct identity *id, struct ipc_msg *m)
{
    struct answer *a = &id->a;
    struct grant none;
    struct grant *g = grant_or_stand_in(id->session, &none);
    struct db_audit row;
    int is_password = strcmp(id->event, "auth") == 0, admitted;

    explicit_bzero(id->password, sizeof(id->password));
    if (!is_password) {
        g->identity_pending = 0;
        str_lcpy(g->cert_user, a->user[0] ? a->user : id->known_user, sizeof(g->cert_user));
    }
    memset(&row, 0, sizeof(row));
    row_identity(&row, g);
    row.event = id->event;
    row.decision = decision_word(a->decision);
    row.reason = id->reason;
    row.user = a->user[0] ? a->user : row.user;
    row.size = -1;
    /* A decision that cannot be audited is not made: with the database locked or
     * failing, the client is told to come back later. Refusals from one address
     * beyond a bound are counted into one row instead. */
    admitted = a->decision == IPC_ALLOW || is_password ||
               refusal_admit(&row, time(NULL), write_audit);
    if (admitted && write_audit(&row) != 0 && a->decision == IPC_ALLOW) {
        answer_set(a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_lcpy(id->reason, "audit row could not be written", sizeof(id->reason));
        row.decision = "tempfail";
    }
    /* A session that ended meanwhile still gets its row, not a grant. */
    if (a->decision == IPC_ALLOW && g != &none) {
        str_lcpy(g->user, a->user, sizeof(g->user));
        if (is_password)
            g->password_ok = 1;
        else
            g->cert_ok = 1;
    }
    log_info("session=%s client=%s %s %s: %s%s%s", id->session, LOG_IP(g->client_ip), id->event,
             row.decision, id->reason, a->user[0] ? " user=" : "", a->user);
    send_answer(id->chan, id->req, a, m);
}

/* Turns the PAM verdict into the identity's answer. */
static void identity_pam_result(struct identity *id, int d, const char *why)
{
    if (d == IPC_ALLOW) {
        answer_set(&id->a, IPC_ALLOW, "");
        if (id->password[0])
            str_lcpy(id->reason, "password accepted by PAM", sizeof(id->reason));
    } else if (d == IPC_DENY) {
        answer_set(&id->a, IPC_DENY, id->password[0]
                                         ? "535 5.7.8 Authentication credentials invalid"
                                         : "535 5.7.8 Not authorized: account");
        str_fmt(id->reason, sizeof(id->reason), "PAM %s denied %s: %s",
                id->password[0] ? "authentication" : "account check", id->a.user, why);
    } else {
        log_err("session=%s PAM account check for %s failed: %s", id->session, id->a.user, why);
        answer_set(&id->a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_fmt(id->reason, sizeof(id->reason), "PAM error: %s", why);
    }
}

static void pam_dispatch(void);

static struct identity *identity_new(int chan, uint64_t req, const char *event,
                                     const char *session)
{
    struct identity *id = calloc(1, sizeof(*id));

    if (id == NULL)
        fatal("out of memory");
    id->chan = chan;
    id->req = req;
    id->worker = -1;
    id->event = event;
    str_lcpy(id->session, session, sizeof(id->session));
    return id;
}

/* Hands the identity to PAM (answered later by pam_collect), or answers now. */
static void identity_pam_or_done(struct identity *id, int needs_pam, struct ipc_msg *m)
{
    if (needs_pam) {
        /* PAM may hang (a network-backed module, a broken script): it runs in a
         * worker process with a deadline, and authz goes on serving meanwhile. */
        if (npending < MAX_PENDING) {
            id->deadline = now_ms() + (uint64_t)cfg.pam_timeout * 1000u;
            pending[npending++] = id;
            pam_dispatch();
            return;
        }
        identity_pam_result(id, IPC_TEMPFAIL, "too many PAM checks in progress");
    }
    identity_done(id, m);
    free(id);
}

/* A refused certificate that submit-ca issued (revoked, expired) still names its
 * user in the audit row, so that "audit --user" shows the user's refused sessions.
 * Only the row depends on it: a database error changes nothing. */
static void known_user_of(const struct cert_result *cr, struct identity *id)
{
    struct db_cert cert;

    memset(&cert, 0, sizeof(cert));
    if (cr->sha256[0] && db_cert_by_sha256(db, cr->sha256, &cert) == DB_OK)
        str_lcpy(id->known_user, cert.user, sizeof(id->known_user));
}

/* The answer to a certificate that could not be verified or identified nobody. */
static int identity_from_cert(const struct cert_result *cr, struct identity *id)
{
    char text[IPC_REPLY_MAX];

    switch (cr->verdict) {
    case CERT_NONE:
        answer_set(&id->a, IPC_DENY, "530 5.7.0 Client certificate required");
        str_lcpy(id->reason, cr->detail, sizeof(id->reason));
        return 0;
    case CERT_UNCHECKABLE:
        answer_set(&id->a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_lcpy(id->reason, cr->detail, sizeof(id->reason));
        return 0;
    case CERT_REJECTED:
        str_fmt(text, sizeof(text), "535 5.7.8 Client certificate rejected: %s", cr->reason);
        answer_set(&id->a, IPC_DENY, text);
        str_lcpy(id->reason, cr->detail, sizeof(id->reason));
        known_user_of(cr, id);
        return 0;
    default:
        return identity_from_db(cr, id);
    }
}

static void handle_identity(int chan, struct ipc_msg *m)
{
    struct ipc_identity v;
    struct cert_result cr;
    struct identity *id;
    struct grant *g;
    uint64_t req = m->id;

    if (ipc_dec_identity(m, &v) != 0)
        fatal("malformed identity request");
    id = identity_new(chan, req, "identity", v.session);
    g = grant_create(v.session);
    if (g == NULL) {
        /* One identity per session: a second one would let a session change user. */
        answer_set(&id->a, IPC_DENY, "535 5.7.8 Not authorized: session already identified");
        str_lcpy(id->reason, "a second identity request for the session", sizeof(id->reason));
        log_warn("session=%s second identity request from the smtp process refused",
                 v.session);
        identity_done(id, m);
        free(id);
        return;
    }
    cert_verify(v.cert, v.cert_len, v.ncert, &cr);
    str_lcpy(g->client_ip, v.client_ip, sizeof(g->client_ip));
    str_lcpy(g->tls, v.tls, sizeof(g->tls));
    str_lcpy(g->sha256, cr.sha256, sizeof(g->sha256));
    str_lcpy(g->subject, cr.subject, sizeof(g->subject));
    g->identity_pending = 1;
    identity_pam_or_done(id, identity_from_cert(&cr, id), m);
}

/* Hands waiting identities to idle PAM workers, starting workers as needed. */
static void pam_dispatch(void)
{
    for (int i = 0; i < npending; i++) {
        struct identity *id = pending[i];

        if (id->worker >= 0)
            continue;
        for (int k = 0; k < PAM_WORKERS; k++) {
            struct pam_worker *w = &pam_pool[k];

            if (w->pid > 0 && w->busy)
                continue;
            if (w->pid == 0 && pam_worker_spawn(&cfg, w) != 0) {
                log_err("cannot start a PAM worker: %s", strerror(errno));
                continue;
            }
            if (pam_worker_send(w, id->a.user, id->password[0] ? id->password : NULL) != 0) {
                pam_worker_kill(w);
                continue;
            }
            id->worker = k;
            break;
        }
    }
}

/* Why a password may not be tried for this session now, or NULL. The grant and
 * auth_password decide, not smtp: second-factor needs the certificate's user. */
static const char *password_refusal(const struct grant *g, const char *authcid, char *buf,
                                    size_t buflen)
{
    if (g == NULL || g->identity_pending)
        return "AUTH PLAIN for a session without an identity request";
    if (g->password_ok)
        return "a second AUTH PLAIN in the session";
    switch (cfg.auth_password) {
    case AUTH_PASSWORD_FALLBACK:
        if (g->sha256[0])
            return "AUTH PLAIN with a client certificate (auth_password = fallback)";
        return NULL;
    case AUTH_PASSWORD_SECOND_FACTOR:
        if (!g->cert_ok)
            return "AUTH PLAIN without an accepted certificate (auth_password = second-factor)";
        if (strcmp(g->user, authcid) != 0) {
            str_fmt(buf, buflen, "password user %s is not the certificate's user %s", authcid,
                    g->user);
            return buf;
        }
        return NULL;
    default:
        return "AUTH PLAIN while auth_password = no";
    }
}

/*
 * AUTH PLAIN (auth_password = fallback or second-factor): the user must exist and
 * be enabled here, and PAM must accept the password and the account.
 */
static void handle_password(int chan, struct ipc_msg *m)
{
    struct ipc_password v;
    struct identity *id;
    struct grant *g;
    char buf[300];
    const char *refusal;
    int enabled = 0, rc, needs_pam = 0;
    uint64_t req = m->id;

    rc = ipc_dec_password(m, &v);
    explicit_bzero(m->buf, m->len);
    if (rc != 0)
        fatal("malformed password request");
    id = identity_new(chan, req, "auth", v.session);
    str_lcpy(id->a.user, v.authcid, sizeof(id->a.user));
    str_lcpy(id->password, v.password, sizeof(id->password));
    explicit_bzero(&v, sizeof(v));
    g = grant_find(id->session);
    refusal = password_refusal(g, id->a.user, buf, sizeof(buf));
    rc = refusal != NULL || !db_user_name_valid(id->a.user) ? DB_NOTFOUND
         : db_user_get(db, id->a.user, &enabled);
    if (refusal != NULL) {
        answer_set(&id->a, IPC_DENY, "535 5.7.8 Authentication credentials invalid");
        str_lcpy(id->reason, refusal, sizeof(id->reason));
    } else if (rc == DB_ERROR) {
        log_err("user lookup failed: %s", db_errmsg(db));
        answer_set(&id->a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_lcpy(id->reason, "database unavailable", sizeof(id->reason));
    } else if (rc == DB_NOTFOUND || !enabled) {
        /* The client learns nothing about which users exist. */
        answer_set(&id->a, IPC_DENY, "535 5.7.8 Authentication credentials invalid");
        str_lcpy(id->reason, rc == DB_NOTFOUND ? "AUTH PLAIN for an unknown user"
                                               : "AUTH PLAIN for a disabled user",
                 sizeof(id->reason));
    } else {
        needs_pam = 1;
    }
    if (!needs_pam)
        id->a.user[0] = '\0';
    identity_pam_or_done(id, needs_pam, m);
}

/* Collects finished or overdue PAM checks; pfd holds the busy workers' sockets. */
static void pam_collect(struct pollfd *pfd, int npfd, struct ipc_msg *m)
{
    uint64_t now = now_ms();

    for (int i = 0; i < npending;) {
        struct identity *id = pending[i];
        int ready = 0;
        char why[300];

        for (int k = 0; id->worker >= 0 && k < npfd; k++)
            if (pfd[k].fd == pam_pool[id->worker].fd &&
                (pfd[k].revents & (POLLIN | POLLHUP | POLLERR)))
                ready = 1;
        if (ready) {
            identity_pam_result(id, pam_worker_recv(&pam_pool[id->worker], why, sizeof(why)),
                                why);
        } else if (now >= id->deadline) {
            if (id->worker >= 0)
                pam_worker_kill(&pam_pool[id->worker]);
            str_fmt(why, sizeof(why), "no answer within pam_timeout (%d s)", cfg.pam_timeout);
            identity_pam_result(id, IPC_TEMPFAIL, why);
        } else {
            i++;
            continue;
        }
        identity_done(id, m);
        free(id);
        pending[i] = pending[--npending];
    }
    pam_dispatch();
}

/* ---- addresses: envelope sender, header From ---------------------------------------- */

/*
 * rate_messages_per_hour, rate_recipients_per_hour: committed submissions are
 * counted by minute in the database (handle_charge), so the limits hold across
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

static void handle_sender(struct ipc_msg *m, struct answer *a)
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

/* check_header_from: every address of the message's From field must be owned. */
static void handle_header_from(struct ipc_msg *m, struct answer *a)
{
    struct ipc_header_from v;
    struct grant *g, stand_in;
    char reply[256];
    const char *bad_addr = NULL;
    int worst = DB_OK;

    if (ipc_dec_header_from(m, &v) != 0)
        fatal("malformed header-from request");
    if ((g = granted_or_refuse(v.session, "data", v.addr[0], &stand_in, a)) == NULL)
        return;
    for (int i = 0; i < v.naddr && worst != DB_ERROR; i++) {
        int rc = ipc_text_clean(v.addr[i]) ? db_sender_owned(db, g->user, v.addr[i])
                                           : DB_NOTFOUND;
        if (rc != DB_OK) {
            worst = rc;
            bad_addr = v.addr[i];
        }
    }
    if (worst == DB_OK) {
        answer_set(a, IPC_ALLOW, "");
    } else if (worst == DB_ERROR) {
        log_err("session=%s header From lookup failed: %s", v.session, db_errmsg(db));
        address_refused(g, "data", bad_addr, IPC_TEMPFAIL, NULL, "database unavailable", a);
    } else {
        str_fmt(reply, sizeof(reply), "550 5.7.1 Header From address not owned by user %s",
                g->user);
        address_refused(g, "data", bad_addr, IPC_DENY, reply,
                        "header From address not owned by user", a);
    }
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
static void handle_authzid(struct ipc_msg *m, struct answer *a)
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

/* ---- audit rows and session ends from smtp ---------------------------------------- */

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
static void handle_audit(int chan, struct ipc_msg *m)
{
    struct ipc_audit v;
    struct db_audit row;
    struct answer a;
    struct grant *g;
    uint64_t req = m->id;

    if (ipc_dec_audit(m, &v) != 0)
        fatal("malformed audit message");
    if (v.event[0] == '\0' || !ipc_text_clean(v.event) || !audit_decision_valid(v.decision))
        fatal("audit message with bad event/decision");
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
    /* A row asked for with a request id is answered once it is written: smtp sends
     * the 250 of a queued message only then. */
    if (write_audit(&row) == 0)
        answer_set(&a, IPC_ALLOW, "");
    else
        answer_set(&a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
    if (req != 0 && chan >= 0) {
        memset(a.user, 0, sizeof(a.user));
        send_answer(chan, req, &a, m);
    }
}

static void handle_session_end(struct ipc_msg *m)
{
    struct ipc_session_end v;

    if (ipc_dec_session_end(m, &v) != 0)
        fatal("malformed session end");
    grant_end(v.session);
}

/* ---- the queue's questions and reports ------------------------------------------- */

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
static void handle_grant_check(int chan, struct ipc_msg *m)
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
static void handle_relay_audit(struct ipc_msg *m)
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

/* A message committed durably: it counts against the user's hourly limits. */
static void handle_charge(struct ipc_msg *m)
{
    struct ipc_charge v;

    if (ipc_dec_charge(m, &v) != 0 || v.user[0] == '\0')
        fatal("malformed charge message");
    if (db_rate_record(db, v.user, (long long)time(NULL), (long long)v.nrcpt) != DB_OK)
        log_err("session=%s rate usage of %s not recorded (id %s): %s", v.session, v.user,
                v.queue_id, db_errmsg(db));
}

/* ---- the channels ------------------------------------------------------------------ */

/* Answers one message; returns -1 when the peer is gone during shutdown. Each
 * channel carries only its peer's message types. */
static int serve(int fd, int from_queue, struct ipc_msg *m)
{
    struct answer a;
    int r = ipc_recv(fd, m);

    if (r < 0 && errno == EAGAIN)
        return 0;
    if (r < 0)
        fatal("channel %d: %s", fd, strerror(errno));
    if (r == 0) {
        if (stopping)
            return -1;
        fatal("a peer process closed its channel");
    }
    if (m->fd >= 0)
        fatal("unexpected descriptor on authz channel");
    memset(&a, 0, sizeof(a));
    if (from_queue) {
        switch (m->type) {
        case IPC_AUTHZ_GRANT_CHECK:
            handle_grant_check(fd, m);
            return 0;
        case IPC_AUTHZ_RELAY_AUDIT:
            handle_relay_audit(m);
            return 0;
        case IPC_AUTHZ_CHARGE:
            handle_charge(m);
            return 0;
        default:
            fatal("unexpected message type %u from the queue", m->type);
        }
    }
    switch (m->type) {
    case IPC_AUTHZ_IDENTITY:
        handle_identity(fd, m);
        return 0;
    case IPC_AUTHZ_PASSWORD:
        handle_password(fd, m);
        return 0;
    case IPC_AUTHZ_SENDER:
        handle_sender(m, &a);
        break;
    case IPC_AUTHZ_HEADER_FROM:
        handle_header_from(m, &a);
        break;
    case IPC_AUTHZ_AUTHZID:
        handle_authzid(m, &a);
        break;
    case IPC_AUTHZ_AUDIT:
        handle_audit(fd, m);
        return 0;
    case IPC_AUTHZ_SESSION_END:
        handle_session_end(m);
        return 0;
    default:
        fatal("unexpected message type %u from the smtp process", m->type);
    }
    send_answer(fd, m->id, &a, m);
    return 0;
}

/* Our own CA's name, so that subject maps never apply to its certificates. */
static void load_own_ca(void)
{
    char path[PATH_MAX];
    FILE *f;
    X509 *ca = NULL;

    str_fmt(path, sizeof(path), "%s/ca.crt", cfg.ca_dir);
    f = fopen(path, "re");
    if (f != NULL) {
        ca = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (ca == NULL || dn_canon_name(X509_get_subject_name(ca), own_ca_canon,
                                    sizeof(own_ca_canon)) != 0) {
        own_ca_canon[0] = '\0';
        log_warn("cannot read our CA certificate %s: subject maps apply to every issuer", path);
    }
    X509_free(ca);
}

/*
 * audit_retention (DESIGN §6): audit rows older than that many days leave the table
 * at start and then once a day, through the same db_audit_prune as submit-admin
 * audit prune, so each prune is recorded in admin_log (program submitd-authz) with
 * its range and count. A prune that fails is tried again an hour later.
 */
#define RETENTION_INTERVAL 86400
#define RETENTION_RETRY 3600

static void retention_tick(time_t now)
{
    static time_t next;
    char before[32], oldest[DB_TIME_TEXT_LEN], newest[DB_TIME_TEXT_LEN];
    struct db_stamp first, last;
    struct db_admin_log who = { 0 };
    struct db_actor actor;
    long long count = 0, cutoff = (long long)now - cfg.audit_retention * 86400LL;

    if (cfg.audit_retention <= 0 || now < next)
        return;
    iso_time_utc(before, sizeof(before), cutoff);
    db_actor_get(&actor);
    db_actor_fill(&who, &actor, "submitd-authz");
    if (db_audit_prune(db, cutoff, &who, &count, &first, &last) != DB_OK) {
        log_err("audit_retention: the audit rows before %s could not be pruned: %s; "
                "tried again in an hour", before, db_errmsg(db));
        next = now + RETENTION_RETRY;
        return;
    }
    next = now + RETENTION_INTERVAL;
    if (count > 0)
        log_info("audit_retention %d days: %lld audit row%s before %s removed (%s to %s)",
                 cfg.audit_retention, count, count == 1 ? "" : "s", before,
                 db_stamp_text(&first, oldest, sizeof(oldest)),
                 db_stamp_text(&last, newest, sizeof(newest)));
    else
        log_info("audit_retention %d days: no audit rows before %s", cfg.audit_retention,
                 before);
}

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

/*
 * A reload (ctl.h): client_ca, the CRL and the limits. The database, PAM service
 * and table sizes stay until a restart (config_keep_restart_keys). Sessions in
 * progress keep their grants.
 */
static void reload(int ctl, struct ctl_files *f)
{
    static struct config next;
    char err[1024];

    if (ctl_reload_config(f, &cfg, &next, err, sizeof(err)) != 0 ||
        cert_reload(&next, err, sizeof(err)) != 0) {
        log_err("reload refused, the running settings stay: %s", err);
        ctl_reloaded(ctl, 0, err);
        return;
    }
    cfg = next;
    log_set_level(cfg.log_level);
    load_own_ca();
    log_info("reloaded: client_ca %s, crl %s, limits", cfg.client_ca,
             cfg.crl[0] ? cfg.crl : "(none)");
    ctl_reloaded(ctl, 1, "");
}

int main(int argc, char **argv)
{
    const char *conf = CONFIG_DEFAULT_PATH;
    struct pollfd pfd[MAX_CHANNELS + 1 + MAX_PENDING];
    int nfd = 0, foreground = 0, opt, queue_chan = -1, ctl = -1;
    struct ctl_files files;
    char err[1024];
    struct ipc_msg *m;

    while ((opt = getopt(argc, argv, "c:fs:q:m:")) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'm':
            ctl = proc_fd_arg(optarg);
            break;
        case 's':
        case 'q':
            if (nfd == MAX_CHANNELS || (opt == 'q' && queue_chan >= 0))
                fatal("too many channels");
            if (opt == 'q')
                queue_chan = nfd;
            pfd[nfd].fd = proc_fd_arg(optarg);
            pfd[nfd].events = POLLIN;
            nfd++;
            break;
        default:
            return 2;
        }
    }
    proc_start("submitd/authz", foreground, conf, &cfg);
    if (nfd == 0 || queue_chan < 0 || ctl < 0)
        fatal("started without its descriptors (this program is run by submitd)");
    ctl_files_init(&files);
    if (cert_init(&cfg, err, sizeof(err)) != 0)
        fatal("%s", err);
    /* Every session the smtp process may hold at once, and some in passing. */
    if (grant_init((size_t)cfg.max_sessions + 256) != 0)
        fatal("out of memory");
    db = db_open(cfg.database, err, sizeof(err));
    if (db == NULL)
        fatal("database: %s", err);
    /* authz serves every session in turn: a writer holding the lock (an admin's
     * long transaction) must cost a second, not a stall of the whole daemon. */
    if (db_set_lock_timeout(db, AUTHZ_BUSY_TIMEOUT_MS) != DB_OK)
        fatal("database: %s", db_errmsg(db));
    /* Channels are read until EAGAIN: they must not block. */
    for (int i = 0; i < nfd; i++)
        if (fcntl(pfd[i].fd, F_SETFL, fcntl(pfd[i].fd, F_GETFL) | O_NONBLOCK) != 0)
            fatal("channel %d: %s", pfd[i].fd, strerror(errno));
    if (fcntl(ctl, F_SETFL, fcntl(ctl, F_GETFL) | O_NONBLOCK) != 0)
        fatal("control channel: %s", strerror(errno));
    m = malloc(sizeof(*m));
    if (m == NULL)
        fatal("out of memory");
    load_own_ca();

    proc_signals(on_term);

    log_info("authz process ready: database %s, %d channels", cfg.database, nfd);
    ctl_ready(ctl);
    retention_tick(time(NULL));
    while (!stopping) {
        int n, npfd = nfd + 1;

        /* The control channel, after the channels and before the PAM workers. */
        pfd[nfd].fd = ctl;
        pfd[nfd].events = POLLIN;
        pfd[nfd].revents = 0;
        for (int k = 0; k < PAM_WORKERS; k++) {
            if (pam_pool[k].pid <= 0 || !pam_pool[k].busy)
                continue;
            pfd[npfd].fd = pam_pool[k].fd;
            pfd[npfd].events = POLLIN;
            pfd[npfd].revents = 0;
            npfd++;
        }
        n = poll(pfd, (nfds_t)npfd, npending ? 200 : 1000);
        if (n < 0 && errno != EINTR)
            fatal("poll: %s", strerror(errno));
        if (npending)
            pam_collect(pfd + nfd + 1, npfd - nfd - 1, m);
        if (pfd[nfd].revents & (POLLIN | POLLHUP | POLLERR)) {
            int r = ctl_read(ctl, m, &files);

            if (r < 0)
                fatal("the master closed the control channel");
            if (r == 1) {
                reload(ctl, &files);
                ctl_files_close(&files);
            }
        }
        for (int i = 0; i < nfd && n > 0; i++) {
            if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) &&
                serve(pfd[i].fd, i == queue_chan, m) < 0)
                pfd[i].fd = -pfd[i].fd - 1; /* poll ignores negative descriptors */
        }
        cert_tick(time(NULL));
        refusal_flush(time(NULL), 0, write_audit);
        retention_tick(time(NULL));
    }
    /* Write what is still queued on the channels (audit rows) before leaving. */
    for (int i = 0; i < nfd; i++) {
        struct pollfd one = { pfd[i].fd, POLLIN, 0 };
        if (one.fd < 0)
            continue;
        while (poll(&one, 1, 0) == 1 && (one.revents & POLLIN)) {
            int r = ipc_recv(pfd[i].fd, m);
            if (r <= 0)
                break;
            if (m->type == IPC_AUTHZ_AUDIT && i != queue_chan)
                handle_audit(-1, m);   /* rows only: nobody waits for an answer now */
            else if (m->type == IPC_AUTHZ_RELAY_AUDIT && i == queue_chan)
                handle_relay_audit(m);
            else if (m->type == IPC_AUTHZ_CHARGE && i == queue_chan)
                handle_charge(m);
        }
    }
    refusal_flush(time(NULL), 1, write_audit);
    for (int k = 0; k < PAM_WORKERS; k++)
        pam_worker_kill(&pam_pool[k]);
    while (npending > 0)
        free(pending[--npending]);
    db_close(db);
    grant_free_all();
    cert_free();
    free(m);
    log_info("authz process stopped");
    return 0;
}
