/* submit-admin's queue commands: list, flush, delete. */
#include "admin_queue.h"

#include "admin.h"
#include "admin_log.h"
#include "cli_db.h"
#include "cli_out.h"

#include "config.h"
#include "db.h"
#include "privdrop.h"
#include "safedir.h"
#include "spool.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PROG "submit-admin"
#define QUEUE_PROCESS "submitd-queue"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

const char admin_queue_usage[] =
    "usage: " PROG " [-c FILE] queue list [--json] | queue flush | queue delete ID\n";

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, PROG ": %s: %s\n", what, detail);
    return EXIT_FAIL;
}

static int misuse(const char *detail)
{
    return cli_misuse(&admin_prog, admin_queue_usage, "%s", detail);
}

/* Misuse naming the word at fault. */
static int misuse_word(const char *detail, const char *word)
{
    return cli_misuse(&admin_prog, admin_queue_usage, "%s \"%s\"", detail, word);
}

/* ---- the spool, opened without following the user's links ----------------- */

/*
 * The spool belongs to the daemon user, who can put a link or a FIFO anywhere in
 * it to make root read, delete or signal something else. So every level is opened
 * with O_NOFOLLOW and checked (safedir.h: a directory of the user's or root's, in a
 * directory only root can change), and the files are reached with openat() and
 * unlinkat() relative to that descriptor, never by path. Nothing is created or
 * chowned: that is the master's job at start.
 */
static int spool_owner(const struct config *cfg, struct safedir_owner *o, char *why,
                       size_t whylen)
{
    if (privdrop_lookup(cfg->user, &o->uid, &o->gid) != 0) {
        str_fmt(why, whylen, "%s: user: \"%s\" does not exist", cfg->path, cfg->user);
        return -1;
    }
    o->name = cfg->user;
    return 0;
}

/* The spool (sub NULL) or one of its directories; -1 with the reason in why. */
static int spool_open(const struct config *cfg, const struct safedir_owner *o, const char *sub,
                      char *why, size_t whylen)
{
    char path[PATH_MAX];
    int spool, fd;

    spool = safedir_open_owned_path(cfg->spool, o, 0, why, whylen);
    if (spool < 0 || sub == NULL)
        return spool;
    str_fmt(path, sizeof(path), "%s/%s", cfg->spool, sub);
    fd = safedir_open_owned(spool, sub, path, o, 0, why, whylen);
    close(spool);
    return fd;
}

/* ---- output ------------------------------------------------------------- */

/* Plain output: tab-separated columns, so anything but printable ASCII is '?'. */
static void put_plain(const char *s)
{
    if (*s == '\0') {
        fputc('-', stdout);
        return;
    }
    for (; *s; s++)
        fputc((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f ? *s : '?', stdout);
}

static const char *state_name(char st)
{
    switch (st) {
    case SPOOL_RCPT_DELIVERED:
        return "delivered";
    case SPOOL_RCPT_FAILED:
        return "failed";
    case SPOOL_RCPT_REPORTED:
        return "bounced";
    default:
        return "pending";
    }
}

static void iso_or_now(char *out, size_t outlen, long long t)
{
    if (t <= (long long)time(NULL))
        str_lcpy(out, "now", outlen);
    else
        iso_time_utc(out, outlen, t);
}

static void list_plain(const struct spool_msg *m)
{
    char arrival[32], next[32];

    iso_time_utc(arrival, sizeof(arrival), m->time);
    iso_or_now(next, sizeof(next), m->next);
    put_plain(m->id);
    printf("\t%s\t", arrival);
    put_plain(m->user);
    fputc('\t', stdout);
    if (m->from[0] == '\0')
        fputs("<>", stdout);
    else
        put_plain(m->from);
    printf("\t%zu\t%d\t%s\t", m->body_len, m->attempts, next);
    for (int i = 0; i < m->nrcpt; i++) {
        if (i)
            fputc(',', stdout);
        put_plain(m->rcpt[i]);
        printf("=%s", state_name(m->rstate[i]));
    }
    fputc('\t', stdout);
    put_plain(m->last);
    fputc('\n', stdout);
}

static void list_json(const struct spool_msg *m, int first)
{
    char arrival[32], next[32];

    iso_time_utc(arrival, sizeof(arrival), m->time);
    iso_or_now(next, sizeof(next), m->next);
    printf("%s{\"id\":", first ? "" : ",");
    cli_json_string(stdout, m->id);
    printf(",\"arrival\":\"%s\",\"user\":", arrival);
    cli_json_string(stdout, m->user);
    fputs(",\"sender\":", stdout);
    cli_json_string(stdout, m->from);
    printf(",\"size\":%zu,\"attempts\":%d,\"next_attempt\":\"%s\",\"last_reply\":", m->body_len,
           m->attempts, next);
    cli_json_string(stdout, m->last);
    fputs(",\"recipients\":[", stdout);
    for (int i = 0; i < m->nrcpt; i++) {
        printf("%s{\"address\":", i ? "," : "");
        cli_json_string(stdout, m->rcpt[i]);
        printf(",\"state\":\"%s\",\"reply\":", state_name(m->rstate[i]));
        cli_json_string(stdout, m->rreply[i] ? m->rreply[i] : "");
        fputc('}', stdout);
    }
    fputs("]}", stdout);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The queue ids in the directory qfd (spool/queue), sorted (ids sort by arrival). */
static int read_ids(int qfd, char ***out, size_t *n)
{
    int fd = dup(qfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct dirent *de;
    char **ids = NULL;
    size_t cap = 0;

    *n = 0;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        if (!spool_id_valid(de->d_name))
            continue;
        if (*n == cap) {
            char **p = realloc(ids, (cap = cap ? cap * 2 : 64) * sizeof(*p));
            if (p == NULL)
                break;
            ids = p;
        }
        char *id = strdup(de->d_name);

        if (id == NULL)
            break;
        ids[(*n)++] = id;
    }
    closedir(d);
    if (*n > 0)
        qsort(ids, *n, sizeof(*ids), by_name);
    *out = ids;
    return 0;
}

static int queue_list(const struct config *cfg, int json)
{
    struct safedir_owner owner;
    char dir[PATH_MAX], why[PATH_MAX + 256];
    char **ids = NULL;
    size_t n;
    int first = 1, bad = 0, qfd;

    if (spool_owner(cfg, &owner, why, sizeof(why)) != 0 ||
        (qfd = spool_open(cfg, &owner, "queue", why, sizeof(why))) < 0)
        return fail("queue list", why);
    str_fmt(dir, sizeof(dir), "%s/queue", cfg->spool);
    if (read_ids(qfd, &ids, &n) != 0) {
        int saved = errno;

        close(qfd);
        return fail(dir, strerror(saved));
    }
    if (json)
        fputc('[', stdout);
    for (size_t i = 0; i < n; i++) {
        struct spool_msg m;

        if (spool_load_envelope_at(qfd, ids[i], &m, why, sizeof(why)) != 0) {
            /* Delivered or deleted since the directory was read: not an error. */
            if (faccessat(qfd, ids[i], F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
                fprintf(stderr, PROG ": %s/%s: %s\n", dir, ids[i], why);
                bad = 1;
            }
            continue;
        }
        if (json)
            list_json(&m, first);
        else
            list_plain(&m);
        first = 0;
        spool_msg_free(&m);
    }
    if (json)
        fputs("]\n", stdout);
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    close(qfd);
    return bad ? EXIT_FAIL : EXIT_OK;
}

/* ---- summary, for stats ------------------------------------------------- */

int admin_queue_summary(const struct config *cfg, struct admin_queue_summary *qs, char *why,
                        size_t whylen)
{
    struct safedir_owner owner;
    char **ids = NULL;
    size_t n;
    int qfd;

    memset(qs, 0, sizeof(*qs));
    if (spool_owner(cfg, &owner, why, whylen) != 0 ||
        (qfd = spool_open(cfg, &owner, "queue", why, whylen)) < 0)
        return -1;
    if (read_ids(qfd, &ids, &n) != 0) {
        str_fmt(why, whylen, "%s/queue: %s", cfg->spool, strerror(errno));
        close(qfd);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char err[256];
        struct spool_msg m;

        if (spool_load_envelope_at(qfd, ids[i], &m, err, sizeof(err)) != 0) {
            /* Gone since the directory was read, or a file the queue cannot use. */
            if (faccessat(qfd, ids[i], F_OK, AT_SYMLINK_NOFOLLOW) == 0)
                qs->unreadable++;
        } else {
            qs->messages++;
            if (m.attempts > 0)
                qs->deferred++;
            if (qs->oldest == 0 || m.time < qs->oldest)
                qs->oldest = m.time;
            spool_msg_free(&m);
        }
        free(ids[i]);
    }
    free(ids);
    close(qfd);
    return 0;
}

/* ---- audit -------------------------------------------------------------- */

static const char *admin_name(void)
{
    const char *sudo = getenv("SUDO_USER");
    struct passwd *pw;

    if (sudo != NULL && *sudo != '\0')
        return sudo;
    pw = getpwuid(getuid());
    return pw != NULL ? pw->pw_name : "unknown";
}

static void audit(const struct config *cfg, const char *event, const struct spool_msg *m,
                  const char *reason)
{
    char rcpts[2048] = "";
    struct db_audit row;
    struct db *db;
    size_t pos = 0;

    db = cli_db_open(&admin_prog, cfg, "audit row not written");
    if (db == NULL)
        return;
    memset(&row, 0, sizeof(row));
    row.event = event;
    row.reason = reason;
    row.size = -1;
    if (m != NULL) {
        for (int i = 0; i < m->nrcpt && pos + strlen(m->rcpt[i]) + 2 < sizeof(rcpts); i++) {
            (void)snprintf(rcpts + pos, sizeof(rcpts) - pos, "%s%s", i ? "," : "", m->rcpt[i]);
            pos += strlen(rcpts + pos);
        }
        row.user = m->user[0] ? m->user : NULL;
        row.mail_from = m->from;
        row.rcpt = rcpts;
        row.queue_id = m->id;
        row.size = (long long)m->body_len;
        row.session = m->session[0] ? m->session : NULL;
    }
    if (db_audit_insert(db, &row) != DB_OK)
        fprintf(stderr, PROG ": audit row not written: %s\n", db_errmsg(db));
    /* The change is made in the spool, not in the database: the row follows it. */
    if (m != NULL)
        (void)admin_log_record(db, "queue delete", m->id, m->user[0] ? m->user : NULL, NULL,
                               "from=%s rcpts=%d", m->from[0] ? m->from : "-", m->nrcpt);
    else
        (void)admin_log_record(db, "queue flush", NULL, NULL, NULL, "%s", "");
    db_close(db);
}

/* ---- flush and delete --------------------------------------------------- */

/* The number in spool/queue.pid (a regular file, not a link); 0 with why if none. */
static long long read_pidfile(const struct config *cfg, int spool, char *why, size_t whylen)
{
    char buf[64];
    struct stat st;
    long long pid;
    ssize_t n = -1;
    int fd;

    fd = openat(spool, "queue.pid", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        str_fmt(why, whylen, "%s/queue.pid: %s (is submitd running?)", cfg->spool,
                strerror(errno));
        return 0;
    }
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (str_to_ll(buf, 2, INT32_MAX, &pid) != 0) {
        str_fmt(why, whylen, "%s/queue.pid: no process id in it", cfg->spool);
        return 0;
    }
    return pid;
}

/* Name and real, effective, saved and file-system uid of a process, from /proc. */
static int proc_identity(long long pid, char *name, size_t namelen, unsigned uids[4])
{
    char path[64], line[256];
    FILE *f;
    int got = 0;

    str_fmt(path, sizeof(path), "/proc/%lld/status", pid);
    if ((f = fopen(path, "re")) == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "Name:\t", 6) == 0) {
            line[strcspn(line, "\n")] = '\0';
            str_lcpy(name, line + 6, namelen);
            got |= 1;
        } else if (sscanf(line, "Uid: %u %u %u %u", &uids[0], &uids[1], &uids[2],
                          &uids[3]) == 4) {
            got |= 2;
        }
    }
    fclose(f);
    return got == 3 ? 0 : -1;
}

/*
 * The queue process named in spool/queue.pid, as a pidfd; -1 with why. The file
 * is the daemon user's, so the number in it may be any process: it is signalled
 * only when it is called submitd-queue and runs as the configured user (so the
 * signal is one that user could send itself). The pidfd is taken before the
 * check: if the number is reused meanwhile, the signal fails instead of reaching
 * a process that was never checked.
 */
static int queue_process(const struct config *cfg, long long *pid, char *why, size_t whylen)
{
    struct safedir_owner owner;
    char name[64] = "";
    unsigned uids[4];
    int spool, pidfd;

    if (spool_owner(cfg, &owner, why, whylen) != 0 ||
        (spool = spool_open(cfg, &owner, NULL, why, whylen)) < 0)
        return -1;
    *pid = read_pidfile(cfg, spool, why, whylen);
    close(spool);
    if (*pid == 0)
        return -1;
    pidfd = pidfd_open((pid_t)*pid, 0);
    if (pidfd < 0 || proc_identity(*pid, name, sizeof(name), uids) != 0 ||
        strcmp(name, QUEUE_PROCESS) != 0) {
        str_fmt(why, whylen, "process %lld named in %s/queue.pid is not running "
                "(is submitd running?)", *pid, cfg->spool);
        if (pidfd >= 0)
            close(pidfd);
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        if (uids[i] != (unsigned)owner.uid) {
            str_fmt(why, whylen, "process %lld named in %s/queue.pid is not the queue "
                    "process: it runs as uid %u, not as %s", *pid, cfg->spool, uids[i],
                    cfg->user);
            close(pidfd);
            return -1;
        }
    }
    return pidfd;
}

static int queue_flush(const struct config *cfg)
{
    char why[PATH_MAX + 256], reason[256];
    long long pid = 0;
    int pidfd = queue_process(cfg, &pid, why, sizeof(why));

    if (pidfd < 0)
        return fail("queue flush", why);
    if (pidfd_send_signal(pidfd, SIGUSR1, NULL, 0) != 0) {
        str_fmt(why, sizeof(why), "cannot signal the queue process %lld: %s", pid,
                strerror(errno));
        close(pidfd);
        return fail("queue flush", why);
    }
    close(pidfd);
    str_fmt(reason, sizeof(reason), "flush requested by %s", admin_name());
    audit(cfg, "queue-flush", NULL, reason);
    printf("queue flush: every queued message is due now (queue process %lld)\n", pid);
    return EXIT_OK;
}

static int queue_delete(const struct config *cfg, const char *id)
{
    struct safedir_owner owner;
    char why[PATH_MAX + 256], reason[256];
    struct spool_msg m;
    int loaded, qfd, rc, saved;

    if (!spool_id_valid(id))
        return misuse_word("queue delete: expected a queue id (20 characters of 0-9 A-Z), got", id);
    if (spool_owner(cfg, &owner, why, sizeof(why)) != 0 ||
        (qfd = spool_open(cfg, &owner, "queue", why, sizeof(why))) < 0)
        return fail("queue delete", why);
    loaded = spool_load_envelope_at(qfd, id, &m, why, sizeof(why)) == 0;
    rc = unlinkat(qfd, id, 0);
    saved = errno;
    close(qfd);
    if (rc != 0) {
        if (loaded)
            spool_msg_free(&m);
        if (saved == ENOENT) {
            str_fmt(why, sizeof(why), "no message %s in %s/queue (delivered already?)", id,
                    cfg->spool);
            return fail("queue delete", why);
        }
        str_fmt(why, sizeof(why), "%s/queue/%s", cfg->spool, id);
        return fail(why, strerror(saved));
    }
    str_fmt(reason, sizeof(reason), "deleted by %s", admin_name());
    if (!loaded) {
        memset(&m, 0, sizeof(m));
        str_lcpy(m.id, id, sizeof(m.id));
    }
    audit(cfg, "queue-delete", &m, reason);
    spool_msg_free(&m);
    printf("queue delete: %s removed\n", id);
    return EXIT_OK;
}

int admin_queue(const char *config_path, const char *sub, int argc, char **argv)
{
    static struct config cfg;
    int json = 0;

    if (strcmp(sub, "list") == 0) {
        for (int i = 0; i < argc; i++) {
            if (strcmp(argv[i], "--json") != 0)
                return misuse_word("queue list: unexpected argument", argv[i]);
            json = 1;
        }
    } else if (strcmp(sub, "flush") == 0) {
        if (argc != 0)
            return misuse_word("queue flush: unexpected argument", argv[0]);
    } else if (argc != 1) {
        return misuse("queue delete: expected one queue id");
    }
    if (cli_config_load(&admin_prog, &cfg, config_path) != 0)
        return EXIT_FAIL;
    if (strcmp(sub, "list") == 0)
        return queue_list(&cfg, json);
    if (strcmp(sub, "flush") == 0)
        return queue_flush(&cfg);
    return queue_delete(&cfg, argv[0]);
}
