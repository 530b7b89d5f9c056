#ifndef SUBMITD_RELAY_H
#define SUBMITD_RELAY_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <time.h>

struct config;
struct spool_msg;

/*
 * SMTP client to the corporate MTA (DESIGN §4): STARTTLS required and the upstream
 * certificate verified by default (upstream_tls), optional client certificate,
 * failover over the upstream list in order, and connection reuse across messages.
 * Blocking sockets with timeouts: it runs in the queue process's relay threads.
 */

enum relay_result { RELAY_OK = 0, RELAY_TEMPFAIL, RELAY_PERMFAIL };

#define RELAY_REPLY_MAX 512

struct relay_conn {
    int fd;
    SSL *ssl;
    char host[256];       /* the upstream we are connected to */
    int pipelining;       /* the upstream offered PIPELINING (RFC 2920) */
    time_t last_used;
    char rbuf[8192];
    size_t rlen;
};

/* What the upstream said about one recipient. */
struct relay_rcpt {
    int code;                      /* 2xx delivered, 5xx refused for good, else retry */
    char reply[RELAY_REPLY_MAX];   /* the upstream's reply line, or our reason */
};

/* Builds the client TLS context; call before dropping privileges (keys). */
int relay_init(const struct config *cfg, char *err, size_t errlen);
void relay_conn_init(struct relay_conn *c);
void relay_conn_close(struct relay_conn *c);
/*
 * Delivers msg to the recipients i with todo[i] non-zero, reusing c when it is still
 * open; MAIL, RCPT and DATA go in one write when the upstream offers PIPELINING.
 *
 * RELAY_OK: a transaction took place; out[i] holds each of those recipients'
 * outcome (code 0 when the transaction broke off before it was known).
 * RELAY_TEMPFAIL: no upstream could be reached, or the connection failed before any
 * recipient's outcome was known; every out[i] has code 0 and the reason.
 * summary receives one line (upstream and reply, or the reason) for the log, the
 * queue listing and the audit.
 */
enum relay_result relay_deliver(struct relay_conn *c, const struct spool_msg *msg,
                                const char *todo, struct relay_rcpt *out, char *summary,
                                size_t summarylen);

#endif
