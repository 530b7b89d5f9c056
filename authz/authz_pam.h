#ifndef SUBMITD_AUTHZ_PAM_H
#define SUBMITD_AUTHZ_PAM_H

#include "ipc.h"

struct config;

/*
 * Account check with PAM (pam_acct_mgmt) for a mapped user: IPC_ALLOW when the
 * account is usable, IPC_DENY when PAM says it is not, IPC_TEMPFAIL for anything
 * else. The conversation refuses every prompt: account checks must not ask.
 * why receives PAM's text for the log.
 */
int authz_pam_account(const struct config *cfg, const char *user, char *why, size_t whylen);

#endif
