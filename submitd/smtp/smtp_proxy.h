#ifndef SUBMITD_SMTP_PROXY_H
#define SUBMITD_SMTP_PROXY_H

#include <time.h>

/*
 * The PROXY header on a listener with proxy_protocol = v2 (DESIGN §10): before the
 * greeting, a session reads the header its balancer sends, and the client address
 * in it becomes the session's client_ip for everything after (audit, logs,
 * Received, max_sessions_per_ip, rate limits). Reading it is a state of the
 * session in the worker's event loop, bounded in bytes (PROXY_HEADER_MAX) and in
 * time (proxy_header_timeout()).
 */

struct session;

/* 1 when the session's peer may send a PROXY header (it is in proxy_trusted). */
int session_proxy_trusted(const struct session *s);
/* Seconds the header may take from the connect. */
time_t proxy_header_timeout(const struct session *s);
/*
 * Reads what the socket has of the header, and never a byte past its end: the
 * client's first command, or its TLS ClientHello, stays in the socket. Returns 1
 * when the header is complete (client_ip is then the client's, proxy_ip the
 * balancer's), 0 when more is to come, -1 when the session must close without a
 * greeting (the reason is logged, with the peer's address).
 */
int session_proxy_read(struct session *s);

#endif
