/*
 * Opening directories without following anybody's links (see safedir.h). Paths are
 * resolved here one name at a time with openat(), so that what was checked is
 * exactly the directory that is then used: a name is never looked up twice.
 */
#include "safedir.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* O_PATH descriptors cannot be given to fchown() on older kernels: open for reading. */
#define DIR_OPEN (O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define MAX_LINKS 32

/* A path being resolved: the directory reached so far and what is left of the path. */
struct walk {
    int fd;
    char at[PATH_MAX];      /* the physical path of fd, "" for "/" */
    char todo[PATH_MAX];    /* the names still to resolve, from pos */
    size_t pos;
    int links;
};

static int say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes the message and returns -1, so that every refusal is one line. */
static int say(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static const char *shown_at(const char *at)
{
    return at[0] != '\0' ? at : "/";
}

/*
 * Root trusts root. A process that is not root (a test, an admin's own copy) also
 * trusts itself: nobody else's link or directory can gain it anything it has not.
 */
static int trusted_uid(uid_t uid)
{
    return uid == 0 || uid == geteuid();
}

static void expected_owner(char *out, size_t outlen)
{
    if (geteuid() == 0)
        str_lcpy(out, "root", outlen);
    else
        (void)str_fmt(out, outlen, "root or uid %u", (unsigned)geteuid());
}

/* Group or other write lets someone else swap names, unless the sticky bit stops it. */
static int others_can_swap(const struct stat *st)
{
    return (st->st_mode & 022) != 0 && (st->st_mode & S_ISVTX) == 0;
}

static int check_trusted(const struct stat *st, const char *path, char *err, size_t errlen)
{
    char expected[64];

    if (!S_ISDIR(st->st_mode))
        return say(err, errlen, "%s is not a directory", path);
    if (!trusted_uid(st->st_uid)) {
        expected_owner(expected, sizeof(expected));
        return say(err, errlen, "%s is owned by uid %u, expected %s", path,
                   (unsigned)st->st_uid, expected);
    }
    if (others_can_swap(st))
        return say(err, errlen, "%s: mode allows group/other write (%04o)", path,
                   (unsigned)(st->st_mode & 07777));
    return 0;
}

/* Says why name in dirfd could not be opened as a directory. */
static int open_failed(int dirfd, const char *name, const char *shown, char *err,
                       size_t errlen)
{
    int saved = errno;
    struct stat st;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode))
            return say(err, errlen, "%s is a symbolic link", shown);
        if (!S_ISDIR(st.st_mode))
            return say(err, errlen, "%s is not a directory", shown);
    }
    return say(err, errlen, "%s: %s", shown, strerror(saved));
}

/* ---- trusted directories: a walk from "/" ------------------------------------- */

static int walk_root(struct walk *w, char *err, size_t errlen)
{
    struct stat st;
    int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) != 0) {
        say(err, errlen, "/: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (check_trusted(&st, "/", err, errlen) != 0) {
        close(fd);
        return -1;
    }
    if (w->fd >= 0)
        close(w->fd);
    w->fd = fd;
    w->at[0] = '\0';
    return 0;
}

/* The next name of the path into name: 1, or 0 at the end, or -1 when too long. */
static int walk_next(struct walk *w, char *name, size_t namelen, char *err, size_t errlen)
{
    size_t n;

    while (w->todo[w->pos] == '/')
        w->pos++;
    if (w->todo[w->pos] == '\0')
        return 0;
    n = strcspn(w->todo + w->pos, "/");
    if (n >= namelen)
        return say(err, errlen, "%s/%.32s...: name too long", shown_at(w->at),
                   w->todo + w->pos);
    memcpy(name, w->todo + w->pos, n);
    name[n] = '\0';
    w->pos += n;
    return 1;
}

/* The physical path of name inside the walk's directory, for messages. */
static int walk_join(const struct walk *w, const char *name, char *out, size_t outlen)
{
    if (strcmp(name, "..") == 0) {
        const char *slash = strrchr(w->at, '/');
        size_t n = slash != NULL ? (size_t)(slash - w->at) : 0;

        memcpy(out, w->at, n);
        out[n] = '\0';
        return 0;
    }
    return str_fmt(out, outlen, "%s/%s", w->at, name);
}

/*
 * A link is followed only when root owns it: in a trusted directory nobody else can
 * have made it, and one that somebody else made (in /tmp, say) could point anywhere.
 * Its target replaces its name in what is left to resolve.
 */
static int walk_link(struct walk *w, const char *name, const struct stat *st, const char *path,
                     char *err, size_t errlen)
{
    char target[PATH_MAX], rest[PATH_MAX];
    ssize_t n;

    if (!trusted_uid(st->st_uid))
        return say(err, errlen, "%s is a symbolic link owned by uid %u: only root's links "
                   "are followed", path, (unsigned)st->st_uid);
    if (++w->links > MAX_LINKS)
        return say(err, errlen, "%s: too many levels of symbolic links", path);
    n = readlinkat(w->fd, name, target, sizeof(target) - 1);
    if (n <= 0)
        return say(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "empty link");
    target[n] = '\0';
    if (str_lcpy(rest, w->todo + w->pos, sizeof(rest)) >= sizeof(rest) ||
        str_fmt(w->todo, sizeof(w->todo), "%s/%s", target, rest) != 0)
        return say(err, errlen, "%s: path too long after following the link", path);
    w->pos = 0;
    return target[0] == '/' ? walk_root(w, err, errlen) : 0;
}

/* Enters name; path is its physical path ("" for "/"), kept for the next messages. */
static int walk_descend(struct walk *w, const char *name, const char *path, char *err,
                        size_t errlen)
{
    struct stat st;
    int fd = openat(w->fd, name, DIR_OPEN);

    if (fd < 0)
        return open_failed(w->fd, name, shown_at(path), err, errlen);
    if (fstat(fd, &st) != 0) {
        say(err, errlen, "%s: %s", shown_at(path), strerror(errno));
        close(fd);
        return -1;
    }
    if (check_trusted(&st, shown_at(path), err, errlen) != 0) {
        close(fd);
        return -1;
    }
    close(w->fd);
    w->fd = fd;
    str_lcpy(w->at, path, sizeof(w->at));
    return 0;
}

static int walk_step(struct walk *w, const char *name, int flags, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct stat st;

    if (strcmp(name, ".") == 0)
        return 0;
    if (walk_join(w, name, path, sizeof(path)) != 0)
        return say(err, errlen, "%s/%s: path too long", shown_at(w->at), name);
    if (fstatat(w->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
        if (errno != ENOENT || !(flags & SAFEDIR_CREATE))
            return say(err, errlen, "%s: %s", shown_at(path), strerror(errno));
        if (mkdirat(w->fd, name, 0755) != 0 && errno != EEXIST)
            return say(err, errlen, "cannot create %s: %s", path, strerror(errno));
        if (fstatat(w->fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            return say(err, errlen, "%s: %s", path, strerror(errno));
    }
    if (S_ISLNK(st.st_mode))
        return walk_link(w, name, &st, shown_at(path), err, errlen);
    return walk_descend(w, name, path, err, errlen);
}

int safedir_open_trusted(const char *path, int flags, char *err, size_t errlen)
{
    struct walk w;
    char name[NAME_MAX + 1];
    int rc;

    memset(&w, 0, sizeof(w));
    w.fd = -1;
    if (path[0] != '/')
        return say(err, errlen, "%s is not an absolute path", path);
    if (str_lcpy(w.todo, path, sizeof(w.todo)) >= sizeof(w.todo))
        return say(err, errlen, "%.64s...: path too long", path);
    if (walk_root(&w, err, errlen) != 0)
        return -1;
    while ((rc = walk_next(&w, name, sizeof(name), err, errlen)) == 1)
        if (walk_step(&w, name, flags, err, errlen) != 0)
            break;
    if (rc != 0) {
        close(w.fd);
        return -1;
    }
    return w.fd;
}

int safedir_open_parent(const char *path, char *base, size_t baselen, int flags, char *err,
                        size_t errlen)
{
    char dir[PATH_MAX];
    char *slash;
    size_t n;

    if (path[0] != '/')
        return say(err, errlen, "%s is not an absolute path", path);
    if (str_lcpy(dir, path, sizeof(dir)) >= sizeof(dir))
        return say(err, errlen, "%.64s...: path too long", path);
    for (n = strlen(dir); n > 1 && dir[n - 1] == '/'; n--)
        dir[n - 1] = '\0';
    slash = strrchr(dir, '/');
    if (slash[1] == '\0' || strcmp(slash + 1, ".") == 0 || strcmp(slash + 1, "..") == 0)
        return say(err, errlen, "%s does not end in the name of a directory", path);
    if (str_lcpy(base, slash + 1, baselen) >= baselen)
        return say(err, errlen, "%s: name too long", path);
    if (slash == dir)
        slash[1] = '\0';
    else
        *slash = '\0';
    return safedir_open_trusted(dir, flags, err, errlen);
}

/* ---- owned directories ----------------------------------------------------------- */

/*
 * Root's own directories are accepted too: the ones root has just made, or an
 * admin made with mkdir. The user cannot bring a directory of root's here: moving
 * a directory into another one needs write permission on it, which the mode check
 * below refuses.
 */
static int check_owned(const struct stat *st, const char *shown,
                       const struct safedir_owner *owner, char *err, size_t errlen)
{
    if (!S_ISDIR(st->st_mode))
        return say(err, errlen, "%s is not a directory", shown);
    if (st->st_uid != owner->uid && st->st_uid != 0)
        return say(err, errlen, "%s is owned by uid %u, expected %s", shown,
                   (unsigned)st->st_uid, owner->name);
    if ((st->st_mode & 022) != 0)
        return say(err, errlen, "%s: mode allows group/other write (%04o)", shown,
                   (unsigned)(st->st_mode & 07777));
    return 0;
}

static int adopt(int fd, const struct stat *st, const char *shown,
                 const struct safedir_owner *owner, char *err, size_t errlen)
{
    if (geteuid() == 0 && (st->st_uid != owner->uid || st->st_gid != owner->gid) &&
        fchown(fd, owner->uid, owner->gid) != 0)
        return say(err, errlen, "cannot give %s to %s: %s", shown, owner->name,
                   strerror(errno));
    if ((st->st_mode & 07777) != 0700 && fchmod(fd, 0700) != 0)
        return say(err, errlen, "cannot set mode 0700 on %s: %s", shown, strerror(errno));
    return 0;
}

int safedir_open_owned(int dirfd, const char *name, const char *shown,
                       const struct safedir_owner *owner, int flags, char *err, size_t errlen)
{
    struct stat st;
    int fd = openat(dirfd, name, DIR_OPEN);

    if (fd < 0 && errno == ENOENT && (flags & SAFEDIR_CREATE)) {
        if (mkdirat(dirfd, name, 0700) != 0 && errno != EEXIST)
            return say(err, errlen, "cannot create %s: %s", shown, strerror(errno));
        fd = openat(dirfd, name, DIR_OPEN);
    }
    if (fd < 0)
        return open_failed(dirfd, name, shown, err, errlen);
    if (fstat(fd, &st) != 0) {
        say(err, errlen, "%s: %s", shown, strerror(errno));
        close(fd);
        return -1;
    }
    if (check_owned(&st, shown, owner, err, errlen) != 0 ||
        ((flags & SAFEDIR_ADOPT) && adopt(fd, &st, shown, owner, err, errlen) != 0)) {
        close(fd);
        return -1;
    }
    return fd;
}

int safedir_open_owned_path(const char *path, const struct safedir_owner *owner, int flags,
                            char *err, size_t errlen)
{
    char base[NAME_MAX + 1];
    int parent, fd;

    parent = safedir_open_parent(path, base, sizeof(base), flags & SAFEDIR_CREATE, err, errlen);
    if (parent < 0)
        return -1;
    fd = safedir_open_owned(parent, base, path, owner, flags, err, errlen);
    close(parent);
    return fd;
}
