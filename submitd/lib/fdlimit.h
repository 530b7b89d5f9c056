#ifndef SUBMITD_FDLIMIT_H
#define SUBMITD_FDLIMIT_H

#include <stddef.h>

/*
 * The descriptors the smtp process needs for max_sessions (DESIGN §9): every session
 * holds its socket and, during DATA, a spool file; the process itself holds the
 * standard descriptors, the log, and per worker an epoll set, two channels and a
 * spare descriptor, plus the listeners and some room for files opened on the way
 * (CRL reloads). The smtp process never raises its hard limit: the operator's
 * (LimitNOFILE= under systemd) decides. When the hard limit cannot hold two
 * descriptors per session, idle sessions are counted at one and the spool files
 * come out of a pool of their own: 1/FD_DATA_SHARE of the room, at least one and
 * at most FD_DATA_MAX files, which caps the sessions in DATA at once; max_sessions
 * is lowered to what is left.
 */
#define FD_PER_SESSION 2
#define FD_PER_WORKER 4
#define FD_BASE 20
#define FD_DATA_SHARE 16
#define FD_DATA_MAX 512

struct fd_budget {
    unsigned long long limit;   /* the hard limit (ULLONG_MAX: unlimited) */
    unsigned long long need;    /* for the configured max_sessions */
    unsigned long long use;     /* the soft limit to set: need, or limit when lower */
    int max_sessions;           /* what fits: the configured value, or lower */
    int data_sessions;          /* how many of them may be in DATA at once */
};

/* Fills b; returns 1 when the limit cannot hold two descriptors per session
 * (max_sessions lowered or DATA capped), 0 when it fits. */
int fd_budget(int max_sessions, int workers, int listeners, unsigned long long hard_limit,
              struct fd_budget *b);

/* The one-line warning for a lowered max_sessions, naming both numbers. */
void fd_budget_warning(const struct fd_budget *b, int configured, char *out, size_t outlen);

#endif
