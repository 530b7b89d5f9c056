#ifndef SUBMITD_SESSION_H
#define SUBMITD_SESSION_H

#include "config.h"
#include "ipc.h"
#include "smtp_parse.h"
#include "tls.h"
#include "tls_out.h"

#include <stdint.h>
#include <time.h>

/*
 * One SMTP session: the state machine of DESIGN §3. The state machine itself
 * (smtp_session.c, smtp_cmd.c, smtp_sasl.c, smtp_data.c, smtp_answer.c) never
 * touches a socket, epoll or OpenSSL: the client's bytes arrive in inbuf, the
 * replies leave through outbuf, and requests to authz and queue go out through the
 * session's port. The event loop (smtp_io.c) is one implementation of the port and
 * of the socket side; the recorded-dialogue test driver (tests/unit/test_golden.c)
 * is another.
 */

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
    WAIT_NONE = 0, WAIT_IDENTITY, WAIT_SENDER, WAIT_OPEN, WAIT_COMMIT,
    WAIT_PASSWORD, WAIT_STARTTLS_FLUSH, WAIT_AUTHZID
};

#define SESS_INBUF 4096
/* Replies waiting for the socket beyond which no further command is processed. */
#define OUTBUF_PAUSE (16 * 1024)

enum { AUTH_PENDING_NONE = 0, AUTH_PENDING_PLAIN, AUTH_PENDING_EXTERNAL };

/* The two processes a session asks. */
enum session_peer { PEER_AUTHZ = 0, PEER_QUEUE };

struct session;
struct worker;          /* the event loop's; opaque to the state machine */
struct smtp_settings;

/*
 * What the state machine needs from its surroundings besides memory: a way to send
 * a request. send() returns 0, or -1 with errno set; a descriptor in m->fd stays
 * the caller's.
 */
struct session_port {
    int (*send)(struct session *s, enum session_peer to, struct ipc_msg *m);
};

/*
 * One mail transaction: allocated when MAIL is given, freed when the transaction
 * ends (RSET, EHLO, STARTTLS, the end of DATA, a refused sender, the end of the
 * session). Nothing of it survives into the next transaction.
 */
struct smtp_tx {
    char mail_from[SMTP_ADDR_MAX + 1]; /* asked of authz at MAIL; accepted in SS_MAIL */
    long long declared_size;    /* SIZE=, or -1 */
    char **rcpt;
    int nrcpt;
    long long rcpt_budget;      /* recipients left in the hourly limit; -1: no limit */
    char queue_id[32];
    int spool_fd;               /* the queue's file for the message, or -1 */
    int data_slot;              /* holds one of the DATA places (smtp_limits.h) */
    struct data_parser dp;
    char *hdrbuf;               /* header section collected before writing the prelude */
    size_t hdrlen, hdrcap;
    char *header_from;          /* the From field's value, unfolded */
    int header_from_count;      /* how many From fields the message has */
    int in_body;                /* the prelude has been written */
    char *stage;                /* staging buffer for SPOOL_BODY records */
    size_t stagelen;
    long long msg_size;         /* the client's message bytes, for the size limit */
    long long spooled;          /* bytes in BODY records, prelude included */
    int oversize;               /* the message or its header section exceeds its limit */
    int write_error;
};

struct session {
    /* Where the session lives (the event loop's; the state machine only passes
     * these on). */
    struct worker *w;
    const struct session_port *port;
    struct ipc_msg *msg;        /* scratch for requests, 64 KiB: the worker's */
    struct smtp_settings *set;  /* a reference, given back when the session is freed */
    const struct config *cfg;   /* &set->cfg */

    /* The connection (smtp_io.c). */
    int fd;
    uint32_t slot;
    uint32_t gen;
    int closed;                 /* out of the slot table, waiting on w->closed */
    struct session *next_closed;
    SSL *ssl;
    int handshaking;
    int implicit_tls;
    int detached;               /* the client left while the commit was pending */
    int ssl_want_write;         /* OpenSSL needs the socket writable to progress */
    int ssl_write_wants_read;   /* a reply waits for a record from the client */
    struct tls_out tls_out;     /* records OpenSSL wrote, not sent yet (tls_out.h) */
    int tls_shut;               /* the close_notify is written */
    uint32_t ev_mask;           /* the epoll events registered now */
    time_t tls_deadline;        /* handshake + first command due; 0: done or not started */
    time_t tls_checked;         /* last look at it: time spent waiting for us is added */
    time_t last_active;
    int proxy_pending;          /* the PROXY header is awaited: no greeting yet */
    time_t proxy_deadline;      /* when the header is due */
    int proxy_local;            /* the header named no client: the balancer's own */
    char proxy_ip[64];          /* the balancer's address, after a PROXY header */
    int counted;                /* in the per-address count of smtp_limits */

    /* The state machine. */
    enum sess_state state;
    enum sess_wait wait;
    time_t wait_since;          /* when the current wait began */
    int tls_done;               /* TLS established (STARTTLS or implicit) */
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

    struct smtp_tx *tx;         /* the transaction, or NULL */

    /* Buffers. */
    char *inbuf;                /* SESS_INBUF bytes while it holds input or a read is
                                   under way, else NULL: an idle session has none
                                   (smtp_io.c, inbuf_take and inbuf_give) */
    size_t inlen;
    char *outbuf;
    size_t outlen, outcap;
};

/* ---- smtp_session.c: replies, states, transactions, guards ----------------- */

/* Queues one reply line (CRLF added) in outbuf. */
void session_reply(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void session_set_state(struct session *s, enum sess_state st);
/* Every request to authz or queue goes out with the session waiting for it. */
void session_wait(struct session *s, enum sess_wait w);
/* The 220 greeting: at connect, or after the handshake on the implicit-TLS port. */
void session_greet(struct session *s);

/* Starts a transaction for MAIL from addr (NULL on a lack of memory, replied). */
struct smtp_tx *tx_begin(struct session *s, const char *addr);
/* Ends the transaction, if any: an open queue file is given back, and the session
 * is READY again unless it has not greeted or is closing. */
void tx_end(struct session *s);
/* Gives back the transaction's DATA place, once its spool file is closed. */
void tx_data_leave(struct smtp_tx *tx);
/* Joins the recipients for an audit row; truncated with "..." if very many. */
void tx_rcpt_list(const struct session *s, char *out, size_t outlen);
/* Appends a copy of addr to the transaction's recipients; -1 when out of memory. */
int tx_add_rcpt(struct smtp_tx *tx, const char *addr);

/* The guards of the command table (smtp_cmd.c): each replies and returns 0 when
 * the command may not proceed. */
int check_tls(struct session *s, const char *cmd);
int check_helo(struct session *s);
int check_transaction(struct session *s);
int check_identity(struct session *s);

/* The STARTTLS 220 has left: everything the client sent after the command is
 * discarded, and HELO and the transaction are forgotten (DESIGN §3.3). */
void session_starttls_reset(struct session *s);
/* The handshake is done; peer is filled in. The chain (DER, leaf first) goes to
 * authz for the identity. */
void session_tls_established(struct session *s, unsigned char **der, const size_t *derlen,
                             int n);
/* The session is over: the transaction and authz's grant are given up. */
void session_end(struct session *s);

#endif
