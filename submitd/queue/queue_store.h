#ifndef SUBMITD_QUEUE_STORE_H
#define SUBMITD_QUEUE_STORE_H

#include <limits.h>
#include <stddef.h>

struct spool_msg;

/*
 * Durable changes to spool/queue/ made by the relay side (DESIGN §4). A file there is
 * never edited in place: a new version is written in incoming/ (which start-up
 * empties), fsynced, and exchanged atomically with the old one, and the directory is
 * fsynced. A crash leaves either the old or the new version, never a mix.
 */

struct queue_dirs {
    char incoming[PATH_MAX];
    char queue[PATH_MAX];
    char corrupt[PATH_MAX];
    /* incoming/ and queue/, held open from store_open_dirs() on: files are named
     * relative to them (no walk of the spool path per call), and queue/ is
     * fsynced through its descriptor. The paths above are for messages. */
    int incoming_fd;
    int queue_fd;
};

extern struct queue_dirs qdirs;

void store_init(const char *spool);
/* Opens incoming/ and queue/ (as the user the process runs as); fatal when it cannot. */
void store_open_dirs(void);
/* Fsyncs queue/ (a rename into it, or a removal, becomes durable). 0 or -1 (errno). */
int store_sync_queue_dir(void);
/*
 * Replaces queue/ID with msg (its state). Returns 0, 1 when queue/ID no longer
 * exists (deleted by an administrator: nothing is written), or -1 with err.
 */
int store_save(const struct spool_msg *msg, char *err, size_t errlen);
/* Writes msg as a new file and moves it into queue/, durably. 0 or -1 with err. */
int store_create(const struct spool_msg *msg, char *err, size_t errlen);
/* Removes queue/ID once every recipient is done. 0, or -1 (logged). */
int store_remove(const char *id);
/* Moves queue/ID to corrupt/ with a log line naming why. */
void store_quarantine(const char *id, const char *why);

#endif
