/* submit-admin's queue commands: list, flush, delete. */
#include "admin_queue.h"

#include "config.h"
#include "db.h"
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
#include <time.h>
#include <unistd.h>

#define PROG "submit-admin"
#define QUEUE_PROCESS "submitd-queue"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static const char queue_usage[] =
    "usage: " PROG " [-c FILE] queue list [--json] | queue flush | queue delete ID\n";

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, PROG ": %s: %s\n", what, detail);
    return EXIT_FAIL;
}

static int misuse(const char *detail)
{
    fprintf(stderr, PROG ": %s\n%s", detail, queue_usage);
    return EXIT_USAGE;
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

static void put_json(const char *s)
{
    fputc('"', stdout);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\u%04x", c);
        else if (c >= 0x80)
            fputs("\\ufffd", stdout);  /* the spool holds ASCII; anything else is shown as such */
        else
            fputc(c, stdout);
    }
    fputc('"', stdout);
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
    put_json(m->id);
    printf(",\"arrival\":\"%s\",\"user\":", arrival);
    put_json(m->user);
    fputs(",\"sender\":", stdout);
    put_json(m->from);
    printf(",\"size\":%zu,\"attempts\":%d,\"next_attempt\":\"%s\",\"last_reply\":", m->body_len,
           m->attempts, next);
    put_json(m->last);
    fputs(",\"recipients\":[", stdout);
    for (int i = 0; i < m->nrcpt; i++) {
        printf("%s{\"address\":", i ? "," : "");
        put_json(m->rcpt[i]);
        printf(",\"state\":\"%s\",\"reply\":", state_name(m->rstate[i]));
        put_json(m->rreply[i] ? m->rreply[i] : "");
        fputc('}', stdout);
    }
    fputs("]}", stdout);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The queue ids in spool/queue, sorted (ids sort by arrival). */
static int read_ids(const char *dir, char ***out, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **ids = NULL;
    size_t cap = 0;

    *n = 0;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (!spool_id_valid(de->d_name))
            continue;
        if (*n == cap) {
            char **p = realloc(ids, (cap = cap ? cap * 2 : 64) * sizeof(*p));
            if (p == NULL)
                break;
            ids = p;
        }
        ids[*n] = strdup(de->d_name);
        if (ids[*n] == NULL)
            break;
        (*n)++;
    }
    closedir(d);
    if (*n > 0)
        qsort(ids, *n, sizeof(*ids), by_name);
    *out = ids;
    return 0;
}

static int queue_list(const struct config *cfg, int json)
{
    char dir[PATH_MAX];
    char **ids;
    size_t n;
    int first = 1, bad = 0;

    str_fmt(dir, sizeof(dir), "%s/queue", cfg->spool);
    if (read_ids(dir, &ids, &n) != 0)
        return fail(dir, strerror(errno));
    if (json)
        fputc('[', stdout);
    for (size_t i = 0; i < n; i++) {
        struct spool_msg m;
        char path[PATH_MAX], why[512];

        str_fmt(path, sizeof(path), "%s/%s", dir, ids[i]);
        if (spool_load_envelope(path, &m, why, sizeof(why)) != 0) {
            /* Delivered or deleted since the directory was read: not an error. */
            if (access(path, F_OK) == 0) {
                fprintf(stderr, PROG ": %s: %s\n", path, why);
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
    return bad ? EXIT_FAIL : EXIT_OK;
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
    char err[PATH_MAX + 256], rcpts[2048] = "";
    struct db_audit row;
    struct db *db;
    size_t pos = 0;

    db = db_open(cfg->database, err, sizeof(err));
    if (db == NULL) {
        fprintf(stderr, PROG ": audit row not written: %s\n", err);
        return;
    }
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
    db_close(db);
}

/* ---- flush and delete --------------------------------------------------- */

/* The pid in spool/queue.pid when it is a running queue process, else 0. */
static pid_t queue_pid(const struct config *cfg, char *why, size_t whylen)
{
    char path[PATH_MAX], buf[64], comm[64];
    long long pid;
    ssize_t n;
    int fd;

    str_fmt(path, sizeof(path), "%s/queue.pid", cfg->spool);
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        str_fmt(why, whylen, "%s: %s (is submitd running?)", path, strerror(errno));
        return 0;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (str_to_ll(buf, 2, INT32_MAX, &pid) != 0) {
        str_fmt(why, whylen, "%s: no process id in it", path);
        return 0;
    }
    /* A stale file must not make us signal some other process. */
    str_fmt(path, sizeof(path), "/proc/%lld/comm", pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    n = fd >= 0 ? read(fd, comm, sizeof(comm) - 1) : -1;
    if (fd >= 0)
        close(fd);
    comm[n > 0 ? n : 0] = '\0';
    comm[strcspn(comm, "\n")] = '\0';
    if (strcmp(comm, QUEUE_PROCESS) != 0) {
        str_fmt(why, whylen, "process %lld named in %s/queue.pid is not running "
                "(is submitd running?)", pid, cfg->spool);
        return 0;
    }
    return (pid_t)pid;
}

static int queue_flush(const struct config *cfg)
{
    char why[PATH_MAX + 128], reason[256];
    pid_t pid = queue_pid(cfg, why, sizeof(why));

    if (pid == 0)
        return fail("queue flush", why);
    if (kill(pid, SIGUSR1) != 0) {
        str_fmt(why, sizeof(why), "cannot signal the queue process %ld: %s", (long)pid,
                strerror(errno));
        return fail("queue flush", why);
    }
    str_fmt(reason, sizeof(reason), "flush requested by %s", admin_name());
    audit(cfg, "queue-flush", NULL, reason);
    printf("queue flush: every queued message is due now (queue process %ld)\n", (long)pid);
    return EXIT_OK;
}

static int queue_delete(const struct config *cfg, const char *id)
{
    char path[PATH_MAX], why[512], reason[256];
    struct spool_msg m;
    int loaded;

    if (!spool_id_valid(id))
        return misuse("queue delete: expected a queue id (20 characters of 0-9 A-Z)");
    str_fmt(path, sizeof(path), "%s/queue/%s", cfg->spool, id);
    loaded = spool_load_envelope(path, &m, why, sizeof(why)) == 0;
    if (unlink(path) != 0) {
        if (loaded)
            spool_msg_free(&m);
        if (errno == ENOENT) {
            str_fmt(why, sizeof(why), "no message %s in %s/queue (delivered already?)", id,
                    cfg->spool);
            return fail("queue delete", why);
        }
        return fail(path, strerror(errno));
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

int admin_queue(const char *config_path, int argc, char **argv)
{
    static struct config cfg;
    char err[PATH_MAX + 512];
    int json = 0;

    if (argc < 1)
        return misuse("queue: missing subcommand");
    if (strcmp(argv[0], "list") == 0) {
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--json") != 0)
                return misuse("queue list: unexpected argument");
            json = 1;
        }
    } else if (strcmp(argv[0], "flush") == 0) {
        if (argc != 1)
            return misuse("queue flush: unexpected argument");
    } else if (strcmp(argv[0], "delete") == 0) {
        if (argc != 2)
            return misuse("queue delete: expected one queue id");
    } else {
        return misuse("queue: unknown subcommand");
    }
    if (config_load(&cfg, config_path, err, sizeof(err)) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return EXIT_FAIL;
    }
    if (strcmp(argv[0], "list") == 0)
        return queue_list(&cfg, json);
    if (strcmp(argv[0], "flush") == 0)
        return queue_flush(&cfg);
    return queue_delete(&cfg, argv[1]);
}
