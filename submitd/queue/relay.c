/* The SMTP client that hands queued messages to the upstream MTA. */
#include "relay.h"

#include "config.h"
#include "log.h"
#include "spool.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_TIMEOUT 60          /* seconds for any single read or write */
#define RELAY_CONNECT_TIMEOUT 15
#define RELAY_IDLE_REUSE 30       /* an idle connection older than this is not reused */

static const struct config *rcfg;
static SSL_CTX *rctx;

int relay_init(const struct config *cfg, char *err, size_t errlen)
{
    rcfg = cfg;
    if (cfg->upstream_tls == UPSTREAM_TLS_NONE)
        return 0;
    rctx = SSL_CTX_new(TLS_client_method());
    if (rctx == NULL) {
        str_fmt(err, errlen, "cannot create the upstream TLS context");
        return -1;
    }
    SSL_CTX_set_min_proto_version(rctx, TLS1_2_VERSION);
    if (cfg->upstream_tls == UPSTREAM_TLS_VERIFY) {
        int ok = cfg->upstream_ca[0] ? SSL_CTX_load_verify_locations(rctx, cfg->upstream_ca, NULL)
                                     : SSL_CTX_set_default_verify_paths(rctx);
        if (ok != 1) {
            str_fmt(err, errlen, "upstream_ca: cannot load %s",
                    cfg->upstream_ca[0] ? cfg->upstream_ca : "the system CA store");
            return -1;
        }
        SSL_CTX_set_verify(rctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(rctx, SSL_VERIFY_NONE, NULL);
    }
    if (cfg->upstream_cert[0]) {
        if (SSL_CTX_use_certificate_chain_file(rctx, cfg->upstream_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(rctx, cfg->upstream_key[0] ? cfg->upstream_key
                                                                  : cfg->upstream_cert,
                                        SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(rctx) != 1) {
            str_fmt(err, errlen, "upstream_cert/upstream_key: cannot load %s",
                    cfg->upstream_cert);
            return -1;
        }
    }
    return 0;
}

void relay_conn_init(struct relay_conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

void relay_conn_close(struct relay_conn *c)
{
    if (c->ssl != NULL) {
        (void)SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
        ERR_clear_error();
    }
    if (c->fd >= 0)
        close(c->fd);
    relay_conn_init(c);
}

static int io_write(struct relay_conn *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (c->ssl != NULL) {
            int r = SSL_write(c->ssl, p, (int)(n > 65536 ? 65536 : n));
            if (r <= 0) {
                ERR_clear_error();
                return -1;
            }
            w = r;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int io_fill(struct relay_conn *c)
{
    ssize_t n;

    if (c->rlen == sizeof(c->rbuf))
        return -1;
    if (c->ssl != NULL) {
        int r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(sizeof(c->rbuf) - c->rlen));
        if (r <= 0) {
            ERR_clear_error();
            return -1;
        }
        n = r;
    } else {
        do {
            n = recv(c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
        } while (n < 0 && errno == EINTR);
        if (n <= 0)
            return -1;
    }
    c->rlen += (size_t)n;
    return 0;
}

/*
 * Reads one (possibly multi-line) reply. Returns the code, or -1 on a broken
 * connection. text receives the last line; caps, when not NULL, collects the
 * EHLO keywords separated by '\n'.
 */
static int read_reply(struct relay_conn *c, char *text, size_t textlen, char *caps, size_t capslen)
{
    int code = -1;

    if (caps != NULL)
        caps[0] = '\0';
    for (;;) {
        char *lf = memchr(c->rbuf, '\n', c->rlen);
        size_t linelen;
        char line[1024];

        if (lf == NULL) {
            if (io_fill(c) != 0)
                return -1;
            continue;
        }
        linelen = (size_t)(lf - c->rbuf) + 1;
        str_fmt(line, sizeof(line), "%.*s", (int)(linelen > 1 && lf[-1] == '\r' ? linelen - 2 : linelen - 1),
                c->rbuf);
        memmove(c->rbuf, c->rbuf + linelen, c->rlen - linelen);
        c->rlen -= linelen;
        /* The text ends up in logs, the audit and bounces: printable ASCII only. */
        for (char *q = line; *q; q++)
            if ((unsigned char)*q < 0x20 || (unsigned char)*q > 0x7e)
                *q = '?';
        if (strlen(line) < 3 || line[0] < '2' || line[0] > '5')
            return -1;
        code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (caps != NULL && strlen(line) > 4) {
            size_t used = strlen(caps);
            str_fmt(caps + used, capslen - used, "%s\n", line + 4);
        }
        if (line[3] != '-') {
            str_lcpy(text, line, textlen);
            return code;
        }
    }
}

static int command(struct relay_conn *c, const char *cmd, char *text, size_t textlen)
{
    char line[1100];

    str_fmt(line, sizeof(line), "%s\r\n", cmd);
    if (io_write(c, line, strlen(line)) != 0)
        return -1;
    return read_reply(c, text, textlen, NULL, 0);
}

static int connect_timeout(const char *host, const char *port, char *why, size_t whylen)
{
    struct addrinfo hints, *res, *ai;
    int fd = -1, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        str_fmt(why, whylen, "%s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        struct pollfd p;
        int err = 0;
        socklen_t el = sizeof(err);
        struct timeval tv = { RELAY_TIMEOUT, 0 };

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
            err = errno;
        } else {
            p.fd = fd;
            p.events = POLLOUT;
            if (poll(&p, 1, RELAY_CONNECT_TIMEOUT * 1000) != 1)
                err = ETIMEDOUT;
            else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0)
                err = errno;
        }
        if (err == 0) {
            /* Back to blocking with timeouts: the relay threads may block. */
            (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
            (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
            break;
        }
        str_fmt(why, whylen, "connect to %s:%s: %s", host, port, strerror(err));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int has_cap(const char *caps, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = caps; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len >= n && strncasecmp(p, name, n) == 0 && (len == n || p[n] == ' '))
            return 1;
        p += len + (eol ? 1 : 0);
    }
    return 0;
}

static int start_tls(struct relay_conn *c, const char *host, char *why, size_t whylen)
{
    struct in6_addr a6;
    struct in_addr a4;
    int is_ip = inet_pton(AF_INET, host, &a4) == 1 || inet_pton(AF_INET6, host, &a6) == 1;

    c->ssl = SSL_new(rctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        str_fmt(why, whylen, "cannot create TLS session");
        return -1;
    }
    if (!is_ip)
        SSL_set_tlsext_host_name(c->ssl, host);
    if (rcfg->upstream_tls == UPSTREAM_TLS_VERIFY) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) != 1 : SSL_set1_host(c->ssl, host) != 1) {
            str_fmt(why, whylen, "cannot set the expected upstream name %s", host);
            return -1;
        }
    }
    if (SSL_connect(c->ssl) != 1) {
        long vr = SSL_get_verify_result(c->ssl);
        unsigned long e = ERR_peek_last_error();
        if (vr != X509_V_OK)
            str_fmt(why, whylen, "TLS with %s failed: certificate verification: %s", host,
                    X509_verify_cert_error_string(vr));
        else
            str_fmt(why, whylen, "TLS with %s failed: %s", host,
                    e ? ERR_reason_error_string(e) : "connection closed");
        ERR_clear_error();
        return -1;
    }
    return 0;
}

/* Connects to the first upstream that answers, with STARTTLS per upstream_tls. */
static int relay_connect(struct relay_conn *c, char *why, size_t whylen)
{
    char item[512], host[256], port[16], text[1024], caps[4096], ehlo[300];

    str_fmt(ehlo, sizeof(ehlo), "EHLO %s", rcfg->hostname);
    for (int i = 0; str_list_item(rcfg->upstream, i, item, sizeof(item)) == 1; i++) {
        int code;

        if (config_split_hostport(item, host, sizeof(host), port, sizeof(port)) != 0)
            continue;
        relay_conn_close(c);
        c->fd = connect_timeout(host, port, why, whylen);
        if (c->fd < 0)
            continue;
        str_lcpy(c->host, item, sizeof(c->host));
        code = read_reply(c, text, sizeof(text), NULL, 0);
        if (code != 220) {
            str_fmt(why, whylen, "%s greeting: %s", item, code < 0 ? "connection lost" : text);
            continue;
        }
        if (io_write(c, ehlo, strlen(ehlo)) != 0 || io_write(c, "\r\n", 2) != 0 ||
            read_reply(c, text, sizeof(text), caps, sizeof(caps)) != 250) {
            str_fmt(why, whylen, "%s EHLO: %s", item, text);
            continue;
        }
        if (rcfg->upstream_tls != UPSTREAM_TLS_NONE) {
            if (!has_cap(caps, "STARTTLS")) {
                str_fmt(why, whylen, "%s does not offer STARTTLS (upstream_tls requires TLS)", item);
                continue;
            }
            code = command(c, "STARTTLS", text, sizeof(text));
            if (code != 220) {
                str_fmt(why, whylen, "%s STARTTLS: %s", item, code < 0 ? "connection lost" : text);
                continue;
            }
            c->rlen = 0; /* nothing may be buffered across the upgrade */
            if (start_tls(c, host, why, whylen) != 0)
                continue;
            if (io_write(c, ehlo, strlen(ehlo)) != 0 || io_write(c, "\r\n", 2) != 0 ||
                read_reply(c, text, sizeof(text), caps, sizeof(caps)) != 250) {
                str_fmt(why, whylen, "%s EHLO after STARTTLS: %s", item, text);
                continue;
            }
        }
        c->pipelining = has_cap(caps, "PIPELINING");
        log_debug("connected to upstream %s (%s%s)", item,
                  c->ssl ? SSL_get_version(c->ssl) : "no TLS", c->pipelining ? ", PIPELINING" : "");
        return 0;
    }
    relay_conn_close(c);
    return -1;
}

/* Sends the body dot-stuffed, then the terminating dot. */
static int send_body(struct relay_conn *c, const struct spool_msg *msg)
{
    const char *p = msg->body, *end = msg->body + msg->body_len;
    char *out = malloc(65536 + 8);
    size_t o = 0;
    int bol = 1;

    if (out == NULL)
        return -1;
    for (; p < end; p++) {
        if (bol && *p == '.')
            out[o++] = '.';
        out[o++] = *p;
        bol = *p == '\n';
        if (o >= 65536) {
            if (io_write(c, out, o) != 0) {
                free(out);
                return -1;
            }
            o = 0;
        }
    }
    if (!bol) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    memcpy(out + o, ".\r\n", 3);
    o += 3;
    int rc = io_write(c, out, o);
    free(out);
    return rc;
}

static void set_outcome(struct relay_rcpt *o, int code, const char *text)
{
    o->code = code;
    str_lcpy(o->reply, text, sizeof(o->reply));
}

/* Outcomes not known yet (code 0 and no text) get the reason why not. */
static void set_unknown(const struct spool_msg *msg, const char *todo, struct relay_rcpt *out,
                        const char *why)
{
    for (int i = 0; i < msg->nrcpt; i++)
        if (todo[i] && out[i].code == 0)
            set_outcome(&out[i], 0, why);
}

/* Ends a failed transaction so that the connection can carry the next one. */
static void reset(struct relay_conn *c, int *broken)
{
    char text[1024];

    if (command(c, "RSET", text, sizeof(text)) != 250)
        *broken = 1;
}

/* Appends "VERB<addr>\r\n" (or just "VERB\r\n" when addr is NULL). */
static int append(char *buf, size_t cap, size_t *len, const char *verb, const char *addr)
{
    if ((addr != NULL ? str_fmt(buf + *len, cap - *len, "%s<%s>\r\n", verb, addr)
                      : str_fmt(buf + *len, cap - *len, "%s\r\n", verb)) != 0)
        return -1;
    *len += strlen(buf + *len);
    return 0;
}

/*
 * One MAIL/RCPT/DATA transaction for the recipients in todo. *broken tells the
 * caller to drop the connection; *body_sent that the upstream may have the message.
 */
static enum relay_result transaction(struct relay_conn *c, const struct spool_msg *msg,
                                     const char *todo, struct relay_rcpt *out, char *summary,
                                     size_t summarylen, int *broken, int *body_sent)
{
    char text[1024], mail_text[1024], refused[1200] = "";
    size_t cap = ((size_t)msg->nrcpt + 2) * 1100, len = 0;
    char *cmds = malloc(cap);
    int code, mail_code, accepted = 0, known = 0, pipelined = c->pipelining;

    *broken = 0;
    *body_sent = 0;
    for (int i = 0; i < msg->nrcpt; i++)
        if (todo[i])
            set_outcome(&out[i], 0, "");
    if (cmds == NULL) {
        str_fmt(summary, summarylen, "out of memory");
        set_unknown(msg, todo, out, summary);
        return RELAY_TEMPFAIL;
    }
    /* With PIPELINING the whole envelope and DATA go in one write (RFC 2920). */
    if (append(cmds, cap, &len, "MAIL FROM:", msg->from) != 0)
        goto toolong;
    for (int i = 0; pipelined && i < msg->nrcpt; i++)
        if (todo[i] && append(cmds, cap, &len, "RCPT TO:", msg->rcpt[i]) != 0)
            goto toolong;
    if (pipelined && append(cmds, cap, &len, "DATA", NULL) != 0)
        goto toolong;
    if (io_write(c, cmds, len) != 0)
        goto lost;
    mail_code = read_reply(c, mail_text, sizeof(mail_text), NULL, 0);
    if (mail_code < 0)
        goto lost;
    for (int i = 0; i < msg->nrcpt; i++) {
        if (!todo[i])
            continue;
        if (!pipelined) {
            if (mail_code != 250)
                break;
            len = 0;
            if (append(cmds, cap, &len, "RCPT TO:", msg->rcpt[i]) != 0)
                goto toolong;
            if (io_write(c, cmds, len) != 0)
                goto lost;
        }
        code = read_reply(c, text, sizeof(text), NULL, 0);
        if (code < 0)
            goto lost;
        if (mail_code != 250)
            continue;     /* pipelined after a refused MAIL: the replies say nothing */
        set_outcome(&out[i], code, text);
        known++;
        if (code == 250 || code == 251)
            accepted++;
        else if (refused[0] == '\0')
            str_fmt(refused, sizeof(refused), "RCPT TO:<%s>: %s", msg->rcpt[i], text);
    }
    if (mail_code != 250) {
        /* The sender was refused: every recipient shares that outcome. */
        for (int i = 0; i < msg->nrcpt; i++)
            if (todo[i])
                set_outcome(&out[i], mail_code >= 500 ? mail_code : 451, mail_text);
        str_fmt(summary, summarylen, "%s MAIL FROM: %s", c->host, mail_text);
        if (pipelined && (code = read_reply(c, text, sizeof(text), NULL, 0)) != 503 &&
            code != 554 && code != 550 && code != 451 && code != 452 && code != 421) {
            *broken = 1;  /* a 354 (or nothing) after a refused MAIL: do not reuse */
        } else {
            reset(c, broken);
        }
        free(cmds);
        return RELAY_OK;
    }
    if (!pipelined) {
        if (accepted == 0) {
            str_fmt(summary, summarylen, "%s %s", c->host, refused);
            reset(c, broken);
            free(cmds);
            return RELAY_OK;
        }
        if (io_write(c, "DATA\r\n", 6) != 0)
            goto lost;
    }
    code = read_reply(c, text, sizeof(text), NULL, 0);
    if (code < 0)
        goto lost;
    if (accepted == 0) {
        str_fmt(summary, summarylen, "%s %s", c->host, refused);
        if (code == 354)
            *broken = 1;  /* never send a message without recipients: drop the line */
        else
            reset(c, broken);
        free(cmds);
        return RELAY_OK;
    }
    if (code != 354) {
        for (int i = 0; i < msg->nrcpt; i++)
            if (todo[i] && (out[i].code == 250 || out[i].code == 251))
                set_outcome(&out[i], code >= 400 ? code : 451, text);
        str_fmt(summary, summarylen, "%s DATA: %s", c->host, text);
        reset(c, broken);
        free(cmds);
        return RELAY_OK;
    }
    free(cmds);
    cmds = NULL;
    *body_sent = 1;
    if (send_body(c, msg) != 0) {
        str_fmt(summary, summarylen, "%s: connection lost while sending the message", c->host);
        goto lost_after_data;
    }
    code = read_reply(c, text, sizeof(text), NULL, 0);
    if (code < 0) {
        str_fmt(summary, summarylen, "%s: connection lost after the message", c->host);
        goto lost_after_data;
    }
    for (int i = 0; i < msg->nrcpt; i++)
        if (todo[i] && (out[i].code == 250 || out[i].code == 251))
            set_outcome(&out[i], code >= 200 && code < 300 ? 250 : code >= 400 ? code : 451,
                        text);
    if (refused[0] != '\0')
        str_fmt(summary, summarylen, "%s: %s; %s", c->host, text, refused);
    else
        str_fmt(summary, summarylen, "%s: %s", c->host, text);
    return RELAY_OK;

lost_after_data:
    /* Nobody knows whether the upstream kept it: the accepted ones stay to retry. */
    *broken = 1;
    for (int i = 0; i < msg->nrcpt; i++)
        if (todo[i] && (out[i].code == 250 || out[i].code == 251))
            set_outcome(&out[i], 0, summary);
    return RELAY_OK;
toolong:
    str_fmt(summary, summarylen, "address too long for the upstream command line");
    set_unknown(msg, todo, out, summary);
    free(cmds);
    return RELAY_TEMPFAIL;
lost:
    *broken = 1;
    str_fmt(summary, summarylen, "%s: connection lost", c->host);
    free(cmds);
    if (known == 0) {
        set_unknown(msg, todo, out, summary);
        return RELAY_TEMPFAIL;
    }
    /* Refusals already heard stand; the rest is retried. */
    for (int i = 0; i < msg->nrcpt; i++)
        if (todo[i] && (out[i].code == 250 || out[i].code == 251))
            out[i].code = 0;
    set_unknown(msg, todo, out, summary);
    return RELAY_OK;
}

enum relay_result relay_deliver(struct relay_conn *c, const struct spool_msg *msg,
                                const char *todo, struct relay_rcpt *out, char *summary,
                                size_t summarylen)
{
    enum relay_result r;
    int broken, reused, body_sent;

    if (c->fd >= 0 && time(NULL) - c->last_used > RELAY_IDLE_REUSE)
        relay_conn_close(c);
    reused = c->fd >= 0;
    if (!reused && relay_connect(c, summary, summarylen) != 0) {
        set_unknown(msg, todo, out, summary);
        for (int i = 0; i < msg->nrcpt; i++)
            if (todo[i])
                set_outcome(&out[i], 0, summary);
        return RELAY_TEMPFAIL;
    }
    r = transaction(c, msg, todo, out, summary, summarylen, &broken, &body_sent);
    if (broken && reused && !body_sent) {
        /* The upstream may have closed an idle connection: one fresh attempt. */
        relay_conn_close(c);
        if (relay_connect(c, summary, summarylen) != 0) {
            for (int i = 0; i < msg->nrcpt; i++)
                if (todo[i])
                    set_outcome(&out[i], 0, summary);
            return RELAY_TEMPFAIL;
        }
        r = transaction(c, msg, todo, out, summary, summarylen, &broken, &body_sent);
    }
    if (broken)
        relay_conn_close(c);
    else
        c->last_used = time(NULL);
    return r;
}
