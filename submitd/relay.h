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

struct relay_conn {
    int fd;
    SSL *ssl;
    char host[256];       /* the upstream we are connected to */
    time_t last_used;
    char rbuf[8192];
    size_t rlen;
};

/* Builds the client TLS context; call before dropping privileges (keys). */
int relay_init(const struct config *cfg, char *err, size_t errlen);
void relay_conn_init(struct relay_conn *c);
void relay_conn_close(struct relay_conn *c);
/*
 * Delivers one message to every recipient, reusing c when it is still open.
 * reply receives the upstream's last relevant reply (or our reason) for the queue
 * listing and the audit.
 */
enum relay_result relay_deliver(struct relay_conn *c, const struct spool_msg *msg, char *reply,
                                size_t replylen);

#endif
