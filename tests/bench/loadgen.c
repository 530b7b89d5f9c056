/*
 * submitd-loadgen: the project's load generator for mail submission over TLS with
 * client certificates.
 *
 * Each of --concurrency threads runs blocking sessions one after another: connect,
 * greeting, EHLO, STARTTLS (or implicit TLS), TLS handshake with a client
 * certificate, EHLO again, then up to --per-session messages sent sequentially
 * (MAIL FROM, RCPT TO, DATA, 250), QUIT. Messages are claimed one at a time from a
 * shared counter, so the run stops after exactly --messages attempts or, with
 * --duration, when the deadline passes (sessions in flight finish their message).
 *
 * The latency of a message runs from the start of its MAIL FROM to the 250 after the
 * data, except with --per-session 1, where it runs from the TCP connect: there the
 * handshake is part of what each message costs.
 *
 * It only ever connects to the single address given with --host/--port.
 */
#include "cli_out.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define LG_LINE_MAX 1024          /* longest reply line accepted (RFC 5321 says 512) */
#define LG_REPLY_LINES_MAX 100    /* most lines in one multi-line reply */
#define LG_ERR_MAX 512            /* one failure description */
#define LG_FAIL_SLOTS 5           /* distinct failure texts that are reported */
#define LG_CONCURRENCY_MAX 4096
#define LG_SIZE_MAX (64LL * 1024 * 1024)
#define LG_HEADER_MAX 2048        /* room for the generated header block */
#define LG_BODY_LINE 76           /* characters per generated body line */
#define LG_STACK_SIZE (256 * 1024)

/* Reply extensions seen in EHLO that change what the client does. */
#define EXT_STARTTLS 0x01u
#define EXT_SIZE 0x02u
#define EXT_PIPELINING 0x04u
#define EXT_AUTH_EXTERNAL 0x08u

/* Outcome of one step: fine, failed with the session still usable, or session lost. */
enum step_result { STEP_OK = 0, STEP_FAIL = 1, STEP_DEAD = -1 };

struct options {
    const char *host;
    const char *port;
    int implicit_tls;
    const char *cert;
    const char *key;
    const char *cafile;
    const char *from;
    const char *to;
    const char *helo;
    const char *verify_name;  /* check the server certificate for this name when set */
    const char *servername;   /* SNI when set */
    long long concurrency;
    long long messages;       /* -1: unbounded (only --duration stops the run) */
    long long per_session;
    long long size;
    long long duration;       /* seconds, 0: none */
    long long timeout;        /* seconds of server silence before a session fails */
    long long max_failures;   /* stop starting messages after this many failures, 0: never */
    int tls_max;              /* 0: default, else TLS1_2_VERSION or TLS1_3_VERSION */
    int tls_resume;
    int pipelining;
    int auth_external;
    int json;
};

struct failure {
    char text[LG_ERR_MAX];
    long long count;
};

/* One connection, plain or TLS, with a small read buffer for reply lines. */
struct conn {
    int fd;
    SSL *ssl;
    size_t off;
    size_t len;
    char buf[4096];
};

struct reply {
    int code;
    unsigned ext;             /* EXT_* flags, filled for EHLO replies */
    char first[LG_LINE_MAX];  /* first line, kept for failure reports */
    char last[LG_LINE_MAX];   /* last line, where "queued as" is */
};

struct worker {
    pthread_t thread;
    int index;
    long long seq;            /* messages built by this worker, for Message-ID */
    long long ok;
    long long failed;
    long long sessions;
    long long handshakes;
    long long resumed;
    uint32_t *lat_us;         /* latencies of successful messages, microseconds */
    size_t lat_len;
    size_t lat_cap;
    char *msg;                /* message buffer: headers + body + ".\r\n" */
    size_t msg_cap;
    SSL_SESSION *session;     /* last resumable session, with --tls-resume */
    struct conn conn;
};

static struct options opt;
static SSL_CTX *tls_ctx;
static struct sockaddr_storage peer_addr;
static socklen_t peer_addrlen;
static atomic_llong claimed;
static atomic_int stop_requested;
static atomic_llong failed_total;
static uint64_t deadline_us;
static char *body;
static size_t body_len;
static const char *from_domain;
static long long run_id;

static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static struct failure failures[LG_FAIL_SLOTS];
static long long failures_other;

static uint64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * The first interrupt lets messages in flight finish (each is bounded by --timeout) and
 * still prints the summary; a second one ends the program at once.
 */
static void on_signal(int sig)
{
    static const char msg[] = "submitd-loadgen: interrupted again, exiting\n";

    (void)sig;
    if (atomic_exchange(&stop_requested, 1) != 0) {
        ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);

        (void)n;
        _exit(1);
    }
}

/*
 * Claims the next message of the run. False when --messages have all been claimed,
 * the --duration deadline has passed or the run was interrupted.
 */
static int claim_message(void)
{
    if (atomic_load(&stop_requested))
        return 0;
    if (opt.max_failures > 0 && atomic_load(&failed_total) >= opt.max_failures)
        return 0;
    if (deadline_us != 0 && now_us() >= deadline_us)
        return 0;
    if (opt.messages < 0)
        return 1;
    return atomic_fetch_add(&claimed, 1) < opt.messages;
}

/* Records a failure: counts it and keeps the first LG_FAIL_SLOTS distinct texts. */
static void failure_record(struct worker *w, const char *text)
{
    int i;

    w->failed++;
    atomic_fetch_add(&failed_total, 1);
    pthread_mutex_lock(&fail_lock);
    for (i = 0; i < LG_FAIL_SLOTS; i++) {
        if (failures[i].count == 0) {
            str_lcpy(failures[i].text, text, sizeof failures[i].text);
            failures[i].count = 1;
            break;
        }
        if (strcmp(failures[i].text, text) == 0) {
            failures[i].count++;
            break;
        }
    }
    if (i == LG_FAIL_SLOTS)
        failures_other++;
    pthread_mutex_unlock(&fail_lock);
}

static int latency_record(struct worker *w, uint64_t us)
{
    if (w->lat_len == w->lat_cap) {
        size_t cap = w->lat_cap ? w->lat_cap * 2 : 1024;
        uint32_t *p;

        if (cap > SIZE_MAX / sizeof *p)
            return -1;
        p = realloc(w->lat_us, cap * sizeof *p);
        if (p == NULL)
            return -1;
        w->lat_us = p;
        w->lat_cap = cap;
    }
    w->lat_us[w->lat_len++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    return 0;
}

/* Describes the OpenSSL error queue (and a failed verification) in err. */
static void tls_error(SSL *ssl, const char *what, char *err, size_t errlen)
{
    unsigned long e = ERR_peek_last_error();
    char ebuf[256] = "";
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

    if (e != 0)
        ERR_error_string_n(e, ebuf, sizeof ebuf);
    else if (errno != 0)
        str_lcpy(ebuf, strerror(errno), sizeof ebuf);
    else
        str_lcpy(ebuf, "connection closed", sizeof ebuf);
    if (vr != X509_V_OK)
        errf(err, errlen, "%s: %s (%s)", what, ebuf, X509_verify_cert_error_string(vr));
    else
        errf(err, errlen, "%s: %s", what, ebuf);
    ERR_clear_error();
}

static void conn_init(struct conn *c)
{
    c->fd = -1;
    c->ssl = NULL;
    c->off = 0;
    c->len = 0;
}

static int conn_write(struct conn *c, const char *data, size_t len, char *err, size_t errlen)
{
    if (c->ssl != NULL) {
        while (len > 0) {
            size_t n = 0;

            ERR_clear_error();
            errno = 0;
            if (SSL_write_ex(c->ssl, data, len, &n) <= 0) {
                tls_error(c->ssl, "write", err, errlen);
                return -1;
            }
            data += n;
            len -= n;
        }
        return 0;
    }
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            errf(err, errlen, "write: %s", errno == EAGAIN ? "timeout" : strerror(errno));
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads more bytes into the buffer; -1 with err set on error, timeout or EOF. */
static int conn_fill(struct conn *c, char *err, size_t errlen)
{
    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
    }
    if (c->len == sizeof c->buf) {
        errf(err, errlen, "read: reply line too long");
        return -1;
    }
    if (c->ssl != NULL) {
        size_t n = 0;
        int r;

        ERR_clear_error();
        errno = 0;
        r = SSL_read_ex(c->ssl, c->buf + c->len, sizeof c->buf - c->len, &n);
        if (r <= 0) {
            int se = SSL_get_error(c->ssl, r);

            if (se == SSL_ERROR_ZERO_RETURN)
                errf(err, errlen, "read: connection closed by server");
            else if (se == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))
                errf(err, errlen, "read: timeout");
            else
                tls_error(c->ssl, "read", err, errlen);
            return -1;
        }
        c->len += n;
        return 0;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            errf(err, errlen, "read: %s",
                 errno == EAGAIN || errno == EWOULDBLOCK ? "timeout" : strerror(errno));
            return -1;
        }
        if (n == 0) {
            errf(err, errlen, "read: connection closed by server");
            return -1;
        }
        c->len += (size_t)n;
        return 0;
    }
}

/* Reads one CRLF-terminated line (without the CRLF) into line. */
static int conn_read_line(struct conn *c, char *line, size_t linelen, char *err, size_t errlen)
{
    for (;;) {
        char *start = c->buf + c->off;
        char *nl = memchr(start, '\n', c->len - c->off);

        if (nl != NULL) {
            size_t n = (size_t)(nl - start);

            c->off += n + 1;
            if (n > 0 && start[n - 1] == '\r')
                n--;
            if (n >= linelen) {
                errf(err, errlen, "read: reply line too long");
                return -1;
            }
            memcpy(line, start, n);
            line[n] = '\0';
            return 0;
        }
        if (c->len - c->off >= LG_LINE_MAX) {
            errf(err, errlen, "read: reply line too long");
            return -1;
        }
        if (conn_fill(c, err, errlen) != 0)
            return -1;
    }
}

static void reply_note_ext(struct reply *r, const char *kw)
{
    if (strncasecmp(kw, "STARTTLS", 8) == 0 && (kw[8] == '\0' || kw[8] == ' '))
        r->ext |= EXT_STARTTLS;
    else if (strncasecmp(kw, "SIZE", 4) == 0 && (kw[4] == '\0' || kw[4] == ' '))
        r->ext |= EXT_SIZE;
    else if (strncasecmp(kw, "PIPELINING", 10) == 0 && (kw[10] == '\0' || kw[10] == ' '))
        r->ext |= EXT_PIPELINING;
    else if (strncasecmp(kw, "AUTH ", 5) == 0 || strncasecmp(kw, "AUTH=", 5) == 0) {
        const char *p = kw + 5;

        while (*p != '\0') {
            size_t n = strcspn(p, " ");

            if (n == 8 && strncasecmp(p, "EXTERNAL", 8) == 0)
                r->ext |= EXT_AUTH_EXTERNAL;
            p += n;
            p += strspn(p, " ");
        }
    }
}

/*
 * Reads one reply, single- or multi-line ("250-..." continues, "250 ..." ends).
 * Every line must carry the same three-digit code. Sets r->ext from EHLO keywords.
 */
static int reply_read(struct conn *c, struct reply *r, char *err, size_t errlen)
{
    char line[LG_LINE_MAX];
    int i;

    r->code = 0;
    r->ext = 0;
    r->first[0] = '\0';
    r->last[0] = '\0';
    for (i = 0; i < LG_REPLY_LINES_MAX; i++) {
        int code;

        if (conn_read_line(c, line, sizeof line, err, errlen) != 0)
            return -1;
        if (strlen(line) < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
            line[1] > '9' || line[2] < '0' || line[2] > '9' ||
            (line[3] != '\0' && line[3] != ' ' && line[3] != '-')) {
            errf(err, errlen, "malformed reply \"%.200s\"", line);
            return -1;
        }
        code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (i == 0) {
            r->code = code;
            str_lcpy(r->first, line, sizeof r->first);
        } else {
            if (code != r->code) {
                errf(err, errlen, "reply code changed within a reply: \"%.200s\"", line);
                return -1;
            }
            if (line[3] != '\0')
                reply_note_ext(r, line + 4);
        }
        str_lcpy(r->last, line, sizeof r->last);
        if (line[3] != '-')
            return 0;
    }
    errf(err, errlen, "reply has more than %d lines", LG_REPLY_LINES_MAX);
    return -1;
}

/*
 * Sends cmd (without CRLF, may be NULL to only read) and reads the reply. Returns
 * STEP_OK when the code is want, STEP_FAIL with err naming the step and the reply
 * when it is not, and STEP_DEAD when the connection failed or the server said 421.
 */
static enum step_result step(struct conn *c, const char *name, const char *cmd, int want,
                             struct reply *r, char *err, size_t errlen)
{
    char ebuf[LG_ERR_MAX];

    if (cmd != NULL) {
        char line[LG_LINE_MAX];
        size_t n = strlen(cmd);

        if (n + 2 >= sizeof line) {
            errf(err, errlen, "%s: command too long", name);
            return STEP_DEAD;
        }
        memcpy(line, cmd, n);
        memcpy(line + n, "\r\n", 2);
        if (conn_write(c, line, n + 2, ebuf, sizeof ebuf) != 0) {
            errf(err, errlen, "%s: %s", name, ebuf);
            return STEP_DEAD;
        }
    }
    if (reply_read(c, r, ebuf, sizeof ebuf) != 0) {
        errf(err, errlen, "%s: %s", name, ebuf);
        return STEP_DEAD;
    }
    if (r->code == want)
        return STEP_OK;
    errf(err, errlen, "%s: %s", name, r->first);
    return r->code == 421 ? STEP_DEAD : STEP_FAIL;
}

static int tcp_connect(struct conn *c, char *err, size_t errlen)
{
    struct timeval tv;
    int one = 1;

    c->fd = socket(peer_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        errf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    tv.tv_sec = (time_t)opt.timeout;
    tv.tv_usec = 0;
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (const struct sockaddr *)&peer_addr, peer_addrlen) != 0) {
        errf(err, errlen, "connect: %s", errno == EINPROGRESS ? "timeout" : strerror(errno));
        return -1;
    }
    return 0;
}

static int tls_start(struct worker *w, struct conn *c, char *err, size_t errlen)
{
    ERR_clear_error();
    c->ssl = SSL_new(tls_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        tls_error(c->ssl, "TLS setup", err, errlen);
        return -1;
    }
    if (opt.servername != NULL && SSL_set_tlsext_host_name(c->ssl, opt.servername) != 1) {
        tls_error(c->ssl, "TLS setup", err, errlen);
        return -1;
    }
    if (opt.verify_name != NULL && SSL_set1_host(c->ssl, opt.verify_name) != 1) {
        tls_error(c->ssl, "TLS setup", err, errlen);
        return -1;
    }
    if (opt.tls_resume && w->session != NULL)
        SSL_set_session(c->ssl, w->session);
    errno = 0;
    if (SSL_connect(c->ssl) != 1) {
        tls_error(c->ssl, "TLS handshake", err, errlen);
        return -1;
    }
    w->handshakes++;
    if (SSL_session_reused(c->ssl))
        w->resumed++;
    return 0;
}

/*
 * Keeps the session for the next connection. With TLS 1.3 the ticket arrives after
 * the handshake, so this runs at the end of a session, once replies have been read.
 */
static void tls_keep_session(struct worker *w, struct conn *c)
{
    SSL_SESSION *s;

    if (!opt.tls_resume || c->ssl == NULL)
        return;
    s = SSL_get1_session(c->ssl);
    if (s == NULL)
        return;
    if (!SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(s);
        return;
    }
    SSL_SESSION_free(w->session);
    w->session = s;
}

static enum step_result ehlo(struct conn *c, struct reply *r, char *err, size_t errlen)
{
    char cmd[300];

    str_fmt(cmd, sizeof cmd, "EHLO %s", opt.helo);
    return step(c, "EHLO", cmd, 250, r, err, errlen);
}

/*
 * Opens a session up to the point where MAIL FROM may be sent: connect, greeting,
 * EHLO, STARTTLS, handshake, EHLO, and AUTH EXTERNAL when asked for.
 */
static int session_open(struct worker *w, struct conn *c, unsigned *ext, char *err,
                        size_t errlen)
{
    struct reply r;

    if (tcp_connect(c, err, errlen) != 0)
        return -1;
    if (opt.implicit_tls && tls_start(w, c, err, errlen) != 0)
        return -1;
    if (step(c, "greeting", NULL, 220, &r, err, errlen) != STEP_OK)
        return -1;
    if (ehlo(c, &r, err, errlen) != STEP_OK)
        return -1;
    if (!opt.implicit_tls) {
        if (!(r.ext & EXT_STARTTLS)) {
            errf(err, errlen, "EHLO: STARTTLS not advertised");
            return -1;
        }
        if (step(c, "STARTTLS", "STARTTLS", 220, &r, err, errlen) != STEP_OK)
            return -1;
        /* Nothing may follow the 220 in plaintext; a server that sends more is broken. */
        if (c->off != c->len) {
            errf(err, errlen, "STARTTLS: server sent data after its 220 reply");
            return -1;
        }
        c->off = c->len = 0;
        if (tls_start(w, c, err, errlen) != 0)
            return -1;
        if (ehlo(c, &r, err, errlen) != STEP_OK)
            return -1;
    }
    *ext = r.ext;
    if (opt.auth_external) {
        if (!(r.ext & EXT_AUTH_EXTERNAL)) {
            errf(err, errlen, "EHLO: AUTH EXTERNAL not advertised: %s", r.first);
            return -1;
        }
        if (step(c, "AUTH", "AUTH EXTERNAL =", 235, &r, err, errlen) != STEP_OK)
            return -1;
    }
    return 0;
}

static void session_close(struct worker *w, struct conn *c, int usable)
{
    if (usable) {
        struct reply r;
        char err[LG_ERR_MAX];

        if (step(c, "QUIT", "QUIT", 221, &r, err, sizeof err) == STEP_DEAD)
            usable = 0;
    }
    if (c->ssl != NULL) {
        tls_keep_session(w, c);
        if (usable)
            SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    ERR_clear_error();
    conn_init(c);
}

/* Fills w->msg with one RFC 5322 message, dot-terminated; returns its length. */
static size_t message_build(struct worker *w)
{
    char date[64];
    struct tm tm;
    time_t t = time(NULL);
    int n;

    gmtime_r(&t, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
    w->seq++;
    n = snprintf(w->msg, LG_HEADER_MAX,
                 "From: %s\r\n"
                 "To: %s\r\n"
                 "Subject: submitd-loadgen message %d.%lld\r\n"
                 "Date: %s\r\n"
                 "Message-ID: <loadgen.%lld.%d.%lld@%s>\r\n"
                 "MIME-Version: 1.0\r\n"
                 "Content-Type: text/plain; charset=us-ascii\r\n"
                 "\r\n",
                 opt.from, opt.to, w->index, w->seq, date, run_id, w->index, w->seq,
                 from_domain);
    /* The option lengths are bounded at start-up so that this cannot truncate. */
    if (n < 0 || n >= LG_HEADER_MAX)
        abort();
    memcpy(w->msg + n, body, body_len);
    memcpy(w->msg + n + body_len, ".\r\n", 3);
    return (size_t)n + body_len + 3;
}

/* Sends one message in an open session. */
static enum step_result message_send(struct worker *w, struct conn *c, unsigned ext,
                                     char *err, size_t errlen)
{
    char mail[600], rcpt[600], ebuf[LG_ERR_MAX];
    struct reply r;
    enum step_result s;
    size_t len;

    if (ext & EXT_SIZE)
        str_fmt(mail, sizeof mail, "MAIL FROM:<%s> SIZE=%zu", opt.from,
                LG_HEADER_MAX + body_len);
    else
        str_fmt(mail, sizeof mail, "MAIL FROM:<%s>", opt.from);
    str_fmt(rcpt, sizeof rcpt, "RCPT TO:<%s>", opt.to);

    if (opt.pipelining && (ext & EXT_PIPELINING)) {
        char batch[1300];
        enum step_result sm, sr;

        str_fmt(batch, sizeof batch, "%s\r\n%s\r\nDATA\r\n", mail, rcpt);
        if (conn_write(c, batch, strlen(batch), ebuf, sizeof ebuf) != 0) {
            errf(err, errlen, "MAIL: %s", ebuf);
            return STEP_DEAD;
        }
        sm = step(c, "MAIL", NULL, 250, &r, err, errlen);
        if (sm == STEP_DEAD)
            return sm;
        sr = step(c, "RCPT", NULL, 250, &r, sm == STEP_OK ? err : ebuf,
                  sm == STEP_OK ? errlen : sizeof ebuf);
        if (sr == STEP_DEAD)
            return sr;
        s = step(c, "DATA", NULL, 354, &r, sm == STEP_OK && sr == STEP_OK ? err : ebuf,
                 sm == STEP_OK && sr == STEP_OK ? errlen : sizeof ebuf);
        if (s == STEP_OK && (sm != STEP_OK || sr != STEP_OK)) {
            /* The server wants data although the envelope failed: end it empty. */
            if (conn_write(c, ".\r\n", 3, ebuf, sizeof ebuf) != 0 ||
                reply_read(c, &r, ebuf, sizeof ebuf) != 0)
                return STEP_DEAD;
            return STEP_FAIL;
        }
        if (sm != STEP_OK || sr != STEP_OK)
            return s == STEP_DEAD ? s : STEP_FAIL;
        if (s != STEP_OK)
            return s;
    } else {
        if ((s = step(c, "MAIL", mail, 250, &r, err, errlen)) != STEP_OK)
            return s;
        if ((s = step(c, "RCPT", rcpt, 250, &r, err, errlen)) != STEP_OK)
            return s;
        if ((s = step(c, "DATA", "DATA", 354, &r, err, errlen)) != STEP_OK)
            return s;
    }

    len = message_build(w);
    if (conn_write(c, w->msg, len, ebuf, sizeof ebuf) != 0) {
        errf(err, errlen, "data: %s", ebuf);
        return STEP_DEAD;
    }
    if ((s = step(c, "end of data", NULL, 250, &r, err, errlen)) != STEP_OK)
        return s;
    if (strstr(r.last, "queued as ") == NULL) {
        errf(err, errlen, "end of data: no queue id in \"%s\"", r.last);
        return STEP_FAIL;
    }
    return STEP_OK;
}

static void pause_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct conn *c = &w->conn;
    char err[LG_ERR_MAX];

    conn_init(c);
    while (claim_message()) {
        uint64_t t_connect = now_us();
        enum step_result s = STEP_OK;
        unsigned ext = 0;
        long long n = 0;

        w->sessions++;
        if (session_open(w, c, &ext, err, sizeof err) != 0) {
            failure_record(w, err);
            session_close(w, c, 0);
            /* A refusing server must not turn the run into a busy loop. */
            pause_ms(10);
            continue;
        }
        for (;;) {
            uint64_t t0 = opt.per_session == 1 ? t_connect : now_us();

            s = message_send(w, c, ext, err, sizeof err);
            if (s == STEP_OK) {
                w->ok++;
                if (latency_record(w, now_us() - t0) != 0) {
                    fprintf(stderr, "submitd-loadgen: out of memory\n");
                    atomic_store(&stop_requested, 1);
                }
            } else {
                failure_record(w, err);
            }
            if (s == STEP_DEAD)
                break;
            if (s == STEP_FAIL) {
                struct reply r;

                /* Clear the failed transaction before the next one. */
                if (step(c, "RSET", "RSET", 250, &r, err, sizeof err) != STEP_OK) {
                    s = STEP_DEAD;
                    break;
                }
            }
            if (++n >= opt.per_session || !claim_message())
                break;
        }
        session_close(w, c, s != STEP_DEAD);
    }
    return NULL;
}

/* The message body: --size bytes of CRLF-terminated printable lines, none starting with '.'. */
static int body_build(void)
{
    size_t size = (size_t)opt.size, i = 0, k = 0;

    if (size > 0 && size < 3)
        size = 3;
    body = malloc(size + 1);
    if (body == NULL)
        return -1;
    while (i < size) {
        size_t rest = size - i;
        size_t line = rest - 2;

        if (rest >= LG_BODY_LINE + 2 + 3)
            line = LG_BODY_LINE;
        /* A last line of one or two bytes cannot hold CRLF: the line before takes them. */
        else if (rest > LG_BODY_LINE + 2)
            line = rest - 2;
        for (size_t j = 0; j < line; j++, k++)
            body[i + j] = (char)('a' + k % 26);
        body[i + line] = '\r';
        body[i + line + 1] = '\n';
        i += line + 2;
    }
    body_len = size;
    return 0;
}

static int tls_setup(void)
{
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (tls_ctx == NULL)
        return -1;
    if (SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION) != 1)
        return -1;
    if (opt.tls_max != 0 && SSL_CTX_set_max_proto_version(tls_ctx, opt.tls_max) != 1)
        return -1;
    /* Only the CA given is trusted: never the system store. */
    if (SSL_CTX_load_verify_locations(tls_ctx, opt.cafile, NULL) != 1) {
        fprintf(stderr, "submitd-loadgen: cannot load CA file %s\n", opt.cafile);
        return -1;
    }
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_use_certificate_chain_file(tls_ctx, opt.cert) != 1) {
        fprintf(stderr, "submitd-loadgen: cannot load certificate %s\n", opt.cert);
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(tls_ctx, opt.key, SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "submitd-loadgen: cannot load key %s, or it does not match %s\n",
                opt.key, opt.cert);
        return -1;
    }
    if (SSL_CTX_check_private_key(tls_ctx) != 1) {
        fprintf(stderr, "submitd-loadgen: key %s does not match certificate %s\n", opt.key,
                opt.cert);
        return -1;
    }
    return 0;
}

static int resolve_peer(void)
{
    struct addrinfo hints, *res = NULL;
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(opt.host, opt.port, &hints, &res);
    if (rc != 0 || res == NULL) {
        fprintf(stderr, "submitd-loadgen: cannot resolve %s port %s: %s\n", opt.host,
                opt.port, rc != 0 ? gai_strerror(rc) : "no address");
        return -1;
    }
    /* One address, the first, for the whole run: nothing else is ever contacted. */
    memcpy(&peer_addr, res->ai_addr, res->ai_addrlen);
    peer_addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values, in milliseconds. */
static double percentile_ms(const uint32_t *v, size_t n, double p)
{
    size_t rank;

    if (n == 0)
        return 0.0;
    rank = (size_t)((p / 100.0) * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1] / 1000.0;
}

struct totals {
    long long ok, failed, sessions, handshakes, resumed;
    double elapsed, rate, p50, p90, p99, max;
};

/* The load generator's own CPU time (user + system, all threads), in seconds: the
 * benchmark subtracts it from the machine's to find what the server spent. */
static double own_cpu(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void report(const struct totals *t)
{
    char shape[64];
    double cpu = own_cpu();
    int i;

    str_fmt(shape, sizeof shape, "per-session-%lld", opt.per_session);
    if (opt.json) {
        printf("{\"shape\":\"%s\",\"concurrency\":%lld,\"messages\":%lld,\"ok\":%lld,"
               "\"failed\":%lld,\"elapsed_s\":%.3f,\"rate_msg_s\":%.1f,"
               "\"p50_ms\":%.2f,\"p90_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f,"
               "\"size\":%zu,\"tls\":\"%s\",\"sessions\":%lld,\"handshakes\":%lld,"
               "\"resumed\":%lld,\"cpu_s\":%.3f,\"failures\":[",
               shape, opt.concurrency, t->ok + t->failed, t->ok, t->failed, t->elapsed,
               t->rate, t->p50, t->p90, t->p99, t->max, body_len,
               opt.implicit_tls ? "implicit" : "starttls", t->sessions, t->handshakes,
               t->resumed, cpu);
        for (i = 0; i < LG_FAIL_SLOTS && failures[i].count > 0; i++) {
            printf("%s{\"count\":%lld,\"reply\":", i ? "," : "", failures[i].count);
            cli_json_string(stdout, failures[i].text);
            printf("}");
        }
        printf("],\"failures_other\":%lld}\n", failures_other);
        return;
    }
    for (i = 0; i < LG_FAIL_SLOTS && failures[i].count > 0; i++)
        printf("loadgen: failure count=%lld reply=\"%s\"\n", failures[i].count,
               failures[i].text);
    if (failures_other > 0)
        printf("loadgen: failure count=%lld reply=\"(other replies)\"\n", failures_other);
    printf("loadgen: shape=%s concurrency=%lld messages=%lld ok=%lld failed=%lld "
           "elapsed=%.2fs rate=%.1f msg/s p50=%.1fms p99=%.1fms p90=%.1fms max=%.1fms "
           "size=%zu tls=%s sessions=%lld handshakes=%lld resumed=%lld cpu=%.3fs\n",
           shape, opt.concurrency, t->ok + t->failed, t->ok, t->failed, t->elapsed,
           t->rate, t->p50, t->p99, t->p90, t->max, body_len,
           opt.implicit_tls ? "implicit" : "starttls", t->sessions, t->handshakes,
           t->resumed, cpu);
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: submitd-loadgen --port N --cert FILE --key FILE --cafile FILE\n"
        "                       --from ADDR --to ADDR [options]\n"
        "  --host ADDR          server address (default 127.0.0.1)\n"
        "  --port N             server port\n"
        "  --implicit-tls       TLS from the first byte (default: STARTTLS)\n"
        "  --cert/--key FILE    client certificate chain and key (PEM)\n"
        "  --cafile FILE        CAs that sign the server certificate (only these)\n"
        "  --verify-name NAME   also check the server certificate for NAME\n"
        "  --servername NAME    send NAME as SNI\n"
        "  --from/--to ADDR     envelope and header addresses\n"
        "  --helo NAME          EHLO name (default loadgen.localdomain)\n"
        "  --concurrency C      parallel sessions (default 1)\n"
        "  --messages N         messages in total (default 1000, or none with --duration)\n"
        "  --duration S         stop starting messages after S seconds\n"
        "  --per-session K      messages per TLS session (default 1)\n"
        "  --size BYTES         body size (default 2048)\n"
        "  --timeout S          server silence that fails a session (default 60)\n"
        "  --max-failures N     stop starting messages after N failures (default: never)\n"
        "  --tls-resume         resume TLS sessions across connections\n"
        "  --tls-max 1.2|1.3    highest TLS version offered\n"
        "  --pipelining         send MAIL, RCPT, DATA together when offered\n"
        "  --auth-external      send AUTH EXTERNAL = after EHLO\n"
        "  --json               print the summary as one JSON object\n");
}

enum {
    OPT_HOST = 256, OPT_PORT, OPT_IMPLICIT, OPT_CERT, OPT_KEY, OPT_CAFILE, OPT_FROM,
    OPT_TO, OPT_HELO, OPT_VERIFY_NAME, OPT_SERVERNAME, OPT_CONCURRENCY, OPT_MESSAGES,
    OPT_PER_SESSION, OPT_SIZE, OPT_DURATION, OPT_TIMEOUT, OPT_MAX_FAILURES, OPT_TLS_RESUME,
    OPT_TLS_MAX,
    OPT_PIPELINING, OPT_AUTH_EXTERNAL, OPT_JSON, OPT_HELP
};

static int parse_num(const char *name, const char *s, long long min, long long max,
                     long long *out)
{
    if (str_to_ll(s, min, max, out) != 0) {
        fprintf(stderr, "submitd-loadgen: %s must be a number from %lld to %lld\n", name,
                min, max);
        return -1;
    }
    return 0;
}

/* An address goes into commands and headers: printable, no spaces or angle brackets. */
static int check_addr(const char *name, const char *a)
{
    size_t n = strlen(a);

    if (n == 0 || n > 254 || strchr(a, '@') == NULL || strpbrk(a, " <>\r\n\t") != NULL) {
        fprintf(stderr, "submitd-loadgen: %s: not a usable address: %s\n", name, a);
        return -1;
    }
    return 0;
}

static int parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "host", required_argument, NULL, OPT_HOST },
        { "port", required_argument, NULL, OPT_PORT },
        { "implicit-tls", no_argument, NULL, OPT_IMPLICIT },
        { "cert", required_argument, NULL, OPT_CERT },
        { "key", required_argument, NULL, OPT_KEY },
        { "cafile", required_argument, NULL, OPT_CAFILE },
        { "from", required_argument, NULL, OPT_FROM },
        { "to", required_argument, NULL, OPT_TO },
        { "helo", required_argument, NULL, OPT_HELO },
        { "verify-name", required_argument, NULL, OPT_VERIFY_NAME },
        { "servername", required_argument, NULL, OPT_SERVERNAME },
        { "concurrency", required_argument, NULL, OPT_CONCURRENCY },
        { "messages", required_argument, NULL, OPT_MESSAGES },
        { "per-session", required_argument, NULL, OPT_PER_SESSION },
        { "size", required_argument, NULL, OPT_SIZE },
        { "duration", required_argument, NULL, OPT_DURATION },
        { "timeout", required_argument, NULL, OPT_TIMEOUT },
        { "max-failures", required_argument, NULL, OPT_MAX_FAILURES },
        { "tls-resume", no_argument, NULL, OPT_TLS_RESUME },
        { "tls-max", required_argument, NULL, OPT_TLS_MAX },
        { "pipelining", no_argument, NULL, OPT_PIPELINING },
        { "auth-external", no_argument, NULL, OPT_AUTH_EXTERNAL },
        { "json", no_argument, NULL, OPT_JSON },
        { "help", no_argument, NULL, OPT_HELP },
        { NULL, 0, NULL, 0 },
    };
    long long port;
    int ch, rc = 0;

    opt.host = "127.0.0.1";
    opt.helo = "loadgen.localdomain";
    opt.concurrency = 1;
    opt.messages = 0;
    opt.per_session = 1;
    opt.size = 2048;
    opt.timeout = 60;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case OPT_HOST: opt.host = optarg; break;
        case OPT_PORT: opt.port = optarg; break;
        case OPT_IMPLICIT: opt.implicit_tls = 1; break;
        case OPT_CERT: opt.cert = optarg; break;
        case OPT_KEY: opt.key = optarg; break;
        case OPT_CAFILE: opt.cafile = optarg; break;
        case OPT_FROM: opt.from = optarg; break;
        case OPT_TO: opt.to = optarg; break;
        case OPT_HELO: opt.helo = optarg; break;
        case OPT_VERIFY_NAME: opt.verify_name = optarg; break;
        case OPT_SERVERNAME: opt.servername = optarg; break;
        case OPT_CONCURRENCY:
            rc |= parse_num("--concurrency", optarg, 1, LG_CONCURRENCY_MAX, &opt.concurrency);
            break;
        case OPT_MESSAGES:
            rc |= parse_num("--messages", optarg, 1, LLONG_MAX / 2, &opt.messages);
            break;
        case OPT_PER_SESSION:
            rc |= parse_num("--per-session", optarg, 1, 1000000, &opt.per_session);
            break;
        case OPT_SIZE: rc |= parse_num("--size", optarg, 0, LG_SIZE_MAX, &opt.size); break;
        case OPT_DURATION:
            rc |= parse_num("--duration", optarg, 1, 86400, &opt.duration);
            break;
        case OPT_TIMEOUT: rc |= parse_num("--timeout", optarg, 1, 3600, &opt.timeout); break;
        case OPT_MAX_FAILURES:
            rc |= parse_num("--max-failures", optarg, 0, LLONG_MAX / 2, &opt.max_failures);
            break;
        case OPT_TLS_RESUME: opt.tls_resume = 1; break;
        case OPT_TLS_MAX:
            if (strcmp(optarg, "1.2") == 0)
                opt.tls_max = TLS1_2_VERSION;
            else if (strcmp(optarg, "1.3") == 0)
                opt.tls_max = TLS1_3_VERSION;
            else {
                fprintf(stderr, "submitd-loadgen: --tls-max must be 1.2 or 1.3\n");
                rc = -1;
            }
            break;
        case OPT_PIPELINING: opt.pipelining = 1; break;
        case OPT_AUTH_EXTERNAL: opt.auth_external = 1; break;
        case OPT_JSON: opt.json = 1; break;
        case OPT_HELP: usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "submitd-loadgen: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    if (rc != 0)
        return -1;
    if (opt.port == NULL || opt.cert == NULL || opt.key == NULL || opt.cafile == NULL ||
        opt.from == NULL || opt.to == NULL) {
        fprintf(stderr, "submitd-loadgen: --port, --cert, --key, --cafile, --from and --to "
                        "are required\n");
        return -1;
    }
    if (parse_num("--port", opt.port, 1, 65535, &port) != 0)
        return -1;
    if (check_addr("--from", opt.from) != 0 || check_addr("--to", opt.to) != 0)
        return -1;
    if (strlen(opt.helo) > 255 || strpbrk(opt.helo, " \r\n\t") != NULL) {
        fprintf(stderr, "submitd-loadgen: --helo: not a usable name: %s\n", opt.helo);
        return -1;
    }
    if (opt.messages == 0)
        opt.messages = opt.duration > 0 ? -1 : 1000;
    return 0;
}

int main(int argc, char **argv)
{
    struct worker *workers;
    struct totals t;
    struct sigaction sa;
    pthread_attr_t attr;
    uint32_t *all;
    size_t nall = 0;
    uint64_t t_start, t_end;
    long long i;

    if (parse_args(argc, argv) != 0)
        return 2;
    from_domain = strchr(opt.from, '@') + 1;
    run_id = (long long)time(NULL) * 100000 + getpid() % 100000;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if (resolve_peer() != 0 || body_build() != 0)
        return 1;
    if (tls_setup() != 0) {
        ERR_print_errors_fp(stderr);
        return 1;
    }

    workers = calloc((size_t)opt.concurrency, sizeof *workers);
    if (workers == NULL) {
        fprintf(stderr, "submitd-loadgen: out of memory\n");
        return 1;
    }
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, LG_STACK_SIZE);

    t_start = now_us();
    if (opt.duration > 0)
        deadline_us = t_start + (uint64_t)opt.duration * 1000000u;
    for (i = 0; i < opt.concurrency; i++) {
        struct worker *w = &workers[i];
        int rc;

        w->index = (int)i;
        w->msg_cap = LG_HEADER_MAX + body_len + 3;
        w->msg = malloc(w->msg_cap);
        if (w->msg == NULL) {
            fprintf(stderr, "submitd-loadgen: out of memory\n");
            return 1;
        }
        rc = pthread_create(&w->thread, &attr, worker_main, w);
        if (rc != 0) {
            fprintf(stderr, "submitd-loadgen: cannot start thread %lld: %s\n", i,
                    strerror(rc));
            return 1;
        }
    }
    pthread_attr_destroy(&attr);

    memset(&t, 0, sizeof t);
    for (i = 0; i < opt.concurrency; i++) {
        pthread_join(workers[i].thread, NULL);
        t.ok += workers[i].ok;
        t.failed += workers[i].failed;
        t.sessions += workers[i].sessions;
        t.handshakes += workers[i].handshakes;
        t.resumed += workers[i].resumed;
    }
    t_end = now_us();
    if (opt.max_failures > 0 && t.failed >= opt.max_failures)
        fprintf(stderr, "submitd-loadgen: stopped early after %lld failures (--max-failures)\n",
                t.failed);

    all = malloc(((size_t)t.ok + 1) * sizeof *all);
    if (all == NULL) {
        fprintf(stderr, "submitd-loadgen: out of memory\n");
        return 1;
    }
    for (i = 0; i < opt.concurrency; i++) {
        if (workers[i].lat_len > 0)
            memcpy(all + nall, workers[i].lat_us, workers[i].lat_len * sizeof *all);
        nall += workers[i].lat_len;
        free(workers[i].lat_us);
        free(workers[i].msg);
        SSL_SESSION_free(workers[i].session);
    }
    qsort(all, nall, sizeof *all, cmp_u32);

    t.elapsed = (double)(t_end - t_start) / 1e6;
    t.rate = t.elapsed > 0 ? (double)t.ok / t.elapsed : 0.0;
    t.p50 = percentile_ms(all, nall, 50);
    t.p90 = percentile_ms(all, nall, 90);
    t.p99 = percentile_ms(all, nall, 99);
    t.max = nall ? all[nall - 1] / 1000.0 : 0.0;
    report(&t);
    fflush(stdout);

    free(all);
    free(workers);
    free(body);
    SSL_CTX_free(tls_ctx);
    return t.failed == 0 && t.ok > 0 ? 0 : 1;
}
