#ifndef SUBMITD_QUEUE_SCHED_H
#define SUBMITD_QUEUE_SCHED_H

#include <stddef.h>
#include <time.h>

/*
 * The queue process's in-memory schedule: one entry per file in spool/queue/, with
 * the time of its next attempt (the spool file holds the same time, so a restart
 * keeps it). Relay threads take due entries; an entry is busy while a thread has it.
 *
 * When the upstream cannot be reached, the messages that failed for that reason are
 * marked; one of them is tried again every probe interval regardless of its own
 * backoff, and when a connection succeeds all of them become due at once, so mail
 * flows again within seconds of the upstream coming back.
 */

void sched_init(int probe_interval);
/* Adds id due at next (0: now). Returns 0, or -1 when out of memory. */
int sched_add(const char *id, time_t next);
/*
 * The same for a file just committed, with a descriptor of it (read access), which
 * the schedule owns from now on in every case: the first relay attempt reads the
 * file through it instead of opening it again. At most SCHED_FDS_MAX descriptors
 * are kept at once; past that, and when out of memory, fd is closed.
 */
#define SCHED_FDS_MAX 128
int sched_add_fd(const char *id, time_t next, int fd);
/*
 * Waits for a due entry, marks it busy and copies its id into id (SPOOL_ID_LEN + 1
 * bytes) and into *fd the descriptor sched_add_fd() kept for it, or -1 (the caller
 * closes it). Returns 1, or 0 when the schedule is stopping.
 */
int sched_take(char *id, int *fd);
/* Releases a busy entry: removed, or due again at next (conn_fail: the upstream
 * could not be reached). */
void sched_done(const char *id, int remove, time_t next, int conn_fail);
/* A connection to the upstream worked: what waited for it is due now. */
void sched_upstream_ok(void);
/* Everything is due now (submit-admin queue flush). */
void sched_flush(void);
/* Wakes every waiting thread; sched_take returns 0 from now on. */
void sched_stop(void);
size_t sched_count(void);
void sched_free(void);

#endif
