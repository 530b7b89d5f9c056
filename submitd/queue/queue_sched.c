/* The queue's in-memory schedule, shared by the main thread and the relay threads. */
#include "queue_sched.h"

#include "spool.h"
#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct entry {
    char id[SPOOL_ID_LEN + 1];
    time_t next;
    int busy;
    int conn_fail;
    int fd;                 /* from sched_add_fd() until taken, else -1 */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct entry *entries;
static size_t count, cap, nfds;
static int stopping, upstream_down, probe_every = 30;
static time_t last_probe;

void sched_init(int probe_interval)
{
    probe_every = probe_interval > 0 ? probe_interval : 1;
}

int sched_add_fd(const char *id, time_t next, int fd)
{
    pthread_mutex_lock(&lock);
    if (count == cap) {
        size_t ncap = cap ? cap * 2 : 256;
        struct entry *p = realloc(entries, ncap * sizeof(*p));
        if (p == NULL) {
            pthread_mutex_unlock(&lock);
            if (fd >= 0)
                close(fd);
            return -1;
        }
        entries = p;
        cap = ncap;
    }
    if (fd >= 0 && nfds >= SCHED_FDS_MAX) {
        close(fd);
        fd = -1;
    }
    memset(&entries[count], 0, sizeof(entries[count]));
    str_lcpy(entries[count].id, id, sizeof(entries[count].id));
    entries[count].next = next;
    entries[count].fd = fd;
    nfds += fd >= 0;
    count++;
    pthread_mutex_unlock(&lock);
    /* After the unlock: the thread woken does not find the lock still held. */
    pthread_cond_signal(&cond);
    return 0;
}

int sched_add(const char *id, time_t next)
{
    return sched_add_fd(id, next, -1);
}

/* While the upstream is down, one waiting message is let through per interval. */
static void maybe_probe(time_t now)
{
    size_t best = SIZE_MAX;

    if (!upstream_down || now - last_probe < probe_every)
        return;
    for (size_t i = 0; i < count; i++) {
        if (entries[i].busy || !entries[i].conn_fail)
            continue;
        if (best == SIZE_MAX || entries[i].next < entries[best].next)
            best = i;
    }
    if (best != SIZE_MAX && entries[best].next > now) {
        entries[best].next = now;
        last_probe = now;
    }
}

int sched_take(char *id, int *fd)
{
    pthread_mutex_lock(&lock);
    while (!stopping) {
        time_t now = time(NULL);
        size_t best = SIZE_MAX;
        struct timespec ts;

        maybe_probe(now);
        for (size_t i = 0; i < count; i++) {
            if (entries[i].busy)
                continue;
            if (best == SIZE_MAX || entries[i].next < entries[best].next)
                best = i;
        }
        if (best != SIZE_MAX && entries[best].next <= now) {
            entries[best].busy = 1;
            str_lcpy(id, entries[best].id, SPOOL_ID_LEN + 1);
            *fd = entries[best].fd;
            entries[best].fd = -1;
            nfds -= *fd >= 0;
            pthread_mutex_unlock(&lock);
            return 1;
        }
        /* Until the next due time (whole seconds), and at least every second for
         * the probes; additions and flushes signal at once. */
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        if (best != SIZE_MAX && entries[best].next < ts.tv_sec) {
            ts.tv_sec = entries[best].next;
            ts.tv_nsec = 0;
        }
        pthread_cond_timedwait(&cond, &lock, &ts);
    }
    pthread_mutex_unlock(&lock);
    return 0;
}

void sched_done(const char *id, int remove, time_t next, int conn_fail)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < count; i++) {
        if (strcmp(entries[i].id, id) != 0)
            continue;
        if (remove) {
            entries[i] = entries[count - 1];
            count--;
        } else {
            entries[i].busy = 0;
            entries[i].next = next;
            entries[i].conn_fail = conn_fail;
        }
        break;
    }
    if (conn_fail && !upstream_down) {
        upstream_down = 1;
        last_probe = time(NULL);
    }
    pthread_mutex_unlock(&lock);
}

static void all_due(int only_conn_fail)
{
    time_t now = time(NULL);

    for (size_t i = 0; i < count; i++)
        if (!only_conn_fail || entries[i].conn_fail) {
            if (entries[i].next > now)
                entries[i].next = now;
            entries[i].conn_fail = 0;
        }
    pthread_cond_broadcast(&cond);
}

void sched_upstream_ok(void)
{
    pthread_mutex_lock(&lock);
    if (upstream_down) {
        upstream_down = 0;
        all_due(1);
    }
    pthread_mutex_unlock(&lock);
}

void sched_flush(void)
{
    pthread_mutex_lock(&lock);
    all_due(0);
    pthread_mutex_unlock(&lock);
}

void sched_stop(void)
{
    pthread_mutex_lock(&lock);
    stopping = 1;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

size_t sched_count(void)
{
    size_t n;

    pthread_mutex_lock(&lock);
    n = count;
    pthread_mutex_unlock(&lock);
    return n;
}

void sched_free(void)
{
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < count; i++)
        if (entries[i].fd >= 0)
            close(entries[i].fd);
    free(entries);
    entries = NULL;
    count = cap = nfds = 0;
    pthread_mutex_unlock(&lock);
}
