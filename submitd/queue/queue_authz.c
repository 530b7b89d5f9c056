/* The queue's channel to authz (see queue_authz.h). */
#include "queue_authz.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>

static int chan = -1;
static pthread_mutex_t send_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t next_req = 1;

void queue_authz_init(int fd)
{
    chan = fd;
}

int queue_authz_send(struct ipc_msg *m)
{
    int rc;

    pthread_mutex_lock(&send_lock);
    rc = ipc_send(chan, m);
    pthread_mutex_unlock(&send_lock);
    return rc;
}

int queue_authz_request(struct ipc_msg *m, uint64_t *req)
{
    *req = next_req++;
    m->id = *req;
    return queue_authz_send(m);
}

/* The answers authz gives the queue: one of them read while another is awaited is
 * late (its asker timed out). */
static int answer_type(unsigned type)
{
    return type == IPC_AUTHZ_GRANT || type == IPC_AUTHZ_RESULT;
}

int queue_authz_next(struct ipc_msg *m, enum ipc_type want, uint64_t deadline)
{
    for (;;) {
        struct pollfd p = { chan, POLLIN, 0 };
        uint64_t now = now_ms();
        int r;

        /* Past the deadline, an answer already waiting is still read. */
        r = poll(&p, 1, now >= deadline ? 0 : (int)(deadline - now));
        if (r == 0 && now_ms() >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (r <= 0)
            continue;
        r = ipc_recv(chan, m);
        if (r < 0 && errno == EAGAIN)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EPIPE;
            return -1;
        }
        if (m->fd >= 0)
            fatal("unexpected descriptor from authz");
        if (!answer_type(m->type))
            fatal("unexpected message type %u from authz", m->type);
        if (m->type == want)
            return 0;
        log_warn("late answer from authz (request %llu) ignored", (unsigned long long)m->id);
    }
}

int queue_authz_ask(struct ipc_msg *m, enum ipc_type want, int timeout_ms)
{
    uint64_t req, deadline = now_ms() + (uint64_t)timeout_ms;

    if (queue_authz_request(m, &req) != 0)
        return -1;
    for (;;) {
        if (queue_authz_next(m, want, deadline) != 0)
            return -1;
        /* An answer to an earlier question that timed out: skip it. */
        if (m->id == req)
            return 0;
        log_warn("late answer from authz (request %llu) ignored", (unsigned long long)m->id);
    }
}
