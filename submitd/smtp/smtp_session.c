/*
 * The ground of the session state machine (session.h): replies, state changes,
 * waits, the transaction's life, and the guards of the command table. The commands
 * are in smtp_cmd.c, AUTH in smtp_sasl.c, the message in smtp_data.c, the answers
 * of authz and queue in smtp_answer.c; the socket side is smtp_io.c.
 */
#include "session.h"

#include "log.h"
#include "smtp_limits.h"
#include "smtp_req.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUTBUF_MAX (256 * 1024)

static const char *const state_names[] = { "greeting", "ready", "mail", "rcpt", "data",
                                           "closing" };

/* ---- output ---------------------------------------------------------------- */

void session_reply(struct session *s, const char *fmt, ...)
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

void session_greet(struct session *s)
{
    session_reply(s, "220 %s ESMTP submitd", s->cfg->hostname);
}

/* Every transition goes through here, so that the debug log shows them all. */
void session_set_state(struct session *s, enum sess_state st)
{
    if (s->state != st)
        log_debug("session=%s client=%s state %s -> %s", s->id, s->client_ip,
                  state_names[s->state], state_names[st]);
    s->state = st;
}

void session_wait(struct session *s, enum sess_wait w)
{
    s->wait = w;
    s->wait_since = time(NULL);
}

/* ---- the transaction ------------------------------------------------------- */

void tx_data_leave(struct smtp_tx *tx)
{
    if (tx->data_slot) {
        tx->data_slot = 0;
        smtp_limits_data_leave();
    }
}

static void tx_free(struct session *s)
{
    struct smtp_tx *tx = s->tx;

    if (tx == NULL)
        return;
    if (tx->spool_fd >= 0) {
        close(tx->spool_fd);
        req_abort(s, tx->queue_id);
    }
    tx_data_leave(tx);
    for (int i = 0; i < tx->nrcpt; i++)
        free(tx->rcpt[i]);
    free(tx->rcpt);
    free(tx->hdrbuf);
    free(tx->header_from);
    free(tx->stage);
    free(tx);
    s->tx = NULL;
}

struct smtp_tx *tx_begin(struct session *s, const char *addr)
{
    struct smtp_tx *tx;

    tx_free(s);
    tx = calloc(1, sizeof(*tx));
    if (tx == NULL) {
        session_reply(s, "452 4.3.1 Insufficient system storage");
        return NULL;
    }
    str_lcpy(tx->mail_from, addr, sizeof(tx->mail_from));
    tx->declared_size = -1;
    tx->rcpt_budget = -1;
    tx->spool_fd = -1;
    s->tx = tx;
    return tx;
}

void tx_end(struct session *s)
{
    tx_free(s);
    if (s->state != SS_GREETING && s->state != SS_CLOSING)
        session_set_state(s, SS_READY);
}

int tx_add_rcpt(struct smtp_tx *tx, const char *addr)
{
    char *copy = strdup(addr);
    char **grown;

    if (copy == NULL)
        return -1;
    grown = realloc(tx->rcpt, sizeof(*grown) * (size_t)(tx->nrcpt + 1));
    if (grown == NULL) {
        free(copy);
        return -1;
    }
    grown[tx->nrcpt] = copy;
    tx->rcpt = grown;
    tx->nrcpt++;
    return 0;
}

void tx_rcpt_list(const struct session *s, char *out, size_t outlen)
{
    size_t pos = 0;

    out[0] = '\0';
    for (int i = 0; s->tx != NULL && i < s->tx->nrcpt; i++) {
        size_t n = strlen(s->tx->rcpt[i]);
        if (pos + n + 5 >= outlen) {
            str_lcpy(out + pos, "...", outlen - pos);
            return;
        }
        if (i > 0)
            out[pos++] = ',';
        memcpy(out + pos, s->tx->rcpt[i], n + 1);
        pos += n;
    }
}

/* ---- guards: reply and return 0 when the command may not proceed ------------ */

int check_tls(struct session *s, const char *cmd)
{
    if (s->tls_done)
        return 1;
    session_reply(s, "530 5.7.0 Must issue a STARTTLS command first");
    if (!s->audited_pretls) {
        char why[64];
        str_fmt(why, sizeof(why), "%s before STARTTLS", cmd);
        req_audit(s, "command", "reject", why, NULL, -1);
        s->audited_pretls = 1;
    }
    return 0;
}

int check_helo(struct session *s)
{
    if (s->state != SS_GREETING)
        return 1;
    session_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
    return 0;
}

int check_transaction(struct session *s)
{
    if (s->state == SS_MAIL || s->state == SS_RCPT)
        return 1;
    session_reply(s, "503 5.5.1 Error: need MAIL command");
    return 0;
}

/* The session identity must allow relaying: the replies of DESIGN §8. */
int check_identity(struct session *s)
{
    int mode = s->cfg->auth_password;

    /* second-factor: the certificate and the password of the same user. */
    if (mode == AUTH_PASSWORD_SECOND_FACTOR && s->identity_known &&
        s->identity_decision == IPC_ALLOW && !s->password_ok) {
        session_reply(s, "530 5.7.0 Authentication required (certificate and password)");
        return 0;
    }
    if (s->password_ok)
        return 1;
    if (mode == AUTH_PASSWORD_FALLBACK && !s->peer.sha256[0]) {
        session_reply(s, "530 5.7.0 Authentication required");
        return 0;
    }
    if (s->identity_known && s->identity_decision == IPC_ALLOW)
        return 1;
    if (!s->identity_known)
        session_reply(s, "454 4.7.0 Temporary authentication failure");
    else
        session_reply(s, "%s", s->identity_reply);
    return 0;
}

/* ---- TLS and the end ------------------------------------------------------- */

void session_starttls_reset(struct session *s)
{
    if (s->inlen > 0)
        log_warn("session=%s client=%s discarded %zu bytes sent after STARTTLS",
                 s->id, s->client_ip, s->inlen);
    s->inlen = 0;
    s->wait = WAIT_NONE;
    tx_end(s);
    session_set_state(s, SS_GREETING);
    s->helo[0] = '\0';
}

void session_tls_established(struct session *s, unsigned char **der, const size_t *derlen,
                             int n)
{
    s->tls_done = 1;
    /* On the implicit-TLS port the greeting comes after the handshake. */
    if (s->implicit_tls)
        session_greet(s);
    log_info("session=%s client=%s TLS established %s, client certificate: %s%s",
             s->id, s->client_ip, s->peer.tls,
             s->peer.subject[0] ? "subject=" : "none", s->peer.subject);
    req_identity(s, der, derlen, n);
}

void session_end(struct session *s)
{
    tx_end(s);
    if (s->identity_requested)
        req_session_end(s);
}
