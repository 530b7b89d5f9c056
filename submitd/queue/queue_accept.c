/* Taking messages from the smtp process (see queue_accept.h). */
#include "queue_accept.h"

#include "log.h"
#include "queue_authz.h"
#include "queue_content.h"
#include "queue_store.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GRANT_TIMEOUT_MS 5000
#define ACCEPT_TIMEOUT_MS 5000
#define ACCEPT_CHUNK 64            /* accepts asked before their answers are read */
#define REC_HDR 5                  /* type, 4-byte big-endian length */

/* A spool file handed to smtp and not yet committed or aborted. */
struct open_file {
    char id[SPOOL_ID_LEN + 1];
    int chan;
    char session[IPC_SESSION_MAX];
    char user[IPC_USER_MAX];
    char client_ip[IPC_IP_MAX];
    char mail_from[IPC_ADDR_MAX];
    char *rcpts;                   /* the recipients for the accept row, comma-separated */
    uint64_t nrcpt;
    unsigned char *env;            /* the envelope records as written */
    size_t env_len;
    int fd;                        /* the queue's own read-write descriptor, or -1 */
};

static struct open_file *files;
static int nfiles, max_files, nheld, max_held;

static uint64_t size_limit, header_limit;
static int header_from_check;

/* The larger of limit and max plus the fields smtp adds (none when max <= 0). */
static uint64_t raised(uint64_t limit, long long max)
{
    uint64_t v = max > 0 ? (uint64_t)max + SPOOL_ADDED_MAX : 0;

    return v > limit ? v : limit;
}

void accept_set_limits(long long max_message_size, long long max_header_size,
                       int check_header_from)
{
    size_limit = raised(size_limit, max_message_size);
    header_limit = raised(header_limit, max_header_size);
    header_from_check = check_header_from;
}

void accept_init(int max_open, int max_held_fds)
{
    max_files = max_open;
    max_held = max_held_fds < max_open ? max_held_fds : max_open;
    files = calloc((size_t)max_files, sizeof(*files));
    if (files == NULL)
        fatal("out of memory");
}

/* The queue's descriptor of f, now the caller's (-1 when it was not kept). */
static int take_fd(struct open_file *f)
{
    int fd = f->fd;

    if (fd >= 0)
        nheld--;
    f->fd = -1;
    return fd;
}

void accept_free(void)
{
    for (int i = 0; i < nfiles; i++) {
        int fd = take_fd(&files[i]);
        if (fd >= 0)
            close(fd);
        free(files[i].env);
        free(files[i].rcpts);
    }
    free(files);
    files = NULL;
    nfiles = 0;
}

static struct open_file *find_open(int chan, const char *id)
{
    for (int i = 0; i < nfiles; i++)
        if (files[i].chan == chan && strcmp(files[i].id, id) == 0)
            return &files[i];
    return NULL;
}

static void forget_open(struct open_file *f)
{
    int fd = take_fd(f);

    if (fd >= 0)
        close(fd);
    free(f->env);
    free(f->rcpts);
    *f = files[--nfiles];
}

static void answer(int chan, enum ipc_type type, uint64_t req, int status, const char *id,
                   const char *why, int pass_fd, struct ipc_msg *m)
{
    struct ipc_queue_answer a;

    memset(&a, 0, sizeof(a));
    a.status = status;
    str_lcpy(a.queue_id, id, sizeof(a.queue_id));
    str_lcpy(a.reason, why, sizeof(a.reason));
    if (ipc_enc_queue_answer(m, type, req, &a) != 0)
        fatal("cannot encode the answer to smtp");
    m->fd = pass_fd;
    /* smtp reads its answers at every turn: 4 MiB of them unread is a broken smtp. */
    if (ipc_send(chan, m) != 0)
        fatal("cannot answer smtp: %s", strerror(errno));
}

/* ---- OPEN ---------------------------------------------------------------------- */

/* Why the envelope cannot be written as it is, or NULL. */
static const char *envelope_unsafe(const struct ipc_envelope *v)
{
    if (!ipc_text_clean(v->session) || v->session[0] == '\0')
        return "bad session id";
    if (!ipc_text_clean(v->mail_from))
        return "control character (CR, LF, NUL...) in the sender";
    for (int i = 0; i < v->nrcpt; i++)
        if (v->rcpt[i][0] == '\0' || !ipc_text_clean(v->rcpt[i]))
            return "empty recipient, or control character (CR, LF, NUL...) in a recipient";
    return NULL;
}

/* Asks authz whether the envelope is the session's; fills the user and client. */
static int envelope_granted(const struct ipc_envelope *v, struct ipc_grant *g, char *why,
                            size_t whylen, struct ipc_msg *m)
{
    if (ipc_enc_envelope(m, IPC_AUTHZ_GRANT_CHECK, 0, v) != 0) {
        str_lcpy(why, "envelope too large", whylen);
        return -1;
    }
    if (queue_authz_ask(m, IPC_AUTHZ_GRANT, GRANT_TIMEOUT_MS) != 0) {
        str_fmt(why, whylen, "no answer from authz: %s", strerror(errno));
        return -1;
    }
    if (ipc_dec_grant(m, g) != 0)
        fatal("malformed grant answer from authz");
    if (g->decision != IPC_ALLOW) {
        str_fmt(why, whylen, "envelope not granted by authz: %s", g->reason);
        return -1;
    }
    return 0;
}

/* The recipients as the accept row lists them: comma-separated, cut short with
 * "..." past IPC_RCPTS_MAX, as smtp lists them in its own rows. NULL: no memory. */
static char *rcpt_list(const struct ipc_envelope *v)
{
    char *out = malloc(IPC_RCPTS_MAX);
    size_t pos = 0;

    if (out == NULL)
        return NULL;
    out[0] = '\0';
    for (int i = 0; i < v->nrcpt; i++) {
        size_t n = strlen(v->rcpt[i]);

        if (pos + n + 5 >= IPC_RCPTS_MAX) {
            str_lcpy(out + pos, "...", IPC_RCPTS_MAX - pos);
            break;
        }
        if (i > 0)
            out[pos++] = ',';
        memcpy(out + pos, v->rcpt[i], n + 1);
        pos += n;
    }
    return out;
}

/* Writes the envelope records and keeps a copy of them for the commit check. */
static int write_envelope(int sfd, const char *id, const struct ipc_envelope *v,
                          const struct ipc_grant *g, struct open_file *f)
{
    char now[32];
    size_t cap, len = 0;
    int err = 0;

    /* The records are put together here and written in one go; the copy kept is
     * exactly the bytes written. */
    str_fmt(now, sizeof(now), "%lld", (long long)time(NULL));
    cap = 8 * REC_HDR + 1 + strlen(id) + strlen(now) + strlen(v->session) + strlen(g->user) +
          strlen(g->client_ip) + strlen(v->mail_from);
    for (int i = 0; i < v->nrcpt; i++)
        cap += REC_HDR + strlen(v->rcpt[i]);
    f->env = malloc(cap);
    if (f->env == NULL)
        return -1;
    err |= spool_rec_append(f->env, cap, &len, SPOOL_VERSION, "1");
    err |= spool_rec_append(f->env, cap, &len, SPOOL_ID, id);
    err |= spool_rec_append(f->env, cap, &len, SPOOL_TIME, now);
    err |= spool_rec_append(f->env, cap, &len, SPOOL_SESSION, v->session);
    err |= spool_rec_append(f->env, cap, &len, SPOOL_USER, g->user);
    err |= spool_rec_append(f->env, cap, &len, SPOOL_CLIENT, g->client_ip);
    err |= spool_rec_append(f->env, cap, &len, SPOOL_FROM, v->mail_from);
    for (int i = 0; i < v->nrcpt; i++)
        err |= spool_rec_append(f->env, cap, &len, SPOOL_RCPT, v->rcpt[i]);
    if (err || write_all(sfd, f->env, len) != 0)
        return -1;
    f->env_len = len;
    return 0;
}

void accept_open(int chan, struct ipc_msg *m)
{
    struct ipc_envelope v;
    struct ipc_grant g;
    struct open_file f;
    char id[SPOOL_ID_LEN + 1], path[PATH_MAX], why[300];
    uint64_t req = m->id;
    const char *unsafe;
    int sfd, wfd;

    if (ipc_dec_envelope(m, &v) != 0)
        fatal("malformed open request");
    memset(&f, 0, sizeof(f));
    f.fd = -1;
    if ((unsafe = envelope_unsafe(&v)) != NULL) {
        log_warn("session=%s open refused: %s", v.session, unsafe);
        ipc_envelope_free(&v);
        answer(chan, IPC_QUEUE_OPENED, req, 1, "", unsafe, -1, m);
        return;
    }
    if (nfiles >= max_files) {
        ipc_envelope_free(&v);
        answer(chan, IPC_QUEUE_OPENED, req, 1, "", "too many messages in progress", -1, m);
        return;
    }
    if (envelope_granted(&v, &g, why, sizeof(why), m) != 0) {
        log_warn("session=%s open refused: %s", v.session, why);
        ipc_envelope_free(&v);
        answer(chan, IPC_QUEUE_OPENED, req, 1, "", why, -1, m);
        return;
    }
    spool_new_id(id);
    str_fmt(path, sizeof(path), "%s/%s", qdirs.incoming, id);
    f.rcpts = rcpt_list(&v);
    sfd = f.rcpts == NULL ? -1
                          : openat(qdirs.incoming_fd, id,
                                   O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC | O_NOFOLLOW,
                                   0600);
    if (sfd < 0 || write_envelope(sfd, id, &v, &g, &f) != 0) {
        str_fmt(why, sizeof(why), "cannot write %s: %s", path, strerror(errno));
        log_err("%s", why);
        if (sfd >= 0) {
            close(sfd);
            unlinkat(qdirs.incoming_fd, id, 0);
        }
        free(f.env);
        free(f.rcpts);
        ipc_envelope_free(&v);
        answer(chan, IPC_QUEUE_OPENED, req, 1, "", why, -1, m);
        return;
    }
    str_lcpy(f.id, id, sizeof(f.id));
    f.chan = chan;
    str_lcpy(f.session, v.session, sizeof(f.session));
    str_lcpy(f.user, g.user, sizeof(f.user));
    str_lcpy(f.client_ip, g.client_ip, sizeof(f.client_ip));
    str_lcpy(f.mail_from, v.mail_from, sizeof(f.mail_from));
    f.nrcpt = (uint64_t)v.nrcpt;
    ipc_envelope_free(&v);
    /* smtp gets a write-only descriptor: it cannot read other files, and what it
     * writes is checked at COMMIT. */
    wfd = openat(qdirs.incoming_fd, id, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (wfd < 0) {
        str_fmt(why, sizeof(why), "cannot reopen %s: %s", path, strerror(errno));
        close(sfd);
        free(f.env);
        free(f.rcpts);
        unlinkat(qdirs.incoming_fd, id, 0);
        answer(chan, IPC_QUEUE_OPENED, req, 1, "", why, -1, m);
        return;
    }
    /* The queue keeps its own descriptor for the COMMIT, which then opens nothing;
     * past max_held (the queue's descriptor limit) the file is opened again there. */
    if (nheld < max_held) {
        f.fd = sfd;
        nheld++;
    } else
        close(sfd);
    files[nfiles++] = f;
    answer(chan, IPC_QUEUE_OPENED, req, 0, id, "", wfd, m);
    close(wfd);
}

/* ---- ABORT --------------------------------------------------------------------- */

void accept_abort(int chan, struct ipc_msg *m)
{
    struct ipc_abort v;
    struct open_file *f;

    if (ipc_dec_abort(m, &v) != 0 || !spool_id_valid(v.queue_id))
        fatal("malformed abort request");
    f = find_open(chan, v.queue_id);
    if (f == NULL) {
        log_warn("abort of %s refused: not a file this smtp channel has open", v.queue_id);
        return;
    }
    forget_open(f);
    if (unlinkat(qdirs.incoming_fd, v.queue_id, 0) != 0 && errno != ENOENT)
        log_warn("cannot remove aborted %s/%s: %s", qdirs.incoming, v.queue_id, strerror(errno));
}

/* ---- COMMIT -------------------------------------------------------------------- */

/*
 * No other descriptor of the file may exist: smtp closes its own before COMMIT,
 * and one it kept (a dup) could change the message after the checks below, its
 * envelope and From field included. A write lease is granted only to the sole
 * opener. Where the spool's file system refuses leases, nothing can show that
 * smtp let go of the file, so commits are refused (a temporary failure) until it
 * allows them: a local file system, with fs.leases-enable = 1.
 */
static int sole_opener(int fd, char *why, size_t whylen)
{
    if (fcntl(fd, F_SETLEASE, F_WRLCK) == 0) {
        (void)fcntl(fd, F_SETLEASE, F_UNLCK);
        return 0;
    }
    if (errno == EAGAIN || errno == EBUSY) {
        str_lcpy(why, "the smtp process still holds the file open", whylen);
        return -1;
    }
    str_fmt(why, whylen, "the spool file system refuses leases (%s): cannot check that the "
            "smtp process closed the message (put %s on a local file system; "
            "fs.leases-enable = 1)", strerror(errno), qdirs.incoming);
    return -1;
}

void accept_probe_leases(void)
{
    char name[64], why[256];
    int fd;

    str_fmt(name, sizeof(name), "lease-probe.%ld", (long)getpid());
    fd = openat(qdirs.incoming_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                0600);
    if (fd < 0) {
        log_err("cannot create %s/%s: %s", qdirs.incoming, name, strerror(errno));
        return;
    }
    if (sole_opener(fd, why, sizeof(why)) != 0)
        log_err("%s; every message will be refused until leases work", why);
    close(fd);
    (void)unlinkat(qdirs.incoming_fd, name, 0);
}

/* The file checked whole (queue_content.h); with check_header_from its From
 * addresses into pc for authz. smtp sent its own reading of them: one that differs
 * is logged, and the file's is checked. */
static int content_valid(int fd, const struct open_file *f, const struct ipc_commit *v,
                         struct pending_commit *pc)
{
    struct content_check c;
    int same;

    memset(&c, 0, sizeof(c));
    c.env = f->env;
    c.env_len = f->env_len;
    c.size = v->size;
    c.max_header = (size_t)header_limit;
    c.want_from = header_from_check;
    if (queue_content_check(fd, &c, pc->why, sizeof(pc->why)) != 0)
        return -1;
    pc->from = c.from;
    if (!c.want_from)
        return 0;
    same = v->from.naddr == c.from.naddr;
    for (int i = 0; same && i < v->from.naddr; i++)
        same = strcmp(v->from.addr[i], c.from.addr[i]) == 0;
    if (!same)
        log_warn("id=%s session=%s the From addresses the smtp process sent (%d) are not the "
                 "message's (%d): the message's are checked", pc->id, pc->session,
                 v->from.naddr, c.from.naddr);
    return 0;
}

void accept_commit(int chan, struct ipc_msg *m, struct pending_commit *pc)
{
    struct ipc_commit v;
    struct open_file *f;
    char src[PATH_MAX], num[32];
    int fd;

    if (ipc_dec_commit(m, &v) != 0 || !spool_id_valid(v.queue_id))
        fatal("malformed commit request");
    memset(pc, 0, sizeof(*pc));
    pc->fd = -1;
    pc->chan = chan;
    pc->req = m->id;
    str_lcpy(pc->id, v.queue_id, sizeof(pc->id));
    f = find_open(chan, v.queue_id);
    if (f == NULL) {
        str_lcpy(pc->why, "not a file this smtp channel has open", sizeof(pc->why));
        return;
    }
    str_lcpy(pc->session, f->session, sizeof(pc->session));
    str_lcpy(pc->user, f->user, sizeof(pc->user));
    str_lcpy(pc->client_ip, f->client_ip, sizeof(pc->client_ip));
    str_lcpy(pc->mail_from, f->mail_from, sizeof(pc->mail_from));
    pc->rcpts = f->rcpts;
    f->rcpts = NULL;
    pc->nrcpt = f->nrcpt;
    pc->size = v.size;
    str_fmt(src, sizeof(src), "%s/%s", qdirs.incoming, pc->id);
    /* The descriptor the queue created the file with, kept since OPEN; the file
     * opened again only when it was not kept. */
    fd = take_fd(f);
    if (fd < 0)
        fd = openat(qdirs.incoming_fd, pc->id, O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        str_fmt(pc->why, sizeof(pc->why), "cannot reopen %s: %s", src, strerror(errno));
        forget_open(f);
        return;
    }
    if (v.size > size_limit) {
        str_fmt(pc->why, sizeof(pc->why), "COMMIT announced %llu bytes, more than "
                "max_message_size with the added fields (%llu)", (unsigned long long)v.size,
                (unsigned long long)size_limit);
        log_err("id=%s session=%s commit refused: %s", pc->id, pc->session, pc->why);
        goto refuse;
    }
    if (sole_opener(fd, pc->why, sizeof(pc->why)) != 0 ||
        content_valid(fd, f, &v, pc) != 0) {
        log_err("id=%s session=%s commit refused: %s", pc->id, pc->session, pc->why);
        goto refuse;
    }
    str_fmt(num, sizeof(num), "%llu", (unsigned long long)v.size);
    if (spool_put_str(fd, SPOOL_END, num) != 0) {
        str_fmt(pc->why, sizeof(pc->why), "cannot write %s: %s", src, strerror(errno));
        goto refuse;
    }
    forget_open(f);
    pc->fd = fd;
    pc->ok = 1;
    return;
refuse:
    close(fd);
    forget_open(f);
    unlinkat(qdirs.incoming_fd, pc->id, 0);
}

/* The file of a commit that fails after its END: removed from incoming/, never relayed. */
static void drop(struct pending_commit *pc)
{
    pc->ok = 0;
    unlinkat(qdirs.incoming_fd, pc->id, 0);
    close(pc->fd);
    pc->fd = -1;
}

/*
 * Write-back of every file of the batch starts before the first fsync, so that the
 * file system allocates them all in one journal transaction: the first fsync then
 * commits it for all, and the others only wait for their data.
 */
void accept_sync(struct pending_commit *pc, int n)
{
    for (int i = 0; i < n; i++)
        if (pc[i].ok && n > 1)
            (void)sync_file_range(pc[i].fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    for (int i = 0; i < n; i++) {
        if (!pc[i].ok || fsync(pc[i].fd) == 0)
            continue;
        str_fmt(pc[i].why, sizeof(pc[i].why), "cannot write %s/%s: %s", qdirs.incoming,
                pc[i].id, strerror(errno));
        drop(&pc[i]);
    }
}

/* Sends authz the ACCEPT of pc; 0, or -1 with pc->why set. */
static int ask_accept(struct pending_commit *pc, struct ipc_msg *m)
{
    struct ipc_accept a;

    memset(&a, 0, sizeof(a));
    str_lcpy(a.session, pc->session, sizeof(a.session));
    str_lcpy(a.user, pc->user, sizeof(a.user));
    str_lcpy(a.client_ip, pc->client_ip, sizeof(a.client_ip));
    str_lcpy(a.queue_id, pc->id, sizeof(a.queue_id));
    str_lcpy(a.mail_from, pc->mail_from, sizeof(a.mail_from));
    str_lcpy(a.rcpt, pc->rcpts ? pc->rcpts : "", sizeof(a.rcpt));
    a.nrcpt = pc->nrcpt;
    a.size = pc->size;
    a.from = pc->from;
    if (ipc_enc_accept(m, 0, &a) != 0 || queue_authz_request(m, &pc->accept_req) != 0) {
        str_fmt(pc->why, sizeof(pc->why), "cannot ask authz to record it: %s", strerror(errno));
        pc->status = IPC_QUEUE_NOT_RECORDED;
        return -1;
    }
    return 0;
}

/* Asks for the accept rows of pc[0..n) together, then reads their answers; a file
 * whose row was not committed is dropped. 0, or -1 when authz did not answer them all
 * within ACCEPT_TIMEOUT_MS. */
static int record_chunk(struct pending_commit *pc, int n, struct ipc_msg *m)
{
    uint64_t deadline;
    int waiting = 0, err = 0;

    for (int i = 0; i < n; i++) {
        pc[i].accept_req = 0;
        if (!pc[i].ok)
            continue;
        if (ask_accept(&pc[i], m) != 0)
            drop(&pc[i]);
        else
            waiting++;
    }
    deadline = now_ms() + ACCEPT_TIMEOUT_MS;
    while (waiting > 0) {
        struct ipc_result r;
        int i;

        if (queue_authz_next(m, IPC_AUTHZ_RESULT, deadline) != 0) {
            err = errno;
            break;
        }
        for (i = 0; i < n && pc[i].accept_req != m->id; i++)
            ;
        if (i == n || !pc[i].ok) {
            log_warn("late answer from authz (request %llu) ignored", (unsigned long long)m->id);
            continue;
        }
        if (ipc_dec_result(m, &r) != 0)
            fatal("malformed answer to an accept from authz");
        pc[i].accept_req = 0;
        waiting--;
        if (r.decision == IPC_DENY) {
            /* Refused (its header From): authz wrote the row; smtp gives its reply. */
            str_lcpy(pc[i].why, r.reply, sizeof(pc[i].why));
            pc[i].status = IPC_QUEUE_REFUSED;
            drop(&pc[i]);
        } else if (r.decision != IPC_ALLOW) {
            str_lcpy(pc[i].why,
                     "authz could not record the message (accept row or rate charge; "
                     "authz's log says why)",
                     sizeof(pc[i].why));
            pc[i].status = IPC_QUEUE_NOT_RECORDED;
            drop(&pc[i]);
        }
    }
    for (int i = 0; i < n; i++) {
        if (!pc[i].ok || pc[i].accept_req == 0)
            continue;
        str_fmt(pc[i].why, sizeof(pc[i].why),
                "no answer from authz about its accept row: %s (if authz writes it late, "
                "it names a message that was not queued)", strerror(err));
        pc[i].status = IPC_QUEUE_NOT_RECORDED;
        drop(&pc[i]);
    }
    return waiting > 0 ? -1 : 0;
}

/*
 * The accept rows, header From checks and rate charges of the batch, asked
 * ACCEPT_CHUNK at a time before the first answer is read: authz commits the rows that
 * arrive together once, and no more answers than a chunk's can wait unread in the
 * channel. A file whose row was not committed is dropped: its client gets a 4xx and
 * sends it again, and no message is ever relayed without its accept row. When authz
 * stalls (no answer within ACCEPT_TIMEOUT_MS), the rest of the batch is not asked:
 * it fails at once rather than wait once more per chunk. A row committed after its
 * answer timed out names a message that was not queued; that is logged.
 */
void accept_record(struct pending_commit *pc, int n, struct ipc_msg *m)
{
    int stalled = 0;

    for (int first = 0; first < n; first += ACCEPT_CHUNK) {
        int k = n - first < ACCEPT_CHUNK ? n - first : ACCEPT_CHUNK;

        if (!stalled) {
            stalled = record_chunk(pc + first, k, m) != 0;
            continue;
        }
        for (int i = first; i < first + k; i++) {
            if (!pc[i].ok)
                continue;
            str_lcpy(pc[i].why, "not asked: authz did not answer the accepts before it",
                     sizeof(pc[i].why));
            pc[i].status = IPC_QUEUE_NOT_RECORDED;
            drop(&pc[i]);
        }
    }
}

void accept_publish(struct pending_commit *pc, int n)
{
    for (int i = 0; i < n; i++) {
        if (!pc[i].ok || renameat(qdirs.incoming_fd, pc[i].id, qdirs.queue_fd, pc[i].id) == 0)
            continue;
        str_fmt(pc[i].why, sizeof(pc[i].why), "cannot rename %s/%s: %s", qdirs.incoming,
                pc[i].id, strerror(errno));
        drop(&pc[i]);
    }
}

void accept_answer(struct pending_commit *pc, struct ipc_msg *m)
{
    int status = pc->ok ? 0 : pc->status ? pc->status : IPC_QUEUE_NOT_STORED;

    answer(pc->chan, IPC_QUEUE_COMMITTED, pc->req, status, pc->id, pc->why, -1, m);
    free(pc->rcpts);
    pc->rcpts = NULL;
}
