/*
 * submitd-sink: the benchmark's upstream, a plain SMTP server on 127.0.0.1 that counts
 * what it receives and throws the messages away.
 *
 *     submitd-sink --port-file FILE --stats FILE [--port N]
 *
 * It binds a free port (or --port), writes the port number to --port-file once it
 * listens, and keeps --stats current (rewritten atomically every 100 ms while messages
 * arrive) as one line:
 *
 *     messages=N recipients=N bytes=N first=EPOCH last=EPOCH
 *
 * first/last are the wall-clock times (seconds, with microseconds) of the first and
 * the latest accepted message, 0 before any; bytes counts each message as it was
 * meant, after dot-unstuffing and without the terminating dot line. It stops on
 * SIGTERM only: an interrupt at the terminal reaches the whole process group, and the
 * sink must stay up until the benchmark script has stopped the daemon that relays to
 * it.
 *
 * The benchmark charges the sink's CPU to the server it measures, so the sink is one
 * thread with one epoll loop over non-blocking sockets and does as little as it can
 * per message. It speaks enough RFC 5321 for submitd's relay client and Postfix's
 * smtp client: EHLO with PIPELINING, 8BITMIME, SMTPUTF8 and SIZE, HELO, MAIL, RCPT,
 * DATA, RSET, NOOP, QUIT. Every complete line in the buffer is answered in order, so
 * pipelined commands work. It never refuses a message.
 */
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SINK_HOST "sink.localhost"
#define SINK_LINE_MAX 1000          /* longest command line, CRLF included (RFC 5321 text line) */
#define SINK_IN_CAP (64 * 1024)     /* input buffer of one connection */
#define SINK_OUT_CAP (16 * 1024)    /* replies waiting to be sent on one connection */
#define SINK_OUT_ROOM 1024          /* room kept free for the longest reply (EHLO) */
#define SINK_DATA_CHUNK 4096        /* a partial data line this long is counted at once */
#define SINK_STATS_MS 100
#define SINK_EVENTS 256

enum sink_state { ST_COMMAND, ST_DATA };

struct conn {
    int fd;
    enum sink_state state;
    int greeted;        /* HELO or EHLO seen */
    int in_mail;        /* MAIL accepted, transaction open */
    int discard;        /* inside a command line that is too long */
    int at_bol;         /* DATA: the next byte starts a line */
    int quitting;       /* QUIT answered: close once the replies are out */
    unsigned events;    /* what epoll watches for now */
    unsigned long rcpts;
    unsigned long long msg_bytes;
    size_t in_len;
    size_t out_len;
    char in[SINK_IN_CAP];
    char out[SINK_OUT_CAP];
};

static struct {
    unsigned long long messages, recipients, bytes;
    double first, last;
    int dirty;
} stats;

static int epfd = -1;
/* Distinct addresses that tag the listening socket and the signal descriptor. */
static char tag_listen, tag_signal;

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes text to path through a temporary file and rename, so readers never see half. */
static int write_atomic(const char *path, const char *text)
{
    char tmp[4096];
    if (str_fmt(tmp, sizeof(tmp), "%s.tmp", path) != 0)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int rc = write_all(fd, text, strlen(text));
    if (close(fd) != 0)
        rc = -1;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -1;
    if (rc != 0)
        unlink(tmp);
    return rc;
}

static int write_stats(const char *path)
{
    char line[256];
    str_fmt(line, sizeof(line), "messages=%llu recipients=%llu bytes=%llu first=%.6f last=%.6f\n",
            stats.messages, stats.recipients, stats.bytes, stats.first, stats.last);
    stats.dirty = 0;
    return write_atomic(path, line);
}

static void reply(struct conn *c, const char *text)
{
    size_t n = strlen(text);
    /* process() keeps SINK_OUT_ROOM free before each line; this only guards it. */
    if (c->out_len + n + 2 > sizeof(c->out))
        return;
    memcpy(c->out + c->out_len, text, n);
    c->out[c->out_len + n] = '\r';
    c->out[c->out_len + n + 1] = '\n';
    c->out_len += n + 2;
}

static void reset_transaction(struct conn *c)
{
    c->in_mail = 0;
    c->rcpts = 0;
}

/* Is the line's verb word (case-insensitive), followed by its end or a space? */
static int verb_is(const char *line, size_t len, const char *word)
{
    size_t n = strlen(word);
    return len >= n && strncasecmp(line, word, n) == 0 && (len == n || line[n] == ' ');
}

static int prefix_is(const char *line, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && strncasecmp(line, prefix, n) == 0;
}

/* One command line, without its line end. */
static void command(struct conn *c, const char *line, size_t len)
{
    if (verb_is(line, len, "EHLO")) {
        reset_transaction(c);
        c->greeted = 1;
        reply(c, "250-" SINK_HOST "\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                 "250-SMTPUTF8\r\n250 SIZE 67108864");
    } else if (verb_is(line, len, "HELO")) {
        reset_transaction(c);
        c->greeted = 1;
        reply(c, "250 " SINK_HOST);
    } else if (verb_is(line, len, "MAIL")) {
        if (!c->greeted)
            reply(c, "503 5.5.1 Error: send HELO/EHLO first");
        else if (c->in_mail)
            reply(c, "503 5.5.1 Error: nested MAIL command");
        else if (!prefix_is(line, len, "MAIL FROM:"))
            reply(c, "501 5.5.4 Syntax: MAIL FROM:<address>");
        else {
            c->in_mail = 1;
            c->rcpts = 0;
            reply(c, "250 2.1.0 Ok");
        }
    } else if (verb_is(line, len, "RCPT")) {
        if (!c->in_mail)
            reply(c, "503 5.5.1 Error: need MAIL command");
        else if (!prefix_is(line, len, "RCPT TO:"))
            reply(c, "501 5.5.4 Syntax: RCPT TO:<address>");
        else {
            c->rcpts++;
            reply(c, "250 2.1.5 Ok");
        }
    } else if (verb_is(line, len, "DATA")) {
        if (c->rcpts == 0)
            reply(c, "503 5.5.1 Error: need RCPT command");
        else if (len != 4)
            reply(c, "501 5.5.4 Syntax: DATA");
        else {
            c->state = ST_DATA;
            c->msg_bytes = 0;
            c->at_bol = 1;
            reply(c, "354 End data with <CR><LF>.<CR><LF>");
        }
    } else if (verb_is(line, len, "RSET")) {
        reset_transaction(c);
        reply(c, "250 2.0.0 Ok");
    } else if (verb_is(line, len, "NOOP")) {
        reply(c, "250 2.0.0 Ok");
    } else if (verb_is(line, len, "QUIT")) {
        reply(c, "221 2.0.0 Bye");
        c->quitting = 1;
    } else if (len == 0) {
        reply(c, "500 5.5.2 Error: bad syntax");
    } else {
        reply(c, "500 5.5.2 Error: command not recognized");
    }
}

static void end_of_message(struct conn *c)
{
    double t = wall_now();
    stats.messages++;
    stats.recipients += c->rcpts;
    stats.bytes += c->msg_bytes;
    if (stats.first == 0.0)
        stats.first = t;
    stats.last = t;
    stats.dirty = 1;
    char text[64];
    str_fmt(text, sizeof(text), "250 2.0.0 Ok: queued as S%llu", stats.messages);
    reply(c, text);
    c->state = ST_COMMAND;
    reset_transaction(c);
}

/*
 * Consumes every complete line of the input buffer (and, in DATA, long partial lines),
 * answering commands in order, until the input runs out, QUIT, or the reply buffer
 * needs draining first.
 */
static void process(struct conn *c)
{
    size_t off = 0;
    while (off < c->in_len && !c->quitting && c->out_len + SINK_OUT_ROOM <= sizeof(c->out)) {
        const char *p = c->in + off;
        size_t n = c->in_len - off;
        const char *nl = memchr(p, '\n', n);
        if (c->state == ST_DATA) {
            if (nl == NULL) {
                /* A long line with no end yet: count what is here and keep reading. It
                 * cannot be the terminator, which is three bytes. */
                if (n < SINK_DATA_CHUNK)
                    break;
                size_t skip = (c->at_bol && p[0] == '.') ? 1 : 0;
                c->msg_bytes += n - skip;
                c->at_bol = 0;
                off += n;
                continue;
            }
            size_t len = (size_t)(nl - p) + 1;
            if (c->at_bol && len == 3 && p[0] == '.' && p[1] == '\r') {
                off += len;
                end_of_message(c);
                continue;
            }
            size_t skip = (c->at_bol && p[0] == '.') ? 1 : 0;
            c->msg_bytes += len - skip;
            c->at_bol = 1;
            off += len;
            continue;
        }
        if (c->discard) {
            /* The rest of a command line that was too long: answer once it ends. */
            if (nl == NULL) {
                off = c->in_len;
                break;
            }
            off += (size_t)(nl - p) + 1;
            c->discard = 0;
            reply(c, "500 5.5.2 Error: line too long");
            continue;
        }
        if (nl == NULL) {
            if (n > SINK_LINE_MAX) {
                c->discard = 1;
                off = c->in_len;
            }
            break;
        }
        size_t len = (size_t)(nl - p) + 1;
        off += len;
        if (len > SINK_LINE_MAX) {
            reply(c, "500 5.5.2 Error: line too long");
            continue;
        }
        size_t text_len = len - 1;
        if (text_len > 0 && p[text_len - 1] == '\r')
            text_len--;
        command(c, p, text_len);
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

static void conn_close(struct conn *c)
{
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

/* Sends what the reply buffer holds. Returns 0, or -1 when the connection is gone. */
static int flush_out(struct conn *c)
{
    size_t done = 0;
    while (done < c->out_len) {
        ssize_t w = send(c->fd, c->out + done, c->out_len - done, MSG_NOSIGNAL);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    memmove(c->out, c->out + done, c->out_len - done);
    c->out_len -= done;
    return 0;
}

/* Watches for input while there is room to answer it, and for output while replies wait. */
static int update_events(struct conn *c)
{
    unsigned want = 0;
    if (c->out_len > 0)
        want |= EPOLLOUT;
    if (!c->quitting && c->in_len < sizeof(c->in) && c->out_len + SINK_OUT_ROOM <= sizeof(c->out))
        want |= EPOLLIN;
    if (want == c->events)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) != 0)
        return -1;
    c->events = want;
    return 0;
}

/* Reads, answers and writes until the socket has nothing more or the buffers are full. */
static void conn_event(struct conn *c, unsigned events)
{
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            if (c->quitting || c->in_len == sizeof(c->in) ||
                c->out_len + SINK_OUT_ROOM > sizeof(c->out))
                break;
            ssize_t r = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
            if (r > 0) {
                c->in_len += (size_t)r;
                process(c);
                continue;
            }
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            /* End of stream or error: a message in progress is dropped. */
            flush_out(c);
            goto gone;
        }
    }
    /* Lines that waited for room in the reply buffer are answered once it has drained:
     * the client may have sent everything already, and no new input would wake us. */
    for (;;) {
        if (flush_out(c) != 0)
            goto gone;
        if (c->out_len > 0 || c->in_len == 0 || c->quitting)
            break;
        size_t before = c->in_len;
        process(c);
        if (c->in_len == before && c->out_len == 0)
            break;
    }
    if (c->quitting && c->out_len == 0)
        goto gone;
    if (update_events(c) != 0)
        goto gone;
    return;
gone:
    conn_close(c);
}

static void accept_all(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* EAGAIN: done; out of descriptors or memory: the rest wait in the backlog. */
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            close(fd);
            return;
        }
        c->fd = fd;
        reply(c, "220 " SINK_HOST " ESMTP sink");
        c->events = EPOLLIN | EPOLLOUT;
        struct epoll_event ev = {.events = c->events, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            close(fd);
            free(c);
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: submitd-sink --port-file FILE --stats FILE [--port N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"port", required_argument, NULL, 'p'},
        {"port-file", required_argument, NULL, 'f'},
        {"stats", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    const char *port_file = NULL, *stats_file = NULL;
    long long port = 0;
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'p':
            if (str_to_ll(optarg, 0, 65535, &port) != 0)
                usage();
            break;
        case 'f':
            port_file = optarg;
            break;
        case 's':
            stats_file = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || port_file == NULL || stats_file == NULL)
        usage();

    /* Many concurrent sessions: use every descriptor the hard limit allows. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &term, NULL) != 0) {
        perror("submitd-sink: sigprocmask");
        return 1;
    }
    int sfd = signalfd(-1, &term, SFD_NONBLOCK | SFD_CLOEXEC);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t salen = sizeof(sa);
    if (sfd < 0 || lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4096) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &salen) != 0) {
        perror("submitd-sink: listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &tag_listen};
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &tag_signal};
    if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) != 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &sev) != 0) {
        perror("submitd-sink: epoll");
        return 1;
    }

    char port_text[16];
    str_fmt(port_text, sizeof(port_text), "%u\n", (unsigned)ntohs(sa.sin_port));
    if (write_stats(stats_file) != 0 || write_atomic(port_file, port_text) != 0) {
        perror("submitd-sink: cannot write the port or statistics file");
        return 1;
    }

    /* The statistics are written at most every SINK_STATS_MS, and only after a change. */
    uint64_t last_write = now_ms();
    int running = 1;
    while (running) {
        int timeout = -1;
        if (stats.dirty) {
            uint64_t now = now_ms();
            timeout = (now - last_write >= SINK_STATS_MS) ? 0 : (int)(last_write + SINK_STATS_MS - now);
        }
        struct epoll_event evs[SINK_EVENTS];
        int n = epoll_wait(epfd, evs, SINK_EVENTS, timeout);
        if (n < 0 && errno != EINTR) {
            perror("submitd-sink: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &tag_listen)
                accept_all(lfd);
            else if (evs[i].data.ptr == &tag_signal)
                running = 0;
            else
                conn_event(evs[i].data.ptr, evs[i].events);
        }
        if (stats.dirty && now_ms() - last_write >= SINK_STATS_MS) {
            write_stats(stats_file);
            last_write = now_ms();
        }
    }
    close(lfd);
    return write_stats(stats_file) == 0 ? 0 : 1;
}
