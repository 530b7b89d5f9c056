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
 *           together; authz checks their header From and commits their accept
 *           rows and rate charges (ACCEPT), so that no message is relayed without
 *           its accept row, whatever smtp does; they are renamed into queue/, and one directory fsync follows
 *           for the whole batch, before any of them is answered;
 *   ABORT   only for a file this channel opened.
 */

struct pending_commit {
    int chan;
    uint64_t req;
    char id[SPOOL_ID_LEN + 1];
    char session[IPC_SESSION_MAX];
    char user[IPC_USER_MAX];
    char client_ip[IPC_IP_MAX];
    char mail_from[IPC_ADDR_MAX];
    char *rcpts;                    /* for the accept row; freed by accept_answer() */
    uint64_t nrcpt;
    uint64_t size;
    struct ipc_header_from from;    /* for authz's check_header_from */
    uint64_t accept_req;            /* the ACCEPT asked of authz and not answered, or 0 */
    int fd;                         /* the file, ended; still open after the steps below
                                       when ok (the caller's to hand on or close) */
    int ok;
    int status;                     /* IPC_QUEUE_* of a failure */
    char why[256];
};

/*
 * max_open: spool files that may be open (between OPEN and COMMIT) at once; of
 * those, the queue keeps its own descriptor (from the creation to the COMMIT) for
 * at most max_held, and opens the others again at COMMIT.
 */
void accept_init(int max_open, int max_held);
/*
 * The settings the checks at COMMIT use; called at start and at every reload.
 * - The largest message smtp may commit: max_message_size and the fields smtp adds
 *   (SPOOL_ADDED_MAX); the largest header section likewise, from max_header_size.
 *   smtp enforces both; these checks only keep a compromised smtp from queueing
 *   more. A reload may raise them, never lower them here: sessions started before
 *   keep the limits they started with.
 * - check_header_from: the From addresses authz checks are read from the committed
 *   file (queue_content.h), whatever smtp sent; a reload applies it at once.
 */
void accept_set_limits(long long max_message_size, long long max_header_size,
                       int check_header_from);
/* Logs an error when the spool's file system refuses leases: without them every
 * commit is refused (see sole_opener in queue_accept.c). After store_open_dirs(). */
void accept_probe_leases(void);
void accept_open(int chan, struct ipc_msg *m);
void accept_abort(int chan, struct ipc_msg *m);
/* Validates and ends the file; the result is in pc. */
void accept_commit(int chan, struct ipc_msg *m, struct pending_commit *pc);
/*
 * The steps of a batch of commits, in this order; each drops (removes, closes, marks
 * not ok) a file that fails it:
 *   accept_sync     fsyncs the files in incoming/;
 *   accept_record   has authz check their header From and commit their accept rows
 *                   and rate charges;
 *   accept_publish  renames them into queue/ (the caller then fsyncs the directory);
 *   accept_answer   answers smtp (after the directory fsync), one commit at a time.
 */
void accept_sync(struct pending_commit *pc, int n);
void accept_record(struct pending_commit *pc, int n, struct ipc_msg *m);
void accept_publish(struct pending_commit *pc, int n);
void accept_answer(struct pending_commit *pc, struct ipc_msg *m);
/* Forgets every open file (shutdown). */
void accept_free(void);

#endif
