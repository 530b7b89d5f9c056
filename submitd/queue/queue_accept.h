#ifndef SUBMITD_QUEUE_ACCEPT_H
#define SUBMITD_QUEUE_ACCEPT_H

#include "ipc.h"
#include "ipc_codec.h"
#include "spool.h"

#include <stdint.h>

/*
 * Taking messages from the smtp process (DESIGN §2, §4), which the queue treats as
 * possibly compromised:
 *   OPEN    the envelope must be free of control characters and confirmed by
 *           authz for the session (its user, its approved sender, its recipient
 *           limits); the queue writes the envelope records itself, with the user
 *           and client address authz gives, and hands smtp a descriptor that can
 *           only append to that one file;
 *   COMMIT  only for a file this channel opened; smtp must hold no descriptor of
 *           it any more, the envelope must be byte for byte what the queue wrote,
 *           and everything after it BODY records adding up to the size announced;
 *           then END; the commits read in one turn of the loop are then fsynced
 *           together and renamed into queue/, and one directory fsync follows for
 *           the whole batch, before any of them is answered;
 *   ABORT   only for a file this channel opened.
 */

struct pending_commit {
    int chan;
    uint64_t req;
    char id[SPOOL_ID_LEN + 1];
    char session[IPC_SESSION_MAX];
    char user[IPC_USER_MAX];
    uint64_t nrcpt;
    int fd;                         /* the file, ended; still open after accept_sync()
                                       when ok (the caller's to hand on or close) */
    int ok;
    char why[256];
};

/*
 * max_open: spool files that may be open (between OPEN and COMMIT) at once; of
 * those, the queue keeps its own descriptor (from the creation to the COMMIT) for
 * at most max_held, and opens the others again at COMMIT.
 */
void accept_init(int max_open, int max_held);
void accept_open(int chan, struct ipc_msg *m);
void accept_abort(int chan, struct ipc_msg *m);
/* Validates and ends the file; the result is in pc. */
void accept_commit(int chan, struct ipc_msg *m, struct pending_commit *pc);
/* Fsyncs the files of a batch of commits and renames them into queue/; the
 * descriptor of a file that failed is closed. */
void accept_sync(struct pending_commit *pc, int n);
/* After the directory fsync: charges the user (authz) and answers smtp. */
void accept_answer(const struct pending_commit *pc, struct ipc_msg *m);
/* Forgets every open file (shutdown). */
void accept_free(void);

#endif
