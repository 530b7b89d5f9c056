#ifndef SUBMITD_MASTER_FILES_H
#define SUBMITD_MASTER_FILES_H

#include "safedir.h"

#include <stddef.h>

/*
 * The files the root master opens itself: the spool, which it makes the daemon
 * user's and locks (one instance per spool), and the trusted files client_ca and
 * crl, which only root may be able to change. Nothing here follows a link in a
 * directory another user can write (safedir.h).
 */

/* Who owns the spool: `user` when we are root, else ourselves. 0, or -1 with err. */
int spool_owner(struct safedir_owner *o, char *err, size_t errlen);
/* Creates or adopts the spool and its subdirectories and locks it. 0, or -1 with err. */
int prepare_spool(char *err, size_t errlen);
/* Writes our pid into the spool's lock file, once the master has its final pid. */
void lock_write_pid(void);
/* client_ca or crl (key) at path: a regular file that only root can change, in a
 * directory that only root can change; "" passes. 0, or -1 with err. */
int check_trust_file(const char *key, const char *path, char *err, size_t errlen);

#endif
