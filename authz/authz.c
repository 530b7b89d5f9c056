/*
 * submitd-authz: the only process of the daemon that opens the database and calls
 * PAM (DESIGN §2). It answers identity and sender questions from the smtp workers
 * and writes every audit row, from smtp and from queue.
 *
 *   submitd-authz -c CONF [-f] -s FD... -q FD
 *
 * Answers are tri-state. Any database or PAM error is TEMPFAIL, never ALLOW.
 */
#include "authz_pam.h"
#include "config.h"
#include "dn.h"
#include "db.h"
#include "ipc.h"
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
    char user[128];
    char reply[256];
    uint64_t rcpt_budget;   /* recipients the user may still send to; UINT64_MAX: no limit */
};

static void answer_set(struct answer *a, int decision, const char *reply)
{
    a->decision = decision;
    a->rcpt_budget = UINT64_MAX;
    str_lcpy(a->reply, reply, sizeof(a->reply));
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

/*
 * A certificate of another CA that client_ca trusts is known by its subject (and
 * issuer), mapped with "submit-admin map add". Certificates of our own CA are
 * never mapped by name: ours are known by fingerprint only, so a certificate
 * that submit-ca did not record cannot borrow a user's name.
 */
static int identity_from_map(const char *subject, const char *issuer, struct db_cert *cert)
{
    int rc;

    if (subject[0] == '\0' || (own_ca_canon[0] && strcmp(issuer, own_ca_canon) == 0))
        return DB_NOTFOUND;
    rc = db_map_lookup(db, subject, issuer, cert->user, sizeof(cert->user));
    if (rc == DB_OK)
        str_lcpy(cert->status, "valid", sizeof(cert->status));
    return rc;
}

/* Maps a verified certificate to an enabled user (DESIGN §3.4). Returns 1 when
 * the user is known and enabled but PAM still has to be asked, else 0 with the
 * answer in a. */
static int identity_from_db(const char *sha256, const char *subject, const char *issuer,
                             struct answer *a, char *reason, size_t rlen)
{
    struct db_cert cert;
    int enabled = 0, rc, mapped = 0;

    memset(&cert, 0, sizeof(cert));
    rc = db_cert_by_sha256(db, sha256, &cert);
    if (rc == DB_NOTFOUND) {
        rc = identity_from_map(subject, issuer, &cert);
        mapped = rc == DB_OK;
    }
    if (rc == DB_ERROR) {
        log_err("identity lookup failed: %s", db_errmsg(db));
        answer_set(a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_lcpy(reason, "database unavailable", rlen);
        return 0;
    }
    if (rc == DB_NOTFOUND) {
        answer_set(a, IPC_DENY, "535 5.7.8 Not authorized: unknown certificate");
        str_lcpy(reason, "unknown certificate (not in the certs table)", rlen);
        return 0;
    }
    if (strcmp(cert.status, "valid") != 0) {
        answer_set(a, IPC_DENY, "535 5.7.8 Client certificate rejected: revoked");
        str_fmt(reason, rlen, "certificate %s revoked (%s)", cert.serial, cert.revoke_reason);
        return 0;
    }
    rc = db_user_get(db, cert.user, &enabled);
    if (rc == DB_ERROR) {
        log_err("user lookup failed: %s", db_errmsg(db));
        answer_set(a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_lcpy(reason, "database unavailable", rlen);
        return 0;
    }
    if (rc == DB_NOTFOUND) {
        answer_set(a, IPC_DENY, "535 5.7.8 Not authorized: unknown user");
        str_fmt(reason, rlen, "user %s of the certificate does not exist", cert.user);
        return 0;
    }
    if (!enabled) {
        answer_set(a, IPC_DENY, "535 5.7.8 Not authorized: user disabled");
        str_fmt(reason, rlen, "user %s disabled", cert.user);
        return 0;
    }
    str_lcpy(a->user, cert.user, sizeof(a->user));
    str_lcpy(reason, mapped ? "certificate mapped by subject" : "certificate mapped", rlen);
    if (cfg.pam_account_check)
        return 1;
    answer_set(a, IPC_ALLOW, "");
    return 0;
}

/* An identity question, kept while its PAM check runs in a child process. */
struct identity {
    int chan;
    uint64_t req;
    const char *event;   /* "identity" (certificate) or "auth" (AUTH PLAIN) */
    char session[64], ip[64], sha256[65], subject[512], tls[128];
    char password[512];  /* AUTH PLAIN only; wiped when done */
    char reason[512];
    struct answer a;
    /* PAM in progress */
    int worker;          /* index in pam_pool, -1 while waiting for a free worker */
    uint64_t deadline;   /* now_ms() */
};

#define MAX_PENDING 256
#define PAM_WORKERS 4
static struct identity *pending[MAX_PENDING];
static int npending;
static struct pam_worker pam_pool[PAM_WORKERS];

static void send_answer(int chan, uint64_t req, const struct answer *a, struct ipc_msg *m)
{
    ipc_init(m, IPC_AUTHZ_RESULT, req);
    if (ipc_put_u64(m, (uint64_t)a->decision) || ipc_put_str(m, a->user) ||
        ipc_put_str(m, a->reply) || ipc_put_u64(m, a->rcpt_budget) || ipc_send(chan, m) != 0)
        fatal("cannot answer on channel %d: %s", chan, strerror(errno));
}

/* Writes the identity's audit row and answers smtp. */
static void identity_done(struct identity *id, struct ipc_msg *m)
{
    struct answer *a = &id->a;
    struct db_audit row;

    explicit_bzero(id->password, sizeof(id->password));
    memset(&row, 0, sizeof(row));
    row.session = id->session;
    row.event = id->event;
    row.decision = a->decision == IPC_ALLOW ? "accept"
                   : a->decision == IPC_DENY ? "reject" : "tempfail";
    row.reason = id->reason;
    row.client_ip = id->ip;
    row.user = a->user[0] ? a->user : NULL;
    row.cert_sha256 = id->sha256[0] ? id->sha256 : NULL;
    row.cert_subject = id->subject[0] ? id->subject : NULL;
    row.size = -1;
    row.tls = id->tls;
    /* A decision that cannot be audited is not made: with the database locked or
     * failing, the client is told to come back later. */
    if (write_audit(&row) != 0 && a->decision == IPC_ALLOW) {
        answer_set(a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_lcpy(id->reason, "audit row could not be written", sizeof(id->reason));
        row.decision = "tempfail";
    }
    log_info("session=%s %s %s: %s%s%s", id->session, id->event, row.decision, id->reason,
             a->user[0] ? " user=" : "", a->user);
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

static struct identity *identity_new(int chan, uint64_t req, const char *event)
{
    struct identity *id = calloc(1, sizeof(*id));

    if (id == NULL)
        fatal("out of memory");
    id->chan = chan;
    id->req = req;
    id->worker = -1;
    id->event = event;
    return id;
}

static void handle_identity(int chan, struct ipc_msg *m)
{
    char verify[96], issuer[512], subject_canon[1024], issuer_canon[1024];
    struct identity *id = identity_new(chan, m->id, "identity");

    if (ipc_get_str(m, id->session, sizeof(id->session)) || ipc_get_str(m, id->ip, sizeof(id->ip)) ||
        ipc_get_str(m, verify, sizeof(verify)) || ipc_get_str(m, id->sha256, sizeof(id->sha256)) ||
        ipc_get_str(m, id->subject, sizeof(id->subject)) || ipc_get_str(m, issuer, sizeof(issuer)) ||
        ipc_get_str(m, id->tls, sizeof(id->tls)) ||
        ipc_get_str(m, subject_canon, sizeof(subject_canon)) ||
        ipc_get_str(m, issuer_canon, sizeof(issuer_canon)) || ipc_end(m))
        fatal("malformed identity request");

    if (strcmp(verify, "none") == 0) {
        answer_set(&id->a, IPC_DENY, "530 5.7.0 Client certificate required");
        str_lcpy(id->reason, "no client certificate", sizeof(id->reason));
    } else if (strncmp(verify, "crl", 3) == 0) {
        /* Our CRL is missing or stale: every client would be refused. Fail
         * temporarily and say loudly what to do. */
        log_err("session=%s CRL PROBLEM (%s): all certificates are refused until the CRL "
                "is renewed with 'submit-ca crl' (file %s)", id->session, verify, cfg.crl);
        answer_set(&id->a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_fmt(id->reason, sizeof(id->reason), "certificate check impossible: %s", verify);
    } else if (strcmp(verify, "ok") != 0) {
        char text[256];
        str_fmt(text, sizeof(text), "535 5.7.8 Client certificate rejected: %s", verify);
        answer_set(&id->a, IPC_DENY, text);
        str_fmt(id->reason, sizeof(id->reason), "certificate %s", verify);
    } else if (identity_from_db(id->sha256, subject_canon, issuer_canon, &id->a, id->reason,
                                sizeof(id->reason)) == 1) {
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

/*
 * AUTH PLAIN (auth_password = fallback or second-factor): the user must exist and
 * be enabled here, and PAM must accept the password and the account. With
 * second-factor the password must be that of the certificate's user.
 */
static void handle_password(int chan, struct ipc_msg *m)
{
    char required[128];
    int enabled = 0, rc;
    struct identity *id = identity_new(chan, m->id, "auth");

    if (ipc_get_str(m, id->session, sizeof(id->session)) || ipc_get_str(m, id->ip, sizeof(id->ip)) ||
        ipc_get_str(m, id->a.user, sizeof(id->a.user)) ||
        ipc_get_str(m, id->password, sizeof(id->password)) ||
        ipc_get_str(m, required, sizeof(required)) ||
        ipc_get_str(m, id->sha256, sizeof(id->sha256)) || ipc_get_str(m, id->tls, sizeof(id->tls)) ||
        ipc_end(m) || id->password[0] == '\0')
        fatal("malformed password request");
    explicit_bzero(m->buf, m->len);

    rc = db_user_name_valid(id->a.user) ? db_user_get(db, id->a.user, &enabled) : DB_NOTFOUND;
    if (rc == DB_ERROR) {
        log_err("user lookup failed: %s", db_errmsg(db));
        answer_set(&id->a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
        str_lcpy(id->reason, "database unavailable", sizeof(id->reason));
    } else if (rc == DB_NOTFOUND || !enabled) {
        /* The client learns nothing about which users exist. */
        answer_set(&id->a, IPC_DENY, "535 5.7.8 Authentication credentials invalid");
        str_lcpy(id->reason, rc == DB_NOTFOUND ? "AUTH PLAIN for an unknown user"
                                               : "AUTH PLAIN for a disabled user",
                 sizeof(id->reason));
    } else if (required[0] && strcmp(required, id->a.user) != 0) {
        answer_set(&id->a, IPC_DENY, "535 5.7.8 Authentication credentials invalid");
        str_fmt(id->reason, sizeof(id->reason),
                "password user %s is not the certificate's user %s", id->a.user, required);
    } else if (npending < MAX_PENDING) {
        id->deadline = now_ms() + (uint64_t)cfg.pam_timeout * 1000u;
        pending[npending++] = id;
        pam_dispatch();
        return;
    } else {
        identity_pam_result(id, IPC_TEMPFAIL, "too many PAM checks in progress");
    }
    identity_done(id, m);
    free(id);
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

/*
 * rate_messages_per_hour, rate_recipients_per_hour: accepted submissions are
 * counted by minute in the database (see handle_audit), so the limits hold across
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
        /* smtp enforces the rest at RCPT, without a question per recipient. */
        *rcpt_budget = (uint64_t)(cfg.rate_recipients_per_hour - recipients);
    }
    return IPC_ALLOW;
}

/* The context of an address question (envelope sender or header From). */
struct address_check {
    char session[64], ip[64], user[128], sha256[65];
    const char *event;     /* "mail" or "data" */
};

/* Answers and audits an address that was not allowed: decision is IPC_DENY or
 * IPC_TEMPFAIL; reply is the SMTP reply for a denial. */
static void address_refused(const struct address_check *c, const char *addr, int decision,
                            const char *reply, const char *reason, struct answer *a)
{
    struct db_audit row;

    answer_set(a, decision, decision == IPC_DENY ? reply : TEMPFAIL_REPLY);
    memset(&row, 0, sizeof(row));
    row.session = c->session;
    row.event = c->event;
    row.client_ip = c->ip;
    row.user = c->user;
    row.cert_sha256 = c->sha256[0] ? c->sha256 : NULL;
    row.mail_from = addr;
    row.size = -1;
    row.decision = decision == IPC_DENY && reply[0] == '5' ? "reject" : "tempfail";
    row.reason = reason;
    write_audit(&row);
    log_info("session=%s user=%s %s <%s>: %s", c->session, c->user, c->event, addr, reason);
}

static void read_address_check(struct ipc_msg *m, struct address_check *c, const char *event)
{
    c->event = event;
    if (ipc_get_str(m, c->session, sizeof(c->session)) || ipc_get_str(m, c->ip, sizeof(c->ip)) ||
        ipc_get_str(m, c->user, sizeof(c->user)) || ipc_get_str(m, c->sha256, sizeof(c->sha256)))
        fatal("malformed %s request", event);
}

static void handle_sender(struct ipc_msg *m, struct answer *a)
{
    struct address_check c;
    char addr[320], reply[256], limit_reason[160];
    uint64_t budget;
    int rc, r;

    read_address_check(m, &c, "mail");
    if (ipc_get_str(m, addr, sizeof(addr)) || ipc_end(m))
        fatal("malformed sender request");
    rc = c.user[0] ? db_sender_owned(db, c.user, addr) : DB_NOTFOUND;
    if (rc == DB_ERROR) {
        log_err("session=%s sender lookup failed: %s", c.session, db_errmsg(db));
        address_refused(&c, addr, IPC_TEMPFAIL, NULL, "database unavailable", a);
        return;
    }
    if (rc != DB_OK) {
        str_fmt(reply, sizeof(reply), "553 5.7.1 Sender address not owned by user %s", c.user);
        address_refused(&c, addr, IPC_DENY, reply, "sender address not owned by user", a);
        return;
    }
    r = rate_check(c.user, &budget, limit_reason, sizeof(limit_reason));
    if (r == IPC_DENY) {
        address_refused(&c, addr, IPC_DENY, "450 4.7.1 Rate limit exceeded", limit_reason, a);
    } else if (r == IPC_TEMPFAIL) {
        address_refused(&c, addr, IPC_TEMPFAIL, NULL, "database unavailable", a);
    } else {
        answer_set(a, IPC_ALLOW, "");
        a->rcpt_budget = budget; /* the accept is audited with the submission */
    }
}

/* check_header_from: every address of the message's From field must be owned. */
static void handle_header_from(struct ipc_msg *m, struct answer *a)
{
    struct address_check c;
    char addr[320], bad_addr[320] = "", reply[256];
    uint64_t n;
    int worst = DB_OK;

    read_address_check(m, &c, "data");
    if (ipc_get_u64(m, &n) || n == 0 || n > 64)
        fatal("malformed header-from request");
    for (uint64_t i = 0; i < n; i++) {
        int rc;
        if (ipc_get_str(m, addr, sizeof(addr)))
            fatal("malformed header-from request");
        rc = c.user[0] ? db_sender_owned(db, c.user, addr) : DB_NOTFOUND;
        if (rc != DB_OK && worst != DB_ERROR) {
            worst = rc;
            str_lcpy(bad_addr, addr, sizeof(bad_addr));
        }
    }
    if (ipc_end(m))
        fatal("malformed header-from request");
    if (worst == DB_OK) {
        answer_set(a, IPC_ALLOW, "");
    } else if (worst == DB_ERROR) {
        log_err("session=%s header From lookup failed: %s", c.session, db_errmsg(db));
        address_refused(&c, bad_addr, IPC_TEMPFAIL, NULL, "database unavailable", a);
    } else {
        str_fmt(reply, sizeof(reply), "550 5.7.1 Header From address not owned by user %s",
                c.user);
        address_refused(&c, bad_addr, IPC_DENY, reply, "header From address not owned by user", a);
    }
}

/* Audit rows sent by smtp and queue: stored as they come, validated first. */
static void handle_audit(struct ipc_msg *m)
{
    char f[12][2048];
    char tls[128];
    uint64_t size, nrcpt = 0;
    struct db_audit row;
    static const char *const decisions[] = { "", "accept", "reject", "tempfail" };
    int ok = 0;

    for (int i = 0; i < 11; i++)
        if (ipc_get_str(m, f[i], sizeof(f[i])) != 0)
            fatal("malformed audit message (field %d)", i);
    if (ipc_get_u64(m, &size) || ipc_get_str(m, tls, sizeof(tls)))
        fatal("malformed audit message");
    if (ipc_end(m) != 0 && (ipc_get_u64(m, &nrcpt) || nrcpt > 1000000 || ipc_end(m)))
        fatal("malformed audit message (recipient count)");
    for (size_t i = 0; i < sizeof(decisions) / sizeof(decisions[0]); i++)
        if (strcmp(f[2], decisions[i]) == 0)
            ok = 1;
    if (!ok || f[1][0] == '\0')
        fatal("audit message with bad event/decision");
#define OPT(s) ((s)[0] ? (s) : NULL)
    memset(&row, 0, sizeof(row));
    row.session = OPT(f[0]);
    row.event = f[1];
    row.decision = OPT(f[2]);
    row.reason = OPT(f[3]);
    row.client_ip = OPT(f[4]);
    row.user = OPT(f[5]);
    row.cert_sha256 = OPT(f[6]);
    row.cert_subject = OPT(f[7]);
    row.mail_from = OPT(f[8]);
    row.rcpt = OPT(f[9]);
    row.queue_id = OPT(f[10]);
    row.size = size == UINT64_MAX ? -1 : (long long)size;
    row.tls = OPT(tls);
    row.nrcpt = (long long)nrcpt;
#undef OPT
    write_audit(&row);
    if (strcmp(row.event, "submission") == 0 && row.decision != NULL &&
        strcmp(row.decision, "accept") == 0 && row.user != NULL &&
        db_rate_record(db, row.user, (long long)time(NULL), row.nrcpt) != DB_OK)
        log_err("session=%s rate usage of %s not recorded: %s", f[0], row.user, db_errmsg(db));
}

/* Answers one message; returns -1 when the peer is gone during shutdown. */
static int serve(int fd, struct ipc_msg *m)
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
    case IPC_AUTHZ_AUDIT:
        handle_audit(m);
        return 0;
    default:
        fatal("unexpected message type %u on authz channel", m->type);
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

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    const char *conf = CONFIG_DEFAULT_PATH;
    struct pollfd pfd[MAX_CHANNELS + MAX_PENDING];
    int nfd = 0, foreground = 0, opt;
    char err[1024];
    struct ipc_msg *m;

    while ((opt = getopt(argc, argv, "c:fs:q:")) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 's':
        case 'q':
            if (nfd == MAX_CHANNELS)
                fatal("too many channels");
            pfd[nfd].fd = proc_fd_arg(optarg);
            pfd[nfd].events = POLLIN;
            nfd++;
            break;
        default:
            return 2;
        }
    }
    proc_start("submitd/authz", foreground, conf, &cfg);
    if (nfd == 0)
        fatal("started without its descriptors (this program is run by submitd)");
    db = db_open(cfg.database, err, sizeof(err));
    if (db == NULL)
        fatal("database: %s", err);
    /* authz serves every session in turn: a writer holding the lock (an admin's
     * long transaction) must cost a second, not a stall of the whole daemon. */
    if (db_set_busy_timeout(db, AUTHZ_BUSY_TIMEOUT_MS) != DB_OK)
        fatal("database: %s", db_errmsg(db));
    /* Channels are read until EAGAIN: they must not block. */
    for (int i = 0; i < nfd; i++)
        if (fcntl(pfd[i].fd, F_SETFL, fcntl(pfd[i].fd, F_GETFL) | O_NONBLOCK) != 0)
            fatal("channel %d: %s", pfd[i].fd, strerror(errno));
    m = malloc(sizeof(*m));
    if (m == NULL)
        fatal("out of memory");
    load_own_ca();

    proc_signals(on_term);

    log_info("authz process ready: database %s, %d channels", cfg.database, nfd);
    while (!stopping) {
        int n, npfd = nfd;

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
            pam_collect(pfd + nfd, npfd - nfd, m);
        for (int i = 0; i < nfd && n > 0; i++) {
            if ((pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) && serve(pfd[i].fd, m) < 0)
                pfd[i].fd = -pfd[i].fd - 1; /* poll ignores negative descriptors */
        }
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
            if (m->type == IPC_AUTHZ_AUDIT)
                handle_audit(m);
        }
    }
    for (int k = 0; k < PAM_WORKERS; k++)
        pam_worker_kill(&pam_pool[k]);
    while (npending > 0)
        free(pending[--npending]);
    db_close(db);
    free(m);
    log_info("authz process stopped");
    return 0;
}
