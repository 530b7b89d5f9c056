#ifndef SUBMITD_AUTHZ_AUDIT_H
#define SUBMITD_AUTHZ_AUDIT_H

#include "ipc.h"

/*
 * Reports that become audit rows or counts, and the queue's two questions:
 *   from smtp:  AUDIT (a row, never an accept; answered when asked with a request
 *               id), SESSION_END;
 *   from queue: GRANT_CHECK (is this envelope what authz granted?), ACCEPT (a
 *               message about to be queued: its accept row and its charge against
 *               the user's hourly limits, answered once durable), RELAY_AUDIT
 *               (relay outcomes).
 * chan -1: nobody waits for an answer (rows read at shutdown).
 */
void handle_audit(int chan, struct ipc_msg *m);
void handle_session_end(struct ipc_msg *m);
void handle_grant_check(int chan, struct ipc_msg *m);
void handle_relay_audit(struct ipc_msg *m);
void handle_accept(int chan, struct ipc_msg *m);

#endif
