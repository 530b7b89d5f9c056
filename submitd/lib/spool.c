/* Spool file records: writing, queue ids, and validated loading. */
#include "spool.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

int spool_put(int fd, enum spool_rec type, const void *data, size_t len)
{
    unsigned char hdr[5];
    struct iovec iov[2];
    ssize_t n;
    size_t done;

    if (len > SPOOL_REC_MAX) {
        errno = EFBIG;
        return -1;
    }
    hdr[0] = (unsigned char)type;
    hdr[1] = (unsigned char)(len >> 24);
    hdr[2] = (unsigned char)(len >> 16);
    hdr[3] = (unsigned char)(len >> 8);
    hdr[4] = (unsigned char)len;
    if (len == 0)
        return write_all(fd, hdr, sizeof(hdr));
    /* Header and data in one system call; what a short write left goes as before. */
    iov[0].iov_base = hdr;
    iov[0].iov_len = sizeof(hdr);
    iov[1].iov_base = (void *)(uintptr_t)data;
    iov[1].iov_len = len;
    do {
        n = writev(fd, iov, 2);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof(hdr))
        return write_all(fd, hdr + n, sizeof(hdr) - (size_t)n) == 0 &&
                       write_all(fd, data, len) == 0 ? 0 : -1;
    done = (size_t)n - sizeof(hdr);
    return done < len ? write_all(fd, (const unsigned char *)data + done, len - done) : 0;
}

int spool_rec_append(unsigned char *buf, size_t cap, size_t *len, enum spool_rec type,
                     const char *s)
{
    size_t n = strlen(s);

    if (n > SPOOL_REC_MAX || cap - *len < 5 || cap - *len - 5 < n)
        return -1;
    buf[*len] = (unsigned char)type;
    buf[*len + 1] = (unsigned char)(n >> 24);
    buf[*len + 2] = (unsigned char)(n >> 16);
    buf[*len + 3] = (unsigned char)(n >> 8);
    buf[*len + 4] = (unsigned char)n;
    memcpy(buf + *len + 5, s, n);
    *len += 5 + n;
    return 0;
}

int spool_put_str(int fd, enum spool_rec type, const char *s)
{
    return spool_put(fd, type, s, strlen(s));
}

/*
 * Random bytes for ids, taken from the kernel ID_POOL_IDS ids' worth at a time
 * instead of one getrandom() per id. Per thread; a child process starts with an
 * empty pool, so parent and child never draw the same bytes.
 */
#define ID_RANDOM 12
#define ID_POOL_IDS 32
static __thread unsigned char id_pool[ID_RANDOM * ID_POOL_IDS];
static __thread size_t id_pool_left;
static pthread_once_t id_pool_once = PTHREAD_ONCE_INIT;

static void id_pool_forget(void)
{
    id_pool_left = 0;
}

static void id_pool_init(void)
{
    (void)pthread_atfork(NULL, NULL, id_pool_forget);
}

/* ID_RANDOM random bytes; 0, or -1 when the kernel gave none. */
static int id_random(unsigned char rnd[ID_RANDOM])
{
    (void)pthread_once(&id_pool_once, id_pool_init);
    if (id_pool_left < ID_RANDOM) {
        if (getrandom(id_pool, sizeof(id_pool), 0) != (ssize_t)sizeof(id_pool))
            return -1;
        id_pool_left = sizeof(id_pool);
    }
    id_pool_left -= ID_RANDOM;
    memcpy(rnd, id_pool + id_pool_left, ID_RANDOM);
    /* Bytes handed out are not kept. */
    memset(id_pool + id_pool_left, 0, ID_RANDOM);
    return 0;
}

void spool_new_id(char out[SPOOL_ID_LEN + 1])
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    struct timespec ts;
    unsigned char rnd[ID_RANDOM];
    uint64_t t;
    int i;

    /* 8 characters of time (base 36 of milliseconds) keep ids roughly sortable by
     * arrival; 12 random characters make collisions between processes negligible. */
    clock_gettime(CLOCK_REALTIME, &ts);
    t = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    for (i = 7; i >= 0; i--) {
        out[i] = alphabet[t % 36];
        t /= 36;
    }
    if (id_random(rnd) != 0) {
        /* getrandom on Linux does not fail for a few hundred bytes once the pool is
         * ready; fall back to the clock rather than to a constant. */
        for (i = 0; i < ID_RANDOM; i++)
            rnd[i] = (unsigned char)(ts.tv_nsec >> (i % 4 * 8)) ^ (unsigned char)i;
    }
    for (i = 0; i < ID_RANDOM; i++)
        out[8 + i] = alphabet[rnd[i] % 36];
    out[SPOOL_ID_LEN] = '\0';
}

int spool_id_valid(const char *s)
{
    size_t i;

    for (i = 0; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z')))
            return 0;
    return i == SPOOL_ID_LEN;
}

void spool_msg_free(struct spool_msg *msg)
{
    for (int i = 0; i < msg->nrcpt; i++) {
        free(msg->rcpt[i]);
        if (msg->rreply != NULL)
            free(msg->rreply[i]);
    }
    free(msg->rcpt);
    free(msg->rreply);
    free(msg->rstate);
    free(msg->body);
    memset(msg, 0, sizeof(*msg));
}

static int copy_field(char *dst, size_t dstlen, const unsigned char *p, size_t n)
{
    if (n >= dstlen || memchr(p, '\0', n) != NULL)
        return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

/* Reads exactly n bytes at off; 0, or -1 (errno, or EIO on a short read). */
static int read_at(int fd, off_t off, void *dst, size_t n)
{
    unsigned char *p = dst;

    while (n > 0) {
        ssize_t r = pread(fd, p, n, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return -1;
        }
        p += r;
        off += r;
        n -= (size_t)r;
    }
    return 0;
}

/*
 * Where load() reads from: the file, or a copy of all of it taken with one pread
 * when the file is small enough (a message of a few KiB would otherwise cost two
 * preads per record).
 */
#define SPOOL_WHOLE_MAX (256 * 1024)

struct spool_src {
    int fd;
    unsigned char *all;
    size_t len;
};

static int src_read(const struct spool_src *src, size_t off, void *dst, size_t n)
{
    if (src->all == NULL)
        return read_at(src->fd, (off_t)off, dst, n);
    if (off > src->len || n > src->len - off) {
        errno = EIO;
        return -1;
    }
    memcpy(dst, src->all + off, n);
    return 0;
}

int spool_add_rcpt(struct spool_msg *msg, const char *addr)
{
    size_t n = (size_t)msg->nrcpt + 1;
    char **r, **rr, *rs, *copy;

    r = realloc(msg->rcpt, sizeof(char *) * n);
    if (r == NULL)
        return -1;
    msg->rcpt = r;
    rr = realloc(msg->rreply, sizeof(char *) * n);
    if (rr == NULL)
        return -1;
    msg->rreply = rr;
    rs = realloc(msg->rstate, n);
    if (rs == NULL)
        return -1;
    msg->rstate = rs;
    copy = strdup(addr);
    if (copy == NULL)
        return -1;
    msg->rcpt[msg->nrcpt] = copy;
    msg->rreply[msg->nrcpt] = NULL;
    msg->rstate[msg->nrcpt] = SPOOL_RCPT_PENDING;
    msg->nrcpt++;
    return 0;
}

int spool_set_rcpt(struct spool_msg *msg, int i, enum spool_rcpt_state state, const char *reply)
{
    char *copy = NULL;

    if (i < 0 || i >= msg->nrcpt)
        return -1;
    if (reply != NULL) {
        size_t n = strnlen(reply, SPOOL_REPLY_MAX - 1);
        copy = malloc(n + 1);
        if (copy == NULL)
            return -1;
        memcpy(copy, reply, n);
        copy[n] = '\0';
    }
    free(msg->rreply[i]);
    msg->rreply[i] = copy;
    msg->rstate[i] = (char)state;
    return 0;
}

int spool_count_rcpt(const struct spool_msg *msg, enum spool_rcpt_state state)
{
    int n = 0;

    for (int i = 0; i < msg->nrcpt; i++)
        n += msg->rstate[i] == (char)state;
    return n;
}

static int valid_state(unsigned char c)
{
    return c == SPOOL_RCPT_PENDING || c == SPOOL_RCPT_DELIVERED || c == SPOOL_RCPT_FAILED ||
           c == SPOOL_RCPT_REPORTED;
}

/*
 * The one parser behind every spool_load*(): the file open as fd, which it leaves
 * open. Records are read with pread(); the file size bounds every length before
 * anything is allocated. linked: a file no longer in any directory is refused.
 */
static int load_fd(int fd, struct spool_msg *msg, int with_body, int linked, char *err,
                   size_t errlen)
{
    unsigned char *rec = NULL;
    struct spool_src src = { -1, NULL, 0 };
    struct stat st;
    size_t len, pos = 0;
    int ended = 0, have_rstate = 0;

    memset(msg, 0, sizeof(*msg));
    if (fstat(fd, &st) != 0) {
        str_fmt(err, errlen, "cannot read: %s", strerror(errno));
        return -1;
    }
    /* O_NONBLOCK and this check: a FIFO put in the spool must not hang the reader. */
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)1 << 34) {
        str_fmt(err, errlen, "cannot read: %s", S_ISREG(st.st_mode) ? strerror(EFBIG)
                                                                     : "not a regular file");
        return -1;
    }
    if (linked && st.st_nlink == 0) {
        str_fmt(err, errlen, "cannot read: %s", strerror(ENOENT));
        return -1;
    }
    len = (size_t)st.st_size;
    src.fd = fd;
    src.len = len;
    /* The whole file in one read when it is small; an envelope-only load of a large
     * message reads its records one by one instead. */
    if (len > 0 && len <= (with_body ? SPOOL_WHOLE_MAX : 16384)) {
        src.all = malloc(len);
        if (src.all != NULL && read_at(fd, 0, src.all, len) != 0)
            goto ioerr;
    }
    /* Envelope records are short; the buffer grows only for a long one. Zeroed,
     * although every byte read is first written by src_read(): GCC 12's analyzer
     * does not see pread() fill it. */
    rec = calloc(1, 4096);
    if (rec == NULL)
        goto oom;
    while (pos < len && !ended) {
        unsigned char hdr[5], type;
        size_t n;
        const unsigned char *d = rec;
        char num[32];

        if (len - pos < 5) {
            str_fmt(err, errlen, "torn: truncated record header at offset %zu", pos);
            goto fail;
        }
        if (src_read(&src, pos, hdr, 5) != 0)
            goto ioerr;
        type = hdr[0];
        n = ((size_t)hdr[1] << 24) | ((size_t)hdr[2] << 16) | ((size_t)hdr[3] << 8) | hdr[4];
        if (n > SPOOL_REC_MAX || n > len - pos - 5) {
            str_fmt(err, errlen, "torn: record at offset %zu overruns the file", pos);
            goto fail;
        }
        if (type == SPOOL_BODY) {
            if (with_body && n > 0) {
                if (msg->body == NULL) {
                    /* The rest of the file bounds the body. */
                    msg->body = malloc(len - pos);
                    if (msg->body == NULL)
                        goto oom;
                }
                if (src_read(&src, pos + 5, msg->body + msg->body_len, n) != 0)
                    goto ioerr;
            }
            msg->body_len += n;
            pos += 5 + n;
            continue;
        }
        if (type != SPOOL_VERSION && type != SPOOL_ID && type != SPOOL_TIME &&
            type != SPOOL_SESSION && type != SPOOL_USER && type != SPOOL_CLIENT &&
            type != SPOOL_FROM && type != SPOOL_RCPT && type != SPOOL_END &&
            type != SPOOL_RSTATE && type != SPOOL_ATTEMPTS && type != SPOOL_NEXT &&
            type != SPOOL_REPLY) {
            str_fmt(err, errlen, "bad record type 0x%02x at offset %zu", type, pos);
            goto fail;
        }
        if (n > 4096) {
            unsigned char *bigger = realloc(rec, n);
            if (bigger == NULL)
                goto oom;
            rec = bigger;
            d = rec;
        }
        if (n > 0 && src_read(&src, pos + 5, rec, n) != 0)
            goto ioerr;
        pos += 5 + n;
        switch (type) {
        case SPOOL_VERSION:
            if (n != 1 || d[0] != '1') {
                str_fmt(err, errlen, "unknown spool format version");
                goto fail;
            }
            break;
        case SPOOL_ID:
            if (copy_field(msg->id, sizeof(msg->id), d, n) != 0 || !spool_id_valid(msg->id))
                goto bad;
            break;
        case SPOOL_TIME:
            if (copy_field(num, sizeof(num), d, n) != 0 ||
                str_to_ll(num, 0, (long long)1 << 40, &msg->time) != 0)
                goto bad;
            break;
        case SPOOL_SESSION:
            if (copy_field(msg->session, sizeof(msg->session), d, n) != 0)
                goto bad;
            break;
        case SPOOL_USER:
            if (copy_field(msg->user, sizeof(msg->user), d, n) != 0)
                goto bad;
            break;
        case SPOOL_CLIENT:
            if (copy_field(msg->client, sizeof(msg->client), d, n) != 0)
                goto bad;
            break;
        case SPOOL_FROM:
            if (copy_field(msg->from, sizeof(msg->from), d, n) != 0)
                goto bad;
            break;
        case SPOOL_RCPT: {
            char addr[1024];
            if (n == 0 || copy_field(addr, sizeof(addr), d, n) != 0)
                goto bad;
            if (spool_add_rcpt(msg, addr) != 0)
                goto oom;
            have_rstate = 0;
            break;
        }
        case SPOOL_RSTATE: {
            char reply[SPOOL_REPLY_MAX];
            /* One state per recipient, right after it: "<state>" or "<state> <reply>". */
            if (msg->nrcpt == 0 || have_rstate || n == 0 || !valid_state(d[0]) ||
                (n > 1 && d[1] != ' ') ||
                copy_field(reply, sizeof(reply), d + (n > 1 ? 2 : 1), n > 1 ? n - 2 : 0) != 0)
                goto bad;
            if (spool_set_rcpt(msg, msg->nrcpt - 1, (enum spool_rcpt_state)d[0],
                               n > 1 ? reply : NULL) != 0)
                goto oom;
            have_rstate = 1;
            break;
        }
        case SPOOL_ATTEMPTS: {
            long long v;
            if (copy_field(num, sizeof(num), d, n) != 0 || str_to_ll(num, 0, 1000000, &v) != 0)
                goto bad;
            msg->attempts = (int)v;
            break;
        }
        case SPOOL_NEXT:
            if (copy_field(num, sizeof(num), d, n) != 0 ||
                str_to_ll(num, 0, (long long)1 << 40, &msg->next) != 0)
                goto bad;
            break;
        case SPOOL_REPLY:
            if (copy_field(msg->last, sizeof(msg->last), d, n) != 0)
                goto bad;
            break;
        case SPOOL_END: {
            long long total;
            if (copy_field(num, sizeof(num), d, n) != 0 ||
                str_to_ll(num, 0, (long long)1 << 40, &total) != 0 ||
                (size_t)total != msg->body_len) {
                str_fmt(err, errlen, "torn: END record does not match the body length");
                goto fail;
            }
            ended = 1;
            break;
        }
        }
    }
    if (!ended) {
        str_fmt(err, errlen, "torn: no END record");
        goto fail;
    }
    if (pos != len) {
        str_fmt(err, errlen, "trailing bytes after END record");
        goto fail;
    }
    if (msg->id[0] == '\0' || msg->nrcpt == 0) {
        str_fmt(err, errlen, "incomplete envelope (no id or no recipient)");
        goto fail;
    }
    free(rec);
    free(src.all);
    return 0;
bad:
    str_fmt(err, errlen, "malformed envelope record before offset %zu", pos);
    goto fail;
ioerr:
    str_fmt(err, errlen, "cannot read: %s", strerror(errno));
    goto fail;
oom:
    str_fmt(err, errlen, "out of memory");
fail:
    free(rec);
    free(src.all);
    spool_msg_free(msg);
    return -1;
}

static int load(int dirfd, const char *path, struct spool_msg *msg, int with_body, char *err,
                size_t errlen)
{
    int fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    int rc;

    if (fd < 0) {
        memset(msg, 0, sizeof(*msg));
        str_fmt(err, errlen, "cannot read: %s", strerror(errno));
        return -1;
    }
    rc = load_fd(fd, msg, with_body, 0, err, errlen);
    close(fd);
    return rc;
}

int spool_load(const char *path, struct spool_msg *msg, char *err, size_t errlen)
{
    return load(AT_FDCWD, path, msg, 1, err, errlen);
}

int spool_load_at(int dirfd, const char *name, struct spool_msg *msg, char *err, size_t errlen)
{
    return load(dirfd, name, msg, 1, err, errlen);
}

int spool_load_fd(int fd, struct spool_msg *msg, char *err, size_t errlen)
{
    return load_fd(fd, msg, 1, 1, err, errlen);
}

int spool_load_envelope(const char *path, struct spool_msg *msg, char *err, size_t errlen)
{
    return load(AT_FDCWD, path, msg, 0, err, errlen);
}

int spool_load_envelope_at(int dirfd, const char *name, struct spool_msg *msg, char *err,
                           size_t errlen)
{
    return load(dirfd, name, msg, 0, err, errlen);
}

static int put_num(int fd, enum spool_rec type, long long v)
{
    char num[32];

    str_fmt(num, sizeof(num), "%lld", v);
    return spool_put_str(fd, type, num);
}

int spool_write(int fd, const struct spool_msg *msg)
{
    int err = 0;

    err |= spool_put_str(fd, SPOOL_VERSION, "1");
    err |= spool_put_str(fd, SPOOL_ID, msg->id);
    err |= put_num(fd, SPOOL_TIME, msg->time);
    err |= spool_put_str(fd, SPOOL_SESSION, msg->session);
    err |= spool_put_str(fd, SPOOL_USER, msg->user);
    err |= spool_put_str(fd, SPOOL_CLIENT, msg->client);
    err |= spool_put_str(fd, SPOOL_FROM, msg->from);
    for (int i = 0; i < msg->nrcpt && !err; i++) {
        char st[SPOOL_REPLY_MAX + 2];
        err |= spool_put_str(fd, SPOOL_RCPT, msg->rcpt[i]);
        if (msg->rreply[i] != NULL)
            str_fmt(st, sizeof(st), "%c %s", msg->rstate[i], msg->rreply[i]);
        else
            str_fmt(st, sizeof(st), "%c", msg->rstate[i]);
        err |= spool_put_str(fd, SPOOL_RSTATE, st);
    }
    err |= put_num(fd, SPOOL_ATTEMPTS, msg->attempts);
    err |= put_num(fd, SPOOL_NEXT, msg->next);
    err |= spool_put_str(fd, SPOOL_REPLY, msg->last);
    for (size_t off = 0; off < msg->body_len && !err; off += SPOOL_REC_MAX) {
        size_t n = msg->body_len - off > SPOOL_REC_MAX ? SPOOL_REC_MAX : msg->body_len - off;
        err |= spool_put(fd, SPOOL_BODY, msg->body + off, n);
    }
    err |= put_num(fd, SPOOL_END, (long long)msg->body_len);
    return err ? -1 : 0;
}
