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

struct queue_dirs qdirs = { .incoming_fd = -1, .queue_fd = -1 };

void store_init(const char *spool)
{
    str_fmt(qdirs.incoming, sizeof(qdirs.incoming), "%s/incoming", spool);
    str_fmt(qdirs.queue, sizeof(qdirs.queue), "%s/queue", spool);
    str_fmt(qdirs.corrupt, sizeof(qdirs.corrupt), "%s/corrupt", spool);
}

void store_open_dirs(void)
{
    qdirs.incoming_fd = open(qdirs.incoming, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (qdirs.incoming_fd < 0)
        fatal("%s: %s", qdirs.incoming, strerror(errno));
    qdirs.queue_fd = open(qdirs.queue, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (qdirs.queue_fd < 0)
        fatal("%s: %s", qdirs.queue, strerror(errno));
}

int store_sync_queue_dir(void)
{
    return fsync(qdirs.queue_fd);
}

/* Writes msg to incoming/NAME (created exclusively) and fsyncs it. */
static int write_file(const char *name, const struct spool_msg *msg, char *err, size_t errlen)
{
    int dir = qdirs.incoming_fd;
    int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (fd < 0 && errno == EEXIST) {
        /* A leftover of an interrupted rewrite of the same message. */
        (void)unlinkat(dir, name, 0);
        fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (fd < 0) {
        str_fmt(err, errlen, "cannot create %s/%s: %s", qdirs.incoming, name, strerror(errno));
        return -1;
    }
    if (spool_write(fd, msg) != 0 || fsync(fd) != 0) {
        str_fmt(err, errlen, "cannot write %s/%s: %s", qdirs.incoming, name, strerror(errno));
        close(fd);
        unlinkat(dir, name, 0);
        return -1;
    }
    if (close(fd) != 0) {
        str_fmt(err, errlen, "cannot write %s/%s: %s", qdirs.incoming, name, strerror(errno));
        unlinkat(dir, name, 0);
        return -1;
    }
    return 0;
}

int store_save(const struct spool_msg *msg, char *err, size_t errlen)
{
    char tmp[SPOOL_ID_LEN + 8];
    int in = qdirs.incoming_fd, q = qdirs.queue_fd;

    str_fmt(tmp, sizeof(tmp), "%s.state", msg->id);
    if (write_file(tmp, msg, err, errlen) != 0)
        return -1;
    /*
     * An exchange, not a rename: when an administrator deleted the message meanwhile
     * it fails with ENOENT instead of bringing the message back.
     */
    if (renameat2(in, tmp, q, msg->id, RENAME_EXCHANGE) != 0) {
        if (errno == ENOENT) {
            unlinkat(in, tmp, 0);
            return 1;
        }
        if (errno != EINVAL && errno != ENOSYS) {
            str_fmt(err, errlen, "cannot replace %s/%s: %s", qdirs.queue, msg->id,
                    strerror(errno));
            unlinkat(in, tmp, 0);
            return -1;
        }
        /* A file system without RENAME_EXCHANGE: a plain rename, checked first. */
        if (faccessat(q, msg->id, F_OK, 0) != 0) {
            unlinkat(in, tmp, 0);
            return 1;
        }
        if (renameat(in, tmp, q, msg->id) != 0) {
            str_fmt(err, errlen, "cannot replace %s/%s: %s", qdirs.queue, msg->id,
                    strerror(errno));
            unlinkat(in, tmp, 0);
            return -1;
        }
    } else {
        /* tmp now holds the old version. */
        (void)unlinkat(in, tmp, 0);
    }
    if (store_sync_queue_dir() != 0) {
        str_fmt(err, errlen, "fsync %s: %s", qdirs.queue, strerror(errno));
        return -1;
    }
    return 0;
}

int store_create(const struct spool_msg *msg, char *err, size_t errlen)
{
    if (write_file(msg->id, msg, err, errlen) != 0)
        return -1;
    if (renameat(qdirs.incoming_fd, msg->id, qdirs.queue_fd, msg->id) != 0) {
        str_fmt(err, errlen, "cannot rename %s/%s: %s", qdirs.incoming, msg->id,
                strerror(errno));
        unlinkat(qdirs.incoming_fd, msg->id, 0);
        return -1;
    }
    if (store_sync_queue_dir() != 0) {
        str_fmt(err, errlen, "fsync %s: %s", qdirs.queue, strerror(errno));
        return -1;
    }
    return 0;
}

int store_remove(const char *id)
{
    if (unlinkat(qdirs.queue_fd, id, 0) != 0 && errno != ENOENT) {
        log_err("id=%s done but cannot remove %s/%s: %s", id, qdirs.queue, id, strerror(errno));
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
