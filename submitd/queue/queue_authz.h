#ifndef SUBMITD_QUEUE_AUTHZ_H
#define SUBMITD_QUEUE_AUTHZ_H

#include "ipc.h"

#include <stdint.h>

/*
 * The queue's one channel to authz: relay outcomes from any thread (one message per
 * send, serialised), and the main thread's questions (envelope grants, accept rows),
 * the main thread being the only reader of the channel. Every question has its own
 * request id; an answer that comes after its asker stopped waiting is skipped.
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
/* Sends question m with a new request id, stored in *req; 0, or -1 with errno.
 * Main thread only. */
int queue_authz_request(struct ipc_msg *m, uint64_t *req);
/*
 * Reads the next answer of type `want` into m, whatever its request id, skipping
 * late answers of the other type. 0, or -1 with errno (ETIMEDOUT at now_ms()
 * deadline, EPIPE when authz is gone). Main thread only.
 */
int queue_authz_next(struct ipc_msg *m, enum ipc_type want, uint64_t deadline);

#endif
