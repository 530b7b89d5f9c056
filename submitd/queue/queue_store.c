/* Durable rewrites, creations and removals of queue files. */
#include "queue_store.h"

#include "log.h"
#include "spool.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct queue_dirs qdirs;

void store_init(const char *spool)
{
    str_fmt(qdirs.incoming, sizeof(qdirs.incoming), "%s/incoming", spool);
    str_fmt(qdirs.queue, sizeof(qdirs.queue), "%s/queue", spool);
    str_fmt(qdirs.corrupt, sizeof(qdirs.corrupt), "%s/corrupt", spool);
}

/* Writes msg to path (created exclusively) and fsyncs it. */
static int write_file(const char *path, const struct spool_msg *msg, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (fd < 0 && errno == EEXIST) {
        /* A leftover of an interrupted rewrite of the same message. */
        (void)unlink(path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (fd < 0) {
        str_fmt(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    if (spool_write(fd, msg) != 0 || fsync(fd) != 0) {
        str_fmt(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    if (close(fd) != 0) {
        str_fmt(err, errlen, "cannot write %s: %s", path, strerror(errno));
        unlink(path);
        return -1;
    }
    return 0;
}

int store_save(const struct spool_msg *msg, char *err, size_t errlen)
{
    char tmp[PATH_MAX], dst[PATH_MAX];

    str_fmt(tmp, sizeof(tmp), "%s/%s.state", qdirs.incoming, msg->id);
    str_fmt(dst, sizeof(dst), "%s/%s", qdirs.queue, msg->id);
    if (write_file(tmp, msg, err, errlen) != 0)
        return -1;
    /*
     * An exchange, not a rename: when an administrator deleted the message meanwhile
     * it fails with ENOENT instead of bringing the message back.
     */
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dst, RENAME_EXCHANGE) != 0) {
        if (errno == ENOENT) {
            unlink(tmp);
            return 1;
        }
        if (errno != EINVAL && errno != ENOSYS) {
            str_fmt(err, errlen, "cannot replace %s: %s", dst, strerror(errno));
            unlink(tmp);
            return -1;
        }
        /* A file system without RENAME_EXCHANGE: a plain rename, checked first. */
        if (access(dst, F_OK) != 0) {
            unlink(tmp);
            return 1;
        }
        if (rename(tmp, dst) != 0) {
            str_fmt(err, errlen, "cannot replace %s: %s", dst, strerror(errno));
            unlink(tmp);
            return -1;
        }
    } else {
        /* tmp now holds the old version. */
        (void)unlink(tmp);
    }
    if (fsync_dir(qdirs.queue) != 0) {
        str_fmt(err, errlen, "fsync %s: %s", qdirs.queue, strerror(errno));
        return -1;
    }
    return 0;
}

int store_create(const struct spool_msg *msg, char *err, size_t errlen)
{
    char tmp[PATH_MAX], dst[PATH_MAX];

    str_fmt(tmp, sizeof(tmp), "%s/%s", qdirs.incoming, msg->id);
    str_fmt(dst, sizeof(dst), "%s/%s", qdirs.queue, msg->id);
    if (write_file(tmp, msg, err, errlen) != 0)
        return -1;
    if (rename(tmp, dst) != 0) {
        str_fmt(err, errlen, "cannot rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (fsync_dir(qdirs.queue) != 0) {
        str_fmt(err, errlen, "fsync %s: %s", qdirs.queue, strerror(errno));
        return -1;
    }
    return 0;
}

int store_remove(const char *id)
{
    char path[PATH_MAX];

    str_fmt(path, sizeof(path), "%s/%s", qdirs.queue, id);
    if (unlink(path) != 0 && errno != ENOENT) {
        log_err("id=%s done but cannot remove %s: %s", id, path, strerror(errno));
        return -1;
    }
    /*
     * Not fsynced at once: a removal lost in a crash only means the file is sent
     * again (at-least-once), and a directory fsync per message would halve the
     * relay rate. The next commit's directory fsync makes it durable.
     */
    return 0;
}

void store_quarantine(const char *id, const char *why)
{
    char from[PATH_MAX], to[PATH_MAX];

    str_fmt(from, sizeof(from), "%s/%s", qdirs.queue, id);
    str_fmt(to, sizeof(to), "%s/%s", qdirs.corrupt, id);
    if (rename(from, to) != 0)
        log_err("id=%s spool file is corrupt (%s) and cannot be moved to %s: %s", id, why,
                qdirs.corrupt, strerror(errno));
    else
        log_err("id=%s spool file is corrupt (%s): moved to %s, never relayed", id, why, to);
}
