#ifndef SUBMITD_ADMIN_QUEUE_H
#define SUBMITD_ADMIN_QUEUE_H

/*
 * submit-admin queue list [--json] | queue flush | queue delete ID (DESIGN §5).
 * argv[0] is the subcommand. Reads spool/queue/ directly (submit-admin runs as
 * root), through descriptors opened without following the daemon user's links;
 * flush signals the queue process named by spool/queue.pid only when it runs as the
 * configured user; flush and delete write audit rows. Returns the exit status (0, 1
 * failure, 2 misuse).
 */
int admin_queue(const char *config_path, int argc, char **argv);

#endif
