/*
 * submitd-durable-floor: the least a submission server that keeps DESIGN's promises
 * must ask of the file system for each message, done in a loop (make bench).
 *
 *     submitd-durable-floor DIR MESSAGES SIZE BATCH
 *
 * For each message, with nothing else around it, and in batches of BATCH messages
 * that share what can be shared (a server with BATCH sessions committing at once at
 * best shares a directory sync and a log sync):
 *   - the spool file: create it with O_EXCL in DIR/incoming, write SIZE bytes, fsync
 *     it, rename it into DIR/queue; one fsync of that directory per batch (DESIGN
 *     section 4: all of this before the 250);
 *   - the accept audit row: append one 4 KiB page to DIR/log per message and one
 *     fdatasync per batch (the least a durable database commit costs: SQLite in WAL
 *     mode appends a page and its frame header and syncs the log);
 *   - after the relay, remove the spool file.
 * No parsing, no TLS, no SMTP, no database: a floor under the CPU submitd spends per
 * message, not a model of it. The benchmark reads the machine's CPU around the run,
 * because much of this work (block I/O completion, writeback) is done outside the
 * process; the process's own CPU per message is printed as a check:
 *
 *     durable-floor: messages=N process_cpu_us=X
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "floor_args.h"

#define PAGE 4096

static void die(const char *what, const char *name)
{
    fprintf(stderr, "submitd-durable-floor: %s %s: %s\n", what, name, strerror(errno));
    exit(1);
}

static int open_dir(const char *dir, const char *sub)
{
    char path[PATH_MAX];
    int fd;

    if (snprintf(path, sizeof(path), "%s/%s", dir, sub) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        die("cannot use", dir);
    }
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        die("cannot create", path);
    if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        die("cannot open", path);
    return fd;
}

static void write_all(int fd, const char *buf, size_t len, const char *name)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("cannot write", name);
        buf += n;
        len -= (size_t)n;
    }
}

static double cpu_us(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0)
        die("cannot read", "getrusage");
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

int main(int argc, char **argv)
{
    static char page[PAGE];
    char *body;
    long messages, size, batch;
    int incoming, queue, root, log;
    double c0;

    if (argc != 5) {
        fprintf(stderr, "usage: submitd-durable-floor DIR MESSAGES SIZE BATCH\n");
        return 2;
    }
    messages = floor_number("submitd-durable-floor", argv[2], 10000000);
    size = floor_number("submitd-durable-floor", argv[3], 64L * 1024 * 1024);
    batch = floor_number("submitd-durable-floor", argv[4], 1024);
    if ((body = malloc((size_t)size)) == NULL)
        die("cannot allocate", "the message");
    memset(body, 'x', (size_t)size);
    memset(page, 'a', sizeof(page));
    if (mkdir(argv[1], 0700) != 0 && errno != EEXIST)
        die("cannot create", argv[1]);
    incoming = open_dir(argv[1], "incoming");
    queue = open_dir(argv[1], "queue");
    if ((root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        die("cannot open", argv[1]);
    if ((log = openat(root, "log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0)
        die("cannot open", "log");

    c0 = cpu_us();
    for (long first = 0; first < messages; first += batch) {
        long n = messages - first < batch ? messages - first : batch;
        char name[32];

        for (long i = first; i < first + n; i++) {
            int fd;

            (void)snprintf(name, sizeof(name), "m%ld", i);
            fd = openat(incoming, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
            if (fd < 0)
                die("cannot create", name);
            write_all(fd, body, (size_t)size, name);
            if (fsync(fd) != 0)
                die("cannot sync", name);
            close(fd);
            if (renameat(incoming, name, queue, name) != 0)
                die("cannot rename", name);
            write_all(log, page, sizeof(page), "log");
        }
        if (fsync(queue) != 0)
            die("cannot sync", "the queue directory");
        if (fdatasync(log) != 0)
            die("cannot sync", "log");
        for (long i = first; i < first + n; i++) {
            (void)snprintf(name, sizeof(name), "m%ld", i);
            if (unlinkat(queue, name, 0) != 0)
                die("cannot remove", name);
        }
    }
    printf("durable-floor: messages=%ld batch=%ld process_cpu_us=%.1f\n", messages, batch,
           (cpu_us() - c0) / (double)messages);
    free(body);
    close(log);
    (void)unlinkat(root, "log", 0);
    close(root);
    close(queue);
    close(incoming);
    return 0;
}
