#ifndef SUBMITD_SMTP_H
#define SUBMITD_SMTP_H

#include "config.h"
#include "ipc.h"
#include "smtp_parse.h"
#include "tls.h"

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <time.h>

/*
 * The smtp process: worker threads, each running an epoll loop over non-blocking
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

/*
 * What a reload (SIGHUP to the master) may change for new sessions: the settings
 * and the TLS context built from the server certificate, its key and client_ca. A
 * session takes a reference at its start and gives it back when it is freed, so
 * sessions in progress finish on the settings they began with.
 */
struct smtp_settings {
    int refs;                   /* under the lock in smtp.c */
    struct config cfg;
    SSL_CTX *ssl_ctx;
};
struct smtp_settings *smtp_settings_get(void);
void smtp_settings_put(struct smtp_settings *set);

struct worker {
    int idx;
    int epfd;
    int authz_fd;
    int queue_fd;
    int ctl_fd;                 /* the master's control channel (worker 0 only), or -1 */
    struct session **slots;     /* sessions by slot; request ids carry slot + generation */
    uint32_t nslots;
    uint32_t generation;
    struct session *closed;     /* closed in this batch: freed when the batch is done */
    int spare_fd;               /* kept open to refuse a client at the descriptor limit */
    uint64_t paused;            /* listeners (bit k) taken out of this worker's epoll set */
    time_t paused_at;
    struct ipc_msg *msg;        /* scratch message, 64 KiB: not on the stack */
};

enum sess_state {
    SS_GREETING = 0, /* before EHLO/HELO */
    SS_READY,        /* after EHLO/HELO, no transaction */
    SS_MAIL,         /* MAIL accepted */
    SS_RCPT,         /* at least one RCPT accepted */
    SS_DATA,         /* receiving message content */
    SS_CLOSING
};

/* What the session is waiting for; input is not processed meanwhile. */
enum sess_wait {
    WAIT_NONE = 0, WAIT_IDENTITY, WAIT_SENDER, WAIT_OPEN, WAIT_HEADER_FROM, WAIT_COMMIT,
    WAIT_PASSWORD, WAIT_STARTTLS_FLUSH, WAIT_AUTHZID,
    WAIT_ACCEPT_AUDIT  /* the message is queued; the 250 waits for its audit row */
};

#define SESS_INBUF 8192

enum { AUTH_PENDING_NONE = 0, AUTH_PENDING_PLAIN, AUTH_PENDING_EXTERNAL };

struct session {
    struct worker *w;
    struct smtp_settings *set;  /* a reference, given back when the session is freed */
    const struct config *cfg;   /* &set->cfg */
    int fd;
    uint32_t slot;
    uint32_t gen;
    int closed;                 /* out of the slot table, waiting on w->closed */
    struct session *next_closed;
    SSL *ssl;
    int handshaking;
    int tls_done;               /* TLS established (STARTTLS or implicit) */
    int implicit_tls;
    int detached;               /* the client left while the commit was pending */
    int ssl_want_write;         /* OpenSSL needs the socket writable to progress */
    int ssl_write_wants_read;   /* a reply waits for a record from the client */
    enum sess_state state;
    enum sess_wait wait;
    time_t wait_since;          /* when the current wait began */
    time_t tls_deadline;        /* handshake + first command due; 0: done or not started */
    time_t tls_checked;         /* last look at it: time spent waiting for us is added */
    time_t last_active;
    char id[20];
    char client_ip[64];
    char helo[256];
    int errors;                 /* protocol errors; too many ends the session */
    int skip_to_lf;             /* discarding the rest of an over-long line */
    int audited_pretls;         /* a no-STARTTLS rejection was audited already */

    /* Identity established by the certificate (DESIGN §3.4). */
    int identity_known;
    int identity_decision;      /* enum ipc_decision */
    char identity_reply[256];   /* the SMTP reply for a denial or tempfail */
    char user[128];
    int auth_done;              /* AUTH EXTERNAL or PLAIN accepted */
    int password_ok;            /* AUTH PLAIN accepted (auth_password) */
    int auth_pending;           /* AUTH_PENDING_*: the next line is a SASL response */
    int auth_failures;
    int identity_requested;     /* authz holds a record of the session until its end */
    struct tls_peer peer;

    /* The transaction. */
    char mail_from[SMTP_ADDR_MAX + 1];
    char pending_from[SMTP_ADDR_MAX + 1];
    long long declared_size;
    char **rcpt;
    int nrcpt;
    long long rcpt_budget;      /* recipients left in the hourly limit; -1: no limit */
    char queue_id[32];
    char accepted_id[32];       /* the queue id the pending 250 will name */
    int spool_fd;
    struct data_parser dp;
    char *hdrbuf;               /* header section collected before writing the prelude */
    char *header_from;          /* the From field's value, unfolded */
    int header_from_count;      /* how many From fields the message has */
    size_t hdrlen, hdrcap;
    int in_body;                /* the prelude has been written */
    char *stage;                /* staging buffer for SPOOL_BODY records */
    size_t stagelen;
    long long msg_size;         /* the client's message bytes, for the size limit */
    long long spooled;          /* bytes in BODY records, prelude included */
    int oversize;               /* the message or its header section exceeds its limit */
    int write_error;

    /* Buffers. */
    char inbuf[SESS_INBUF];
    size_t inlen;
    char *outbuf;
    size_t outlen, outcap;
};

/* smtp_session.c */
void session_start(struct worker *w, int fd, const struct sockaddr_storage *ss,
                   int implicit_tls);
/* A socket event for the session with this handle; stale handles are ignored. */
void session_on_event(struct worker *w, uint64_t handle, uint32_t events);
void session_on_ipc(struct worker *w, struct ipc_msg *m);
void session_check_timeout(struct session *s, time_t now);
/* Ends the session at shutdown: a 421 when a reply is possible, then close. */
void session_shutdown(struct session *s);
/* Frees the sessions closed since the last call: once per batch of events, when no
 * event of the batch can refer to them any more. Returns how many were freed. */
int session_reap(struct worker *w);

/* The client's address as text ("unknown" for other families). */
void sockaddr_text(const struct sockaddr_storage *ss, char *ip, size_t iplen);

/* smtp.c: global and per-address session accounting (shared by all workers). */
int smtp_limits_enter(const char *ip, int *why_global);
void smtp_limits_leave(const char *ip);
void smtp_session_id(char *out, size_t outlen);

#endif
