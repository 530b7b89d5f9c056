/*
 * Logging: stderr or syslog(3). Under systemd, stderr is the journal
 * (JOURNAL_STREAM names it): each line then starts with its "<N>" priority, as
 * sd-daemon(3) describes, and carries no timestamp of its own (the journal has it).
 */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "submitd";
static int log_fg = 1;          /* to stderr; else syslog */
static int log_journal;         /* stderr is the journal: "<N>" prefixes, no timestamp */
static int log_lvl = LOG_LVL_INFO;
/* getpid() is a system call: the process id is taken once, and again in a child
 * after fork(). */
static int log_pid;

static void log_pid_reset(void)
{
    log_pid = (int)getpid();
}

/* A program that logs before log_init() still names itself right. */
static int current_pid(void)
{
    if (log_pid == 0)
        log_pid_reset();
    return log_pid;
}

static const char *const level_names[] = { "error", "warning", "info", "debug" };

int log_journal_stream(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    char end;

    /* "DEVICE:INODE" of the journal's stream, valid only while it is our stderr
     * (a program started from a shell inside a unit inherits the variable). */
    if (v == NULL || sscanf(v, "%llu:%llu%c", &dev, &ino, &end) != 2 || fstat(2, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(const char *progname, int foreground, int level)
{
    static int atfork;

    if (!atfork++)
        (void)pthread_atfork(NULL, NULL, log_pid_reset);
    log_pid_reset();
    log_prog = progname;
    log_fg = foreground;
    log_journal = foreground && log_journal_stream();
    log_lvl = level;
    if (!foreground)
        openlog(progname, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

static int facility_code(const char *name)
{
    static const struct { const char *name; int code; } map[] = {
        { "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
        { "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV }, { "local0", LOG_LOCAL0 },
        { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
        { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 }, { "local6", LOG_LOCAL6 },
        { "local7", LOG_LOCAL7 },
    };

    for (size_t i = 0; name != NULL && i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(name, map[i].name) == 0)
            return map[i].code;
    return LOG_MAIL;
}

void log_setup(int foreground, int dest, const char *facility)
{
    int to_stderr;

    if (foreground || dest == LOG_DEST_STDERR)
        to_stderr = 1;
    else if (dest == LOG_DEST_SYSLOG)
        to_stderr = 0;
    else
        to_stderr = log_journal_stream();
    if (!log_fg)
        closelog();
    log_fg = to_stderr;
    log_journal = to_stderr && log_journal_stream();
    if (!to_stderr)
        openlog(log_prog, LOG_PID | LOG_NDELAY, facility_code(facility));
}

void log_set_level(int level)
{
    log_lvl = level;
}

const char *log_level_name(int level)
{
    return level >= 0 && level < 4 ? level_names[level] : "info";
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, level_names[i]) == 0)
            return i;
    if (strcmp(name, "warn") == 0)
        return LOG_LVL_WARN;
    return -1;
}

#define LOG_LINE_MAX 2048

static void log_format(char *line, size_t linelen, const char *fmt, va_list ap)
{
    vsnprintf(line, linelen, fmt, ap);
    /* Never let a client-controlled byte break the one-line-per-event rule. */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
}

/*
 * Lines of one turn of an event loop (log_turn_begin() to log_turn_end()) go to
 * stderr in one write instead of one each. A write of at most PIPE_BUF bytes to a
 * pipe is atomic, so whole lines never interleave with another thread's; a line that
 * does not fit any more flushes what is there first. Each line keeps the timestamp
 * of its event.
 */
#define LOG_TURN_BUF PIPE_BUF

struct log_turn {
    int active;
    size_t len;
    char buf[LOG_TURN_BUF];
};

static _Thread_local struct log_turn turn;

static void turn_flush(void)
{
    size_t off = 0;

    while (off < turn.len) {
        ssize_t n = write(2, turn.buf + off, turn.len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* nowhere to report it: the lines are lost, as fprintf's would be */
        off += (size_t)n;
    }
    turn.len = 0;
}

void log_turn_begin(void)
{
    turn.active = 1;
}

void log_turn_end(void)
{
    turn_flush();
    turn.active = 0;
}

/* Writes one line to stderr, or appends it to the turn's buffer. */
static void stderr_put(const char *text, size_t n)
{
    if (turn.active && n > sizeof(turn.buf) - turn.len)
        turn_flush();
    if (!turn.active || n > sizeof(turn.buf)) {
        fwrite(text, 1, n, stderr);
        return;
    }
    memcpy(turn.buf + turn.len, text, n);
    turn.len += n;
}

static void log_emit(int level, const char *line)
{
    static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
    /* The longest line (a repeat count added to LOG_LINE_MAX) and its prefix. */
    char out[LOG_LINE_MAX + 256];
    int n;

    if (log_fg && log_journal) {
        n = snprintf(out, sizeof(out), "<%d>%s[%d]: %s: %s\n", prio[level], log_prog,
                     current_pid(), level_names[level], line);
    } else if (log_fg) {
        char ts[32];
        struct timespec now;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        n = snprintf(out, sizeof(out), "%s.%03ldZ %s[%d]: %s: %s\n", ts,
                     now.tv_nsec / 1000000L, log_prog, current_pid(), level_names[level], line);
    } else {
        syslog(prio[level], "%s", line);
        return;
    }
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(out)) {
        n = (int)sizeof(out) - 1;
        out[n - 1] = '\n';
    }
    stderr_put(out, (size_t)n);
}

/*
 * Repeated lines. A warning or error that comes again, identical and from the same
 * call site (its format string), within LOG_REPEAT_WINDOW seconds of the first is
 * counted instead of written; when the window has passed, one line says how many
 * there were. A condition that repeats in a tight loop (accept() at the descriptor
 * limit) then costs two lines per window instead of filling the disk that also holds
 * the spool and the database. Lines that differ (another session id, another
 * client) are all written.
 */
#define LOG_REPEAT_WINDOW 10
#define LOG_REPEAT_SLOTS 32

struct log_repeat {
    const char *fmt;            /* NULL: free */
    unsigned long long hash;
    long first;                 /* monotonic seconds of the line that was written */
    unsigned long long seq;     /* order of creation: the oldest entry makes room */
    unsigned long count;        /* identical lines since, not written */
    int level;
    char line[LOG_LINE_MAX];
};

static pthread_mutex_t repeat_lock = PTHREAD_MUTEX_INITIALIZER;
static struct log_repeat repeats[LOG_REPEAT_SLOTS];
static unsigned long long repeat_seq;

static long now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec;
}

static unsigned long long line_hash(const char *s)
{
    unsigned long long h = 14695981039346656037ULL;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* Writes the count of an entry's suppressed lines, if any, and frees the entry. */
static void repeat_retire(struct log_repeat *r, long now)
{
    if (r->count > 0) {
        char line[LOG_LINE_MAX + 64];

        snprintf(line, sizeof(line), "%s (repeated %lu times in the last %lds)", r->line,
                 r->count, now - r->first);
        log_emit(r->level, line);
    }
    r->fmt = NULL;
}

static void repeat_expire(long now)
{
    for (int i = 0; i < LOG_REPEAT_SLOTS; i++)
        if (repeats[i].fmt != NULL && now - repeats[i].first >= LOG_REPEAT_WINDOW)
            repeat_retire(&repeats[i], now);
}

/* Returns 1 when the line is a repeat within its window and is not to be written. */
static int repeat_suppressed(int level, const char *fmt, const char *line)
{
    unsigned long long h = line_hash(line);
    long now = now_seconds();
    struct log_repeat *r = NULL;
    int i;

    repeat_expire(now);
    for (i = 0; i < LOG_REPEAT_SLOTS; i++) {
        struct log_repeat *e = &repeats[i];

        if (e->fmt == fmt && e->hash == h && strcmp(e->line, line) == 0) {
            e->count++;
            return 1;
        }
        if (r == NULL || (r->fmt != NULL && (e->fmt == NULL || e->seq < r->seq)))
            r = e;
    }
    /* A new line: the free entry, or the oldest one makes room. */
    if (r->fmt != NULL)
        repeat_retire(r, now);
    r->fmt = fmt;
    r->hash = h;
    r->first = now;
    r->seq = ++repeat_seq;
    r->count = 0;
    r->level = level;
    memcpy(r->line, line, strlen(line) + 1);
    return 0;
}

void log_flush_repeats(void)
{
    pthread_mutex_lock(&repeat_lock);
    repeat_expire(now_seconds());
    pthread_mutex_unlock(&repeat_lock);
}

void log_msg(int level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    va_list ap;

    if (level > log_lvl)
        return;
    va_start(ap, fmt);
    log_format(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (level > LOG_LVL_WARN) {
        log_emit(level, line);
        return;
    }
    pthread_mutex_lock(&repeat_lock);
    if (!repeat_suppressed(level, fmt, line))
        log_emit(level, line);
    pthread_mutex_unlock(&repeat_lock);
}

void fatal(const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    va_list ap;

    va_start(ap, fmt);
    log_format(line, sizeof(line), fmt, ap);
    va_end(ap);
    /* What this turn logged before goes out first, in order. */
    turn_flush();
    turn.active = 0;
    log_emit(LOG_LVL_ERR, line);
    /* No exit handlers: after a broken invariant nothing should run any more. */
    _exit(1);
}
