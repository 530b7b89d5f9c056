/*
 * submitd-queue: the spool and the relay (DESIGN §4).
 *
 *   submitd-queue -c CONF [-f] -m FD -s FD... -a FD
 *
 * Owns: the spool (incoming/, queue/, corrupt/), which no other worker opens by
 * name (smtp writes a message only through the descriptor handed to it here), and
 * every message from its commit to its last delivery attempt. It runs as `user`.
 * Never: opens the database (it does not link SQLite) or calls PAM; it accepts an
 * envelope only when authz confirms the grant for that user, sender and recipients
 * (queue_authz), and trusts nothing smtp writes until it validated the records.
 * Talks to: the smtp process (one channel per worker thread, -s), authz (-a: grant
 * checks, accept rows with their rate charges, relay audit rows), the master (control channel, -m), and
 * the upstream MTA over verified TLS (relay).
 *
 * The main thread answers the smtp workers: it creates spool files in incoming/,
 * keeps the descriptor it created each with, and passes smtp a second, write-only
 * one, with which smtp writes the message; on commit it checks and appends the END
 * record through its own; the files of every commit that arrived together are
 * then fsynced, their accept rows and rate charges committed by authz, the files
 * renamed into queue/, and the directory fsynced once for all of them (group
 * commit), before any is answered; the first relay attempt reads a file
 * through that same descriptor. Relay threads deliver queued files to the upstream
 * and keep each recipient's state in the file: delivered recipients are never sent
 * again, refused ones (and those still pending when queue_lifetime runs out) are
 * reported to the sender in a delivery status notification, the rest wait with
 * exponential backoff. SIGUSR1 (submit-admin queue flush, via spool/queue.pid) makes every
 * message due at once.
 */
#include "config.h"
#include "ctl.h"
#include "ipc.h"
#include "log.h"
#include "proc.h"
#include "privdrop.h"
#include "ipc_codec.h"
#include "queue_accept.h"
#include "queue_authz.h"
#include "queue_dsn.h"
#include "queue_sched.h"
#include "queue_store.h"
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHANNELS 64
#define RELAY_THREADS 4
#define MAX_BATCH 256
#define PROBE_MAX 30      /* seconds between attempts while the upstream is unreachable */

static struct config cfg;
static volatile sig_atomic_t stopping, flush_requested;
static int authz_fd = -1;

/* ---- audit through authz ---------------------------------------------------- */

/* Recipients of msg whose index has mark[i] set, comma-separated (all when NULL). */
static void rcpt_list(const struct spool_msg *msg, const char *mark, char *out, size_t outlen)
{
    size_t pos = 0;

    out[0] = '\0';
    for (int i = 0; i < msg->nrcpt; i++) {
        if (mark != NULL && !mark[i])
            continue;
        if (pos + strlen(msg->rcpt[i]) + 5 >= outlen)
            break;
        pos += (size_t)snprintf(out + pos, outlen - pos, "%s%s", pos ? "," : "", msg->rcpt[i]);
    }
}

static void audit_relay(const struct spool_msg *msg, const char *event, const char *rcpts,
                        const char *reason)
{
    struct ipc_msg *m = malloc(sizeof(*m));
    struct ipc_relay_audit *v = calloc(1, sizeof(*v));

    if (m == NULL || v == NULL) {
        log_err("id=%s audit row lost (event %s): out of memory", msg->id, event);
        free(m);
        free(v);
        return;
    }
    str_lcpy(v->session, msg->session, sizeof(v->session));
    str_lcpy(v->event, event, sizeof(v->event));
    str_lcpy(v->reason, reason ? reason : "", sizeof(v->reason));
    str_lcpy(v->user, msg->user, sizeof(v->user));
    str_lcpy(v->client_ip, msg->client, sizeof(v->client_ip));
    str_lcpy(v->mail_from, msg->from, sizeof(v->mail_from));
    str_lcpy(v->rcpt, rcpts ? rcpts : "", sizeof(v->rcpt));
    str_lcpy(v->queue_id, msg->id, sizeof(v->queue_id));
    v->size = (long long)msg->body_len;
    if (ipc_enc_relay_audit(m, v) != 0 || queue_authz_send(m) != 0)
        log_err("id=%s audit row lost (event %s): %s", msg->id, event, strerror(errno));
    free(v);
    free(m);
}

/* ---- relay threads ------------------------------------------------------------ */

/* retry_min, doubled for every further attempt, at most retry_max. */
static time_t backoff(int attempts)
{
    long long d = cfg.retry_min;

    for (int i = 1; i < attempts && d < cfg.retry_max; i++)
        d *= 2;
    return (time_t)(d > cfg.retry_max ? cfg.retry_max : d);
}

/*
 * Sends the delivery status notification for the recipients in state FAILED and
 * marks them REPORTED. The notification is queued durably before anything else
 * changes, so a crash can repeat it but never lose it. Returns 0 or -1.
 */
static int report_failures(struct spool_msg *msg, const char *upstream)
{
    char *mark = calloc((size_t)msg->nrcpt, 1);
    char rcpts[2048], reason[1200], why[1024];
    size_t pos = 0;
    struct spool_msg dsn;

    if (mark == NULL)
        return -1;
    reason[0] = '\0';
    for (int i = 0; i < msg->nrcpt; i++) {
        if (msg->rstate[i] != SPOOL_RCPT_FAILED)
            continue;
        mark[i] = 1;
        if (pos < sizeof(reason) - 1) {
            (void)snprintf(reason + pos, sizeof(reason) - pos, "%s<%s>: %s", pos ? "; " : "",
                           msg->rcpt[i], msg->rreply[i] ? msg->rreply[i] : "");
            pos += strlen(reason + pos);
        }
    }
    rcpt_list(msg, mark, rcpts, sizeof(rcpts));
    if (msg->from[0] == '\0') {
        /* A notification that failed itself is not answered with another one. */
        log_err("id=%s undeliverable notification dropped: %s", msg->id, reason);
        audit_relay(msg, "bounced", rcpts, reason);
    } else {
        if (dsn_build(msg, cfg.hostname, upstream, (long long)time(NULL), &dsn) != 0) {
            free(mark);
            log_err("id=%s out of memory building the delivery status notification", msg->id);
            return -1;
        }
        if (store_create(&dsn, why, sizeof(why)) != 0) {
            log_err("id=%s cannot queue the delivery status notification: %s", msg->id, why);
            spool_msg_free(&dsn);
            free(mark);
            return -1;
        }
        log_info("id=%s bounced to <%s> as %s: %s", msg->id, msg->from, dsn.id, reason);
        audit_relay(msg, "bounced", rcpts, reason);
        if (sched_add(dsn.id, 0) != 0)
            log_err("id=%s out of memory scheduling it; it is sent after a restart", dsn.id);
        spool_msg_free(&dsn);
    }
    for (int i = 0; i < msg->nrcpt; i++)
        if (mark[i])
            msg->rstate[i] = SPOOL_RCPT_REPORTED;
    free(mark);
    return 0;
}

/*
 * One relay attempt for queue/ID, and everything that follows from its outcome. fd:
 * the file as its commit left it open, or -1 (it is opened by name); closed here.
 */
static void deliver_one(struct relay_conn *conn, const char *id, int fd)
{
    struct spool_msg msg;
    char path[PATH_MAX], why[1024], summary[1024], rcpts[2048];
    struct relay_rcpt *out = NULL;
    char *todo = NULL, *done = NULL;
    enum relay_result r = RELAY_OK;
    int ntodo = 0, ndone = 0, conn_fail = 0, changed = 0, rc;
    time_t now;

    str_fmt(path, sizeof(path), "%s/%s", qdirs.queue, id);
    if (fd >= 0) {
        rc = spool_load_fd(fd, &msg, why, sizeof(why));
        close(fd);
    } else
        rc = spool_load_at(qdirs.queue_fd, id, &msg, why, sizeof(why));
    if (rc != 0) {
        if (faccessat(qdirs.queue_fd, id, F_OK, 0) != 0)
            sched_done(id, 1, 0, 0); /* deleted meanwhile */
        else if (strncmp(why, "cannot read", 11) == 0 || strcmp(why, "out of memory") == 0) {
            log_err("id=%s %s; retrying in %d s", id, why, cfg.retry_min);
            sched_done(id, 0, time(NULL) + cfg.retry_min, 0);
        } else {
            store_quarantine(id, why);
            sched_done(id, 1, 0, 0);
        }
        return;
    }
    todo = calloc((size_t)msg.nrcpt, 1);
    done = calloc((size_t)msg.nrcpt, 1);
    out = calloc((size_t)msg.nrcpt, sizeof(*out));
    if (todo == NULL || done == NULL || out == NULL) {
        log_err("id=%s out of memory; retrying in %d s", id, cfg.retry_min);
        sched_done(id, 0, time(NULL) + cfg.retry_min, 0);
        goto out;
    }
    for (int i = 0; i < msg.nrcpt; i++)
        if (msg.rstate[i] == SPOOL_RCPT_PENDING) {
            todo[i] = 1;
            ntodo++;
        }
    summary[0] = '\0';
    if (ntodo > 0) {
        r = relay_deliver(conn, &msg, todo, out, summary, sizeof(summary));
        conn_fail = r == RELAY_TEMPFAIL;
        if (!conn_fail)
            sched_upstream_ok();
        msg.attempts++;
        str_lcpy(msg.last, summary, sizeof(msg.last));
        changed = 1;
        for (int i = 0; i < msg.nrcpt; i++) {
            if (!todo[i])
                continue;
            if (out[i].code >= 200 && out[i].code < 300) {
                (void)spool_set_rcpt(&msg, i, SPOOL_RCPT_DELIVERED, out[i].reply);
                done[i] = 1;
                ndone++;
            } else if (out[i].code >= 500) {
                (void)spool_set_rcpt(&msg, i, SPOOL_RCPT_FAILED, out[i].reply);
            } else {
                (void)spool_set_rcpt(&msg, i, SPOOL_RCPT_PENDING, out[i].reply);
            }
        }
    }
    now = time(NULL);
    /* Out of time: what is still pending fails, with its last reply. */
    if (spool_count_rcpt(&msg, SPOOL_RCPT_PENDING) > 0 &&
        now - (time_t)msg.time >= (time_t)cfg.queue_lifetime) {
        for (int i = 0; i < msg.nrcpt; i++)
            if (msg.rstate[i] == SPOOL_RCPT_PENDING) {
                char reason[SPOOL_REPLY_MAX];
                const char *last = msg.rreply[i] && msg.rreply[i][0] ? msg.rreply[i] : msg.last;
                /* Keep the upstream's own reply when it has one (a 4xx). */
                str_lcpy(reason, last[0] ? last : "not delivered in time", sizeof(reason));
                (void)spool_set_rcpt(&msg, i, SPOOL_RCPT_FAILED, reason);
            }
        log_warn("id=%s expired after %lld s in the queue (queue_lifetime %d)", id,
                 (long long)(now - (time_t)msg.time), cfg.queue_lifetime);
        changed = 1;
    }
    if (ndone > 0) {
        rcpt_list(&msg, done, rcpts, sizeof(rcpts));
        log_info("id=%s relayed from=<%s> to=%s attempt=%d: %s", id, msg.from, rcpts,
                 msg.attempts, summary);
        audit_relay(&msg, "relayed", rcpts, summary);
    }
    if (spool_count_rcpt(&msg, SPOOL_RCPT_FAILED) > 0) {
        /* The failures are recorded first: after a crash they are reported, not
         * delivered again to the recipients that already have the message. */
        if (spool_count_rcpt(&msg, SPOOL_RCPT_PENDING) > 0 || msg.nrcpt > 1) {
            rc = store_save(&msg, why, sizeof(why));
            if (rc == 1) {
                sched_done(id, 1, 0, 0);
                goto out;
            }
            if (rc != 0)
                log_err("id=%s cannot record the recipients' state: %s", id, why);
        }
        if (report_failures(&msg, conn->host[0] ? conn->host : cfg.upstream) != 0) {
            /* Tried again later; the recipients keep their FAILED state. */
            msg.next = (long long)(now + cfg.retry_min);
            (void)store_save(&msg, why, sizeof(why));
            sched_done(id, 0, (time_t)msg.next, 0);
            goto out;
        }
    }
    if (spool_count_rcpt(&msg, SPOOL_RCPT_PENDING) == 0) {
        store_remove(id);
        sched_done(id, 1, 0, 0);
        goto out;
    }
    /* Rounded up to the next whole second, so the wait is never shorter. */
    msg.next = (long long)(now + 1 + backoff(msg.attempts));
    for (int i = 0; i < msg.nrcpt; i++)
        todo[i] = msg.rstate[i] == SPOOL_RCPT_PENDING;
    rcpt_list(&msg, todo, rcpts, sizeof(rcpts));
    log_warn("id=%s deferred (attempt %d, next in %ld s) to=%s: %s", id, msg.attempts,
             (long)(msg.next - now), rcpts, summary);
    audit_relay(&msg, "deferred", rcpts, summary[0] ? summary : msg.last);
    rc = changed ? store_save(&msg, why, sizeof(why)) : 0;
    if (rc == 1) {
        sched_done(id, 1, 0, 0);
        goto out;
    }
    if (rc != 0)
        log_err("id=%s cannot record the delivery state: %s", id, why);
    sched_done(id, 0, (time_t)msg.next, conn_fail);
out:
    free(todo);
    free(done);
    free(out);
    spool_msg_free(&msg);
}

static void *relay_thread(void *arg)
{
    struct relay_conn conn;
    char id[SPOOL_ID_LEN + 1];
    int fd;

    (void)arg;
    relay_conn_init(&conn);
    while (sched_take(id, &fd))
        deliver_one(&conn, id, fd);
    relay_conn_close(&conn);
    return NULL;
}

/* ---- start-up ------------------------------------------------------------------ */

/*
 * Descriptors the queue process needs besides the spool files it keeps open from
 * OPEN to COMMIT: the channels (MAX_CHANNELS), authz, the master, the log, the
 * spool directories, the files of a batch of commits (MAX_BATCH), per relay thread
 * a connection and the file it reads, the files handed to the relay
 * (SCHED_FDS_MAX), and room for the rest (a notification being written, a reload's
 * configuration files).
 */
#define FD_RESERVE (MAX_CHANNELS + MAX_BATCH + 2 * RELAY_THREADS + SCHED_FDS_MAX + 64)

/* How many spool files the queue may keep open between OPEN and COMMIT: what its
 * descriptor limit leaves after FD_RESERVE. Beyond that a COMMIT opens the file
 * again, as it did before it kept them. */
static int held_files_max(void)
{
    struct rlimit rl;
    unsigned long long n;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    n = rl.rlim_cur == RLIM_INFINITY ? INT32_MAX : (unsigned long long)rl.rlim_cur;
    if (n <= FD_RESERVE)
        return 0;
    n -= FD_RESERVE;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

static void recover(void)
{
    DIR *d;
    struct dirent *de;
    int discarded = 0, queued = 0, corrupt = 0;

    /* Files in incoming/ were never acknowledged (the client got no 250), or are
     * state rewrites that never replaced their original. */
    d = opendir(qdirs.incoming);
    if (d == NULL)
        fatal("%s: %s", qdirs.incoming, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        char path[PATH_MAX];
        if (de->d_name[0] == '.')
            continue;
        str_fmt(path, sizeof(path), "%s/%s", qdirs.incoming, de->d_name);
        if (unlink(path) == 0)
            discarded++;
    }
    closedir(d);
    d = opendir(qdirs.queue);
    if (d == NULL)
        fatal("%s: %s", qdirs.queue, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        struct spool_msg msg;
        char path[PATH_MAX], why[512];

        if (de->d_name[0] == '.')
            continue;
        if (!spool_id_valid(de->d_name)) {
            log_warn("ignoring unexpected file %s/%s", qdirs.queue, de->d_name);
            continue;
        }
        /* Every file is checked now: a torn one is set aside, never relayed. */
        str_fmt(path, sizeof(path), "%s/%s", qdirs.queue, de->d_name);
        if (spool_load_envelope(path, &msg, why, sizeof(why)) != 0) {
            store_quarantine(de->d_name, why);
            corrupt++;
            continue;
        }
        if (sched_add(de->d_name, (time_t)msg.next) != 0)
            log_err("out of memory scheduling %s; it is sent after a restart", de->d_name);
        else
            queued++;
        spool_msg_free(&msg);
    }
    closedir(d);
    log_info("queue recovered: %d messages to relay, %d unacknowledged files discarded, "
             "%d corrupt files moved to %s", queued, discarded, corrupt, qdirs.corrupt);
}

/* spool/queue.pid tells submit-admin whom to signal for "queue flush". */
static void write_pidfile(void)
{
    char path[PATH_MAX], tmp[PATH_MAX], num[32];
    int fd;

    str_fmt(path, sizeof(path), "%s/queue.pid", cfg.spool);
    str_fmt(tmp, sizeof(tmp), "%s/queue.pid.tmp", cfg.spool);
    str_fmt(num, sizeof(num), "%ld\n", (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 || write_all(fd, num, strlen(num)) != 0 || close(fd) != 0 ||
        rename(tmp, path) != 0) {
        log_warn("cannot write %s (submit-admin queue flush will not reach this process): %s",
                 path, strerror(errno));
        if (fd >= 0)
            (void)unlink(tmp);
    }
}

static void remove_pidfile(void)
{
    char path[PATH_MAX], num[32];
    long long pid;
    ssize_t n;
    int fd;

    /* Only our own: a newer instance may have written its pid meanwhile. */
    str_fmt(path, sizeof(path), "%s/queue.pid", cfg.spool);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    n = read(fd, num, sizeof(num) - 1);
    close(fd);
    if (n <= 0)
        return;
    num[n] = '\0';
    num[strcspn(num, "\n")] = '\0';
    if (str_to_ll(num, 1, INT32_MAX, &pid) == 0 && pid == (long long)getpid())
        (void)unlink(path);
}

/*
 * A reload (ctl.h). Everything the queue process uses (the spool, the upstream
 * settings its relay threads hold, retry times) takes a restart, so the master
 * keeps those at their running values; what is left is the log level and the
 * settings of the checks at COMMIT (accept_set_limits).
 */
static void control(int ctl, struct ipc_msg *m, struct ctl_files *files)
{
    struct config next;
    char err[1024];
    int r = ctl_read(ctl, m, files);

    if (r < 0)
        fatal("the master closed the control channel");
    if (r == 0)
        return;
    if (ctl_reload_config(files, &cfg, &next, err, sizeof(err)) != 0) {
        log_err("reload refused, the running settings stay: %s", err);
        ctl_reloaded(ctl, 0, err);
    } else {
        log_set_level(next.log_level);
        accept_set_limits(next.max_message_size, next.max_header_size, next.check_header_from);
        ctl_reloaded(ctl, 1, "");
    }
    ctl_files_close(files);
}

static void on_usr1(int sig)
{
    (void)sig;
    flush_requested = 1;
}

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    const char *conf = CONFIG_DEFAULT_PATH;
    struct pollfd pfd[MAX_CHANNELS + 1];
    int nfd = 0, foreground = 0, opt, ctl = -1;
    struct ctl_files files;
    char err[1024];
    struct ipc_msg *m;
    struct sigaction sa;
    sigset_t block, old;
    pthread_t threads[RELAY_THREADS];
    struct pending_commit *batch;

    while ((opt = getopt(argc, argv, "c:fs:a:m:")) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 's':
            if (nfd == MAX_CHANNELS)
                fatal("too many channels");
            pfd[nfd].fd = proc_fd_arg(optarg);
            pfd[nfd].events = POLLIN;
            nfd++;
            break;
        case 'a':
            authz_fd = proc_fd_arg(optarg);
            break;
        case 'm':
            ctl = proc_fd_arg(optarg);
            break;
        default:
            return 2;
        }
    }
    proc_start("submitd/queue", foreground, conf, &cfg);
    if (nfd == 0 || authz_fd < 0 || ctl < 0)
        fatal("started without its descriptors (this program is run by submitd)");
    ctl_files_init(&files);
    if (relay_init(&cfg, err, sizeof(err)) != 0)
        fatal("%s", err);
    store_init(cfg.spool);
    queue_authz_init(authz_fd);
    accept_init(cfg.max_sessions + 16, held_files_max());
    accept_set_limits(cfg.max_message_size, cfg.max_header_size, cfg.check_header_from);
    sched_init(cfg.retry_min < PROBE_MAX ? cfg.retry_min : PROBE_MAX);
    privdrop(cfg.user);
    store_open_dirs();
    accept_probe_leases();

    proc_signals(on_term);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;   /* submit-admin queue flush */
    sigaction(SIGUSR1, &sa, NULL);

    /* Channels are read until EAGAIN: they must not block. */
    for (int i = 0; i < nfd; i++)
        if (fcntl(pfd[i].fd, F_SETFL, fcntl(pfd[i].fd, F_GETFL) | O_NONBLOCK) != 0)
            fatal("channel %d: %s", pfd[i].fd, strerror(errno));
    if (fcntl(ctl, F_SETFL, fcntl(ctl, F_GETFL) | O_NONBLOCK) != 0)
        fatal("control channel: %s", strerror(errno));
    /* The control channel, polled after the smtp channels. */
    pfd[nfd].fd = ctl;
    pfd[nfd].events = POLLIN;
    m = malloc(sizeof(*m));
    batch = calloc(MAX_BATCH, sizeof(*batch));
    if (m == NULL || batch == NULL)
        fatal("out of memory");
    recover();
    /* Signals go to the main thread, whose poll() they interrupt. */
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (int i = 0; i < RELAY_THREADS; i++)
        if (pthread_create(&threads[i], NULL, relay_thread, NULL) != 0)
            fatal("pthread_create: %s", strerror(errno));
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    write_pidfile();
    log_info("queue process ready: spool %s, upstream %s", cfg.spool, cfg.upstream);
    ctl_ready(ctl);

    while (!stopping) {
        int n, nbatch = 0;

        /* The lines of the turn that ended go out in one write, before the wait. */
        log_turn_end();
        n = poll(pfd, (nfds_t)nfd + 1, 1000);
        if (n < 0 && errno != EINTR)
            fatal("poll: %s", strerror(errno));
        log_turn_begin();
        if (n > 0 && (pfd[nfd].revents & (POLLIN | POLLHUP | POLLERR)))
            control(ctl, m, &files);
        if (flush_requested) {
            flush_requested = 0;
            log_info("flush requested: %zu messages are due now", sched_count());
            sched_flush();
        }
        /* Read everything that is ready; commits are collected for one directory
         * fsync (group commit). */
        for (int i = 0; i < nfd; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            while (nbatch < MAX_BATCH) {
                int r = ipc_recv(pfd[i].fd, m);

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
                    accept_open(pfd[i].fd, m);
                    break;
                case IPC_QUEUE_ABORT:
                    accept_abort(pfd[i].fd, m);
                    break;
                case IPC_QUEUE_COMMIT:
                    accept_commit(pfd[i].fd, m, &batch[nbatch++]);
                    break;
                default:
                    fatal("unexpected message type %u from smtp", m->type);
                }
            }
        }
        if (nbatch == 0)
            continue;
        /* Durable file, then its durable accept row, then relayable: a crash between
         * two steps never leaves a message to relay without its row. */
        accept_sync(batch, nbatch);
        accept_record(batch, nbatch, m);
        accept_publish(batch, nbatch);
        if (store_sync_queue_dir() != 0) {
            /* Without the directory fsync nothing is durable: refuse the batch and
             * take the files back, so the clients retry and nothing is sent twice
             * (smtp writes a tempfail row after the accept row of each). */
            log_err("fsync %s: %s", qdirs.queue, strerror(errno));
            for (int i = 0; i < nbatch; i++) {
                if (!batch[i].ok)
                    continue;
                unlinkat(qdirs.queue_fd, batch[i].id, 0);
                close(batch[i].fd);
                batch[i].fd = -1;
                batch[i].ok = 0;
                str_fmt(batch[i].why, sizeof(batch[i].why), "fsync of the queue directory failed");
            }
        }
        for (int i = 0; i < nbatch; i++) {
            accept_answer(&batch[i], m);
            if (batch[i].ok) {
                /* The relay reads the file through the descriptor the commit used. */
                if (sched_add_fd(batch[i].id, 0, batch[i].fd) != 0)
                    log_err("out of memory scheduling %s; it is sent after a restart",
                            batch[i].id);
                batch[i].fd = -1;
            } else if (batch[i].status == IPC_QUEUE_REFUSED)
                log_info("id=%s not queued: %s", batch[i].id, batch[i].why);
            else
                log_err("id=%s not queued: %s", batch[i].id, batch[i].why);
        }
    }
    log_turn_end();
    log_info("queue process stopping");
    sched_stop();
    for (int i = 0; i < RELAY_THREADS; i++)
        pthread_join(threads[i], NULL);
    remove_pidfile();
    sched_free();
    accept_free();
    free(batch);
    free(m);
    return 0;
}
