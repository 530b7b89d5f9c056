#ifndef SUBMITD_AUTHZ_AUDIT_H
#define SUBMITD_AUTHZ_AUDIT_H

#include "ipc.h"

/*
 * Reports that become audit rows or counts, and the queue's one question:
 *   from smtp:  AUDIT (a row; answered when asked with a request id), SESSION_END;
 *   from queue: GRANT_CHECK (is this envelope what authz granted?), RELAY_AUDIT
 *               (relay outcomes), CHARGE (a committed message counts against the
 *               user's hourly limits).
 * chan -1: nobody waits for an answer (rows read at shutdown).
 */
void handle_audit(int chan, struct ipc_msg *m);
void handle_session_end(struct ipc_msg *m);
void handle_grant_check(int chan, struct ipc_msg *m);
void handle_relay_audit(struct ipc_msg *m);
void handle_charge(struct ipc_msg *m);

#endif
