#ifndef SUBMITD_SAFEDIR_H
#define SUBMITD_SAFEDIR_H

/*
 * Directories that root works in without following anybody's links (DESIGN §2).
 *
 * Root must never act on a path that another user can redirect: whoever can write a
 * directory on the way can replace the next name with a symbolic link (to
 * /etc/shadow, a cron file) or with another directory, and a chown() or open() by
 * name then lands there. Two kinds of directory are told apart:
 *
 *   trusted   every directory from "/" down to, say, the spool's parent: owned by
 *             root (or by the calling user when that is not root) and writable by
 *             nobody else, unless the sticky bit keeps others from renaming what is
 *             not theirs (/tmp). A symbolic link on the way is followed only when
 *             root owns it, as only root can have put it in a trusted directory.
 *   owned     the spool and its subdirectories: a real directory (never a link)
 *             owned by the unprivileged user, or by root when root has just made it,
 *             writable by neither group nor others. Root gives it to the user with
 *             fchown()/fchmod() on the opened descriptor, never by name.
 *
 * Every function returns an O_RDONLY|O_DIRECTORY descriptor (O_CLOEXEC), or -1 with
 * a message in err that names the path and what is wrong with it.
 */

#include <stddef.h>
#include <sys/types.h>

/* Make missing directories (trusted ones mode 0755, owned ones 0700). */
#define SAFEDIR_CREATE 1
/* Give owned directories to the owner with mode 0700 (needs root for fchown). */
#define SAFEDIR_ADOPT 2

struct safedir_owner {
    uid_t uid;
    gid_t gid;
    const char *name;      /* the user's name, for messages */
};

/* Opens the absolute path when it and every directory above it are trusted. */
int safedir_open_trusted(const char *path, int flags, char *err, size_t errlen);

/*
 * Opens the trusted directory that holds path and stores path's last name in base
 * (for openat() and friends). Trailing slashes are ignored; "/" has no parent.
 */
int safedir_open_parent(const char *path, char *base, size_t baselen, int flags, char *err,
                        size_t errlen);

/*
 * Opens the owned directory name inside dirfd (shown: its full path, for messages),
 * creating it with SAFEDIR_CREATE and giving it to owner with SAFEDIR_ADOPT.
 */
int safedir_open_owned(int dirfd, const char *name, const char *shown,
                       const struct safedir_owner *owner, int flags, char *err, size_t errlen);

/* safedir_open_parent() of path, then safedir_open_owned() of path itself. */
int safedir_open_owned_path(const char *path, const struct safedir_owner *owner, int flags,
                            char *err, size_t errlen);

#endif
