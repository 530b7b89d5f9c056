/* Logging: stderr in the foreground, syslog (LOG_MAIL) otherwise. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static const char *log_prog = "submitd";
static int log_fg = 1;
static int log_lvl = LOG_LVL_INFO;

static const char *const level_names[] = { "error", "warning", "info", "debug" };

void log_init(const char *progname, int foreground, int level)
{
    log_prog = progname;
    log_fg = foreground;
    log_lvl = level;
    if (!foreground)
        openlog(progname, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(int level)
{
    log_lvl = level;
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

static void log_vemit(int level, const char *fmt, va_list ap)
{
    static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
    char line[2048];

    vsnprintf(line, sizeof(line), fmt, ap);
    /* Never let a client-controlled byte break the one-line-per-event rule. */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (log_fg) {
        char ts[32];
        struct timespec now;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        fprintf(stderr, "%s.%03ldZ %s[%d]: %s: %s\n", ts, now.tv_nsec / 1000000L, log_prog,
                (int)getpid(), level_names[level], line);
    } else {
        syslog(prio[level], "%s", line);
    }
}

void log_msg(int level, const char *fmt, ...)
{
    va_list ap;

    if (level > log_lvl)
        return;
    va_start(ap, fmt);
    log_vemit(level, fmt, ap);
    va_end(ap);
}

void fatal(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_vemit(LOG_LVL_ERR, fmt, ap);
    va_end(ap);
    /* No exit handlers: after a broken invariant nothing should run any more. */
    _exit(1);
}
