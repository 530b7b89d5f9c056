#ifndef SUBMITD_ADMIN_QUEUE_H
#define SUBMITD_ADMIN_QUEUE_H

#include <stddef.h>

/*
 * submit-admin queue list [--json] | queue flush | queue delete ID (DESIGN §5).
 * sub is the subcommand (submit-admin's command table found it); argv holds the
 * words after it. Reads spool/queue/ directly (submit-admin runs as
 * root), through descriptors opened without following the daemon user's links;
 * flush signals the queue process named by spool/queue.pid only when it runs as the
 * configured user; flush and delete write audit rows. Returns the exit status (0, 1
 * failure, 2 misuse).
 */
int admin_queue(const char *config_path, const char *sub, int argc, char **argv);

/* The usage of queue, printed after a misuse of it. */
extern const char admin_queue_usage[];

struct config;

/* What stats says about the queue. */
struct admin_queue_summary {
    long long messages;     /* readable messages in spool/queue */
    long long deferred;     /* of them, tried at least once (attempts > 0) */
    long long oldest;       /* arrival (Unix time) of the oldest; 0 when none */
    long long unreadable;   /* files in spool/queue that are not valid messages */
};
/* Reads spool/queue as queue list does. Returns 0, or -1 with the reason in why. */
int admin_queue_summary(const struct config *cfg, struct admin_queue_summary *qs, char *why,
                        size_t whylen);

#endif
