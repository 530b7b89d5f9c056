/* The spool and the trusted files, as the root master opens them (see master_files.h). */
#include "master_files.h"

#include "master.h"

#include "log.h"
#include "privdrop.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Who owns the spool: the configured user when we are root, else ourselves (a test
 * run or an admin trying a configuration; nothing is chowned then).
 */
int spool_owner(struct safedir_owner *o, char *err, size_t errlen)
{
    static char name[64];

    if (geteuid() == 0) {
        if (privdrop_lookup(cfg.user, &o->uid, &o->gid) != 0) {
            str_fmt(err, errlen, "%s: user: unprivileged user \"%s\" does not exist",
                    cfg.path, cfg.user);
            return -1;
        }
        o->name = cfg.user;
        return 0;
    }
    o->uid = geteuid();
    o->gid = getegid();
    str_fmt(name, sizeof(name), "uid %u", (unsigned)o->uid);
    o->name = name;
    return 0;
}

/*
 * The spool belongs to the unprivileged user, who can put anything in it: a link
 * where spool/corrupt was, say, to /etc/shadow. So the master, as root, never looks
 * a spool name up by path: it opens the spool's parent (a directory only root can
 * change, see safedir.h), then each level with openat(O_NOFOLLOW), refuses what is
 * not a directory of the user's (or root's), and chowns and chmods the descriptor
 * it opened. Nothing that the check looked at can be swapped before the chown.
 *
 * Above the spool, every directory must be root's and writable by root alone (a
 * sticky directory such as /tmp aside), or the start is refused. A user who can
 * write there, the daemon user included, can rename another directory of root's
 * (a CA directory next to the spool; /var/spool, after a swap higher up) into the
 * spool's place, and root would hand it over. A warning would not do: it would be
 * repeated at every start in a log nobody reads, while the directory changes hands.
 */
#define SPOOL_LOCK "submitd.lock"

static int lock_fd = -1;

/* The pid written in the lock file of the spool (by the instance holding it), or
 * "unknown" while that instance has not written it yet. */
static void lock_holder(int fd, char *out, size_t outlen)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    long long pid;

    if (n > 0) {
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (str_to_ll(buf, 1, INT32_MAX, &pid) == 0) {
            str_fmt(out, outlen, "%lld", pid);
            return;
        }
    }
    str_lcpy(out, "unknown", outlen);
}

/*
 * One instance per spool (DESIGN §4): two would recover each other's incoming
 * files and relay the same messages. The lock is flock() on SPOOL_LOCK inside the
 * spool, opened through the spool's descriptor without following links. The spool
 * belongs to the unprivileged user, so a lock file that root did not make (a link,
 * a FIFO, a hard link to a file elsewhere) is replaced, never opened for writing.
 * flock() survives the fork of daemonize(); the descriptor is close-on-exec, so
 * the workers never hold it.
 */
static int lock_spool(int spool, char *err, size_t errlen)
{
    const int flags = O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    struct stat st;
    char pid[32];
    int fd;

    /* Anything but a regular file of ours with one link goes, before we open it. */
    if (fstatat(spool, SPOOL_LOCK, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (!S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != geteuid()))
        (void)unlinkat(spool, SPOOL_LOCK, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
    fd = openat(spool, SPOOL_LOCK, flags | O_CREAT, 0644);
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
                    st.st_uid != geteuid())) {
        close(fd);
        fd = -1;
        errno = EPERM;
    }
    if (fd < 0) {
        str_fmt(err, errlen, "spool %s: cannot open the lock file %s: %s", cfg.spool, SPOOL_LOCK,
                strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;

        lock_holder(fd, pid, sizeof(pid));
        close(fd);
        if (e == EWOULDBLOCK)
            str_fmt(err, errlen, "spool %s is in use by another submitd (pid %s, lock file "
                    "%s/%s)", cfg.spool, pid, cfg.spool, SPOOL_LOCK);
        else
            str_fmt(err, errlen, "spool %s: cannot lock %s: %s", cfg.spool, SPOOL_LOCK,
                    strerror(e));
        return -1;
    }
    lock_fd = fd;
    return 0;
}

/* Writes our pid into the lock file, once the master has its final pid. */
void lock_write_pid(void)
{
    char num[32];

    str_fmt(num, sizeof(num), "%ld\n", (long)getpid());
    if (ftruncate(lock_fd, 0) != 0 || pwrite(lock_fd, num, strlen(num), 0) != (ssize_t)strlen(num))
        log_warn("spool %s: cannot write the pid into %s: %s", cfg.spool, SPOOL_LOCK,
                 strerror(errno));
}

int prepare_spool(char *err, size_t errlen)
{
    static const char *const subdirs[] = { "incoming", "queue", "corrupt" };
    const int flags = SAFEDIR_CREATE | SAFEDIR_ADOPT;
    struct safedir_owner owner;
    char why[PATH_MAX + 256];
    int spool, fd;

    if (spool_owner(&owner, err, errlen) != 0)
        return -1;
    spool = safedir_open_owned_path(cfg.spool, &owner, flags, why, sizeof(why));
    if (spool >= 0 && lock_spool(spool, err, errlen) != 0) {
        close(spool);
        return -1;
    }
    fd = spool;
    for (size_t i = 0; fd >= 0 && i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        char path[PATH_MAX];

        str_fmt(path, sizeof(path), "%s/%s", cfg.spool, subdirs[i]);
        fd = safedir_open_owned(spool, subdirs[i], path, &owner, flags, why, sizeof(why));
        if (fd >= 0)
            close(fd);
    }
    if (spool >= 0)
        close(spool);
    if (fd < 0) {
        str_fmt(err, errlen, "spool: %s", why);
        return -1;
    }
    return 0;
}

/*
 * client_ca and crl decide who is who, and are read as root (a FIFO there would
 * also hang the reader). A user who can change them, or the directory they are in,
 * could trust a CA of their own or drop a revocation: the daemon user, who owns the
 * spool, must not be able to mint identities. So each must be a file that only root
 * can change, in a directory that only root can change (safedir.h).
 */
int check_trust_file(const char *key, const char *path, char *err, size_t errlen)
{
    char base[NAME_MAX + 1], why[PATH_MAX + 128];
    struct stat st;
    int dir, rc;

    if (path[0] == '\0')
        return 0;
    dir = safedir_open_parent(path, base, sizeof(base), 0, why, sizeof(why));
    if (dir < 0) {
        str_fmt(err, errlen, "%s: %s", key, why);
        return -1;
    }
    rc = fstatat(dir, base, &st, 0);
    close(dir);
    if (rc != 0) {
        str_fmt(err, errlen, "%s: %s: %s", key, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
        (st.st_mode & 022) != 0) {
        str_fmt(err, errlen, "%s: %s must be a regular file of root's that only root can "
                "write (it is uid %u, mode %04o)", key, path, (unsigned)st.st_uid,
                (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}
