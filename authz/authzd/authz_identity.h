#ifndef SUBMITD_AUTHZ_IDENTITY_H
#define SUBMITD_AUTHZ_IDENTITY_H

#include "ipc.h"

#include <poll.h>

/*
 * Who a session is (DESIGN §3.4): the client certificate (verified by
 * authz_cert), then the database (certificate status, user enabled, exact subject
 * map, else a rule map of the issuer), then PAM's account check; or AUTH PLAIN's
 * password through PAM. PAM may hang, so it runs in a pool of worker processes with
 * a deadline (pam_timeout) while authz goes on serving; the answer, the grant and
 * the audit row follow when it returns.
 */

#define MAX_PENDING 256    /* identities waiting for PAM at once */
#define PAM_WORKERS 4

/* IDENTITY and PASSWORD requests from smtp on chan. */
void handle_identity(int chan, struct ipc_msg *m);
void handle_password(int chan, struct ipc_msg *m);

/* How many identities wait for PAM. */
int identity_pending(void);
/* Puts the sockets of the busy PAM workers into pfd (room for PAM_WORKERS);
 * returns how many. */
int identity_pam_fds(struct pollfd *pfd);
/* Answers the identities whose PAM check finished or is overdue; pfd holds the
 * busy workers' sockets after poll. */
void identity_pam_collect(struct pollfd *pfd, int npfd, struct ipc_msg *m);
/* Kills the PAM workers and forgets the waiting identities (at the end). */
void identity_stop(void);

/* Reads our own CA (ca_dir/ca.crt): neither subject maps nor rule maps apply to it. */
void identity_load_own_ca(void);

#endif
