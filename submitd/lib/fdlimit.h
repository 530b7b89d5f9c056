#ifndef SUBMITD_FDLIMIT_H
#define SUBMITD_FDLIMIT_H

#include <stddef.h>

/*
 * The descriptors the smtp process needs for max_sessions (DESIGN §9): every session
 * may hold its socket and, during DATA, a spool file; the process itself holds the
 * standard descriptors, the log, and per worker an epoll set, two channels and a
 * spare descriptor, plus the listeners and some room for files opened on the way
 * (CRL reloads). The smtp process never raises its hard limit: the operator's
 * (LimitNOFILE= under systemd) decides, and max_sessions is lowered to fit.
 */
#define FD_PER_SESSION 2
#define FD_PER_WORKER 4
#define FD_BASE 20

struct fd_budget {
    unsigned long long limit;   /* the hard limit (ULLONG_MAX: unlimited) */
    unsigned long long need;    /* for the configured max_sessions */
    unsigned long long use;     /* the soft limit to set: need, or limit when lower */
    int max_sessions;           /* what fits: the configured value, or lower */
};

/* Fills b; returns 1 when max_sessions had to be lowered, 0 when it fits. */
int fd_budget(int max_sessions, int workers, int listeners, unsigned long long hard_limit,
              struct fd_budget *b);

/* The one-line warning for a lowered max_sessions, naming both numbers. */
void fd_budget_warning(const struct fd_budget *b, int configured, char *out, size_t outlen);

#endif
