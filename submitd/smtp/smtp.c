/*
 * submitd-smtp: the process that talks to clients.
 *
 * It owns the listening sockets, the server's TLS key and every client connection:
 * TLS, the SMTP dialogue, and the message bytes on their way into the queue. It
 * parses untrusted bytes, so it is assumed compromised (DESIGN §2) and owns nothing
 * else: it may never touch the database, PAM or the spool directories, and it does
 * not link SQLite or PAM. It decides nothing about identity.
 *
 * It talks to three processes over socketpairs with typed messages: the master
 * (control channel: ready, reload), authz (identity, sender, header From,
 * passwords, audit rows) and queue (a file for each message, handed over as a
 * descriptor, and its commit). Each worker thread has its own authz and queue
 * channel.
 *
 * Started by the master as root with its descriptors named on the command line:
 *   submitd-smtp -c CONF [-f] -l FD... -L FD... -a FD... -q FD... -m FD
 * (-l STARTTLS listeners, -L implicit-TLS listeners, -a/-q one authz and one queue
 * channel per worker thread, -m the control channel). It loads the TLS context,
 * drops privileges and runs one epoll loop per worker.
 *
 * The files: smtp.c (this: start-up, worker loop, accept, reload), smtp_io.c
 * (sockets, TLS, timeouts, a session's life), session.h and smtp_session.c (the
 * state machine's ground), smtp_cmd.c (the command table), smtp_sasl.c (AUTH),
 * smtp_data.c (DATA, Received), smtp_req.c and smtp_answer.c (requests to authz and
 * queue and their answers), smtp_limits.c (session counts), smtp_settings.c
 * (reloadable settings), tls.c (the TLS context); its pure parsers are in
 * submitd/lib/smtp_parse.c, which the queue shares.
 */
#include "smtp.h"

#include "ctl.h"
#include "fdlimit.h"
#include "log.h"
#include "privdrop.h"
#include "proc.h"
#include "smtp_io.h"
#include "smtp_limits.h"
#include "smtp_settings.h"
#include "tls.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/tcp.h>
#include <unistd.h>

#define MAX_FDS 64
/* Clients taken from one listener per event, so that sessions get their turn. */
#define ACCEPT_BATCH 128

static struct config cfg;
static struct listener listeners[MAX_FDS];
static int nlisteners;
static volatile sig_atomic_t stopping;

static struct ctl_files ctl_files;

/* ---- the descriptor limit -------------------------------------------------- */

/*
 * At the descriptor limit accept() fails while the listener stays readable: left in
 * the epoll set it would wake this worker in a loop. The spare descriptor is given
 * up for a moment to take the waiting clients one by one and refuse them plainly.
 * When that cannot empty the queue (no spare: another thread took the descriptor,
 * or a flood), the listener leaves this worker's set until one of its sessions
 * closes, or for a second at most (sessions of other workers free descriptors too).
 * Returns 0 when no client is left waiting.
 */
static int refuse_waiting_clients(struct worker *w, const struct listener *l)
{
    static const char msg[] = "421 4.7.0 Too many connections, try again later\r\n";

    for (int n = 0; n < ACCEPT_BATCH && w->spare_fd >= 0; n++) {
        int fd, err;

        close(w->spare_fd);
        fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        err = errno;
        if (fd >= 0) {
            /* On the implicit-TLS port a plaintext reply means nothing: just close. */
            if (!l->implicit_tls)
                (void)!write(fd, msg, sizeof(msg) - 1);
            close(fd);
        }
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return err == EAGAIN ? 0 : -1;
    }
    return -1;
}

static void listener_pause(struct worker *w, int k)
{
    if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, listeners[k].fd, NULL) != 0)
        fatal("epoll_ctl: %s", strerror(errno));
    w->paused |= (uint64_t)1 << k;
    w->paused_at = time(NULL);
}

static void add_fd(int epfd, int fd, uint64_t handle, uint32_t events);

/* Puts paused listeners back once descriptors may be free again. */
static void listeners_resume(struct worker *w, int sessions_freed, time_t now)
{
    if (w->paused == 0 || (sessions_freed == 0 && now - w->paused_at < 1))
        return;
    for (int k = 0; k < nlisteners; k++)
        if (w->paused & ((uint64_t)1 << k))
            add_fd(w->epfd, listeners[k].fd, EV_RESERVED(EV_LISTENER0 + k),
                   EPOLLIN | EPOLLEXCLUSIVE);
    w->paused = 0;
    if (w->spare_fd < 0)
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void at_descriptor_limit(struct worker *w, int k, int err)
{
    /* The same line at every pause: log.c writes it once per interval with a count. */
    log_warn("accept: %s: refusing new clients until sessions close", strerror(err));
    if (refuse_waiting_clients(w, &listeners[k]) != 0)
        listener_pause(w, k);
}

/* ---- the worker loop ------------------------------------------------------- */

static void accept_clients(struct worker *w, int k)
{
    const struct listener *l = &listeners[k];

    for (int n = 0; n < ACCEPT_BATCH; n++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        char ip[64];
        int global, one = 1;

        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                at_descriptor_limit(w, k, errno);
            else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        sockaddr_text(&ss, ip, sizeof(ip));
        /* Replies are written whole, once per batch of commands: Nagle would only
         * hold the last segment of a TLS flight back for the client's delayed ACK. */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        /* Behind a balancer the address is the balancer's: the client is counted
         * when its PROXY header has named it (smtp_io.c). */
        if (cfg.proxy_protocol == PROXY_PROTOCOL_NO && !smtp_limits_enter(ip, &global)) {
            static const char msg[] = "421 4.7.0 Too many sessions, try again later\r\n";
            log_warn("connect from [%s] refused: %s client=%s", ip,
                     global ? "max_sessions reached" : "max_sessions_per_ip reached", ip);
            /* On the implicit-TLS port a plaintext reply means nothing: just close. */
            if (!l->implicit_tls)
                (void)!write(fd, msg, sizeof(msg) - 1);
            close(fd);
            continue;
        }
        session_start(w, fd, &ss, l->implicit_tls);
    }
}

static void read_channel(struct worker *w, int fd, const char *name)
{
    for (;;) {
        int r = ipc_recv(fd, w->msg);

        if (r < 0 && errno == EAGAIN)
            return;
        if (r < 0)
            fatal("%s channel: %s", name, strerror(errno));
        if (r == 0) {
            if (stopping)
                return; /* the whole set is stopping: not an error */
            fatal("%s process went away", name);
        }
        session_on_ipc(w, w->msg);
    }
}

/* One event: by its handle, a session (looked up by slot and generation) or one of
 * the worker's own descriptors. */
static void read_control(struct worker *w);

static void dispatch(struct worker *w, uint64_t handle, uint32_t events)
{
    uint32_t what = EV_SLOT(handle);

    if (EV_GEN(handle) != 0) {
        session_on_event(w, handle, events);
        return;
    }
    if (what == EV_AUTHZ) {
        read_channel(w, w->authz_fd, "authz");
    } else if (what == EV_QUEUE) {
        read_channel(w, w->queue_fd, "queue");
    } else if (what == EV_CTL && w->ctl_fd >= 0) {
        read_control(w);
    } else if (what >= EV_LISTENER0 && what < EV_LISTENER0 + (uint32_t)nlisteners) {
        int k = (int)(what - EV_LISTENER0);

        /* Paused earlier in this batch: its event is stale. */
        if (!(w->paused & ((uint64_t)1 << k)))
            accept_clients(w, k);
    } else {
        fatal("epoll event with unknown handle %llx", (unsigned long long)handle);
    }
}

/*
 * A reload (ctl.h), in worker 0: a TLS context from the server certificate, key and
 * client_ca the master opened, and the new settings, for new sessions. Sessions in
 * progress keep theirs. max_sessions and the listeners take a restart.
 */
static void reload(struct worker *w)
{
    static struct config next;
    struct smtp_settings *set;
    SSL_CTX *ctx = NULL;
    char err[1024];

    if (ctl_reload_config(&ctl_files, &cfg, &next, err, sizeof(err)) != 0)
        goto refused;
    next.max_sessions = cfg.max_sessions;   /* as lowered to the descriptor limit */
    if (ctl_files.fd[CTL_FILE_CERT] < 0 || ctl_files.fd[CTL_FILE_KEY] < 0 ||
        ctl_files.fd[CTL_FILE_CLIENT_CA] < 0) {
        str_fmt(err, sizeof(err), "the master sent no certificate, key or client_ca");
        goto refused;
    }
    ctx = tls_server_ctx_fds(&next, ctl_files.fd[CTL_FILE_CERT], ctl_files.fd[CTL_FILE_KEY],
                             ctl_files.fd[CTL_FILE_CLIENT_CA], err, sizeof(err));
    if (ctx == NULL)
        goto refused;
    set = smtp_settings_new(&next, ctx);
    if (set == NULL) {
        SSL_CTX_free(ctx);
        str_fmt(err, sizeof(err), "out of memory");
        goto refused;
    }
    cfg.max_sessions_per_ip = next.max_sessions_per_ip;
    smtp_limits_set_per_ip(next.max_sessions_per_ip);
    smtp_settings_install(set);
    log_set_level(next.log_level);
    log_info("reloaded: server certificate %s, client_ca %s, limits (for new sessions)",
             next.tls_cert, next.client_ca);
    ctl_files_close(&ctl_files);
    ctl_reloaded(w->ctl_fd, 1, "");
    return;
refused:
    log_err("reload refused, the running settings stay: %s", err);
    ctl_files_close(&ctl_files);
    ctl_reloaded(w->ctl_fd, 0, err);
}

static void read_control(struct worker *w)
{
    int r = ctl_read(w->ctl_fd, w->msg, &ctl_files);

    if (r < 0) {
        log_err("the master closed the control channel: stopping");
        stopping = 1;
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->ctl_fd, NULL);
    } else if (r == 1) {
        reload(w);
    }
}

/* Once a second: timeouts, CRL reloads, counts of repeated log lines. */
static void worker_tick(struct worker *w, time_t now)
{
    log_flush_repeats();
    for (uint32_t k = 0; k < w->nslots; k++)
        if (w->slots[k] != NULL)
            session_check_timeout(w->slots[k], now);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event events[64];
    time_t last_scan = time(NULL);

    while (!stopping) {
        int n;
        time_t now;

        /* The lines of the turn that ended go out in one write, before the wait. */
        log_turn_end();
        n = epoll_wait(w->epfd, events, 64, 1000);
        if (n < 0 && errno != EINTR)
            fatal("epoll_wait: %s", strerror(errno));
        log_turn_begin();
        for (int i = 0; i < n; i++)
            dispatch(w, events[i].data.u64, events[i].events);
        now = time(NULL);
        if (now != last_scan) {
            last_scan = now;
            worker_tick(w, now);
        }
        /* Only now may closed sessions go: no event of the batch is left to name them. */
        listeners_resume(w, session_reap(w), now);
    }
    log_turn_end();
    for (uint32_t k = 0; k < w->nslots; k++)
        if (w->slots[k] != NULL)
            session_shutdown(w->slots[k]);
    session_reap(w);
    return NULL;
}

static void add_fd(int epfd, int fd, uint64_t handle, uint32_t events)
{
    struct epoll_event ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = events;
    ev.data.u64 = handle;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        fatal("epoll_ctl: %s", strerror(errno));
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        fatal("descriptor %d: %s", fd, strerror(errno));
    (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/*
 * Sets the soft descriptor limit to what max_sessions needs, within the hard limit
 * (the operator's). When the hard limit is lower, max_sessions is lowered to fit
 * and the log says so: sessions beyond it would only fail at run time. Returns how
 * many sessions may hold a spool file at once.
 */
static int fit_descriptor_limit(int workers)
{
    struct rlimit rl;
    struct fd_budget b;
    char msg[512];

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        fatal("getrlimit: %s", strerror(errno));
    if (fd_budget(cfg.max_sessions, workers, nlisteners,
                  rl.rlim_max == RLIM_INFINITY ? ULLONG_MAX : (unsigned long long)rl.rlim_max,
                  &b)) {
        fd_budget_warning(&b, cfg.max_sessions, msg, sizeof(msg));
        log_warn("%s", msg);
        cfg.max_sessions = b.max_sessions;
    }
    rl.rlim_cur = (rlim_t)b.use;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        fatal("cannot set the descriptor limit to %llu: %s", b.use, strerror(errno));
    return b.data_sessions;
}

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    const char *conf = CONFIG_DEFAULT_PATH;
    int foreground = 0, authz_fds[MAX_FDS], queue_fds[MAX_FDS], na = 0, nq = 0, opt, ctl = -1;
    char err[1024];
    int data_max;
    SSL_CTX *ctx;
    struct worker *workers;
    pthread_t *threads;

    while ((opt = getopt(argc, argv, "c:fl:L:a:q:m:")) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'l':
        case 'L':
            if (nlisteners == MAX_FDS)
                fatal("too many listeners");
            listeners[nlisteners].fd = proc_fd_arg(optarg);
            listeners[nlisteners].implicit_tls = opt == 'L';
            nlisteners++;
            break;
        case 'm':
            ctl = proc_fd_arg(optarg);
            break;
        case 'a':
            if (na == MAX_FDS)
                fatal("too many channels");
            authz_fds[na++] = proc_fd_arg(optarg);
            break;
        case 'q':
            if (nq == MAX_FDS)
                fatal("too many channels");
            queue_fds[nq++] = proc_fd_arg(optarg);
            break;
        default:
            return 2;
        }
    }
    proc_start("submitd/smtp", foreground, conf, &cfg);
    if (na == 0 || na != nq || nlisteners == 0 || ctl < 0)
        fatal("started without its descriptors (this program is run by submitd)");

    data_max = fit_descriptor_limit(na);
    if (smtp_limits_init(cfg.max_sessions, cfg.max_sessions_per_ip) != 0)
        fatal("out of memory");
    smtp_limits_set_data_max(data_max);

    ctx = tls_server_ctx(&cfg, err, sizeof(err));
    if (ctx == NULL)
        fatal("%s", err);
    ctl_files_init(&ctl_files);
    {
        struct smtp_settings *set = smtp_settings_new(&cfg, ctx);

        if (set == NULL)
            fatal("out of memory");
        smtp_settings_install(set);
    }

    /* Its own uid (smtp_user): no access to the spool, the database or the keys
     * it has already loaded. */
    privdrop(cfg.smtp_user);

    proc_signals(on_term);

    for (int i = 0; i < nlisteners; i++)
        set_nonblock(listeners[i].fd);
    workers = calloc((size_t)na, sizeof(*workers));
    threads = calloc((size_t)na, sizeof(*threads));
    if (workers == NULL || threads == NULL)
        fatal("out of memory");
    for (int i = 0; i < na; i++) {
        struct worker *w = &workers[i];

        w->idx = i;
        w->ctl_fd = i == 0 ? ctl : -1;
        w->authz_fd = authz_fds[i];
        w->queue_fd = queue_fds[i];
        w->msg = malloc(sizeof(*w->msg));
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (w->msg == NULL || w->epfd < 0 || w->spare_fd < 0)
            fatal("worker set-up: %s", strerror(errno));
        set_nonblock(w->authz_fd);
        set_nonblock(w->queue_fd);
        add_fd(w->epfd, w->authz_fd, EV_RESERVED(EV_AUTHZ), EPOLLIN);
        add_fd(w->epfd, w->queue_fd, EV_RESERVED(EV_QUEUE), EPOLLIN);
        if (w->ctl_fd >= 0) {
            set_nonblock(w->ctl_fd);
            add_fd(w->epfd, w->ctl_fd, EV_RESERVED(EV_CTL), EPOLLIN);
        }
        /* Every worker waits on every listener; EPOLLEXCLUSIVE wakes only one. */
        for (int k = 0; k < nlisteners; k++)
            add_fd(w->epfd, listeners[k].fd, EV_RESERVED(EV_LISTENER0 + k),
                   EPOLLIN | EPOLLEXCLUSIVE);
    }
    log_info("smtp process ready: %d workers, %d listeners", na, nlisteners);
    ctl_ready(ctl);
    for (int i = 1; i < na; i++)
        if (pthread_create(&threads[i], NULL, worker_main, &workers[i]) != 0)
            fatal("pthread_create: %s", strerror(errno));
    worker_main(&workers[0]);
    log_info("smtp process stopping");
    for (int i = 1; i < na; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < na; i++) {
        free(workers[i].slots);
        free(workers[i].free_slots);
        free(workers[i].msg);
        free(workers[i].spare_inbuf);
        close(workers[i].epfd);
    }
    free(workers);
    free(threads);
    smtp_limits_free();
    smtp_settings_install(NULL);
    return 0;
}
