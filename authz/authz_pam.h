#ifndef SUBMITD_AUTHZ_PAM_H
#define SUBMITD_AUTHZ_PAM_H

#include "ipc.h"

#include <stddef.h>
#include <sys/types.h>

struct config;

/*
 * Account check with PAM (pam_acct_mgmt) for a mapped user: IPC_ALLOW when the
 * account is usable, IPC_DENY when PAM says it is not, IPC_TEMPFAIL for anything
 * else. The conversation refuses every prompt: account checks must not ask.
 * why receives PAM's text for the log.
 */
int authz_pam_account(const struct config *cfg, const char *user, char *why, size_t whylen);

/*
 * The same check in a pool of worker processes, so that a PAM module that hangs
 * cannot stop the authz process. Workers are forked once and serve many checks
 * (forking per check costs more than the check); one that overruns pam_timeout
 * is killed and replaced.
 */
struct pam_worker {
    pid_t pid;       /* 0: no process */
    int fd;          /* socket to the worker */
    int busy;
};
/* Starts a worker. 0, or -1 when it cannot. */
int pam_worker_spawn(const struct config *cfg, struct pam_worker *w);
/* Hands user to an idle worker. 0, or -1 when the worker is gone. */
int pam_worker_send(struct pam_worker *w, const char *user);
/* Reads the verdict of a busy worker whose socket is readable (IPC_*); a worker
 * that died without answering is IPC_TEMPFAIL and is cleared. */
int pam_worker_recv(struct pam_worker *w, char *why, size_t whylen);
/* Kills and reaps the worker (overdue or at shutdown). */
void pam_worker_kill(struct pam_worker *w);

#endif
