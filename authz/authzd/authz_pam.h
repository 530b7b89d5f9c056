#ifndef SUBMITD_AUTHZ_PAM_H
#define SUBMITD_AUTHZ_PAM_H

#include "ipc.h"

#include <stddef.h>
#include <sys/types.h>

struct config;

/*
 * PAM for a user: pam_authenticate with password when it is not NULL (AUTH PLAIN),
 * then pam_acct_mgmt. IPC_ALLOW when the account is usable, IPC_DENY when PAM says
 * no, IPC_TEMPFAIL for anything else. why receives PAM's text for the log (never
 * the password).
 */
int authz_pam_check(const struct config *cfg, const char *user, const char *password,
                    char *why, size_t whylen);

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
/* Hands a check to an idle worker (password NULL: account only). 0, or -1. */
int pam_worker_send(struct pam_worker *w, const char *user, const char *password);
/* Reads the verdict of a busy worker whose socket is readable (IPC_*); a worker
 * that died without answering is IPC_TEMPFAIL and is cleared. */
int pam_worker_recv(struct pam_worker *w, char *why, size_t whylen);
/* Kills and reaps the worker (overdue or at shutdown). */
void pam_worker_kill(struct pam_worker *w);

/*
 * pam_cache (DESIGN §6): the verdicts of account checks without a password, allow or
 * deny (never a temporary failure), by user. pam_cache_get returns the verdict
 * recorded at most max_age seconds ago, with its text in why, or -1.
 */
int pam_cache_get(const char *user, int max_age, char *why, size_t whylen);
void pam_cache_put(const char *user, int verdict, const char *why);

#endif
