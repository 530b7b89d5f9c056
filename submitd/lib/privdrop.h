#ifndef SUBMITD_PRIVDROP_H
#define SUBMITD_PRIVDROP_H

#include <sys/types.h>

/*
 * Drops root privileges to the named user in the canonical order: look the user up,
 * chdir, setgroups, setresgid, setresuid, then verify that root cannot be regained.
 * Any failure is fatal. When not running as root there is nothing to drop and the
 * call only logs at debug level (developers run the daemon unprivileged).
 */
void privdrop(const char *user);
/* Looks up uid/gid of user. Returns 0 or -1. */
int privdrop_lookup(const char *user, uid_t *uid, gid_t *gid);

#endif
