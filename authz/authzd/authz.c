/*
 * submitd-authz: who is who (DESIGN §2).
 *
 *   submitd-authz -c CONF [-f] -m FD -s FD... -q FD
 *
 * Owns: the database (the only process of the daemon that opens it) and PAM, and
 * every decision about identity. It verifies the client certificates that the smtp
 * workers relay (authz_cert), keeps a grant per session (authz_grant), answers
 * sender, header-From and AUTH EXTERNAL authzid questions for the user of its own
 * grant (authz_address), confirms envelopes to the queue and writes every audit
 * row, from smtp and from queue (authz_audit).
 * Never: touches the network or the spool, or trusts a user name from smtp: smtp
 * names sessions, never users, and a request for a session authz did not grant is
 * refused. It runs as root (the database directory is root's; PAM's account
 * modules may read /etc/shadow).
 * Talks to: the smtp process (one channel per worker thread, -s), the queue (-q),
 * the master (control channel, -m: ready, reload) and its own PAM workers. Answers
 * are tri-state; any database or PAM error is TEMPFAIL, never ALLOW. A malformed
 * message is fatal: the master restarts the set.
 *
 * authz.c            the channels and their dispatch, reload, the main loop
 * authz_identity     certificate, database, PAM; AUTH PLAIN
 * authz_address      sender, header From, AUTH EXTERNAL authzid
 * authz_audit        audit rows, session ends, the queue's grant checks and accepts
 * authz_retention    audit_retention        authz_answer   answers, audit row helpers
 */
#include "authz.h"
#include "authz_address.h"
#include "authz_answer.h"
#include "authz_audit.h"
#include "authz_cert.h"
#include "authz_grant.h"
#include "authz_identity.h"
#include "authz_refusals.h"
#include "authz_retention.h"

#include "config.h"
#include "ctl.h"
#include "db.h"
#include "ipc.h"
#include "log.h"
#include "proc.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHANNELS 65
#define AUTHZ_BUSY_TIMEOUT_MS 1000
#define TURN_MESSAGES 16
/* The queue sends the accept rows of a batch of commits together, up to 64 at a
 * time, and waits for all of them: read them in one turn, so that they share one
 * durable commit. */
#define QUEUE_TURN_MESSAGES 64

struct config cfg;
struct db *db;
static volatile sig_atomic_t stopping;

/* ---- the channels ------------------------------------------------------------------ */

/* Answers one message: 1 when one was read, 0 when none was waiting, -1 when the
 * peer is gone during shutdown. Each channel carries only its peer's message types. */
static int serve(int fd, int from_queue, struct ipc_msg *m)
{
    struct answer a;
    int r = ipc_recv(fd, m);

    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    if (r < 0)
        fatal("channel %d: %s", fd, strerror(errno));
    if (r == 0) {
        if (stopping)
            return -1;
        fatal("a peer process closed its channel");
    }
    if (m->fd >= 0)
        fatal("unexpected descriptor on authz channel");
    memset(&a, 0, sizeof(a));
    if (from_queue) {
        switch (m->type) {
        case IPC_AUTHZ_GRANT_CHECK:
            handle_grant_check(fd, m);
            return 1;
        case IPC_AUTHZ_RELAY_AUDIT:
            handle_relay_audit(m);
            return 1;
        case IPC_AUTHZ_ACCEPT:
            handle_accept(fd, m);
            return 1;
        default:
            fatal("unexpected message type %u from the queue", m->type);
        }
    }
    switch (m->type) {
    case IPC_AUTHZ_IDENTITY:
        handle_identity(fd, m);
        return 1;
    case IPC_AUTHZ_PASSWORD:
        handle_password(fd, m);
        return 1;
    case IPC_AUTHZ_SENDER:
        handle_sender(m, &a);
        break;
    case IPC_AUTHZ_AUTHZID:
        handle_authzid(m, &a);
        break;
    case IPC_AUTHZ_AUDIT:
        handle_audit(fd, m);
        return 1;
    case IPC_AUTHZ_SESSION_END:
        handle_session_end(m);
        return 1;
    default:
        fatal("unexpected message type %u from the smtp process", m->type);
    }
    send_answer(fd, m->id, &a, m);
    return 1;
}

static void on_term(int sig)
{
    (void)sig;
    stopping = 1;
}

/*
 * A reload (ctl.h): client_ca, the CRL and the limits. The database, PAM service
 * and table sizes stay until a restart (config_keep_restart_keys). Sessions in
 * progress keep their grants.
 */
static void reload(int ctl, struct ctl_files *f)
{
    static struct config next;
    char err[1024];

    if (ctl_reload_config(f, &cfg, &next, err, sizeof(err)) != 0 ||
        cert_reload(&next, err, sizeof(err)) != 0) {
        log_err("reload refused, the running settings stay: %s", err);
        ctl_reloaded(ctl, 0, err);
        return;
    }
    cfg = next;
    log_set_level(cfg.log_level);
    identity_load_own_ca();
    log_info("reloaded: client_ca %s, crl %s, limits", cfg.client_ca,
             cfg.crl[0] ? cfg.crl : "(none)");
    ctl_reloaded(ctl, 1, "");
}

int main(int argc, char **argv)
{
    const char *conf = CONFIG_DEFAULT_PATH;
    struct pollfd pfd[MAX_CHANNELS + 1 + PAM_WORKERS];
    int nfd = 0, foreground = 0, opt, queue_chan = -1, ctl = -1, sync_in = -1;
    struct ctl_files files;
    char err[1024];
    struct ipc_msg *m;

    while ((opt = getopt(argc, argv, "c:fs:q:m:")) != -1) {
        switch (opt) {
        case 'c':
            conf = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'm':
            ctl = proc_fd_arg(optarg);
            break;
        case 's':
        case 'q':
            if (nfd == MAX_CHANNELS || (opt == 'q' && queue_chan >= 0))
                fatal("too many channels");
            if (opt == 'q')
                queue_chan = nfd;
            pfd[nfd].fd = proc_fd_arg(optarg);
            pfd[nfd].events = POLLIN;
            nfd++;
            break;
        default:
            return 2;
        }
    }
    proc_start("submitd/authz", foreground, conf, &cfg);
    if (nfd == 0 || queue_chan < 0 || ctl < 0)
        fatal("started without its descriptors (this program is run by submitd)");
    ctl_files_init(&files);
    if (cert_init(&cfg, err, sizeof(err)) != 0)
        fatal("%s", err);
    /* Every session the smtp process may hold at once, and some in passing. */
    if (grant_init((size_t)cfg.max_sessions + 256) != 0)
        fatal("out of memory");
    db = db_open(cfg.database, err, sizeof(err));
    if (db == NULL)
        fatal("database: %s", err);
    /* authz serves every session in turn: a writer holding the lock (an admin's
     * long transaction) must cost a second, not a stall of the whole daemon. */
    if (db_set_lock_timeout(db, AUTHZ_BUSY_TIMEOUT_MS) != DB_OK)
        fatal("database: %s", db_errmsg(db));
    /* Channels are read until EAGAIN: they must not block. */
    for (int i = 0; i < nfd; i++)
        if (fcntl(pfd[i].fd, F_SETFL, fcntl(pfd[i].fd, F_GETFL) | O_NONBLOCK) != 0)
            fatal("channel %d: %s", pfd[i].fd, strerror(errno));
    if (fcntl(ctl, F_SETFL, fcntl(ctl, F_GETFL) | O_NONBLOCK) != 0)
        fatal("control channel: %s", strerror(errno));
    m = malloc(sizeof(*m));
    if (m == NULL)
        fatal("out of memory");
    identity_load_own_ca();

    proc_signals(on_term);

    log_info("authz process ready: database %s, %d channels", config_database_shown(&cfg), nfd);
    ctl_ready(ctl);
    retention_tick(time(NULL));
    while (!stopping) {
        int n, npfd = nfd + 1, timeout;

        /* The control channel, after the channels and before the PAM workers. */
        pfd[nfd].fd = ctl;
        pfd[nfd].events = POLLIN;
        pfd[nfd].revents = 0;
        npfd += identity_pam_fds(pfd + npfd);
        timeout = identity_pending() ? 200 : 1000;
        if (sync_in >= 0 && sync_in < timeout)
            timeout = sync_in;
        n = poll(pfd, (nfds_t)npfd, timeout);
        if (n < 0 && errno != EINTR)
            fatal("poll: %s", strerror(errno));
        if (identity_pending())
            identity_pam_collect(pfd + nfd + 1, npfd - nfd - 1, m);
        if (pfd[nfd].revents & (POLLIN | POLLHUP | POLLERR)) {
            int r = ctl_read(ctl, m, &files);

            if (r < 0)
                fatal("the master closed the control channel");
            if (r == 1) {
                reload(ctl, &files);
                ctl_files_close(&files);
            }
        }
        /* Several messages per channel and turn, a bounded number so that one busy
         * channel does not starve the others: their rows share one commit. */
        for (int i = 0; i < nfd && n > 0; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            int most = i == queue_chan ? QUEUE_TURN_MESSAGES : TURN_MESSAGES;

            for (int k = 0, r = 1; r == 1 && k < most; k++) {
                r = serve(pfd[i].fd, i == queue_chan, m);
                if (r < 0)
                    pfd[i].fd = -pfd[i].fd - 1; /* poll ignores negative descriptors */
            }
        }
        cert_tick(time(NULL));
        refusal_flush(time(NULL), 0, write_audit);
        /* One commit for the turn's rows, then its answers (the 250s wait for it). */
        batch_end(m);
        sync_in = batch_tick();
        retention_tick(time(NULL));
    }
    /* Write what is still queued on the channels (audit rows) before leaving. */
    for (int i = 0; i < nfd; i++) {
        struct pollfd one = { pfd[i].fd, POLLIN, 0 };
        if (one.fd < 0)
            continue;
        while (poll(&one, 1, 0) == 1 && (one.revents & POLLIN)) {
            int r = ipc_recv(pfd[i].fd, m);
            if (r <= 0)
                break;
            if (m->type == IPC_AUTHZ_AUDIT && i != queue_chan)
                handle_audit(-1, m);   /* rows only: nobody waits for an answer now */
            else if (m->type == IPC_AUTHZ_RELAY_AUDIT && i == queue_chan)
                handle_relay_audit(m);
            /* An ACCEPT is left unanswered: the queue, stopping too, does not queue
             * that message, and no row may claim it was. */
        }
    }
    refusal_flush(time(NULL), 1, write_audit);
    batch_end(m);
    batch_sync();
    batch_free();
    identity_stop();
    db_close(db);
    grant_free_all();
    cert_free();
    free(m);
    log_info("authz process stopped");
    return 0;
}
