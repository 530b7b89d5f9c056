/*
 * One SMTP session: the explicit state machine of DESIGN §3, driven by socket
 * events and by the answers of the authz and queue processes.
 *
 * Reading is paused whenever the session waits for an answer (identity, sender,
 * queue file, commit) or for the STARTTLS 220 to leave; pipelined input stays in
 * inbuf meanwhile and is processed when the answer arrives.
 */
#include "smtp.h"

#include "ipc_codec.h"
#include "log.h"
#include "spool.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_ERRORS 20
#define OUTBUF_MAX (256 * 1024)
/* Replies waiting for the socket beyond which no further command is processed. */
#define OUTBUF_PAUSE (16 * 1024)
#define STAGE_MAX (64 * 1024)

static const char *const state_names[] = { "greeting", "ready", "mail", "rcpt", "data",
                                           "closing" };

static void session_pump(struct session *s);
static void session_close(struct session *s);
static struct session *session_for(struct worker *w, uint64_t id);
static void transaction_reset(struct session *s);

/* ---- output ---------------------------------------------------------------- */

static void reply(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply(struct session *s, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(line) - 3)
        n = (int)sizeof(line) - 3;
    line[n++] = '\r';
    line[n++] = '\n';
    if (s->outlen + (size_t)n > s->outcap) {
        size_t cap = s->outcap ? s->outcap * 2 : 1024;
        char *p;

        while (cap < s->outlen + (size_t)n)
            cap *= 2;
        if (cap > OUTBUF_MAX) {
            /* A client that never reads its replies: stop serving it. */
            log_warn("session=%s client=%s output buffer full, closing", s->id, s->client_ip);
            s->state = SS_CLOSING;
            return;
        }
        p = realloc(s->outbuf, cap);
        if (p == NULL) {
            s->state = SS_CLOSING;
            return;
        }
        s->outbuf = p;
        s->outcap = cap;
    }
    memcpy(s->outbuf + s->outlen, line, (size_t)n);
    s->outlen += (size_t)n;
    log_debug("session=%s client=%s >>> %.*s", s->id, s->client_ip, n - 2, line);
}

static void set_state(struct session *s, enum sess_state st)
{
    if (s->state != st)
        log_debug("session=%s client=%s state %s -> %s", s->id, s->client_ip,
                  state_names[s->state], state_names[st]);
    s->state = st;
}

/* Writes as much of outbuf as the socket takes. Returns -1 on a fatal error. */
static int session_flush(struct session *s)
{
    while (s->outlen > 0) {
        ssize_t n;

        if (s->ssl != NULL && !s->handshaking) {
            int r = SSL_write(s->ssl, s->outbuf, (int)(s->outlen > 65536 ? 65536 : s->outlen));
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    s->ssl_want_write = (e == SSL_ERROR_WANT_WRITE);
                    s->ssl_write_wants_read = (e == SSL_ERROR_WANT_READ);
                    return 0;
                }
                ERR_clear_error();
                return -1;
            }
            n = r;
        } else if (s->ssl == NULL) {
            n = write(s->fd, s->outbuf, s->outlen);
            if (n < 0) {
                if (errno == EAGAIN || errno == EINTR)
                    return 0;
                return -1;
            }
        } else {
            return 0; /* handshake in progress: replies wait for it */
        }
        memmove(s->outbuf, s->outbuf + n, s->outlen - (size_t)n);
        s->outlen -= (size_t)n;
    }
    s->ssl_want_write = 0;
    s->ssl_write_wants_read = 0;
    return 0;
}

static void update_interest(struct session *s)
{
    struct epoll_event ev;
    /* A client that does not read its replies is not read either: its commands
     * would only pile up more replies (and memory) behind the blocked socket. */
    int reading = s->wait == WAIT_NONE && s->state != SS_CLOSING && s->outlen == 0 &&
                  s->inlen < sizeof(s->inbuf);

    if (s->closed)
        return;
    memset(&ev, 0, sizeof(ev));
    /* Level-triggered: ask only for what can be acted on now, or a half-closed
     * peer would wake this worker in a loop while the session waits. */
    if (reading || s->handshaking || s->ssl_write_wants_read)
        ev.events |= EPOLLIN | EPOLLRDHUP;
    if ((s->outlen > 0 && !s->ssl_write_wants_read) || s->ssl_want_write)
        ev.events |= EPOLLOUT;
    ev.data.u64 = EV_HANDLE(s->slot, s->gen);
    if (epoll_ctl(s->w->epfd, EPOLL_CTL_MOD, s->fd, &ev) != 0)
        log_err("session=%s client=%s epoll_ctl: %s", s->id, s->client_ip, strerror(errno));
}

/* ---- requests to the other processes --------------------------------------- */

/* Every request to authz or queue goes out with the session waiting for it. */
static void wait_for(struct session *s, enum sess_wait w)
{
    s->wait = w;
    s->wait_since = time(NULL);
}

static uint64_t req_id(struct session *s)
{
    return ((uint64_t)s->slot << 32) | s->gen;
}

static int send_or_tempfail(struct session *s, int fd, struct ipc_msg *m, const char *what)
{
    if (ipc_send(fd, m) == 0)
        return 0;
    log_err("session=%s client=%s cannot send %s request: %s", s->id, s->client_ip,
            what, strerror(errno));
    if (m->fd >= 0)
        close(m->fd);
    return -1;
}

/* An audit row through authz (DESIGN §7); with a request id authz answers once the
 * row is written. Its user and certificate columns are authz's own; the client
 * address and TLS text count only for a session authz has not seen yet. */
static int audit_send(struct session *s, uint64_t id, const char *event, const char *decision,
                      const char *reason, const char *rcpt, long long size)
{
    struct ipc_msg *m = s->w->msg;
    struct ipc_audit v;

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, s->id, sizeof(v.session));
    str_lcpy(v.client_ip, s->client_ip, sizeof(v.client_ip));
    str_lcpy(v.tls, s->tls_done ? s->peer.tls : "", sizeof(v.tls));
    str_lcpy(v.event, event, sizeof(v.event));
    str_lcpy(v.decision, decision, sizeof(v.decision));
    str_lcpy(v.reason, reason ? reason : "", sizeof(v.reason));
    str_lcpy(v.mail_from, s->mail_from[0] ? s->mail_from : s->pending_from, sizeof(v.mail_from));
    str_lcpy(v.rcpt, rcpt ? rcpt : "", sizeof(v.rcpt));
    str_lcpy(v.queue_id, s->queue_id, sizeof(v.queue_id));
    v.size = size;
    v.nrcpt = strcmp(event, "submission") == 0 ? s->nrcpt : 0;
    if (ipc_enc_audit(m, id, &v) == 0 && ipc_send(s->w->authz_fd, m) == 0)
        return 0;
    log_err("session=%s client=%s audit row lost (event %s, decision %s, reason %s): %s",
            s->id, s->client_ip, event, decision ? decision : "-", reason ? reason : "-",
            strerror(errno));
    return -1;
}

/* Fire-and-forget: refusals are answered at once, their rows follow. */
static void audit(struct session *s, const char *event, const char *decision, const char *reason,
                  const char *rcpt, long long size)
{
    (void)audit_send(s, 0, event, decision, reason, rcpt, size);
}

/* authz forgets the session's grant: nothing more can be asked in its name. */
static void session_end_grant(struct session *s)
{
    struct ipc_msg *m = s->w->msg;
    struct ipc_session_end v;

    str_lcpy(v.session, s->id, sizeof(v.session));
    if (ipc_enc_session_end(m, &v) != 0 || ipc_send(s->w->authz_fd, m) != 0)
        log_warn("session=%s client=%s cannot tell authz that the session ended: %s",
                 s->id, s->client_ip, strerror(errno));
}

/* Joins the recipients for the audit row; truncated with "..." if very many. */
static void rcpt_list(struct session *s, char *out, size_t outlen)
{
    size_t pos = 0;

    out[0] = '\0';
    for (int i = 0; i < s->nrcpt; i++) {
        size_t n = strlen(s->rcpt[i]);
        if (pos + n + 5 >= outlen) {
            str_lcpy(out + pos, "...", outlen - pos);
            return;
        }
        if (i > 0)
            out[pos++] = ',';
        memcpy(out + pos, s->rcpt[i], n + 1);
        pos += n;
    }
}

/* After every handshake: the chain the client sent goes to authz, which verifies
 * it and answers with the session's identity (or the reason there is none). */
static void request_identity(struct session *s)
{
    struct ipc_msg *m = s->w->msg;
    struct ipc_identity v;
    X509 *chain[IPC_CHAIN_MAX];
    unsigned char *der[IPC_CHAIN_MAX];
    int n, rc = -1;

    tls_peer_identity(s->ssl, &s->peer);
    log_info("session=%s client=%s TLS established %s, client certificate: %s%s",
             s->id, s->client_ip, s->peer.tls,
             s->peer.subject[0] ? "subject=" : "none", s->peer.subject);
    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, s->id, sizeof(v.session));
    str_lcpy(v.client_ip, s->client_ip, sizeof(v.client_ip));
    str_lcpy(v.tls, s->peer.tls, sizeof(v.tls));
    n = tls_peer_chain(s->ssl, chain, IPC_CHAIN_MAX);
    memset(der, 0, sizeof(der));
    for (int i = 0; i < n; i++) {
        int len = i2d_X509(chain[i], &der[i]);
        if (len <= 0)
            break;
        v.cert[i] = der[i];
        v.cert_len[i] = (size_t)len;
        v.ncert = i + 1;
    }
    if (n == 0 || v.ncert > 0)
        rc = ipc_enc_identity(m, req_id(s), &v);
    if (rc != 0 && v.ncert > 1) {
        /* A chain too big for one message goes without its intermediates: authz
         * may still find them in client_ca. */
        v.ncert = 1;
        rc = ipc_enc_identity(m, req_id(s), &v);
    }
    for (int i = 0; i < n; i++)
        OPENSSL_free(der[i]);
    s->identity_requested = 1;
    if (rc != 0 || send_or_tempfail(s, s->w->authz_fd, m, "identity") != 0) {
        s->identity_known = 1;
        s->identity_decision = IPC_TEMPFAIL;
        str_lcpy(s->identity_reply, "454 4.7.0 Temporary authentication failure",
                 sizeof(s->identity_reply));
        return;
    }
    wait_for(s, WAIT_IDENTITY);
}

/* ---- TLS ------------------------------------------------------------------- */

static int tls_begin(struct session *s)
{
    s->ssl = SSL_new(s->set->ssl_ctx);
    if (s->ssl == NULL || SSL_set_fd(s->ssl, s->fd) != 1) {
        log_err("session=%s client=%s cannot create TLS session", s->id, s->client_ip);
        ERR_clear_error();
        return -1;
    }
    s->handshaking = 1;
    /* The handshake and the first command after it get tls_handshake_timeout, not
     * the whole idle timeout: a slot is cheap to hold before anyone is known. */
    s->tls_checked = time(NULL);
    s->tls_deadline = s->tls_checked + s->cfg->tls_handshake_timeout;
    return 0;
}

/* Drives the handshake; returns -1 when the session must close. */
static int tls_continue(struct session *s)
{
    int r = SSL_accept(s->ssl);

    if (r == 1) {
        s->handshaking = 0;
        s->tls_done = 1;
        s->ssl_want_write = 0;
        /* On the implicit-TLS port the greeting comes after the handshake. */
        if (s->implicit_tls)
            reply(s, "220 %s ESMTP submitd", s->cfg->hostname);
        request_identity(s);
        return 0;
    }
    switch (SSL_get_error(s->ssl, r)) {
    case SSL_ERROR_WANT_READ:
        s->ssl_want_write = 0;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        s->ssl_want_write = 1;
        return 0;
    default: {
        unsigned long e = ERR_peek_error();
        log_info("session=%s client=%s TLS handshake failed: %s", s->id, s->client_ip,
                 e ? ERR_reason_error_string(e) : "connection closed");
        ERR_clear_error();
        return -1;
    }
    }
}

/* ---- transaction ----------------------------------------------------------- */

static void abort_spool(struct session *s)
{
    if (s->spool_fd >= 0) {
        struct ipc_msg *m = s->w->msg;

        close(s->spool_fd);
        s->spool_fd = -1;
        struct ipc_abort v;

        str_lcpy(v.queue_id, s->queue_id, sizeof(v.queue_id));
        if (ipc_enc_abort(m, &v) == 0 && ipc_send(s->w->queue_fd, m) != 0)
            log_warn("session=%s client=%s cannot abort queue file %s: %s", s->id, s->client_ip,
                     s->queue_id,
                     strerror(errno));
    }
}

static void transaction_reset(struct session *s)
{
    abort_spool(s);
    for (int i = 0; i < s->nrcpt; i++)
        free(s->rcpt[i]);
    free(s->rcpt);
    s->rcpt = NULL;
    s->nrcpt = 0;
    s->mail_from[0] = '\0';
    s->pending_from[0] = '\0';
    s->declared_size = -1;
    s->rcpt_budget = -1;
    s->queue_id[0] = '\0';
    free(s->hdrbuf);
    s->hdrbuf = NULL;
    s->hdrlen = 0;
    s->hdrcap = 0;
    free(s->header_from);
    s->header_from = NULL;
    s->header_from_count = 0;
    free(s->stage);
    s->stage = NULL;
    s->stagelen = 0;
    s->in_body = 0;
    s->msg_size = 0;
    s->spooled = 0;
    s->oversize = 0;
    s->write_error = 0;
    if (s->state != SS_GREETING && s->state != SS_CLOSING)
        set_state(s, SS_READY);
}

/* ---- command guards: reply and return 0 when the command may not proceed ---- */

static int check_tls(struct session *s, const char *cmd)
{
    if (s->tls_done)
        return 1;
    reply(s, "530 5.7.0 Must issue a STARTTLS command first");
    if (!s->audited_pretls) {
        char why[64];
        str_fmt(why, sizeof(why), "%s before STARTTLS", cmd);
        audit(s, "command", "reject", why, NULL, -1);
        s->audited_pretls = 1;
    }
    return 0;
}

static int check_helo(struct session *s)
{
    if (s->state != SS_GREETING)
        return 1;
    reply(s, "503 5.5.1 Error: send HELO/EHLO first");
    return 0;
}

/* The session identity must allow relaying: the replies of DESIGN §8. */
static int check_identity(struct session *s)
{
    int mode = s->cfg->auth_password;

    /* second-factor: the certificate and the password of the same user. */
    if (mode == AUTH_PASSWORD_SECOND_FACTOR && s->identity_known &&
        s->identity_decision == IPC_ALLOW && !s->password_ok) {
        reply(s, "530 5.7.0 Authentication required (certificate and password)");
        return 0;
    }
    if (s->password_ok)
        return 1;
    if (mode == AUTH_PASSWORD_FALLBACK && !s->peer.sha256[0]) {
        reply(s, "530 5.7.0 Authentication required");
        return 0;
    }
    if (s->identity_known && s->identity_decision == IPC_ALLOW)
        return 1;
    if (!s->identity_known)
        reply(s, "454 4.7.0 Temporary authentication failure");
    else
        reply(s, "%s", s->identity_reply);
    return 0;
}

/* ---- commands -------------------------------------------------------------- */

static void cmd_ehlo(struct session *s, const char *arg, int extended)
{
    if (arg[0] == '\0') {
        reply(s, "501 5.5.4 Syntax: %s hostname", extended ? "EHLO" : "HELO");
        return;
    }
    /* The name goes into the Received header: a domain or an address literal,
     * leniently (Windows names carry '_'), but never spaces or control bytes. */
    if (strlen(arg) > 255 || strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789.-_:[]") != strlen(arg)) {
        s->errors++;
        reply(s, "501 5.5.4 Invalid %s hostname", extended ? "EHLO" : "HELO");
        return;
    }
    transaction_reset(s);
    str_lcpy(s->helo, arg, sizeof(s->helo));
    set_state(s, SS_READY);
    if (!extended) {
        reply(s, "250 %s", s->cfg->hostname);
        return;
    }
    reply(s, "250-%s", s->cfg->hostname);
    reply(s, "250-PIPELINING");
    if (!s->tls_done) {
        /* Nothing that implies trust before TLS. */
        reply(s, "250-ENHANCEDSTATUSCODES");
        reply(s, "250 STARTTLS");
        return;
    }
    reply(s, "250-SIZE %lld", s->cfg->max_message_size);
    reply(s, "250-8BITMIME");
    {
        const struct config *cfg = s->cfg;
        int cert_ok = s->identity_known && s->identity_decision == IPC_ALLOW;
        int plain = (cfg->auth_password == AUTH_PASSWORD_FALLBACK && !s->peer.sha256[0]) ||
                    (cfg->auth_password == AUTH_PASSWORD_SECOND_FACTOR && cert_ok);
        int external = cert_ok && cfg->auth_password != AUTH_PASSWORD_SECOND_FACTOR;

        if (external || plain)
            reply(s, "250-AUTH%s%s", external ? " EXTERNAL" : "", plain ? " PLAIN" : "");
    }
    reply(s, "250 ENHANCEDSTATUSCODES");
}

static void cmd_starttls(struct session *s, const char *arg)
{
    if (s->tls_done) {
        reply(s, "503 5.5.1 Error: TLS already active");
        return;
    }
    if (arg[0] != '\0') {
        reply(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    reply(s, "220 2.0.0 Ready to start TLS");
    /* The handshake starts once the 220 has left; every byte the client sent after
     * the command is discarded then (CVE-2011-0411 class of injection). */
    wait_for(s, WAIT_STARTTLS_FLUSH);
}

static int b64_decode(const char *in, char *out, size_t outlen)
{
    size_t len = strlen(in);
    int n;

    /* Check the size before decoding: EVP_DecodeBlock writes 3 bytes for every 4
     * and knows nothing of the output buffer. */
    if (len == 0 || len % 4 != 0 || len / 4 * 3 >= outlen || len > INT_MAX)
        return -1;
    n = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    /* EVP_DecodeBlock counts padding bytes as output. */
    if (in[len - 1] == '=')
        n--;
    if (len >= 2 && in[len - 2] == '=')
        n--;
    out[n] = '\0';
    return (int)strlen(out) == n ? n : -1;
}

static int plain_offered(const struct session *s)
{
    int mode = s->cfg->auth_password;

    return (mode == AUTH_PASSWORD_FALLBACK && !s->peer.sha256[0]) ||
           (mode == AUTH_PASSWORD_SECOND_FACTOR && s->identity_known &&
            s->identity_decision == IPC_ALLOW);
}

/*
 * A SASL response that cannot be used (cancelled, not base64, malformed): refused,
 * and audited and logged with the mechanism and the problem, so that a client
 * that cannot authenticate leaves a trace an administrator finds. Nothing of the
 * response itself is written: it may hold a password, or bytes unfit for a log.
 * It counts as a protocol error, which bounds the rows one connection can cause.
 */
static void auth_unusable(struct session *s, const char *mech, const char *problem,
                          const char *smtp_reply)
{
    char why[160];

    str_fmt(why, sizeof(why), "AUTH %s %s", mech, problem);
    log_info("session=%s client=%s %s", s->id, s->client_ip, why);
    audit(s, "auth", "reject", why, NULL, -1);
    s->errors++;
    reply(s, "%s", smtp_reply);
}

/* Why a SASL response is not base64 of at most outlen - 1 bytes. A client that
 * sends nothing after the 334 and goes on with its commands (msmtp's "auth
 * external" without "user") is told apart: the fix is in its configuration. */
static const char *b64_problem(const char *resp, size_t outlen)
{
    const char *arg;

    if (strlen(resp) / 4 * 3 >= outlen)
        return "response too long";
    if (smtp_parse_verb(resp, &arg) != CMD_UNKNOWN)
        return "response is not valid base64 but an SMTP command (no response was "
               "sent after the 334)";
    return "response is not valid base64";
}

/* The AUTH PLAIN response (RFC 4616): authzid NUL authcid NUL password. The
 * password goes to authz, where PAM checks it, and is wiped here at once. */
static void auth_plain_response(struct session *s, const char *resp)
{
    struct ipc_password v;
    char buf[1024];
    const char *authzid, *authcid, *password;
    struct ipc_msg *m = s->w->msg;
    size_t len, zl, cl;
    int n, bad = 0;

    s->auth_pending = AUTH_PENDING_NONE;
    if (strcmp(resp, "*") == 0) {
        auth_unusable(s, "PLAIN", "cancelled by the client", "501 5.7.0 Authentication cancelled");
        return;
    }
    len = strlen(resp);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 >= sizeof(buf) ||
        (n = EVP_DecodeBlock((unsigned char *)buf, (const unsigned char *)resp, (int)len)) < 0) {
        auth_unusable(s, "PLAIN", len == 0 ? "response is empty" : b64_problem(resp, sizeof(buf)),
                      "501 5.5.2 Cannot decode response");
        return;
    }
    n -= (resp[len - 1] == '=') + (len >= 2 && resp[len - 2] == '=');
    buf[n] = '\0';
    authzid = buf;
    zl = strlen(authzid);
    authcid = (size_t)n > zl ? buf + zl + 1 : NULL;
    cl = authcid ? strlen(authcid) : 0;
    password = authcid && (size_t)n > zl + 1 + cl ? authcid + cl + 1 : NULL;
    if (authcid == NULL || password == NULL || cl == 0 || password[0] == '\0' ||
        (size_t)n != zl + cl + strlen(password) + 2 || (zl > 0 && strcmp(authzid, authcid) != 0)) {
        explicit_bzero(buf, sizeof(buf));
        auth_unusable(s, "PLAIN", "response malformed (not authzid NUL authcid NUL password)",
                      "501 5.5.2 Malformed AUTH PLAIN response");
        return;
    }
    /* authz decides whose password this may be (second-factor: the certificate's
     * user); smtp only passes it on. */
    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, s->id, sizeof(v.session));
    str_lcpy(v.client_ip, s->client_ip, sizeof(v.client_ip));
    str_lcpy(v.tls, s->peer.tls, sizeof(v.tls));
    bad |= str_lcpy(v.authcid, authcid, sizeof(v.authcid)) >= sizeof(v.authcid);
    bad |= str_lcpy(v.password, password, sizeof(v.password)) >= sizeof(v.password);
    explicit_bzero(buf, sizeof(buf));
    bad |= ipc_enc_password(m, req_id(s), &v) != 0;
    explicit_bzero(&v, sizeof(v));
    if (bad || send_or_tempfail(s, s->w->authz_fd, m, "password") != 0) {
        explicit_bzero(m->buf, m->len);
        reply(s, "454 4.7.0 Temporary authentication failure");
        return;
    }
    explicit_bzero(m->buf, m->len);
    wait_for(s, WAIT_PASSWORD);
}

static void auth_external_response(struct session *s, const char *resp);

static void cmd_auth(struct session *s, const char *arg)
{
    char mech[32];
    const char *resp;
    size_t n;

    if (!check_tls(s, "AUTH") || !check_helo(s))
        return;
    if (s->state != SS_READY) {
        reply(s, "503 5.5.1 Error: AUTH not allowed during a mail transaction");
        return;
    }
    if (s->auth_done) {
        reply(s, "503 5.5.1 Error: already authenticated");
        return;
    }
    n = strcspn(arg, " ");
    if (n == 0 || n >= sizeof(mech)) {
        reply(s, "501 5.5.4 Syntax: AUTH mechanism");
        return;
    }
    memcpy(mech, arg, n);
    mech[n] = '\0';
    if (strcasecmp(mech, "PLAIN") == 0 && plain_offered(s)) {
        if (arg[n] == ' ') {
            auth_plain_response(s, arg + n + 1);
        } else {
            s->auth_pending = AUTH_PENDING_PLAIN;
            reply(s, "334 ");
        }
        return;
    }
    if (strcasecmp(mech, "EXTERNAL") != 0 ||
        s->cfg->auth_password == AUTH_PASSWORD_SECOND_FACTOR) {
        reply(s, "504 5.5.4 Unrecognized authentication type");
        return;
    }
    if (!check_identity(s))
        return;
    resp = arg[n] == ' ' ? arg + n + 1 : NULL;
    if (resp == NULL) {
        /* No initial response: ask for it (RFC 4954); "=" or "" means none. */
        s->auth_pending = AUTH_PENDING_EXTERNAL;
        reply(s, "334 ");
        return;
    }
    auth_external_response(s, resp);
}

/*
 * Asks authz whether the certificate's user may act as authzid (its user name, or
 * an address it owns): authz has the database and audits the answer either way.
 */
static void request_authzid(struct session *s, const char *authzid)
{
    struct ipc_msg *m = s->w->msg;
    struct ipc_authzid v;

    memset(&v, 0, sizeof(v));
    str_lcpy(v.session, s->id, sizeof(v.session));
    if (str_lcpy(v.authzid, authzid, sizeof(v.authzid)) >= sizeof(v.authzid) ||
        ipc_enc_authzid(m, req_id(s), &v) != 0 ||
        send_or_tempfail(s, s->w->authz_fd, m, "authzid") != 0) {
        reply(s, "454 4.7.0 Temporary authentication failure");
        return;
    }
    wait_for(s, WAIT_AUTHZID);
}

/* The EXTERNAL response: empty ("=" or an empty line) or an authorization identity
 * for authz to check. */
static void auth_external_response(struct session *s, const char *resp)
{
    char authzid[256];

    s->auth_pending = AUTH_PENDING_NONE;
    if (strcmp(resp, "*") == 0) {
        auth_unusable(s, "EXTERNAL", "cancelled by the client",
                      "501 5.7.0 Authentication cancelled");
        return;
    }
    if (strcmp(resp, "=") == 0 || resp[0] == '\0') {
        s->auth_done = 1;
        reply(s, "235 2.7.0 Authentication successful");
        return;
    }
    if (b64_decode(resp, authzid, sizeof(authzid)) < 0) {
        auth_unusable(s, "EXTERNAL", b64_problem(resp, sizeof(authzid)),
                      "501 5.5.2 Cannot decode response");
        return;
    }
    /* Decoded bytes go into an audit row and a log line: none may be a control. */
    if (!ipc_text_clean(authzid)) {
        auth_unusable(s, "EXTERNAL", "authzid holds a control character",
                      "501 5.5.4 Malformed authorization identity");
        return;
    }
    request_authzid(s, authzid);
}

static void cmd_mail(struct session *s, const char *arg)
{
    char addr[SMTP_ADDR_MAX + 1];
    const char *params, *why;
    struct mail_params mp;
    struct ipc_sender sv;
    struct ipc_msg *m = s->w->msg;
    int bad = 0;

    if (!check_tls(s, "MAIL") || !check_helo(s))
        return;
    if (s->state != SS_READY) {
        reply(s, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if (!check_identity(s))
        return;
    if (smtp_parse_path(arg, "FROM:", addr, sizeof(addr), &params, &why) != 0) {
        reply(s, "501 5.1.7 %s", why);
        return;
    }
    if (smtp_parse_mail_params(params, &mp, &why) != 0) {
        reply(s, "555 5.5.4 %s", why);
        return;
    }
    if (mp.size > s->cfg->max_message_size) {
        str_lcpy(s->pending_from, addr, sizeof(s->pending_from));
        audit(s, "mail", "reject", "declared SIZE exceeds max_message_size", NULL, mp.size);
        s->pending_from[0] = '\0';
        reply(s, "552 5.3.4 Message size exceeds fixed limit");
        return;
    }
    s->declared_size = mp.size;
    str_lcpy(s->pending_from, addr, sizeof(s->pending_from));
    memset(&sv, 0, sizeof(sv));
    str_lcpy(sv.session, s->id, sizeof(sv.session));
    bad |= str_lcpy(sv.address, addr, sizeof(sv.address)) >= sizeof(sv.address);
    bad |= ipc_enc_sender(m, req_id(s), &sv) != 0;
    if (bad || send_or_tempfail(s, s->w->authz_fd, m, "sender") != 0) {
        reply(s, "454 4.7.0 Temporary authentication failure");
        return;
    }
    wait_for(s, WAIT_SENDER);
}

static void cmd_rcpt(struct session *s, const char *arg)
{
    char addr[SMTP_ADDR_MAX + 1];
    const char *params, *why;
    char **r;

    if (!check_tls(s, "RCPT"))
        return;
    if (s->state != SS_MAIL && s->state != SS_RCPT) {
        reply(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (smtp_parse_path(arg, "TO:", addr, sizeof(addr), &params, &why) != 0) {
        reply(s, "501 5.1.3 %s", why);
        return;
    }
    if (addr[0] == '\0') {
        reply(s, "501 5.1.3 Null recipient not allowed");
        return;
    }
    if (params[0] != '\0') {
        reply(s, "555 5.5.4 Unsupported parameter");
        return;
    }
    if (s->nrcpt >= s->cfg->max_recipients) {
        if (s->nrcpt == s->cfg->max_recipients) {
            char why2[64];
            str_fmt(why2, sizeof(why2), "more than %d recipients", s->cfg->max_recipients);
            audit(s, "rcpt", "reject", why2, addr, -1);
        }
        reply(s, "452 4.5.3 Too many recipients");
        return;
    }
    if (s->rcpt_budget >= 0 && s->nrcpt >= s->rcpt_budget) {
        if (s->nrcpt == s->rcpt_budget)
            audit(s, "rcpt", "tempfail", "rate limit: rate_recipients_per_hour reached", addr, -1);
        reply(s, "450 4.7.1 Rate limit exceeded");
        return;
    }
    r = realloc(s->rcpt, sizeof(char *) * (size_t)(s->nrcpt + 1));
    if (r == NULL || (r[s->nrcpt] = strdup(addr)) == NULL) {
        if (r != NULL)
            s->rcpt = r;
        reply(s, "452 4.3.1 Insufficient system storage");
        return;
    }
    s->rcpt = r;
    s->nrcpt++;
    set_state(s, SS_RCPT);
    reply(s, "250 2.1.5 Ok");
}

static void cmd_data(struct session *s, const char *arg)
{
    struct ipc_msg *m = s->w->msg;
    struct ipc_envelope env;
    int bad = 0;

    if (!check_tls(s, "DATA"))
        return;
    if (arg[0] != '\0') {
        reply(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (s->state != SS_RCPT) {
        reply(s, s->state == SS_MAIL ? "503 5.5.1 Error: need RCPT command"
                                     : "503 5.5.1 Error: need MAIL command");
        return;
    }
    /* No user here: the queue asks authz whose envelope this is. */
    memset(&env, 0, sizeof(env));
    str_lcpy(env.session, s->id, sizeof(env.session));
    str_lcpy(env.mail_from, s->mail_from, sizeof(env.mail_from));
    env.nrcpt = s->nrcpt;
    env.rcpt = calloc((size_t)s->nrcpt, sizeof(*env.rcpt));
    bad |= env.rcpt == NULL;
    for (int i = 0; !bad && i < s->nrcpt; i++)
        str_lcpy(env.rcpt[i], s->rcpt[i], sizeof(env.rcpt[i]));
    bad = bad || ipc_enc_envelope(m, IPC_QUEUE_OPEN, req_id(s), &env) != 0;
    ipc_envelope_free(&env);
    if (bad || send_or_tempfail(s, s->w->queue_fd, m, "queue open") != 0) {
        reply(s, "452 4.3.1 Insufficient system storage");
        return;
    }
    wait_for(s, WAIT_OPEN);
}

static void dispatch(struct session *s, char *line)
{
    const char *arg;
    enum smtp_verb v = smtp_parse_verb(line, &arg);

    log_debug("session=%s client=%s <<< %s", s->id, s->client_ip, line);
    switch (v) {
    case CMD_EHLO:
        cmd_ehlo(s, arg, 1);
        break;
    case CMD_HELO:
        cmd_ehlo(s, arg, 0);
        break;
    case CMD_STARTTLS:
        cmd_starttls(s, arg);
        break;
    case CMD_AUTH:
        cmd_auth(s, arg);
        break;
    case CMD_MAIL:
        cmd_mail(s, arg);
        break;
    case CMD_RCPT:
        cmd_rcpt(s, arg);
        break;
    case CMD_DATA:
        cmd_data(s, arg);
        break;
    case CMD_RSET:
        transaction_reset(s);
        reply(s, "250 2.0.0 Ok");
        break;
    case CMD_NOOP:
        reply(s, "250 2.0.0 Ok");
        break;
    case CMD_QUIT:
        reply(s, "221 2.0.0 Bye");
        set_state(s, SS_CLOSING);
        break;
    case CMD_VRFY:
        if (check_tls(s, "VRFY"))
            reply(s, "252 2.5.0 Cannot VRFY user");
        break;
    case CMD_BDAT:
    case CMD_EXPN:
    case CMD_HELP:
        if (check_tls(s, "command"))
            reply(s, "502 5.5.1 Command not implemented");
        break;
    case CMD_UNKNOWN:
        s->errors++;
        reply(s, "500 5.5.1 Command unrecognized");
        break;
    }
}

/* ---- DATA ------------------------------------------------------------------ */

/* s->oversize: which limit the message exceeded, refused at the end of data. */
enum { OVERSIZE_MESSAGE = 1, OVERSIZE_HEADER };

static void stage_write(struct session *s, const char *p, size_t n)
{
    if (s->write_error || s->oversize)
        return;
    s->spooled += (long long)n;
    while (n > 0) {
        size_t room = STAGE_MAX - s->stagelen;
        size_t c = n < room ? n : room;

        memcpy(s->stage + s->stagelen, p, c);
        s->stagelen += c;
        p += c;
        n -= c;
        if (s->stagelen == STAGE_MAX) {
            if (spool_put(s->spool_fd, SPOOL_BODY, s->stage, s->stagelen) != 0) {
                log_err("session=%s client=%s spool write failed: %s", s->id, s->client_ip,
                        strerror(errno));
                s->write_error = 1;
                return;
            }
            s->stagelen = 0;
        }
    }
}

static void rfc5322_date(char *out, size_t outlen)
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, outlen, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* The headers we add at the top: Received, and Message-ID/Date when missing
 * (RFC 6409 §8). Then what was collected as it was: the header section (its first
 * hl bytes) and whatever of the body came with it. */
static void write_prelude(struct session *s, size_t hl)
{
    char buf[2048], date[64];
    int has_date = smtp_header_present(s->hdrbuf, hl, "Date");
    int has_msgid = smtp_header_present(s->hdrbuf, hl, "Message-ID");
    const struct config *cfg = s->cfg;
    char fpr[17];

    rfc5322_date(date, sizeof(date));
    str_lcpy(fpr, s->peer.sha256, sizeof(fpr));
    if (cfg->hide_client)
        str_fmt(buf, sizeof(buf),
                "Received: by %s (submitd) with ESMTPSA id %s\r\n"
                "\t(version=%s cert=sha256:%s)\r\n\t%s%s%s; %s\r\n",
                cfg->hostname, s->queue_id, s->peer.tls, fpr, s->nrcpt == 1 ? "for <" : "",
                s->nrcpt == 1 ? s->rcpt[0] : "", s->nrcpt == 1 ? ">" : "", date);
    else
        str_fmt(buf, sizeof(buf),
                "Received: from %s ([%s])\r\n\tby %s (submitd) with ESMTPSA id %s\r\n"
                "\t(version=%s cert=sha256:%s)\r\n\t%s%s%s; %s\r\n",
                s->helo, s->client_ip, cfg->hostname, s->queue_id, s->peer.tls, fpr,
                s->nrcpt == 1 ? "for <" : "", s->nrcpt == 1 ? s->rcpt[0] : "",
                s->nrcpt == 1 ? ">" : "", date);
    /* A one-recipient Received ends "for <a@b>; date"; otherwise just "; date"
     * (naming many recipients would disclose Bcc addresses to every one). */
    stage_write(s, buf, strlen(buf));
    if (!has_msgid) {
        str_fmt(buf, sizeof(buf), "Message-ID: <%s.%s@%s>\r\n", s->queue_id, s->id,
                cfg->hostname);
        stage_write(s, buf, strlen(buf));
    }
    if (!has_date) {
        str_fmt(buf, sizeof(buf), "Date: %s\r\n", date);
        stage_write(s, buf, strlen(buf));
    }
    if (cfg->check_header_from) {
        char *from = malloc(4096);
        int n = from ? smtp_header_value(s->hdrbuf, hl, "From", from, 4096) : -1;

        s->header_from_count = n;
        s->header_from = from;
    }
    stage_write(s, s->hdrbuf, s->hdrlen);
    free(s->hdrbuf);
    s->hdrbuf = NULL;
    s->hdrlen = 0;
    s->hdrcap = 0;
    s->in_body = 1;
}

/* Grows the header buffer for n more bytes, never beyond max_header_size (the scan
 * lets no more in). Returns 0, or -1 when memory is short. */
static int header_reserve(struct session *s, size_t n)
{
    size_t need = s->hdrlen + n, max = (size_t)s->cfg->max_header_size, cap;
    char *q;

    if (need <= s->hdrcap)
        return 0;
    if (need > max)
        return -1;
    cap = s->hdrcap ? s->hdrcap : 8192;
    while (cap < need)
        cap *= 2;
    if (cap > max)
        cap = max;
    q = realloc(s->hdrbuf, cap);
    if (q == NULL)
        return -1;
    s->hdrbuf = q;
    s->hdrcap = cap;
    return 0;
}

/*
 * Collects the header bytes at the front of p: the whole header section is kept,
 * up to max_header_size, so that the From check reads all of it. When the section
 * is complete the prelude is written. Returns how many bytes were taken; the rest
 * of p is body.
 */
static size_t header_take(struct session *s, const char *p, size_t n)
{
    enum header_scan st;
    size_t take = smtp_header_scan(s->hdrbuf, s->hdrlen, p, n,
                                   (size_t)s->cfg->max_header_size, &st);

    if (st == HDR_OVER) {
        /* Refused at the end of data: what was collected is no longer needed. */
        s->oversize = OVERSIZE_HEADER;
        free(s->hdrbuf);
        s->hdrbuf = NULL;
        s->hdrlen = 0;
        s->hdrcap = 0;
        return n;
    }
    if (take > 0 && header_reserve(s, take) != 0) {
        log_err("session=%s client=%s no memory for a header section of %zu bytes",
                s->id, s->client_ip, s->hdrlen + take);
        s->write_error = 1;
        return n;
    }
    if (take > 0)
        memcpy(s->hdrbuf + s->hdrlen, p, take);
    s->hdrlen += take;
    if (st == HDR_DONE)
        write_prelude(s, s->hdrlen - 2); /* the fields, without the empty line */
    return take;
}

/* Feeds message bytes: the header section is collected first, then everything
 * streams to the spool file. After a refusal only the size is still counted. */
static void data_output(struct session *s, const char *p, size_t n)
{
    s->msg_size += (long long)n;
    if (s->oversize || s->write_error)
        return;
    if (s->msg_size > s->cfg->max_message_size) {
        s->oversize = OVERSIZE_MESSAGE;
        return;
    }
    if (!s->in_body) {
        size_t took = header_take(s, p, n);

        p += took;
        n -= took;
    }
    if (s->in_body && n > 0)
        stage_write(s, p, n);
}

/*
 * check_header_from: every address of the From field must be owned by the user,
 * asked of authz like the envelope sender. Returns -1 when the transaction ended
 * here (the reply is given), 0 when the session now waits or may commit at once.
 */
static int request_header_from(struct session *s)
{
    char addrs[16][SMTP_ADDR_MAX + 1];
    struct ipc_msg *m = s->w->msg;
    const char *why = NULL;
    char rcpts[2048];
    int n = 0, bad = 0;

    if (s->header_from_count == 0)
        return 0; /* no From field: the envelope sender was checked */
    if (s->header_from_count > 1)
        why = "more than one From field";
    else if (s->header_from == NULL || s->header_from_count < 0 ||
             (n = smtp_parse_mailbox_list(s->header_from, strlen(s->header_from), addrs,
                                          16)) <= 0)
        why = "unreadable From field";
    if (why == NULL) {
        struct ipc_header_from hv;

        memset(&hv, 0, sizeof(hv));
        str_lcpy(hv.session, s->id, sizeof(hv.session));
        hv.naddr = n;
        for (int i = 0; i < n; i++)
            str_lcpy(hv.addr[i], addrs[i], sizeof(hv.addr[i]));
        bad = ipc_enc_header_from(m, req_id(s), &hv) != 0;
        if (!bad && send_or_tempfail(s, s->w->authz_fd, m, "header from") == 0) {
            wait_for(s, WAIT_HEADER_FROM);
            return 0;
        }
        reply(s, "454 4.7.0 Temporary authentication failure");
        transaction_reset(s);
        return -1;
    }
    rcpt_list(s, rcpts, sizeof(rcpts));
    audit(s, "data", "reject", why, rcpts, s->msg_size);
    reply(s, "550 5.6.0 Message header From is malformed: %s", why);
    transaction_reset(s);
    return -1;
}

static void data_commit(struct session *s);

/* Why a complete message is refused for its content, or NULL (the reply; the audit
 * reason in *reason). */
static const char *data_refusal(const struct session *s, const char **reason)
{
    if (s->dp.bare) {
        *reason = "bare CR or LF in message";
        return "550 5.5.2 Bare CR or LF not allowed";
    }
    if (s->dp.nul) {
        *reason = "NUL character in message";
        return "550 5.6.0 NUL character not allowed";
    }
    if (s->dp.line_too_long) {
        *reason = "line longer than 1000 octets in message";
        return "500 5.5.2 Line too long";
    }
    if (s->oversize == OVERSIZE_MESSAGE) {
        *reason = "message exceeds max_message_size";
        return "552 5.3.4 Message size exceeds fixed limit";
    }
    if (s->oversize == OVERSIZE_HEADER) {
        *reason = "header section exceeds max_header_size";
        return "552 5.3.4 Message header exceeds max_header_size";
    }
    return NULL;
}

static void data_finish(struct session *s)
{
    const char *reason = NULL, *decision = "reject";
    const char *err_reply = data_refusal(s, &reason);
    char rcpts[2048];

    if (err_reply == NULL) {
        /* No empty line: the whole message was header. */
        if (!s->in_body && !s->write_error)
            write_prelude(s, s->hdrlen);
        if (!s->write_error && s->stagelen > 0 &&
            spool_put(s->spool_fd, SPOOL_BODY, s->stage, s->stagelen) != 0) {
            log_err("session=%s client=%s spool write failed: %s", s->id, s->client_ip,
                    strerror(errno));
            s->write_error = 1;
        }
        if (s->write_error) {
            err_reply = "452 4.3.1 Insufficient system storage";
            reason = "spool write failed";
            decision = "tempfail";
        }
    }
    rcpt_list(s, rcpts, sizeof(rcpts));
    if (err_reply != NULL) {
        audit(s, "data", decision, reason, rcpts, s->msg_size);
        reply(s, "%s", err_reply);
        transaction_reset(s);
        return;
    }
    if (s->cfg->check_header_from && request_header_from(s) != 0)
        return;
    if (s->wait == WAIT_NONE)
        data_commit(s);
}

/* Hands the complete spool file to the queue; the 250 waits for its answer. */
static void data_commit(struct session *s)
{
    struct ipc_msg *m = s->w->msg;
    struct ipc_commit cv;
    char rcpts[2048];

    close(s->spool_fd);
    s->spool_fd = -1;
    str_lcpy(cv.queue_id, s->queue_id, sizeof(cv.queue_id));
    cv.size = (uint64_t)s->spooled;
    if (ipc_enc_commit(m, req_id(s), &cv) != 0 ||
        send_or_tempfail(s, s->w->queue_fd, m, "commit") != 0) {
        rcpt_list(s, rcpts, sizeof(rcpts));
        audit(s, "data", "tempfail", "queue unavailable", rcpts, s->msg_size);
        reply(s, "452 4.3.1 Insufficient system storage");
        transaction_reset(s);
        return;
    }
    wait_for(s, WAIT_COMMIT);
}

/* Consumes DATA bytes from inbuf. */
static void process_data(struct session *s)
{
    char out[SESS_INBUF + 2];
    size_t outlen, used;

    used = data_parse(&s->dp, s->inbuf, s->inlen, out, &outlen);
    /* A message already refused is only read to its end, never stored. */
    if (outlen > 0 && !s->dp.bare && !s->dp.nul)
        data_output(s, out, outlen);
    memmove(s->inbuf, s->inbuf + used, s->inlen - used);
    s->inlen -= used;
    if (s->dp.state == DS_END)
        data_finish(s);
}

/* ---- input ----------------------------------------------------------------- */

/* Processes complete command lines (and DATA) until input runs out or the session
 * must wait for an answer. */
static void process_input(struct session *s)
{
    /* Pipelined commands wait in inbuf while earlier replies cannot leave: what one
     * buffer of commands can produce is bounded, a client that never reads is not. */
    while (s->wait == WAIT_NONE && s->state != SS_CLOSING && s->inlen > 0 &&
           s->outlen < OUTBUF_PAUSE) {
        char *lf;
        size_t linelen;

        if (s->state == SS_DATA) {
            process_data(s);
            continue;
        }
        lf = memchr(s->inbuf, '\n', s->inlen);
        if (s->skip_to_lf) {
            size_t drop = lf ? (size_t)(lf - s->inbuf) + 1 : s->inlen;
            memmove(s->inbuf, s->inbuf + drop, s->inlen - drop);
            s->inlen -= drop;
            if (lf)
                s->skip_to_lf = 0;
            continue;
        }
        if (lf == NULL) {
            if (s->inlen >= SMTP_LINE_MAX) {
                reply(s, "500 5.5.2 Line too long");
                s->errors++;
                s->skip_to_lf = 1;
                s->inlen = 0;
            }
            return;
        }
        linelen = (size_t)(lf - s->inbuf) + 1;
        if (linelen > SMTP_LINE_MAX) {
            reply(s, "500 5.5.2 Line too long");
            s->errors++;
        } else {
            char line[SMTP_LINE_MAX + 1];
            size_t n = linelen - 1;

            if (n > 0 && s->inbuf[n - 1] == '\r')
                n--;
            memcpy(line, s->inbuf, n);
            line[n] = '\0';
            if (s->tls_done)
                s->tls_deadline = 0; /* the first command after the handshake is here */
            if (memchr(line, '\0', n) != NULL || memchr(line, '\r', n) != NULL) {
                reply(s, "500 5.5.2 NUL or bare CR not allowed in commands");
                s->errors++;
            } else if (s->auth_pending == AUTH_PENDING_PLAIN) {
                auth_plain_response(s, line);
            } else if (s->auth_pending == AUTH_PENDING_EXTERNAL) {
                auth_external_response(s, line);
            } else {
                dispatch(s, line);
            }
            explicit_bzero(line, n);
        }
        memmove(s->inbuf, s->inbuf + linelen, s->inlen - linelen);
        s->inlen -= linelen;
        if (s->errors >= MAX_ERRORS) {
            reply(s, "421 4.7.0 Too many errors, closing connection");
            set_state(s, SS_CLOSING);
        }
    }
}

/* Reads what the socket has. Returns 1 when bytes arrived, 0 when nothing more
 * is available now, -1 when the session is over (EOF or error). */
static int session_read(struct session *s)
{
    size_t room = sizeof(s->inbuf) - s->inlen;
    ssize_t n;

    if (room == 0)
        return 0;
    if (s->ssl != NULL) {
        int r = SSL_read(s->ssl, s->inbuf + s->inlen, (int)room);
        if (r <= 0) {
            int e = SSL_get_error(s->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                return 0;
            if (e == SSL_ERROR_WANT_WRITE) {
                s->ssl_want_write = 1;
                return 0;
            }
            ERR_clear_error();
            return -1;
        }
        n = r;
    } else {
        n = read(s->fd, s->inbuf + s->inlen, room);
        if (n < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        if (n == 0)
            return -1;
    }
    s->inlen += (size_t)n;
    s->last_active = time(NULL);
    return 1;
}

static void session_pump(struct session *s)
{
    if (s->closed)
        return;
    for (;;) {
        int held_back;

        if (s->handshaking) {
            if (tls_continue(s) != 0) {
                session_close(s);
                return;
            }
            if (s->handshaking)
                break;
        }
        process_input(s);
        held_back = s->outlen >= OUTBUF_PAUSE; /* commands wait in inbuf for the replies */
        if (s->wait == WAIT_STARTTLS_FLUSH) {
            if (session_flush(s) != 0) {
                session_close(s);
                return;
            }
            if (s->outlen > 0)
                break;
            if (s->inlen > 0)
                log_warn("session=%s client=%s discarded %zu bytes sent after STARTTLS",
                         s->id, s->client_ip, s->inlen);
            s->inlen = 0;
            s->wait = WAIT_NONE;
            transaction_reset(s);
            set_state(s, SS_GREETING);
            s->helo[0] = '\0';
            if (tls_begin(s) != 0) {
                session_close(s);
                return;
            }
            continue;
        }
        if (s->wait != WAIT_NONE || s->state == SS_CLOSING)
            break;
        /* Replies first: while they cannot leave, nothing more is read. */
        if (session_flush(s) != 0) {
            session_close(s);
            return;
        }
        if (s->outlen > 0)
            break;
        if (held_back)
            continue; /* the replies have left: the commands they held back are next */
        int r = session_read(s);
        if (r < 0) {
            log_info("session=%s client=%s connection closed by client", s->id, s->client_ip);
            session_close(s);
            return;
        }
        if (r == 0)
            break;
    }
    if (session_flush(s) != 0) {
        session_close(s);
        return;
    }
    if (s->state == SS_CLOSING && s->outlen == 0 && s->wait == WAIT_NONE) {
        session_close(s);
        return;
    }
    update_interest(s);
}

/* ---- lifecycle ------------------------------------------------------------- */

void sockaddr_text(const struct sockaddr_storage *ss, char *ip, size_t iplen)
{
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, ip, (socklen_t)iplen);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, ip, (socklen_t)iplen);
    else
        str_lcpy(ip, "unknown", iplen);
}

/* Puts s into a free slot of the worker's table with a new generation. */
static int slot_take(struct worker *w, struct session *s)
{
    uint32_t slot;

    for (slot = 0; slot < w->nslots && w->slots[slot] != NULL; slot++)
        ;
    if (slot == w->nslots) {
        uint32_t n = w->nslots ? w->nslots * 2 : 64;
        struct session **p = realloc(w->slots, sizeof(*p) * n);

        if (p == NULL)
            return -1;
        memset(p + w->nslots, 0, sizeof(*p) * (n - w->nslots));
        w->slots = p;
        w->nslots = n;
    }
    /* Generation 0 names the worker's own descriptors, never a session. */
    if (++w->generation == 0)
        w->generation = 1;
    w->slots[slot] = s;
    s->slot = slot;
    s->gen = w->generation;
    return 0;
}

void session_start(struct worker *w, int fd, const struct sockaddr_storage *ss, int implicit_tls)
{
    struct session *s = calloc(1, sizeof(*s));
    struct epoll_event ev;

    if (s == NULL || slot_take(w, s) != 0) {
        char ip[64];

        sockaddr_text(ss, ip, sizeof(ip));
        smtp_limits_leave(ip);
        close(fd);
        free(s);
        return;
    }
    s->w = w;
    /* The settings of the moment stay the session's to its end, a reload between
     * (a new server certificate, new limits) notwithstanding. */
    s->set = smtp_settings_get();
    s->cfg = &s->set->cfg;
    s->fd = fd;
    s->spool_fd = -1;
    s->declared_size = -1;
    s->implicit_tls = implicit_tls;
    s->last_active = time(NULL);
    smtp_session_id(s->id, sizeof(s->id));
    sockaddr_text(ss, s->client_ip, sizeof(s->client_ip));

    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.u64 = EV_HANDLE(s->slot, s->gen);
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        /* Never registered, so no event can name it: freed at once. */
        log_err("epoll_ctl add: %s", strerror(errno));
        w->slots[s->slot] = NULL;
        smtp_limits_leave(s->client_ip);
        close(fd);
        smtp_settings_put(s->set);
        free(s);
        return;
    }
    log_info("session=%s client=%s connect from [%s]%s", s->id, s->client_ip, s->client_ip,
             implicit_tls ? " (implicit TLS)" : "");
    if (implicit_tls) {
        if (tls_begin(s) != 0) {
            session_close(s);
            return;
        }
    } else {
        reply(s, "220 %s ESMTP submitd", s->cfg->hostname);
    }
    session_pump(s);
}

/* Gives the connection back: descriptor, TLS state, and the session's place in
 * the per-address count. */
static void release_connection(struct session *s)
{
    epoll_ctl(s->w->epfd, EPOLL_CTL_DEL, s->fd, NULL);
    if (s->ssl != NULL) {
        if (!s->handshaking)
            (void)SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
        s->ssl = NULL;
        ERR_clear_error();
    }
    close(s->fd);
    s->fd = -1;
    smtp_limits_leave(s->client_ip);
}

/*
 * Ends the session. It may be called from the handling of any event, also one
 * that is not the session's own (an answer from authz or queue), and more than
 * once: the session leaves the slot table at once, so that no later event or
 * answer finds it, but its memory stays until session_reap() at the end of the
 * batch, because the callers up the stack may still look at it.
 */
static void session_close(struct session *s)
{
    struct worker *w = s->w;

    if (s->closed)
        return;
    if (!s->detached) {
        log_info("session=%s client=%s disconnect%s%s", s->id, s->client_ip,
                 s->user[0] ? " user=" : "", s->user);
        release_connection(s);
        /* A message being committed is the queue's now and may be relayed: keep
         * the session until the answer, so that its accept is still audited. */
        if (s->wait == WAIT_COMMIT) {
            s->detached = 1;
            return;
        }
    }
    transaction_reset(s);
    if (s->identity_requested)
        session_end_grant(s);
    w->slots[s->slot] = NULL;
    s->closed = 1;
    s->next_closed = w->closed;
    w->closed = s;
}

int session_reap(struct worker *w)
{
    int n = 0;

    while (w->closed != NULL) {
        struct session *s = w->closed;

        w->closed = s->next_closed;
        free(s->outbuf);
        smtp_settings_put(s->set);
        free(s);
        n++;
    }
    return n;
}

void session_shutdown(struct session *s)
{
    if (!s->detached && s->state != SS_CLOSING && !s->handshaking &&
        s->wait != WAIT_STARTTLS_FLUSH) {
        reply(s, "421 4.3.2 %s Service shutting down", s->cfg->hostname);
        (void)session_flush(s);
    }
    session_close(s);
}

void session_on_event(struct worker *w, uint64_t handle, uint32_t events)
{
    struct session *s = session_for(w, handle);

    /* Closed earlier in this batch, or its client gone while the commit is
     * pending: the event is stale. */
    if (s == NULL || s->detached)
        return;
    /* Both directions are gone: no reply can reach the client any more, and
     * nothing it sent is acknowledged. */
    if (events & (EPOLLERR | EPOLLHUP)) {
        log_info("session=%s client=%s connection lost", s->id, s->client_ip);
        session_close(s);
        return;
    }
    session_pump(s);
}

/* The TLS handshake and the first command after it are due within
 * tls_handshake_timeout; time spent waiting for our own processes is not the
 * client's and moves the deadline. Returns 1 when it has passed. */
static int tls_deadline_passed(struct session *s, time_t now, int internal)
{
    if (s->tls_deadline == 0)
        return 0;
    if (internal && now > s->tls_checked)
        s->tls_deadline += now - s->tls_checked;
    s->tls_checked = now;
    return !internal && now > s->tls_deadline;
}

void session_check_timeout(struct session *s, time_t now)
{
    /* While the session waits for our own processes the client is not at fault;
     * the clock runs from the request. An answer that never comes still ends
     * the session, with a temporary failure. */
    int internal = s->wait != WAIT_NONE && s->wait != WAIT_STARTTLS_FLUSH;
    time_t since = internal ? s->wait_since : s->last_active;
    int tls_late = !s->detached && tls_deadline_passed(s, now, internal);
    const struct config *cfg = s->cfg;

    if (now - since <= cfg->timeout && !tls_late)
        return;
    if (s->detached) {
        log_err("session=%s client=%s no commit answer from the queue in %d s", s->id, s->client_ip,
                cfg->timeout);
        session_close(s);
        return;
    }
    if (tls_late) {
        log_info("session=%s client=%s %s not done within tls_handshake_timeout (%d s)",
                 s->id, s->client_ip,
                 s->handshaking ? "TLS handshake" : "first command after the TLS handshake",
                 cfg->tls_handshake_timeout);
        if (!s->handshaking)
            reply(s, "421 4.4.2 %s Error: timeout exceeded", cfg->hostname);
    } else if (internal) {
        log_err("session=%s client=%s no answer from the %s process in %d s", s->id, s->client_ip,
                s->wait == WAIT_OPEN || s->wait == WAIT_COMMIT ? "queue" : "authz",
                cfg->timeout);
        reply(s, "421 4.3.0 %s Internal timeout, try again later", cfg->hostname);
    } else {
        log_info("session=%s client=%s timeout after %d s", s->id, s->client_ip, cfg->timeout);
        if (!s->handshaking && s->wait != WAIT_STARTTLS_FLUSH)
            reply(s, "421 4.4.2 %s Error: timeout exceeded", cfg->hostname);
    }
    (void)session_flush(s);
    session_close(s);
}

/* ---- answers from authz and queue ------------------------------------------ */

static struct session *session_for(struct worker *w, uint64_t id)
{
    uint32_t slot = (uint32_t)(id >> 32), gen = (uint32_t)id;

    if (slot < w->nslots && w->slots[slot] != NULL && w->slots[slot]->gen == gen)
        return w->slots[slot];
    return NULL;
}

static void on_identity(struct session *s, uint64_t decision, const char *user,
                        const char *reply_text)
{
    s->identity_known = 1;
    s->identity_decision = (int)decision;
    if (decision == IPC_ALLOW) {
        str_lcpy(s->user, user, sizeof(s->user));
        log_info("session=%s client=%s identity user=%s", s->id, s->client_ip, s->user);
    } else {
        str_lcpy(s->identity_reply, reply_text, sizeof(s->identity_reply));
        log_info("session=%s client=%s no identity: %s", s->id, s->client_ip, reply_text);
    }
}

static void on_sender(struct session *s, uint64_t decision, const char *reply_text)
{
    if (decision == IPC_ALLOW) {
        str_lcpy(s->mail_from, s->pending_from, sizeof(s->mail_from));
        set_state(s, SS_MAIL);
        reply(s, "250 2.1.0 Ok");
    } else {
        reply(s, "%s", reply_text);
    }
    s->pending_from[0] = '\0';
}

static void on_opened(struct session *s, uint64_t status, const char *qid, const char *why,
                      int fd)
{
    if (status != 0 || fd < 0 || !spool_id_valid(qid)) {
        log_err("session=%s client=%s queue refused the message: %s", s->id, s->client_ip, why);
        if (fd >= 0)
            close(fd);
        reply(s, "452 4.3.1 Insufficient system storage");
        return;
    }
    s->spool_fd = fd;
    str_lcpy(s->queue_id, qid, sizeof(s->queue_id));
    s->stage = malloc(STAGE_MAX);
    if (s->stage == NULL) {
        transaction_reset(s);
        reply(s, "452 4.3.1 Insufficient system storage");
        return;
    }
    data_parser_init(&s->dp);
    set_state(s, SS_DATA);
    reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static void on_committed(struct session *s, uint64_t status, const char *qid, const char *why)
{
    char rcpts[2048];

    rcpt_list(s, rcpts, sizeof(rcpts));
    if (status != 0 || strcmp(qid, s->queue_id) != 0) {
        log_err("session=%s client=%s queue commit of %s failed: %s", s->id, s->client_ip,
                s->queue_id, why);
        audit(s, "data", "tempfail", why[0] ? why : "queue commit failed", rcpts, s->msg_size);
        reply(s, "452 4.3.1 Insufficient system storage");
    } else {
        log_info("session=%s client=%s queued id=%s user=%s from=<%s> nrcpt=%d size=%lld",
                 s->id, s->client_ip, s->queue_id, s->user, s->mail_from, s->nrcpt, s->msg_size);
        /* The 250 waits until the accept row is written (DESIGN §9): a crash right
         * after it cannot leave a relayed message without its audit row. */
        if (!s->detached &&
            audit_send(s, req_id(s), "submission", "accept", NULL, rcpts, s->msg_size) == 0) {
            str_lcpy(s->accepted_id, s->queue_id, sizeof(s->accepted_id));
            wait_for(s, WAIT_ACCEPT_AUDIT);
        } else {
            audit(s, "submission", "accept",
                  s->detached ? "client left before the reply" : NULL, rcpts, s->msg_size);
            reply(s, "250 2.0.0 Ok: queued as %s", s->queue_id);
        }
    }
    /* The file belongs to the queue now (or is gone): nothing to abort. */
    s->spool_fd = -1;
    transaction_reset(s);
}

static void on_authz_result(struct session *s, const struct ipc_result *r)
{
    if (s->wait == WAIT_ACCEPT_AUDIT) {
        /* Queued durably either way: a 4xx now would only make the client send the
         * message twice. */
        if (r->decision != IPC_ALLOW)
            log_err("session=%s accept row of %s not written; the message is queued",
                    s->id, s->accepted_id);
        reply(s, "250 2.0.0 Ok: queued as %s", s->accepted_id);
    } else if (s->wait == WAIT_IDENTITY) {
        on_identity(s, (uint64_t)r->decision, r->user, r->reply);
    } else if (s->wait == WAIT_SENDER) {
        s->rcpt_budget = r->rcpt_budget > (uint64_t)LLONG_MAX ? -1 : (long long)r->rcpt_budget;
        on_sender(s, (uint64_t)r->decision, r->reply);
    } else if (s->wait == WAIT_PASSWORD) {
        if (r->decision == IPC_ALLOW) {
            str_lcpy(s->user, r->user, sizeof(s->user));
            s->password_ok = 1;
            s->auth_done = 1;
            log_info("session=%s client=%s authenticated user=%s by password", s->id, s->client_ip,
                     s->user);
            reply(s, "235 2.7.0 Authentication successful");
        } else {
            reply(s, "%s", r->reply);
            if (r->decision == IPC_DENY && ++s->auth_failures >= 3) {
                reply(s, "421 4.7.0 %s Too many failed authentications", s->cfg->hostname);
                set_state(s, SS_CLOSING);
            }
        }
    } else if (s->wait == WAIT_AUTHZID) {
        if (r->decision == IPC_ALLOW) {
            s->auth_done = 1;
            reply(s, "235 2.7.0 Authentication successful");
        } else {
            reply(s, "%s", r->reply);
        }
    } else if (s->wait == WAIT_HEADER_FROM) {
        s->wait = WAIT_NONE;
        if (r->decision == IPC_ALLOW) {
            data_commit(s);
        } else {
            reply(s, "%s", r->reply);
            transaction_reset(s);
        }
    } else {
        fatal("session=%s unexpected authz answer", s->id);
    }
}

/* The queue's answer for a session that is gone: give an opened file back. */
static void queue_answer_orphan(struct worker *w, struct ipc_msg *m,
                                const struct ipc_queue_answer *q)
{
    struct ipc_abort v;

    if (m->fd >= 0)
        close(m->fd);
    m->fd = -1;
    if (m->type == IPC_QUEUE_OPENED && q->status == 0 && spool_id_valid(q->queue_id)) {
        str_lcpy(v.queue_id, q->queue_id, sizeof(v.queue_id));
        if (ipc_enc_abort(m, &v) == 0)
            (void)ipc_send(w->queue_fd, m);
    }
}

void session_on_ipc(struct worker *w, struct ipc_msg *m)
{
    struct session *s = session_for(w, m->id);
    struct ipc_result r;
    struct ipc_queue_answer q;

    /* Only an OPENED answer carries a descriptor. */
    if (m->fd >= 0 && m->type != IPC_QUEUE_OPENED)
        fatal("unexpected descriptor with message type %u", m->type);
    switch (m->type) {
    case IPC_AUTHZ_RESULT:
        if (ipc_dec_result(m, &r) != 0)
            fatal("malformed authz answer");
        if (s == NULL)
            return;
        if (s->wait == WAIT_HEADER_FROM) {
            /* The answer ends the wait itself, and may start the commit. */
            on_authz_result(s, &r);
            session_pump(s);
            return;
        }
        on_authz_result(s, &r);
        break;
    case IPC_QUEUE_OPENED:
    case IPC_QUEUE_COMMITTED:
        if (ipc_dec_queue_answer(m, &q) != 0)
            fatal("malformed queue answer");
        if (m->fd >= 0 && (q.status != 0 || s == NULL || s->wait != WAIT_OPEN)) {
            close(m->fd);
            m->fd = -1;
        }
        if (s == NULL) {
            queue_answer_orphan(w, m, &q);
            return;
        }
        if (m->type == IPC_QUEUE_OPENED && s->wait == WAIT_OPEN)
            on_opened(s, (uint64_t)q.status, q.queue_id, q.reason, m->fd);
        else if (m->type == IPC_QUEUE_COMMITTED && s->wait == WAIT_COMMIT) {
            s->wait = WAIT_NONE;
            on_committed(s, (uint64_t)q.status, q.queue_id, q.reason);
            if (s->wait == WAIT_ACCEPT_AUDIT) {
                session_pump(s);
                return;
            }
        } else
            fatal("session=%s unexpected queue answer", s->id);
        break;
    default:
        fatal("unexpected message type %u from authz/queue", m->type);
    }
    s->wait = WAIT_NONE;
    if (s->detached) {
        session_close(s);
        return;
    }
    session_pump(s);
}
