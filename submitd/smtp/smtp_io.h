#ifndef SUBMITD_SMTP_IO_H
#define SUBMITD_SMTP_IO_H

#include "smtp.h"

#include <netinet/in.h>
#include <sys/socket.h>

/*
 * The socket side of sessions, for the worker loop (smtp.c): sockets, TLS, epoll
 * interest, timeouts, and the session's life from accept to free. The state
 * machine behind it (session.h) sees only bytes and requests.
 */

void session_start(struct worker *w, int fd, const struct sockaddr_storage *ss,
                   int implicit_tls);
/* A socket event for the session with this handle; stale handles are ignored. */
void session_on_event(struct worker *w, uint64_t handle, uint32_t events);
/* An answer from authz or queue, for the session its id names (if still there). */
void session_on_ipc(struct worker *w, struct ipc_msg *m);
void session_check_timeout(struct session *s, time_t now);
/* Ends the session at shutdown: a 421 when a reply is possible, then close. */
void session_shutdown(struct session *s);
/* Frees the sessions closed since the last call: once per batch of events, when no
 * event of the batch can refer to them any more. Returns how many were freed. */
int session_reap(struct worker *w);

/* Gives the session its input buffer, if it has none (the PROXY header is read into
 * it too). Returns -1, logged, when memory is short. */
int inbuf_take(struct session *s);

/* The client's address as text ("unknown" for other families). */
void sockaddr_text(const struct sockaddr_storage *ss, char *ip, size_t iplen);

#endif
