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
 * The same check in a child process, so that a PAM module that hangs cannot stop
 * the authz process: returns the read end of a pipe that becomes readable when the
 * child has answered (or died), and the child's pid; -1 when no child could start.
 */
int authz_pam_start(const struct config *cfg, const char *user, pid_t *pid);
/* Reads the answer and reaps the child. A child that died without answering is
 * IPC_TEMPFAIL. Closes fd. */
int authz_pam_finish(int fd, pid_t pid, char *why, size_t whylen);
/* Kills a child that took too long, reaps it and closes fd. */
void authz_pam_abandon(int fd, pid_t pid);

#endif
