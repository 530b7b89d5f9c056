#ifndef SUBMITD_SMTP_H
#define SUBMITD_SMTP_H

#include "ipc.h"

#include <stdint.h>
#include <time.h>

/*
 * The smtp process's worker threads: each runs an epoll loop over non-blocking
 * sockets and non-blocking OpenSSL. A session never blocks: requests to authz and
 * queue go out over the worker's own socketpairs and the answers come back as
 * events in the same loop (DESIGN §2).
 */

/*
 * What an epoll event refers to: the u64 of its epoll_data, never a pointer. A
 * session's handle is its slot in the worker's table and the generation it was
 * given there, (slot << 32) | generation, the same value its requests to authz and
 * queue carry as their id. Every event is looked up through the table, so an event
 * for a session that was closed earlier in the same batch (its slot empty, or reused
 * with another generation) finds nothing.
 */
#define EV_HANDLE(slot, gen) (((uint64_t)(slot) << 32) | (uint32_t)(gen))
#define EV_SLOT(h) ((uint32_t)((h) >> 32))
#define EV_GEN(h) ((uint32_t)(h))
/* The worker's own descriptors: generation 0, and in the slot field one of these. */
#define EV_RESERVED(what) EV_HANDLE(what, 0)
enum ev_reserved { EV_AUTHZ = 1, EV_QUEUE = 2, EV_CTL = 3, EV_LISTENER0 = 16 }; /* listener k: EV_LISTENER0 + k */

struct listener {
    int fd;
    int implicit_tls;
};

struct session;

struct worker {
    int idx;
    int epfd;
    int authz_fd;
    int queue_fd;
    int ctl_fd;                 /* the master's control channel (worker 0 only), or -1 */
    struct session **slots;     /* sessions by slot; request ids carry slot + generation */
    uint32_t nslots;
    uint32_t *free_slots;       /* a stack of the empty slots, so that taking one is O(1) */
    uint32_t nfree;
    uint32_t generation;
    struct session *closed;     /* closed in this batch: freed when the batch is done */
    int spare_fd;               /* kept open to refuse a client at the descriptor limit */
    uint64_t paused;            /* listeners (bit k) taken out of this worker's epoll set */
    time_t paused_at;
    struct ipc_msg *msg;        /* scratch message, 64 KiB: not on the stack */
    char *spare_inbuf;          /* an input buffer an emptied session gave back */
};

#endif
