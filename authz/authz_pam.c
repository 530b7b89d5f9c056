/* PAM account management for the authz process. */
#include "authz_pam.h"

#include "config.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <security/pam_appl.h>
#include <signal.h>
#include <string.h>
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

int authz_pam_start(const struct config *cfg, const char *user, pid_t *pid)
{
    int p[2];

    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    *pid = fork();
    if (*pid < 0) {
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (*pid == 0) {
        /* Child: PAM only. The database handle inherited from the parent is never
         * touched, and _exit skips every exit handler. */
        char buf[300];
        int d;

        close(p[0]);
        signal(SIGTERM, SIG_DFL);
        d = authz_pam_account(cfg, user, buf + 1, sizeof(buf) - 1);
        buf[0] = (char)('0' + d);
        (void)!write(p[1], buf, 1 + strlen(buf + 1));
        _exit(0);
    }
    close(p[1]);
    return p[0];
}

int authz_pam_finish(int fd, pid_t pid, char *why, size_t whylen)
{
    char buf[300];
    ssize_t n;
    int status;

    do {
        n = read(fd, buf, sizeof(buf) - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (n < 1 || buf[0] < '0' + IPC_ALLOW || buf[0] > '0' + IPC_TEMPFAIL) {
        str_lcpy(why, "PAM check ended without an answer", whylen);
        return IPC_TEMPFAIL;
    }
    buf[n] = '\0';
    str_lcpy(why, buf + 1, whylen);
    return buf[0] - '0';
}

void authz_pam_abandon(int fd, pid_t pid)
{
    int status;

    kill(pid, SIGKILL);
    close(fd);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
}
