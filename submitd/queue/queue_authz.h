#ifndef SUBMITD_QUEUE_AUTHZ_H
#define SUBMITD_QUEUE_AUTHZ_H

#include "ipc.h"

/*
 * The queue's one channel to authz: relay outcomes and commit charges from any
 * thread (one message per send, serialised), and envelope questions from the main
 * thread, which is the only reader of the channel.
 */
void queue_authz_init(int fd);
/* Sends m; 0, or -1 with errno (logged by the caller). */
int queue_authz_send(struct ipc_msg *m);
/*
 * Sends question m and waits for the answer of type `want` with the same request id
 * (in m on return). 0, or -1 when authz does not answer within timeout_ms or the
 * channel fails. Main thread only.
 */
int queue_authz_ask(struct ipc_msg *m, enum ipc_type want, int timeout_ms);

#endif
