#ifndef SUBMITD_SMTP_REQ_H
#define SUBMITD_SMTP_REQ_H

#include "ipc_codec.h"
#include "session.h"

/*
 * Requests of a session to authz and queue: each is encoded here and sent through
 * the session's port (session.h). A request that is answered leaves the session
 * waiting for the answer (smtp_answer.c); one that cannot be sent returns -1, and
 * the caller gives the client a temporary failure.
 */

/* The request id of a session's requests: its slot and generation. */
uint64_t req_id(const struct session *s);

/* An audit row (DESIGN §7). With a request id authz answers once the row is
 * written; req_audit() sends one without (refusals are answered at once, their
 * rows follow). */
int req_audit_id(struct session *s, uint64_t id, const char *event, const char *decision,
                 const char *reason, const char *rcpt, long long size);
void req_audit(struct session *s, const char *event, const char *decision,
               const char *reason, const char *rcpt, long long size);

/* The client's certificate chain, for the session's identity. On failure the
 * identity is a temporary failure at once and nothing is awaited. */
void req_identity(struct session *s, unsigned char **der, const size_t *derlen, int n);
int req_sender(struct session *s, const char *addr);
int req_password(struct session *s, const char *authcid, const char *password);
int req_authzid(struct session *s, const char *authzid);
int req_open(struct session *s);
/* COMMIT, with the header From addresses for authz (naddr 0: none to check). */
int req_commit(struct session *s, const struct ipc_header_from *from);
/* Fire-and-forget: give an open queue file back; forget the session's grant. */
void req_abort(struct session *s, const char *queue_id);
void req_session_end(struct session *s);

#endif
