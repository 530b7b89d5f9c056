/*
 * Recorded SMTP dialogues (tests/golden/NAME.in and NAME.out), replayed against the
 * session state machine without a socket, TLS or another process: the driver is
 * the session's port (session.h), so every request the session makes is printed
 * and answered from the script.
 *
 * NAME.in, one directive a line ('#' starts a comment):
 *   !config KEY = VALUE   a configuration line (before the first other line)
 *   !implicit             the session is on the implicit-TLS port
 *   !tls [cert]           the TLS handshake completes (after STARTTLS, or on the
 *                         implicit port), with a client certificate or without
 *   !eof                  the client goes away
 *   C: TEXT               the client sends TEXT CRLF, and the session runs
 *   P: TEXT               the client sends TEXT CRLF in the same packet as what
 *                         follows (pipelining): the session runs at the next line
 *   R: TEXT               the client sends TEXT as it is, after C escapes (\r \n
 *                         \t \0 \\ \xHH), with no line end added
 *   L: N X                the client sends a line of N times the character X
 *   A: ALLOW [USER] [budget=N] | DENY REPLY | TEMPFAIL REPLY
 *                         authz answers the request the session waits for
 *   Q: OPENED QID | OPENFAIL REASON | COMMITTED QID | COMMITFAIL REASON |
 *      NOTRECORDED REASON | REFUSED REPLY
 *                         the queue answers (NOTRECORDED: a commit whose accept
 *                         row authz could not write; REFUSED: one authz refused,
 *                         for the file last OPENED, with its SMTP reply)
 * NAME.out is what the session produced: "S: " reply lines, "authz: " and
 * "queue: " requests, and "-- closed" when the session ends its connection.
 * GOLDEN_UPDATE=1 rewrites the .out files from what the session does now.
 */
#include "unit.h"

#include "../../submitd/smtp/session.h"
#include "../../submitd/smtp/smtp_answer.h"
#include "../../submitd/smtp/smtp_cmd.h"
#include "config.h"
#include "ipc_codec.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define IPC_HEADER 16

/* One dialogue's state. */
static struct {
    char *out;                  /* the transcript */
    size_t len, cap;
    char cfgtext[4096];
    size_t cfglen;
    int implicit;
    struct config cfg;
    struct session *s;
    int closed;
    uint64_t authz_id, queue_id; /* the request waiting for an answer, or 0 */
    char last_qid[IPC_QID_MAX];  /* the file last OPENED */
    int error;                  /* a script error, printed in the transcript */
} g;

static struct ipc_msg req, ans;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void out(const char *fmt, ...)
{
    char line[4096];
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    n = strlen(line);
    if (g.len + n + 2 > g.cap) {
        g.cap = (g.len + n + 2) * 2;
        g.out = realloc(g.out, g.cap);
        if (g.out == NULL)
            abort();
    }
    memcpy(g.out + g.len, line, n);
    g.out[g.len + n] = '\n';
    g.len += n + 1;
    g.out[g.len] = '\0';
}

/* Moves the replies to the transcript, one "S: " line each. */
static void drain(void)
{
    struct session *s = g.s;
    size_t pos = 0;

    while (pos < s->outlen) {
        char *crlf = memmem(s->outbuf + pos, s->outlen - pos, "\r\n", 2);
        size_t n = crlf ? (size_t)(crlf - (s->outbuf + pos)) : s->outlen - pos;

        out("S: %.*s%s", (int)n, s->outbuf + pos, crlf ? "" : " [no CRLF]");
        pos += n + (crlf ? 2 : 0);
    }
    s->outlen = 0;
}

/* ---- the port: requests are printed, and remembered when answered ------------- */

static void print_request(enum session_peer to, struct ipc_msg *m)
{
    m->rpos = IPC_HEADER;
    switch (m->type) {
    case IPC_AUTHZ_IDENTITY: {
        struct ipc_identity v;
        if (ipc_dec_identity(m, &v) == 0)
            out("authz: IDENTITY certs=%d", v.ncert);
        break;
    }
    case IPC_AUTHZ_SENDER: {
        struct ipc_sender v;
        if (ipc_dec_sender(m, &v) == 0)
            out("authz: SENDER <%s>", v.address);
        break;
    }
    case IPC_AUTHZ_AUDIT: {
        struct ipc_audit v;
        if (ipc_dec_audit(m, &v) == 0)
            out("authz: AUDIT %s %s \"%s\" from=<%s> rcpt=<%s> size=%lld%s", v.event,
                v.decision, v.reason, v.mail_from, v.rcpt, (long long)v.size,
                m->id != 0 ? " (answer wanted)" : "");
        break;
    }
    case IPC_AUTHZ_PASSWORD: {
        struct ipc_password v;
        if (ipc_dec_password(m, &v) == 0)
            out("authz: PASSWORD %s %s", v.authcid, v.password);
        break;
    }
    case IPC_AUTHZ_AUTHZID: {
        struct ipc_authzid v;
        if (ipc_dec_authzid(m, &v) == 0)
            out("authz: AUTHZID %s", v.authzid);
        break;
    }
    case IPC_AUTHZ_SESSION_END:
        out("authz: SESSION_END");
        break;
    case IPC_QUEUE_OPEN: {
        struct ipc_envelope v;
        if (ipc_dec_envelope(m, &v) == 0) {
            char list[2048] = "";
            for (int i = 0; i < v.nrcpt; i++)
                str_fmt(list + strlen(list), sizeof(list) - strlen(list), " <%s>", v.rcpt[i]);
            out("queue: OPEN from=<%s> rcpt=%s", v.mail_from, list + (list[0] == ' '));
            ipc_envelope_free(&v);
        }
        break;
    }
    case IPC_QUEUE_COMMIT: {
        struct ipc_commit v;
        if (ipc_dec_commit(m, &v) == 0) {
            char list[1024] = "";
            for (int i = 0; i < v.from.naddr; i++)
                str_fmt(list + strlen(list), sizeof(list) - strlen(list), " <%s>",
                        v.from.addr[i]);
            out("queue: COMMIT %s size=%llu%s%s", v.queue_id, (unsigned long long)v.size,
                list[0] ? " header-from=" : "", list + (list[0] == ' '));
        }
        break;
    }
    case IPC_QUEUE_ABORT: {
        struct ipc_abort v;
        if (ipc_dec_abort(m, &v) == 0)
            out("queue: ABORT %s", v.queue_id);
        break;
    }
    default:
        out("%s: message of type %u", to == PEER_AUTHZ ? "authz" : "queue", m->type);
    }
}

static int golden_send(struct session *s, enum session_peer to, struct ipc_msg *m)
{
    (void)s;
    drain(); /* the replies so far come first, as they would on the wire */
    print_request(to, m);
    if (m->id != 0) {
        if (to == PEER_AUTHZ)
            g.authz_id = m->id;
        else
            g.queue_id = m->id;
    }
    return 0;
}

static const struct session_port golden_port = { golden_send };

/* ---- running the session ---------------------------------------------------- */

static void end_session(const char *how)
{
    if (g.closed)
        return;
    out("%s", how);
    g.closed = 1;
    session_end(g.s);
}

/* What the event loop does between reads: commands until the session waits, then
 * the replies out; a session that closes is ended. */
static void run(void)
{
    struct session *s = g.s;

    if (g.closed)
        return;
    for (;;) {
        size_t before = s->inlen;

        session_input(s);
        drain();
        if (s->state == SS_CLOSING) {
            end_session("-- closed");
            return;
        }
        if (s->wait != WAIT_NONE || s->inlen == 0 || s->inlen == before)
            return;
    }
}

static void feed(const char *p, size_t n)
{
    struct session *s = g.s;

    if (g.closed)
        return;
    while (n > 0) {
        size_t room = SESS_INBUF - s->inlen, c = n < room ? n : room;

        if (c == 0) {
            out("!! the session reads no more input");
            g.error = 1;
            return;
        }
        memcpy(s->inbuf + s->inlen, p, c);
        s->inlen += c;
        p += c;
        n -= c;
        if (n > 0)
            run();
        if (g.closed)
            return;
    }
}

static void start_session(void)
{
    char err[512];
    int fd = memfd_create("golden.conf", 0);
    struct session *s;

    if (fd < 0 || write(fd, g.cfgtext, g.cfglen) != (ssize_t)g.cfglen ||
        config_load_fd(&g.cfg, "/nonexistent/golden.conf", fd, err, sizeof(err)) != 0) {
        out("!! configuration: %s", fd < 0 ? strerror(errno) : err);
        g.error = 1;
    }
    if (fd >= 0)
        close(fd);
    s = calloc(1, sizeof(*s));
    if (s == NULL || (s->inbuf = malloc(SESS_INBUF)) == NULL)
        abort();
    s->port = &golden_port;
    s->msg = &req;
    s->cfg = &g.cfg;
    s->fd = -1;
    s->slot = 1;
    s->gen = 7;
    s->implicit_tls = g.implicit;
    s->last_active = time(NULL);
    str_lcpy(s->id, "0000000100000001", sizeof(s->id));
    str_lcpy(s->client_ip, "192.0.2.10", sizeof(s->client_ip));
    g.s = s;
    if (!g.implicit)
        session_greet(s);
    drain();
}

/* ---- the script ------------------------------------------------------------- */

static size_t unescape(const char *in, char *outbuf, size_t max)
{
    size_t n = 0;

    while (*in && n < max) {
        if (*in != '\\' || in[1] == '\0') {
            outbuf[n++] = *in++;
            continue;
        }
        in++;
        switch (*in) {
        case 'r': outbuf[n++] = '\r'; in++; break;
        case 'n': outbuf[n++] = '\n'; in++; break;
        case 't': outbuf[n++] = '\t'; in++; break;
        case '0': outbuf[n++] = '\0'; in++; break;
        case 'x': {
            char hex[3] = { in[1], in[1] ? in[2] : 0, 0 };
            outbuf[n++] = (char)strtol(hex, NULL, 16);
            in += in[1] && in[2] ? 3 : 1;
            break;
        }
        default: outbuf[n++] = *in++; break;
        }
    }
    return n;
}

static void answer(struct ipc_msg *m)
{
    if (session_answer(g.s, m) == ANSWER_CLOSE) {
        drain();
        end_session("-- closed");
        return;
    }
    drain();
    run();
}

static void authz_answer(const char *arg)
{
    struct ipc_result r;
    char word[16];
    size_t wl = strcspn(arg, " ");
    const char *rest = arg[wl] == ' ' ? arg + wl + 1 : "";

    if (g.authz_id == 0 || g.closed) {
        out("!! no authz request waits for an answer");
        g.error = 1;
        return;
    }
    memset(&r, 0, sizeof(r));
    r.rcpt_budget = UINT64_MAX;
    str_lcpy(word, arg, wl + 1 < sizeof(word) ? wl + 1 : sizeof(word));
    if (strcmp(word, "ALLOW") == 0) {
        const char *b = strstr(rest, "budget=");
        size_t ul = strcspn(rest, " ");

        r.decision = IPC_ALLOW;
        if (ul > 0 && rest != b)
            str_lcpy(r.user, rest, ul + 1 < sizeof(r.user) ? ul + 1 : sizeof(r.user));
        if (b != NULL)
            r.rcpt_budget = strtoull(b + 7, NULL, 10);
    } else {
        r.decision = strcmp(word, "DENY") == 0 ? IPC_DENY : IPC_TEMPFAIL;
        str_lcpy(r.reply, rest, sizeof(r.reply));
    }
    if (ipc_enc_result(&ans, g.authz_id, &r) != 0)
        abort();
    g.authz_id = 0;
    ans.fd = -1;
    ans.rpos = IPC_HEADER;
    answer(&ans);
}

static void queue_answer(const char *arg)
{
    struct ipc_queue_answer q;
    int type = IPC_QUEUE_COMMITTED, fd = -1;

    if (g.queue_id == 0 || g.closed) {
        out("!! no queue request waits for an answer");
        g.error = 1;
        return;
    }
    memset(&q, 0, sizeof(q));
    if (strncmp(arg, "OPENED ", 7) == 0) {
        type = IPC_QUEUE_OPENED;
        str_lcpy(q.queue_id, arg + 7, sizeof(q.queue_id));
        str_lcpy(g.last_qid, q.queue_id, sizeof(g.last_qid));
        /* The message goes to a file in memory, as it would into the spool. */
        fd = memfd_create("golden.spool", 0);
        if (fd < 0)
            abort();
    } else if (strncmp(arg, "OPENFAIL ", 9) == 0) {
        type = IPC_QUEUE_OPENED;
        q.status = 1;
        str_lcpy(q.reason, arg + 9, sizeof(q.reason));
    } else if (strncmp(arg, "COMMITTED ", 10) == 0) {
        str_lcpy(q.queue_id, arg + 10, sizeof(q.queue_id));
    } else if (strncmp(arg, "NOTRECORDED ", 12) == 0) {
        q.status = IPC_QUEUE_NOT_RECORDED;
        str_lcpy(q.reason, arg + 12, sizeof(q.reason));
    } else if (strncmp(arg, "REFUSED ", 8) == 0) {
        q.status = IPC_QUEUE_REFUSED;
        str_lcpy(q.queue_id, g.last_qid, sizeof(q.queue_id));
        str_lcpy(q.reason, arg + 8, sizeof(q.reason));
    } else {
        q.status = 1;
        str_lcpy(q.reason, strncmp(arg, "COMMITFAIL ", 11) == 0 ? arg + 11 : arg,
                 sizeof(q.reason));
    }
    if (ipc_enc_queue_answer(&ans, (enum ipc_type)type, g.queue_id, &q) != 0)
        abort();
    g.queue_id = 0;
    ans.fd = fd;
    ans.rpos = IPC_HEADER;
    answer(&ans);
}

static void tls_done(const char *arg)
{
    struct session *s = g.s;
    unsigned char fake[] = { 0x30, 0x03, 0x02, 0x01, 0x01 };
    unsigned char *der[1] = { fake };
    size_t derlen[1] = { sizeof(fake) };
    int cert = strcmp(arg, "cert") == 0;

    if (g.closed)
        return;
    if (s->wait == WAIT_STARTTLS_FLUSH)
        session_starttls_reset(s);
    else if (!s->implicit_tls || s->tls_done) {
        out("!! no TLS handshake is due");
        g.error = 1;
        return;
    }
    str_lcpy(s->peer.tls, "TLSv1.3 TLS_AES_256_GCM_SHA384", sizeof(s->peer.tls));
    if (cert) {
        str_lcpy(s->peer.sha256,
                 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                 sizeof(s->peer.sha256));
        str_lcpy(s->peer.subject, "CN=alice", sizeof(s->peer.subject));
    }
    session_tls_established(s, der, derlen, cert ? 1 : 0);
    drain();
    run();
}

static void script_line(char *line)
{
    char buf[SESS_INBUF];
    size_t n;

    if (line[0] == '\0' || line[0] == '#')
        return;
    if (strncmp(line, "!config ", 8) == 0 && g.s == NULL) {
        if (str_fmt(g.cfgtext + g.cfglen, sizeof(g.cfgtext) - g.cfglen, "%s\n", line + 8) != 0)
            abort();
        g.cfglen += strlen(g.cfgtext + g.cfglen);
        return;
    }
    if (strcmp(line, "!implicit") == 0 && g.s == NULL) {
        g.implicit = 1;
        return;
    }
    if (g.s == NULL)
        start_session();
    if (strncmp(line, "C: ", 3) == 0 || strcmp(line, "C:") == 0 || strncmp(line, "P: ", 3) == 0 ||
        strcmp(line, "P:") == 0) {
        if (str_fmt(buf, sizeof(buf), "%s\r\n", line[2] ? line + 3 : "") != 0)
            abort();
        feed(buf, strlen(buf));
        if (line[0] == 'C')
            run();
    } else if (strncmp(line, "R: ", 3) == 0) {
        n = unescape(line + 3, buf, sizeof(buf));
        feed(buf, n);
        run();
    } else if (strncmp(line, "L: ", 3) == 0) {
        char *end;
        unsigned long count = strtoul(line + 3, &end, 10);
        char c = *end == ' ' && end[1] ? end[1] : 'x';
        char *big = malloc(count + 2);

        if (big == NULL)
            abort();
        memset(big, c, count);
        memcpy(big + count, "\r\n", 2);
        feed(big, count + 2);
        free(big);
        run();
    } else if (strncmp(line, "A: ", 3) == 0) {
        authz_answer(line + 3);
    } else if (strncmp(line, "Q: ", 3) == 0) {
        queue_answer(line + 3);
    } else if (strncmp(line, "!tls", 4) == 0) {
        tls_done(line[4] == ' ' ? line + 5 : "");
    } else if (strcmp(line, "!eof") == 0) {
        end_session("-- client left");
    } else {
        out("!! unknown script line: %s", line);
        g.error = 1;
    }
}

/* Replays dir/name.in; returns the transcript (the caller frees it). */
static char *replay(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[8192];

    memset(&g, 0, sizeof(g));
    /* Every dialogue starts from the defaults and these; its !config lines follow. */
    str_lcpy(g.cfgtext, "hostname = mx.example.test\nupstream = 192.0.2.25:25\n",
             sizeof(g.cfgtext));
    g.cfglen = strlen(g.cfgtext);
    out("# %s", strrchr(path, '/') ? strrchr(path, '/') + 1 : path);
    if (f == NULL) {
        out("!! cannot open: %s", strerror(errno));
        return g.out;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        script_line(line);
    }
    fclose(f);
    if (g.s == NULL)
        start_session();
    end_session("-- client left");
    free(g.s->outbuf);
    free(g.s->inbuf);
    free(g.s);
    return g.out;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[4096];

    if (f == NULL)
        return NULL;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            buf = realloc(buf, cap);
            if (buf == NULL)
                abort();
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (buf == NULL)
        buf = calloc(1, 1);
    else
        buf[len] = '\0';
    return buf;
}

/* Says where got first differs from want. */
static void report_difference(const char *want, const char *got)
{
    int line = 1;

    while (*want && *want == *got) {
        if (*want == '\n')
            line++;
        want++;
        got++;
    }
    while (line > 1 && want[-1] != '\n') {
        want--;
        got--;
    }
    printf("  FAIL line %d: expected \"%.*s\"\n", line, (int)strcspn(want, "\n"), want);
    printf("            got      \"%.*s\"\n", (int)strcspn(got, "\n"), got);
}

static int is_input(const struct dirent *d)
{
    size_t n = strlen(d->d_name);

    return n > 3 && strcmp(d->d_name + n - 3, ".in") == 0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/golden";
    int update = getenv("GOLDEN_UPDATE") != NULL;
    struct dirent **list;
    int n;

    (void)unit_cur_failed;
    log_init("test_golden", 1, LOG_LVL_ERR);
    n = scandir(dir, &list, is_input, alphasort);
    if (n <= 0) {
        printf("FAIL no dialogues in %s\n", dir);
        unit_failed++;
        return UNIT_DONE();
    }
    for (int i = 0; i < n; i++) {
        char in[1024], outpath[1024], name[256];
        char *got, *want;

        str_fmt(name, sizeof(name), "%.*s", (int)(strlen(list[i]->d_name) - 3),
                list[i]->d_name);
        str_fmt(in, sizeof(in), "%s/%s.in", dir, name);
        str_fmt(outpath, sizeof(outpath), "%s/%s.out", dir, name);
        got = replay(in);
        if (update) {
            FILE *f = fopen(outpath, "w");
            if (f == NULL || fputs(got, f) < 0 || fclose(f) != 0)
                printf("  cannot write %s\n", outpath);
        }
        want = read_all(outpath);
        if (want == NULL || strcmp(want, got) != 0 || g.error) {
            if (want == NULL)
                printf("  FAIL %s: missing\n", outpath);
            else if (strcmp(want, got) != 0)
                report_difference(want, got);
            else
                printf("  FAIL the script has an error (\"!!\" in %s)\n", outpath);
            printf("FAIL %s\n", name);
            unit_failed++;
        } else {
            printf("ok   %s\n", name);
            unit_passed++;
        }
        free(got);
        free(want);
        free(list[i]);
    }
    free(list);
    return UNIT_DONE();
}
