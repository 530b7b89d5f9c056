/* Identity: certificate, database, PAM; and AUTH PLAIN (see authz_identity.h). */
#include "authz_identity.h"

#include "authz.h"
#include "authz_answer.h"
#include "authz_cert.h"
#include "authz_grant.h"
#include "authz_pam.h"
#include "authz_refusals.h"
#include "authz_rule.h"

#include "dn.h"
#include "ipc_codec.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char own_ca_canon[1024];   /* subject of ca_dir/ca.crt, canonical */
static char own_ca_sha256[65];    /* its SHA-256 */

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
    char reason[768];
    struct answer a;
    struct db_device device;   /* the certificate, recorded when accepted */
    /* The session's record when the request came (gen 0: there was none). While PAM
     * decides, smtp may end the session and start another under the same name; the
     * verdict is this request's only, and its row describes the session asked about. */
    uint64_t grant_gen;
    struct grant origin;
    int holds_pending;   /* this AUTH PLAIN set its record's password_pending */
    /* PAM in progress */
    int worker;          /* index in pam_pool, -1 while waiting for a free worker */
    uint64_t deadline;   /* now_ms() */
};

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

/* The device to record when the session is accepted (issuer, serial, expiry). */
static void identity_device(const struct cert_result *cr, struct identity *id)
{
    struct db_device *d = &id->device;

    memset(d, 0, sizeof(*d));
    str_lcpy(d->sha256, cr->sha256, sizeof(d->sha256));
    str_lcpy(d->user, id->a.user, sizeof(d->user));
    str_lcpy(d->issuer, cr->issuer, sizeof(d->issuer));
    str_lcpy(d->serial, cr->serial, sizeof(d->serial));
    d->not_after = cr->not_after;
}

/* A database error while identifying: the client comes back later. */
static int identity_db_error(struct identity *id, const char *what)
{
    log_err("%s failed: %s", what, db_errmsg(db));
    answer_set(&id->a, IPC_TEMPFAIL, TEMPFAIL_REPLY);
    str_lcpy(id->reason, "database unavailable", sizeof(id->reason));
    return 0;
}

/* Whether the certificate was issued by our own CA, by the issuing CA's fingerprint
 * (and, for a CA that client_ca does not hold itself, by name): rules never apply. */
static int issued_by_own_ca(const struct cert_result *cr)
{
    return (own_ca_sha256[0] && strcmp(cr->ca_sha256, own_ca_sha256) == 0) ||
           (own_ca_canon[0] && (strcmp(cr->issuer_canon, own_ca_canon) == 0 ||
                                strcmp(cr->ca_canon, own_ca_canon) == 0));
}

/*
 * A certificate that an admin blocked (submit-admin cert block) is refused before
 * anything else about it is looked up. 1 when refused (answer set), else 0.
 */
static int identity_blocked(const struct cert_result *cr, struct identity *id, int *error)
{
    struct db_cert_block b;
    char at[DB_TIME_TEXT_LEN];
    int rc = db_cert_block_find(db, cr->sha256, cr->issuer_canon, cr->serial, &b);

    *error = rc == DB_ERROR;
    if (rc != DB_OK)
        return 0;
    answer_set(&id->a, IPC_DENY, "535 5.7.8 Client certificate rejected: blocked");
    str_fmt(id->reason, sizeof(id->reason), "certificate blocked by %s at %s%s%s", b.blocked_by,
            db_time_text(b.blocked_at, at, sizeof(at)), b.reason[0] ? ": " : "", b.reason);
    return 1;
}

/* Maps a verified certificate to an enabled user (DESIGN §3.4). Returns 1 when
 * the user is known and enabled but PAM still has to be asked, else 0 with the
 * answer in id->a. */
static int identity_from_db(const struct cert_result *cr, struct identity *id)
{
    struct db_cert cert;
    struct answer *a = &id->a;
    struct rule_answer ra;
    int enabled = 0, rc, mapped = 0, error = 0;

    memset(&cert, 0, sizeof(cert));
    memset(&ra, 0, sizeof(ra));
    if (identity_blocked(cr, id, &error)) {
        known_user_of(cr, id);
        return 0;
    }
    if (error)
        return identity_db_error(id, "block lookup");
    rc = db_cert_by_sha256(db, cr->sha256, &cert);
    if (rc == DB_NOTFOUND) {
        rc = identity_from_map(cr, &cert);
        mapped = rc == DB_OK;
    }
    if (rc == DB_NOTFOUND && !issued_by_own_ca(cr)) {
        switch (rule_identity(cr, &ra)) {
        case RULE_USER:
            str_lcpy(cert.user, ra.user, sizeof(cert.user));
            cert.status = CERT_VALID;
            rc = DB_OK;
            break;
        case RULE_REFUSED:
            answer_set(a, IPC_DENY, ra.reply);
            str_lcpy(id->reason, ra.reason, sizeof(id->reason));
            return 0;
        case RULE_ERROR:
            rc = DB_ERROR;
            break;
        default:
            break;
        }
    }
    if (rc == DB_ERROR)
        return identity_db_error(id, "identity lookup");
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
    if (rc == DB_ERROR)
        return identity_db_error(id, "user lookup");
    if (rc == DB_NOTFOUND) {
        /* A rule named a user who does not exist: the audit row names no user. */
        if (ra.via[0])
            id->known_user[0] = '\0';
        answer_set(a, IPC_DENY, "535 5.7.8 Not authorized: unknown user");
        str_fmt(id->reason, sizeof(id->reason), "user %s of the certificate does not exist%s%s%s",
                cert.user, ra.via[0] ? " (" : "", ra.via, ra.via[0] ? ")" : "");
        return 0;
    }
    if (!enabled) {
        answer_set(a, IPC_DENY, "535 5.7.8 Not authorized: user disabled");
        str_fmt(id->reason, sizeof(id->reason), "user %s disabled%s%s%s", cert.user,
                ra.via[0] ? " (" : "", ra.via, ra.via[0] ? ")" : "");
        return 0;
    }
    str_lcpy(a->user, cert.user, sizeof(a->user));
    if (ra.via[0])
        str_lcpy(id->reason, ra.reason, sizeof(id->reason));
    else
        str_lcpy(id->reason, mapped ? "certificate mapped by subject" : "certificate mapped",
                 sizeof(id->reason));
    identity_device(cr, id);
    if (cfg.pam_account_check)
        return 1;
    answer_set(a, IPC_ALLOW, "");
    return 0;
}

static struct identity *pending[MAX_PENDING];
static int npending;
static struct pam_worker pam_pool[PAM_WORKERS];

/* Records the outcome in the session's grant, writes the audit row, answers smtp. */
static void identity_done(struct identity *id, struct ipc_msg *m)
{
    struct answer *a = &id->a;
    struct grant none;
    struct grant *g = grant_find(id->session);
    struct db_audit row;
    int is_password = strcmp(id->event, "auth") == 0, admitted;

    if (g == NULL || g->gen != id->grant_gen) {
        none = id->origin;
        none.hnext = none.older = none.newer = NULL;
        g = &none;
    }

    explicit_bzero(id->password, sizeof(id->password));
    if (is_password) {
        if (id->holds_pending)
            g->password_pending = 0;
    } else {
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
    /* Which certificates a user uses, for "submit-admin user show": only a record,
     * so a failure to write it changes no answer. */
    if (a->decision == IPC_ALLOW && !is_password && id->device.sha256[0] &&
        db_device_seen(db, &id->device, (int64_t)time(NULL)) == DB_ERROR)
        log_warn("session=%s device of %s not recorded: %s", id->session, a->user,
                 db_errmsg(db));
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
    str_lcpy(id->origin.session, session, sizeof(id->origin.session));
    return id;
}

/* Hands the identity to PAM (answered later by pam_collect), or answers now. */
static void identity_pam_or_done(struct identity *id, int needs_pam, struct ipc_msg *m)
{
    char why[300];
    int d;

    /* An account check PAM answered lately (pam_cache): its verdict again. */
    if (needs_pam && id->password[0] == '\0' &&
        (d = pam_cache_get(id->a.user, cfg.pam_cache, why, sizeof(why))) >= 0) {
        identity_pam_result(id, d, why);
        needs_pam = 0;
    }
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

void handle_identity(int chan, struct ipc_msg *m)
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
        struct grant *known = grant_find(v.session);

        /* The row names the session as authz knows it; its record stays as it is. */
        if (known != NULL)
            id->origin = *known;
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
    id->grant_gen = g->gen;
    id->origin = *g;
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
    if (g->password_ok || g->password_pending)
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
void handle_password(int chan, struct ipc_msg *m)
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
    if (g != NULL) {
        id->grant_gen = g->gen;
        id->origin = *g;
    }
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
    else
        g->password_pending = id->holds_pending = 1;   /* needs_pam: g is the record */
    identity_pam_or_done(id, needs_pam, m);
}

/* Collects finished or overdue PAM checks; pfd holds the busy workers' sockets. */
void identity_pam_collect(struct pollfd *pfd, int npfd, struct ipc_msg *m)
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
            int d = pam_worker_recv(&pam_pool[id->worker], why, sizeof(why));

            if (cfg.pam_cache > 0 && id->password[0] == '\0')
                pam_cache_put(id->a.user, d, why);
            identity_pam_result(id, d, why);
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

/* Our own CA's name and fingerprint, so that neither subject maps nor rule maps ever
 * apply to its certificates. */
void identity_load_own_ca(void)
{
    char path[PATH_MAX];
    FILE *f;
    X509 *ca = NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    str_fmt(path, sizeof(path), "%s/ca.crt", cfg.ca_dir);
    f = fopen(path, "re");
    if (f != NULL) {
        ca = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    own_ca_sha256[0] = '\0';
    if (ca != NULL && X509_digest(ca, EVP_sha256(), md, &mdlen) == 1)
        hex_encode(md, mdlen, own_ca_sha256);
    if (ca == NULL || dn_canon_name(X509_get_subject_name(ca), own_ca_canon,
                                    sizeof(own_ca_canon)) != 0) {
        own_ca_canon[0] = '\0';
        log_warn("cannot read our CA certificate %s: subject maps apply to every issuer", path);
    }
    X509_free(ca);
}

int identity_pending(void)
{
    return npending;
}

int identity_pam_fds(struct pollfd *pfd)
{
    int n = 0;

    for (int k = 0; k < PAM_WORKERS; k++) {
        if (pam_pool[k].pid <= 0 || !pam_pool[k].busy)
            continue;
        pfd[n].fd = pam_pool[k].fd;
        pfd[n].events = POLLIN;
        pfd[n].revents = 0;
        n++;
    }
    return n;
}

void identity_stop(void)
{
    for (int k = 0; k < PAM_WORKERS; k++)
        pam_worker_kill(&pam_pool[k]);
    while (npending > 0)
        free(pending[--npending]);
}
