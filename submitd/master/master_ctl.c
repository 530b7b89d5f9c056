/* The control channel with the workers: readiness and reload (see master_ctl.h). */
#include "master_ctl.h"

#include "master.h"
#include "master_files.h"

#include "ipc_codec.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define RELOAD_TIMEOUT 30

static int ctl_fds[NPROC] = { -1, -1, -1 };
static int ready[NPROC];
static int reload_pending;        /* workers whose answer to a reload is awaited */
static time_t reload_deadline;

void control_attach(int p, int fd)
{
    ctl_fds[p] = fd;
    ready[p] = 0;
    reload_pending = 0;
}

int control_fd(int p)
{
    return ctl_fds[p];
}

void control_close_all(void)
{
    for (int p = 0; p < NPROC; p++) {
        if (ctl_fds[p] >= 0)
            close(ctl_fds[p]);
        ctl_fds[p] = -1;
    }
}

static unsigned long long monotonic_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

int control_all_ready(void)
{
    for (int p = 0; p < NPROC; p++)
        if (!ready[p])
            return 0;
    return 1;
}

/* Tells systemd (Type=notify) that the service serves; nothing without NOTIFY_SOCKET. */
void notify_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

/*
 * The server certificate and key must be a pair, and client_ca must give the CA
 * names the smtp process sends in its CertificateRequest: what it will load.
 */
static int check_tls_files(const struct config *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    STACK_OF(X509_NAME) *names = NULL;
    int rc = -1;

    if (ctx == NULL)
        str_fmt(err, errlen, "cannot create a TLS context");
    else if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1)
        str_fmt(err, errlen, "tls_cert: %s: cannot load the certificate", c->tls_cert);
    else if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1)
        str_fmt(err, errlen, "tls_key: %s: cannot load the private key", c->tls_key);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        str_fmt(err, errlen, "tls_key: %s does not match tls_cert %s", c->tls_key, c->tls_cert);
    else if ((names = SSL_load_client_CA_file(c->client_ca)) == NULL)
        str_fmt(err, errlen, "client_ca: %s: no CA certificate in it", c->client_ca);
    else
        rc = 0;
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

static void note_restart_key(const char *key, void *arg)
{
    (void)arg;
    log_warn("reload: %s changed in %s: that takes a restart (systemctl restart submitd); "
             "the running value stays until then", key, cfg.path);
}

/* Sends one file, opened here as root, to a worker that may not open it itself. */
static int send_file(struct ipc_msg *m, int p, int kind, const char *path, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), rc;

    if (fd < 0) {
        str_fmt(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    rc = ipc_enc_ctl_file(m, kind, fd) == 0 ? ipc_send(ctl_fds[p], m) : -1;
    if (rc != 0)
        str_fmt(err, errlen, "%s: cannot be sent: %s", proc_names[p], strerror(errno));
    close(fd);
    return rc;
}

/*
 * SIGHUP. The new file is checked whole before anything changes: a broken one is
 * refused and the running configuration stays. Keys only a restart can change keep
 * their running value (logged). Each worker then reloads what it owns from the
 * descriptors sent here: smtp a new TLS context and limits for new sessions (those in
 * progress finish on the old ones), authz client_ca, the CRL and its limits, queue
 * nothing yet but its log level. The workers keep running: nobody is dropped.
 */
void reload_begin(void)
{
    static struct config next;
    struct ipc_msg *m;
    char err[1024];

    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading", monotonic_usec());
    log_info("reloading the configuration %s", cfg.path);
    if (config_load(&next, cfg.path, err, sizeof(err)) != 0 ||
        config_check_required(&next, err, sizeof(err)) != 0 ||
        check_trust_file("client_ca", next.client_ca, err, sizeof(err)) != 0 ||
        check_trust_file("crl", next.crl, err, sizeof(err)) != 0 ||
        check_tls_files(&next, err, sizeof(err)) != 0) {
        log_err("reload refused, the running configuration stays: %s", err);
        notify_ready("serving; the last reload was refused, see the log");
        return;
    }
    config_keep_restart_keys(&next, &cfg, note_restart_key, NULL);
    cfg = next;
    log_set_level(cfg.log_level);
    m = malloc(sizeof(*m));
    if (m == NULL)
        fatal("out of memory");
    reload_pending = 0;
    for (int p = 0; p < NPROC; p++) {
        int rc = send_file(m, p, CTL_FILE_CONF, cfg.path, err, sizeof(err));

        if (rc == 0 && p == P_SMTP)
            rc = send_file(m, p, CTL_FILE_CERT, cfg.tls_cert, err, sizeof(err)) ||
                 send_file(m, p, CTL_FILE_KEY, cfg.tls_key, err, sizeof(err)) ||
                 send_file(m, p, CTL_FILE_CLIENT_CA, cfg.client_ca, err, sizeof(err));
        if (rc == 0) {
            ipc_init(m, IPC_CTL_RELOAD, 0);
            rc = ipc_send(ctl_fds[p], m);
            if (rc != 0)
                str_fmt(err, sizeof(err), "%s", strerror(errno));
        }
        if (rc != 0)
            log_err("reload: %s keeps its settings: %s", proc_names[p], err);
        else
            reload_pending++;
    }
    free(m);
    reload_deadline = time(NULL) + RELOAD_TIMEOUT;
    if (reload_pending == 0)
        notify_ready("serving");
}

static void reload_answered(void)
{
    if (--reload_pending > 0)
        return;
    log_info("configuration %s reloaded", cfg.path);
    notify_ready("serving");
}

/* Messages from worker p on its control channel. */
int control_read(int p, struct ipc_msg *m)
{
    for (;;) {
        struct ipc_reloaded r;
        int n = ipc_recv(ctl_fds[p], m);

        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            /* It is gone or broken: SIGCHLD brings the restart. */
            close(ctl_fds[p]);
            ctl_fds[p] = -1;
            return 0;
        }
        if (m->fd >= 0) {
            close(m->fd);
            m->fd = -1;
            m->type = 0;
        }
        if (m->type == IPC_CTL_READY && ipc_end(m) == 0 && !ready[p]) {
            ready[p] = 1;
            if (control_all_ready()) {
                log_info("ready: %s, %s and %s serve", proc_names[0], proc_names[1],
                         proc_names[2]);
                notify_ready("serving");
            }
        } else if (m->type == IPC_CTL_RELOADED && ipc_dec_ctl_reloaded(m, &r) == 0 &&
                   reload_pending > 0) {
            if (!r.ok)
                log_err("reload: %s keeps its settings: %s", proc_names[p], r.why);
            reload_answered();
        } else {
            log_err("%s broke the control protocol (message type %u): restarting it",
                    proc_names[p], m->type);
            close(ctl_fds[p]);
            ctl_fds[p] = -1;
            return -1;
        }
    }
}

int reload_idle(void)
{
    return reload_pending == 0;
}

void reload_expire(time_t now)
{
    if (reload_pending > 0 && now >= reload_deadline) {
        log_warn("reload: not every worker answered within %d s", RELOAD_TIMEOUT);
        reload_pending = 0;
        notify_ready("serving");
    }
}
