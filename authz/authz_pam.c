/* PAM account management for the authz process. */
#include "authz_pam.h"

#include "config.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* Refuses every prompt: an account check has nobody to ask. */
static int no_conversation(int num_msg, const struct pam_message **msg,
                           struct pam_response **resp, void *appdata)
{
    (void)num_msg;
    (void)msg;
    (void)appdata;
    *resp = NULL;
    return PAM_CONV_ERR;
}

int authz_pam_account(const struct config *cfg, const char *user, char *why, size_t whylen)
{
    struct pam_conv conv = { no_conversation, NULL };
    pam_handle_t *ph = NULL;
    int rc, decision;

    rc = pam_start_confdir(cfg->pam_service, user, &conv,
                           cfg->pam_confdir[0] ? cfg->pam_confdir : NULL, &ph);
    if (rc != PAM_SUCCESS) {
        str_fmt(why, whylen, "pam_start(%s): %s", cfg->pam_service, pam_strerror(ph, rc));
        return IPC_TEMPFAIL;
    }
    rc = pam_acct_mgmt(ph, PAM_SILENT);
    switch (rc) {
    case PAM_SUCCESS:
        decision = IPC_ALLOW;
        break;
    case PAM_USER_UNKNOWN:
    case PAM_PERM_DENIED:
    case PAM_ACCT_EXPIRED:
    case PAM_AUTH_ERR:
    case PAM_NEW_AUTHTOK_REQD:
        decision = IPC_DENY;
        break;
    default:
        /* Unknown results fail closed, but temporarily. */
        decision = IPC_TEMPFAIL;
        break;
    }
    str_lcpy(why, pam_strerror(ph, rc), whylen);
    pam_end(ph, rc);
    return decision;
}

/* The worker's loop: one user name in, one verdict out, until the socket closes. */
static void pam_worker_main(const struct config *cfg, int fd)
{
    char user[256], out[300];

    for (;;) {
        ssize_t n = recv(fd, user, sizeof(user) - 1, 0);
        int d;

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(0);
        user[n] = '\0';
        d = authz_pam_account(cfg, user, out + 1, sizeof(out) - 1);
        out[0] = (char)('0' + d);
        if (send(fd, out, 1 + strlen(out + 1), MSG_NOSIGNAL) < 0)
            _exit(0);
    }
}

int pam_worker_spawn(const struct config *cfg, struct pam_worker *w)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    w->pid = fork();
    if (w->pid < 0) {
        w->pid = 0;
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    if (w->pid == 0) {
        /* Child: PAM only. The database handle inherited from the parent is never
         * touched, and _exit skips every exit handler. */
        close(sv[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        pam_worker_main(cfg, sv[1]);
    }
    close(sv[1]);
    w->fd = sv[0];
    w->busy = 0;
    return 0;
}

int pam_worker_send(struct pam_worker *w, const char *user)
{
    if (send(w->fd, user, strlen(user), MSG_NOSIGNAL) < 0)
        return -1;
    w->busy = 1;
    return 0;
}

int pam_worker_recv(struct pam_worker *w, char *why, size_t whylen)
{
    char buf[300];
    ssize_t n;

    do {
        n = recv(w->fd, buf, sizeof(buf) - 1, 0);
    } while (n < 0 && errno == EINTR);
    w->busy = 0;
    if (n < 1 || buf[0] < '0' + IPC_ALLOW || buf[0] > '0' + IPC_TEMPFAIL) {
        str_lcpy(why, "the PAM worker ended without an answer", whylen);
        pam_worker_kill(w);
        return IPC_TEMPFAIL;
    }
    buf[n] = '\0';
    str_lcpy(why, buf + 1, whylen);
    return buf[0] - '0';
}

void pam_worker_kill(struct pam_worker *w)
{
    int status;

    if (w->pid <= 0)
        return;
    kill(w->pid, SIGKILL);
    close(w->fd);
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
        ;
    w->pid = 0;
    w->fd = -1;
    w->busy = 0;
}
