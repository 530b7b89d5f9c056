/*
 * The SMTP commands and the command table. Every command names the guards it
 * needs in the table, and dispatch() applies them, in one order, before the
 * handler runs: TLS first (DESIGN §3.2), then HELO, then a transaction, then the
 * identity. A handler only checks what is its own (syntax, its arguments).
 */
#include "smtp_cmd.h"

#include "log.h"
#include "smtp_data.h"
#include "smtp_req.h"
#include "smtp_sasl.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ERRORS 20

/* The guards of a command; without PRETLS a command needs TLS. */
#define PRETLS 0x01         /* allowed before STARTTLS */
#define NEEDS_HELO 0x02     /* after EHLO or HELO */
#define IN_TRANSACTION 0x04 /* after an accepted MAIL */
#define NEEDS_IDENTITY 0x08 /* the session's identity must allow relaying */

static void cmd_ehlo(struct session *s, const char *arg);
static void cmd_helo(struct session *s, const char *arg);
static void cmd_starttls(struct session *s, const char *arg);
static void cmd_mail(struct session *s, const char *arg);
static void cmd_rcpt(struct session *s, const char *arg);
static void cmd_rset(struct session *s, const char *arg);
static void cmd_noop(struct session *s, const char *arg);
static void cmd_quit(struct session *s, const char *arg);
static void cmd_vrfy(struct session *s, const char *arg);
static void cmd_not_implemented(struct session *s, const char *arg);
static void cmd_unknown(struct session *s, const char *arg);

static const struct smtp_cmd {
    enum smtp_verb verb;
    const char *name;       /* in the audit row of a command before STARTTLS */
    unsigned flags;
    void (*handler)(struct session *s, const char *arg);
} commands[] = {
    { CMD_EHLO, "EHLO", PRETLS, cmd_ehlo },
    { CMD_HELO, "HELO", PRETLS, cmd_helo },
    { CMD_STARTTLS, "STARTTLS", PRETLS, cmd_starttls },
    { CMD_AUTH, "AUTH", NEEDS_HELO, sasl_cmd_auth },
    { CMD_MAIL, "MAIL", NEEDS_HELO | NEEDS_IDENTITY, cmd_mail },
    { CMD_RCPT, "RCPT", IN_TRANSACTION, cmd_rcpt },
    { CMD_DATA, "DATA", 0, data_cmd },
    { CMD_RSET, "RSET", PRETLS, cmd_rset },
    { CMD_NOOP, "NOOP", PRETLS, cmd_noop },
    { CMD_QUIT, "QUIT", PRETLS, cmd_quit },
    { CMD_VRFY, "VRFY", 0, cmd_vrfy },
    { CMD_BDAT, "command", 0, cmd_not_implemented },
    { CMD_EXPN, "command", 0, cmd_not_implemented },
    { CMD_HELP, "command", 0, cmd_not_implemented },
    { CMD_UNKNOWN, "command", PRETLS, cmd_unknown },
};

static void dispatch(struct session *s, char *line)
{
    const char *arg;
    enum smtp_verb v = smtp_parse_verb(line, &arg);
    const struct smtp_cmd *c = NULL;

    log_debug("session=%s client=%s <<< %s", s->id, s->client_ip, line);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]) && c == NULL; i++)
        if (commands[i].verb == v)
            c = &commands[i];
    if (c == NULL)
        fatal("command %d missing from the command table", (int)v);
    if (!(c->flags & PRETLS) && !check_tls(s, c->name))
        return;
    if ((c->flags & NEEDS_HELO) && !check_helo(s))
        return;
    if ((c->flags & IN_TRANSACTION) && !check_transaction(s))
        return;
    if ((c->flags & NEEDS_IDENTITY) && !check_identity(s))
        return;
    c->handler(s, arg);
}

/* ---- the commands ---------------------------------------------------------- */

static void ehlo_helo(struct session *s, const char *arg, int extended)
{
    unsigned mechs;

    if (arg[0] == '\0') {
        session_reply(s, "501 5.5.4 Syntax: %s hostname", extended ? "EHLO" : "HELO");
        return;
    }
    /* The name goes into the Received header: a domain or an address literal,
     * leniently (Windows names carry '_'), but never spaces or control bytes. */
    if (strlen(arg) > 255 || strspn(arg, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                         "0123456789.-_:[]") != strlen(arg)) {
        s->errors++;
        session_reply(s, "501 5.5.4 Invalid %s hostname", extended ? "EHLO" : "HELO");
        return;
    }
    tx_end(s);
    str_lcpy(s->helo, arg, sizeof(s->helo));
    session_set_state(s, SS_READY);
    if (!extended) {
        session_reply(s, "250 %s", s->cfg->hostname);
        return;
    }
    session_reply(s, "250-%s", s->cfg->hostname);
    session_reply(s, "250-PIPELINING");
    if (!s->tls_done) {
        /* Nothing that implies trust before TLS. */
        session_reply(s, "250-ENHANCEDSTATUSCODES");
        session_reply(s, "250 STARTTLS");
        return;
    }
    session_reply(s, "250-SIZE %lld", s->cfg->max_message_size);
    session_reply(s, "250-8BITMIME");
    mechs = sasl_offered(s);
    if (mechs != 0)
        session_reply(s, "250-AUTH%s%s", (mechs & SASL_EXTERNAL) ? " EXTERNAL" : "",
                      (mechs & SASL_PLAIN) ? " PLAIN" : "");
    session_reply(s, "250 ENHANCEDSTATUSCODES");
}

static void cmd_ehlo(struct session *s, const char *arg)
{
    ehlo_helo(s, arg, 1);
}

static void cmd_helo(struct session *s, const char *arg)
{
    ehlo_helo(s, arg, 0);
}

static void cmd_starttls(struct session *s, const char *arg)
{
    if (s->tls_done) {
        session_reply(s, "503 5.5.1 Error: TLS already active");
        return;
    }
    if (arg[0] != '\0') {
        session_reply(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    session_reply(s, "220 2.0.0 Ready to start TLS");
    /* The handshake starts once the 220 has left; every byte the client sent after
     * the command is discarded then (CVE-2011-0411 class of injection). */
    session_wait(s, WAIT_STARTTLS_FLUSH);
}

static void cmd_mail(struct session *s, const char *arg)
{
    char addr[SMTP_ADDR_MAX + 1];
    const char *params, *why;
    struct mail_params mp;

    if (s->state != SS_READY) {
        session_reply(s, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if (smtp_parse_path(arg, "FROM:", addr, sizeof(addr), &params, &why) != 0) {
        session_reply(s, "501 5.1.7 %s", why);
        return;
    }
    if (smtp_parse_mail_params(params, &mp, &why) != 0) {
        session_reply(s, "555 5.5.4 %s", why);
        return;
    }
    if (tx_begin(s, addr) == NULL)
        return;
    if (mp.size > s->cfg->max_message_size) {
        req_audit(s, "mail", "reject", "declared SIZE exceeds max_message_size", NULL, mp.size);
        tx_end(s);
        session_reply(s, "552 5.3.4 Message size exceeds fixed limit");
        return;
    }
    s->tx->declared_size = mp.size;
    /* The transaction begins when authz owns the sender to the user (smtp_answer.c). */
    if (req_sender(s, addr) != 0) {
        tx_end(s);
        session_reply(s, "454 4.7.0 Temporary authentication failure");
    }
}

static void cmd_rcpt(struct session *s, const char *arg)
{
    struct smtp_tx *tx = s->tx;
    char addr[SMTP_ADDR_MAX + 1];
    const char *params, *why;

    if (smtp_parse_path(arg, "TO:", addr, sizeof(addr), &params, &why) != 0) {
        session_reply(s, "501 5.1.3 %s", why);
        return;
    }
    if (addr[0] == '\0') {
        session_reply(s, "501 5.1.3 Null recipient not allowed");
        return;
    }
    if (params[0] != '\0') {
        session_reply(s, "555 5.5.4 Unsupported parameter");
        return;
    }
    if (tx->nrcpt >= s->cfg->max_recipients) {
        if (tx->nrcpt == s->cfg->max_recipients) {
            char why2[64];
            str_fmt(why2, sizeof(why2), "more than %d recipients", s->cfg->max_recipients);
            req_audit(s, "rcpt", "reject", why2, addr, -1);
        }
        session_reply(s, "452 4.5.3 Too many recipients");
        return;
    }
    if (tx->rcpt_budget >= 0 && tx->nrcpt >= tx->rcpt_budget) {
        if (tx->nrcpt == tx->rcpt_budget)
            req_audit(s, "rcpt", "tempfail", "rate limit: rate_recipients_per_hour reached",
                      addr, -1);
        session_reply(s, "450 4.7.1 Rate limit exceeded");
        return;
    }
    if (tx_add_rcpt(tx, addr) != 0) {
        session_reply(s, "452 4.3.1 Insufficient system storage");
        return;
    }
    session_set_state(s, SS_RCPT);
    session_reply(s, "250 2.1.5 Ok");
}

static void cmd_rset(struct session *s, const char *arg)
{
    (void)arg;
    tx_end(s);
    session_reply(s, "250 2.0.0 Ok");
}

static void cmd_noop(struct session *s, const char *arg)
{
    (void)arg;
    session_reply(s, "250 2.0.0 Ok");
}

static void cmd_quit(struct session *s, const char *arg)
{
    (void)arg;
    session_reply(s, "221 2.0.0 Bye");
    session_set_state(s, SS_CLOSING);
}

static void cmd_vrfy(struct session *s, const char *arg)
{
    (void)arg;
    session_reply(s, "252 2.5.0 Cannot VRFY user");
}

static void cmd_not_implemented(struct session *s, const char *arg)
{
    (void)arg;
    session_reply(s, "502 5.5.1 Command not implemented");
}

static void cmd_unknown(struct session *s, const char *arg)
{
    (void)arg;
    s->errors++;
    session_reply(s, "500 5.5.1 Command unrecognized");
}

/* ---- input ----------------------------------------------------------------- */

/* One complete line without its line end. */
static void command_line(struct session *s, char *line, size_t n)
{
    if (s->tls_done)
        s->tls_deadline = 0; /* the first command after the handshake is here */
    if (memchr(line, '\0', n) != NULL || memchr(line, '\r', n) != NULL) {
        session_reply(s, "500 5.5.2 NUL or bare CR not allowed in commands");
        s->errors++;
    } else if (s->auth_pending != AUTH_PENDING_NONE) {
        sasl_response(s, line);
    } else {
        dispatch(s, line);
    }
}

void session_input(struct session *s)
{
    /* Pipelined commands wait in inbuf while earlier replies cannot leave: what one
     * buffer of commands can produce is bounded, a client that never reads is not. */
    while (s->wait == WAIT_NONE && s->state != SS_CLOSING && s->inlen > 0 &&
           s->outlen < OUTBUF_PAUSE) {
        char *lf;
        size_t linelen;

        if (s->state == SS_DATA) {
            data_input(s);
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
                session_reply(s, "500 5.5.2 Line too long");
                s->errors++;
                s->skip_to_lf = 1;
                s->inlen = 0;
            }
            return;
        }
        linelen = (size_t)(lf - s->inbuf) + 1;
        if (linelen > SMTP_LINE_MAX) {
            session_reply(s, "500 5.5.2 Line too long");
            s->errors++;
        } else {
            char line[SMTP_LINE_MAX + 1];
            size_t n = linelen - 1;

            if (n > 0 && s->inbuf[n - 1] == '\r')
                n--;
            memcpy(line, s->inbuf, n);
            line[n] = '\0';
            command_line(s, line, n);
            explicit_bzero(line, n);
        }
        memmove(s->inbuf, s->inbuf + linelen, s->inlen - linelen);
        s->inlen -= linelen;
        if (s->errors >= MAX_ERRORS) {
            session_reply(s, "421 4.7.0 Too many errors, closing connection");
            session_set_state(s, SS_CLOSING);
        }
    }
}
