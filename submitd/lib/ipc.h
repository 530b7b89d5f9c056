#ifndef SUBMITD_IPC_H
#define SUBMITD_IPC_H

#include <stddef.h>
#include <stdint.h>

/*
 * Messages between our own processes (DESIGN §2). The transport is an AF_UNIX
 * SOCK_SEQPACKET socketpair, so one send is one message and framing can never
 * desynchronise. A message is a fixed header (total length, type, request id)
 * followed by typed fields: u64 numbers and length-prefixed strings. Everything a
 * receiver reads is validated (length, field count, string sizes, no NUL bytes);
 * a malformed message is a protocol violation and the receiver exits, so that the
 * master restarts the process set.
 */

#define IPC_MAX_MSG 65536

/* The fields of each type are in ipc_codec.h. */
enum ipc_type {
    IPC_AUTHZ_IDENTITY = 1,  /* smtp -> authz */
    IPC_AUTHZ_SENDER,        /* smtp -> authz */
    IPC_AUTHZ_AUDIT,         /* smtp -> authz, no answer */
    IPC_AUTHZ_RESULT,        /* authz -> smtp */
    IPC_QUEUE_OPEN,          /* smtp -> queue, answered by OPENED (+ fd) */
    IPC_QUEUE_COMMIT,        /* smtp -> queue, answered by COMMITTED */
    IPC_QUEUE_ABORT,         /* smtp -> queue, no answer */
    IPC_QUEUE_OPENED,        /* queue -> smtp */
    IPC_QUEUE_COMMITTED,     /* queue -> smtp */
    IPC_AUTHZ_PASSWORD,      /* smtp -> authz */
    IPC_AUTHZ_SESSION_END,   /* smtp -> authz, no answer */
    IPC_AUTHZ_GRANT_CHECK,   /* queue -> authz, answered by GRANT */
    IPC_AUTHZ_GRANT,         /* authz -> queue */
    IPC_AUTHZ_RELAY_AUDIT,   /* queue -> authz, no answer */
    IPC_AUTHZ_ACCEPT,        /* queue -> authz, answered by RESULT */
    IPC_AUTHZ_AUTHZID,       /* smtp -> authz */
    IPC_CTL_READY,           /* worker -> master: set up, serving */
    IPC_CTL_FILE,            /* master -> worker: one file for the next reload (+ fd) */
    IPC_CTL_RELOAD,          /* master -> worker: apply the files sent */
    IPC_CTL_RELOADED,        /* worker -> master: done, or why not */
    IPC_TYPE_MAX
};

enum ipc_decision { IPC_ALLOW = 0, IPC_DENY = 1, IPC_TEMPFAIL = 2 };

struct ipc_msg {
    uint32_t len;           /* bytes used in buf, header included */
    uint16_t type;
    uint64_t id;            /* request id, echoed in the answer */
    int fd;                 /* descriptor passed along, or -1 */
    size_t rpos;            /* read position while decoding */
    unsigned char buf[IPC_MAX_MSG];
};

void ipc_init(struct ipc_msg *m, enum ipc_type type, uint64_t id);
/* Appends a field; return -1 when the message would exceed IPC_MAX_MSG. */
int ipc_put_u64(struct ipc_msg *m, uint64_t v);
int ipc_put_str(struct ipc_msg *m, const char *s); /* NULL is sent as an empty string */
int ipc_put_bytes(struct ipc_msg *m, const void *p, size_t n);

/* Reads the next field; -1 when missing, too long for out, or containing NUL. */
int ipc_get_u64(struct ipc_msg *m, uint64_t *v);
int ipc_get_str(struct ipc_msg *m, char *out, size_t outlen);
/* A byte field (may hold NUL) of at most max bytes; *p points into m->buf. */
int ipc_get_bytes(struct ipc_msg *m, const unsigned char **p, size_t *n, size_t max);
/* 0 when every byte was consumed (no trailing garbage). */
int ipc_end(const struct ipc_msg *m);

/*
 * Sends the message (with m->fd attached when >= 0). Returns 0, or -1 with errno
 * (EAGAIN when a non-blocking socket is full).
 */
int ipc_send(int sock, struct ipc_msg *m);
/*
 * Receives one message. Returns 1 on a message, 0 at end of file, -1 with errno set
 * (EAGAIN: nothing to read; EBADMSG: malformed header, truncated or oversized, or
 * more than one descriptor attached). A received descriptor is in m->fd (close it
 * if unused); a message refused as malformed leaves no descriptor open.
 */
int ipc_recv(int sock, struct ipc_msg *m);

/* Creates a SOCK_SEQPACKET socketpair with large buffers and close-on-exec. */
int ipc_socketpair(int sv[2]);

#endif
