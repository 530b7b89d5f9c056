/*
 * submitd-queue: owns the spool (DESIGN §4).
 *
 *   submitd-queue -c CONF [-f] -s FD... -a FD
 *
 * The main thread answers the smtp workers: it creates spool files in incoming/
 * and passes their descriptors to smtp, which writes the message; on commit it
 * appends the END record, fsyncs the file, renames it into queue/ and fsyncs the
 * directory, once for every commit that arrived together (group commit), before
 * answering. Relay threads deliver queued files to the upstream and remove them
 * after the upstream's 250.
 */
#include "config.h"
#include "ipc.h"
#include "log.h"
#include "privdrop.h"
#include "relay.h"
#include "spool.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHANNELS 64
#define RELAY_THREADS 4
#define MAX_BATCH 256

static struct config cfg;
static volatile sig_atomic_t stopping;
static char dir_incoming[PATH_MAX], dir_queue[PATH_MAX], dir_corrupt[PATH_MAX];
static int authz_fd = -1;
static pthread_mutex_t audit_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- schedule shared with the relay threads --------------------------------- */

struct entry {
    char id[SPOOL_ID_LEN + 1];
    time_t next;
    int attempts;
    int busy;
};

static pthread_mutex_t sched_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sched_cond = PTHREAD_COND_INITIALIZER;
static struct entry *sched;
static size_t nsched, capsched;

static void schedule_add(const char *id)
{
    pthread_mutex_lock(&sched_lock);
    if (nsched == capsched) {
        size_t cap = capsched ? capsched * 2 : 256;
        struct entry *p = realloc(sched, cap * sizeof(*p));
        if (p == NULL) {
            /* The file is safe in queue/; it is picked up at the next start. */
            pthread_mutex_unlock(&sched_lock);
            log_err("out of memory scheduling %s; it will be sent after a restart", id);
            return;
        }
        sched = p;
        capsched = cap;
    }
    memset(&sched[nsched], 0, sizeof(sched[nsched]));
    str_lcpy(sched[nsched].id, id, sizeof(sched[nsched].id));
    sched[nsched].next = 0;
    nsched++;
    pthread_cond_signal(&sched_cond);
    pthread_mutex_unlock(&sched_lock);
}

/* Takes the due entry with the earliest time; waits while none is due. */
static int schedule_take(struct entry *out)
{
    pthread_mutex_lock(&sched_lock);
    while (!stopping) {
        time_t now = time(NULL), soonest = 0;
        size_t best = SIZE_MAX;

        for (size_t i = 0; i < nsched; i++) {
            if (sched[i].busy)
                continue;
            if (best == SIZE_MAX || sched[i].next < sched[best].next)
                best = i;
        }
        if (best != SIZE_MAX && sched[best].next <= now) {
            sched[best].busy = 1;
            *out = sched[best];
            pthread_mutex_unlock(&sched_lock);
            return 1;
        }
        if (best != SIZE_MAX)
            soonest = sched[best].next;
        {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (best == SIZE_MAX || soonest - now > 1) ? 1 : soonest - now;
            pthread_cond_timedwait(&sched_cond, &sched_lock, &ts);
        }
    }
    pthread_mutex_unlock(&sched_lock);
    return 0;
}

static void schedule_done(const char *id, int remove_entry, time_t next, int attempts)
{
    pthread_mutex_lock(&sched_lock);
    for (size_t i = 0; i < nsched; i++) {
        if (strcmp(sched[i].id, id) != 0)
            continue;
        if (remove_entry) {
            sched[i] = sched[nsched - 1];
            nsched--;
        } else {
            sched[i].busy = 0;
            sched[i].next = next;
            sched[i].attempts = attempts;
        }
        break;
    }
    pthread_mutex_unlock(&sched_lock);
}

/* ---- audit through authz ---------------------------------------------------- */

static void audit_relay(const struct spool_msg *msg, const char *event, const char *reason)
{
    struct ipc_msg *m = malloc(sizeof(*m));
    char rcpts[2048] = "";
    size_t pos = 0;
    int bad = 0;

    if (m == NULL)
        return;
    for (int i = 0; i < msg->nrcpt && pos + strlen(msg->rcpt[i]) + 5 < sizeof(rcpts); i++)
        pos += (size_t)snprintf(rcpts + pos, sizeof(rcpts) - pos, "%s%s", i ? "," : "",
                                msg->rcpt[i]);
    ipc_init(m, IPC_AUTHZ_AUDIT, 0);
    bad |= ipc_put_str(m, msg->session);
    bad |= ipc_put_str(m, event);
    bad |= ipc_put_str(m, "");           /* relay outcomes are events, not decisions */
    bad |= ipc_put_str(m, reason);
    bad |= ipc_put_str(m, msg->client);
    bad |= ipc_put_str(m, msg->user);
    bad |= ipc_put_str(m, "");
    bad |= ipc_put_str(m, "");
    bad |= ipc_put_str(m, msg->from);
    bad |= ipc_put_str(m, rcpts);
    bad |= ipc_put_str(m, msg->id);
    bad |= ipc_put_u64(m, (uint64_t)msg->body_len);
    bad |= ipc_put_str(m, "");
    pthread_mutex_lock(&audit_lock);
    if (bad || ipc_send(authz_fd, m) != 0)
        log_err("id=%s audit row lost (event %s): %s", msg->id, event, strerror(errno));
    pthread_mutex_unlock(&audit_lock);
    free(m);
}

/* ---- relay threads ------------------------------------------------------------ */

static time_t backoff(int attempts)
{
    long long d = cfg.retry_min;

    for (int i = 1; i < attempts && d < cfg.retry_max; i++)
        d *= 2;
    return (time_t)(d > cfg.retry_max ? cfg.retry_max : d);
}

static void quarantine(const char *id, const char *why)
{
    char from[PATH_MAX], to[PATH_MAX];

    str_fmt(from, sizeof(from), "%s/%s", dir_queue, id);
    str_fmt(to, sizeof(to), "%s/%s", dir_corrupt, id);
    if (rename(from, to) != 0)
        log_err("id=%s cannot move corrupt file to %s: %s", id, dir_corrupt, strerror(errno));
    else
        log_err("id=%s spool file is corrupt (%s): moved to %s, never relayed", id, why, to);
}

static void *relay_thread(void *arg)
{
    struct relay_conn conn;
    struct entry e;

    (void)arg;
    relay_conn_init(&conn);
    while (schedule_take(&e)) {
        struct spool_msg msg;
        char path[PATH_MAX], why[1024];
        enum relay_result r;

        str_fmt(path, sizeof(path), "%s/%s", dir_queue, e.id);
        if (spool_load(path, &msg, why, sizeof(why)) != 0) {
            if (access(path, F_OK) != 0) {
                schedule_done(e.id, 1, 0, 0); /* deleted meanwhile */
                continue;
            }
            quarantine(e.id, why);
            schedule_done(e.id, 1, 0, 0);
            continue;
        }
        r = relay_deliver(&conn, &msg, why, sizeof(why));
        if (r == RELAY_OK) {
            if (unlink(path) != 0)
                log_err("id=%s delivered but cannot remove %s: %s", e.id, path, strerror(errno));
            log_info("id=%s relayed from=<%s> nrcpt=%d: %s", e.id, msg.from, msg.nrcpt, why);
            audit_relay(&msg, "relayed", why);
            schedule_done(e.id, 1, 0, 0);
        } else {
            int attempts = e.attempts + 1;
            time_t next = time(NULL) + backoff(attempts);

            /* Permanent failures and bounces are handled with per-recipient state;
             * for now nothing is dropped: the message waits and is retried. */
            log_warn("id=%s deferred (attempt %d, next in %ld s): %s", e.id, attempts,
                     (long)(next - time(NULL)), why);
            audit_relay(&msg, "deferred", why);
            schedule_done(e.id, 0, next, attempts);
        }
        spool_msg_free(&msg);
    }
    relay_conn_close(&conn);
    return NULL;
}

/* ---- answering smtp ------------------------------------------------------------ */

struct pending_commit {
    int chan;
    uint64_t req;
    char id[SPOOL_ID_LEN + 1];
    int ok;
    char why[256];
};

static void answer(int fd, enum ipc_type type, uint64_t req, int status, const char *id,
                   const char *why, int pass_fd, struct ipc_msg *m)
{
    ipc_init(m, type, req);
    m->fd = pass_fd;
    if (ipc_put_u64(m, (uint64_t)status) || ipc_put_str(m, id) || ipc_put_str(m, why) ||
        ipc_send(fd, m) != 0)
        fatal("cannot answer smtp: %s", strerror(errno));
}

static void handle_open(int fd, struct ipc_msg *m)
{
    char session[64], user[128], client[64], from[512], rcpt[512];
    char id[SPOOL_ID_LEN + 1], path[PATH_MAX], now[32];
    uint64_t n, req = m->id;
    int sfd, err = 0;

    if (ipc_get_str(m, session, sizeof(session)) || ipc_get_str(m, user, sizeof(user)) ||
        ipc_get_str(m, client, sizeof(client)) || ipc_get_str(m, from, sizeof(from)) ||
        ipc_get_u64(m, &n) || n == 0 || n > 100000)
        fatal("malformed open request");
    spool_new_id(id);
    str_fmt(path, sizeof(path), "%s/%s", dir_incoming, id);
    sfd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (sfd < 0) {
        char why[300];
        str_fmt(why, sizeof(why), "cannot create %s: %s", path, strerror(errno));
        log_err("%s", why);
        /* Drain the recipients so the message is fully validated anyway. */
        for (uint64_t i = 0; i < n; i++)
            if (ipc_get_str(m, rcpt, sizeof(rcpt)))
                fatal("malformed open request");
        answer(fd, IPC_QUEUE_OPENED, req, 1, "", why, -1, m);
        return;
    }
    str_fmt(now, sizeof(now), "%lld", (long long)time(NULL));
    err |= spool_put_str(sfd, SPOOL_VERSION, "1");
    err |= spool_put_str(sfd, SPOOL_ID, id);
    err |= spool_put_str(sfd, SPOOL_TIME, now);
    err |= spool_put_str(sfd, SPOOL_SESSION, session);
    err |= spool_put_str(sfd, SPOOL_USER, user);
    err |= spool_put_str(sfd, SPOOL_CLIENT, client);
    err |= spool_put_str(sfd, SPOOL_FROM, from);
    for (uint64_t i = 0; i < n; i++) {
        if (ipc_get_str(m, rcpt, sizeof(rcpt)) || rcpt[0] == '\0')
            fatal("malformed open request (recipient %llu)", (unsigned long long)i);
        err |= spool_put_str(sfd, SPOOL_RCPT, rcpt);
    }
    if (ipc_end(m) != 0)
        fatal("malformed open request (trailing data)");
    if (err) {
        char why[300];
        str_fmt(why, sizeof(why), "cannot write %s: %s", path, strerror(errno));
        log_err("%s", why);
        close(sfd);
        unlink(path);
        answer(fd, IPC_QUEUE_OPENED, req, 1, "", why, -1, m);
        return;
    }
    answer(fd, IPC_QUEUE_OPENED, req, 0, id, "", sfd, m);
    close(sfd);
}

/* Appends END, fsyncs and renames into queue/. The directory fsync follows for the
 * whole batch. */
static void commit_one(struct pending_commit *pc, uint64_t size)
{
    char src[PATH_MAX], dst[PATH_MAX], num[32];
    int fd;

    str_fmt(src, sizeof(src), "%s/%s", dir_incoming, pc->id);
    str_fmt(dst, sizeof(dst), "%s/%s", dir_queue, pc->id);
    fd = open(src, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        str_fmt(pc->why, sizeof(pc->why), "cannot reopen %s: %s", src, strerror(errno));
        return;
    }
    str_fmt(num, sizeof(num), "%llu", (unsigned long long)size);
    if (spool_put_str(fd, SPOOL_END, num) != 0 || fsync(fd) != 0) {
        str_fmt(pc->why, sizeof(pc->why), "cannot write %s: %s", src, strerror(errno));
        close(fd);
        unlink(src);
        return;
    }
    close(fd);
    if (rename(src, dst) != 0) {
        str_fmt(pc->why, sizeof(pc->why), "cannot rename %s: %s", src, strerror(errno));
        unlink(src);
        return;
    }
    pc->ok = 1;
}

static void handle_abort(struct ipc_msg *m)
{
    char id[64], path[PATH_MAX];

    if (ipc_get_str(m, id, sizeof(id)) || ipc_end(m) || !spool_id_valid(id))
        fatal("malformed abort request");
    str_fmt(path, sizeof(path), "%s/%s", dir_incoming, id);
    if (unlink(path) != 0 && errno != ENOENT)
        log_warn("cannot remove aborted %s: %s", path, strerror(errno));
}

/* ---- start-up ------------------------------------------------------------------ */

static void recover(void)
{
    DIR *d;
    struct dirent *de;
    int discarded = 0, queued = 0;

    /* Files in incoming/ were never acknowledged: the client got no 250. */
    d = opendir(dir_incoming);
    if (d == NULL)
        fatal("%s: %s", dir_incoming, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        if (de->d_name[0] == '.')
            continue;
        str_fmt(path, sizeof(path), "%s/%s", dir_incoming, de->d_name);
        if (unlink(path) == 0)
            discarded++;
    }
    closedir(d);
    d = opendir(dir_queue);
    if (d == NULL)
        fatal("%s: %s", dir_queue, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (!spool_id_valid(de->d_name)) {
            log_warn("ignoring unexpected file %s/%s", dir_queue, de->d_name);
            continue;
        }
        schedule_add(de->d_name);
        queued++;
    }
    closedir(d);
    log_info("queue recovered: %d messages to relay, %d unacknowledged files discarded",
             queued, discarded);
}

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    const char *conf = CONFIG_DEFAULT_PATH;
    struct pollfd pfd[MAX_CHANNELS];
    int nfd = 0, foreground = 0, opt;
    char err[1024];
    struct ipc_msg *m;
    struct sigaction sa;
    pthread_t threads[RELAY_THREADS];
    struct pending_commit *batch;

    while ((opt = getopt(argc, argv, "c:fs:a:")) != -1) {
        long long v;
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 's':
            if (nfd == MAX_CHANNELS || str_to_ll(optarg, 3, 65535, &v) != 0)
                return 2;
            pfd[nfd].fd = (int)v;
            pfd[nfd].events = POLLIN;
            nfd++;
            break;
        case 'a':
            if (str_to_ll(optarg, 3, 65535, &v) != 0)
                return 2;
            authz_fd = (int)v;
            break;
        default:
            return 2;
        }
    }
    log_init("submitd/queue", foreground, LOG_LVL_INFO);
    if (config_load(&cfg, conf, err, sizeof(err)) != 0)
        fatal("%s", err);
    log_set_level(cfg.log_level);
    if (nfd == 0 || authz_fd < 0)
        fatal("started without its descriptors (this program is run by submitd)");
    if (relay_init(&cfg, err, sizeof(err)) != 0)
        fatal("%s", err);
    str_fmt(dir_incoming, sizeof(dir_incoming), "%s/incoming", cfg.spool);
    str_fmt(dir_queue, sizeof(dir_queue), "%s/queue", cfg.spool);
    str_fmt(dir_corrupt, sizeof(dir_corrupt), "%s/corrupt", cfg.spool);
    privdrop(cfg.user);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    /* Channels are read until EAGAIN: they must not block. */
    for (int i = 0; i < nfd; i++)
        if (fcntl(pfd[i].fd, F_SETFL, fcntl(pfd[i].fd, F_GETFL) | O_NONBLOCK) != 0)
            fatal("channel %d: %s", pfd[i].fd, strerror(errno));
    m = malloc(sizeof(*m));
    batch = calloc(MAX_BATCH, sizeof(*batch));
    if (m == NULL || batch == NULL)
        fatal("out of memory");
    recover();
    for (int i = 0; i < RELAY_THREADS; i++)
        if (pthread_create(&threads[i], NULL, relay_thread, NULL) != 0)
            fatal("pthread_create: %s", strerror(errno));
    log_info("queue process ready: spool %s, upstream %s", cfg.spool, cfg.upstream);

    while (!stopping) {
        int n = poll(pfd, (nfds_t)nfd, 1000), nbatch = 0;

        if (n < 0 && errno != EINTR)
            fatal("poll: %s", strerror(errno));
        /* Read everything that is ready; commits are collected for one directory
         * fsync (group commit). */
        for (int i = 0; i < nfd; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            while (nbatch < MAX_BATCH) {
                int r = ipc_recv(pfd[i].fd, m);
                uint64_t size;

                if (r < 0 && errno == EAGAIN)
                    break;
                if (r < 0)
                    fatal("smtp channel: %s", strerror(errno));
                if (r == 0) {
                    if (stopping)
                        break;
                    fatal("the smtp process closed its channel");
                }
                if (m->fd >= 0)
                    fatal("unexpected descriptor from smtp");
                switch (m->type) {
                case IPC_QUEUE_OPEN:
                    handle_open(pfd[i].fd, m);
                    break;
                case IPC_QUEUE_ABORT:
                    handle_abort(m);
                    break;
                case IPC_QUEUE_COMMIT: {
                    struct pending_commit *pc = &batch[nbatch++];
                    memset(pc, 0, sizeof(*pc));
                    pc->chan = pfd[i].fd;
                    pc->req = m->id;
                    if (ipc_get_str(m, pc->id, sizeof(pc->id)) || ipc_get_u64(m, &size) ||
                        ipc_end(m) || !spool_id_valid(pc->id))
                        fatal("malformed commit request");
                    commit_one(pc, size);
                    break;
                }
                default:
                    fatal("unexpected message type %u from smtp", m->type);
                }
            }
        }
        if (nbatch == 0)
            continue;
        if (fsync_dir(dir_queue) != 0) {
            /* Without the directory fsync nothing is durable: refuse the batch and
             * take the files back, so the clients retry and nothing is sent twice. */
            log_err("fsync %s: %s", dir_queue, strerror(errno));
            for (int i = 0; i < nbatch; i++) {
                char path[PATH_MAX];
                if (!batch[i].ok)
                    continue;
                str_fmt(path, sizeof(path), "%s/%s", dir_queue, batch[i].id);
                unlink(path);
                batch[i].ok = 0;
                str_fmt(batch[i].why, sizeof(batch[i].why), "fsync of the queue directory failed");
            }
        }
        for (int i = 0; i < nbatch; i++) {
            answer(batch[i].chan, IPC_QUEUE_COMMITTED, batch[i].req, batch[i].ok ? 0 : 1,
                   batch[i].id, batch[i].why, -1, m);
            if (batch[i].ok)
                schedule_add(batch[i].id);
            else
                log_err("id=%s not queued: %s", batch[i].id, batch[i].why);
        }
    }
    log_info("queue process stopping");
    pthread_mutex_lock(&sched_lock);
    pthread_cond_broadcast(&sched_cond);
    pthread_mutex_unlock(&sched_lock);
    for (int i = 0; i < RELAY_THREADS; i++)
        pthread_join(threads[i], NULL);
    free(sched);
    free(batch);
    free(m);
    return 0;
}
