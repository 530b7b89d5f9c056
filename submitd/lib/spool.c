/* Spool file records: writing, queue ids, and validated loading. */
#include "spool.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int spool_put(int fd, enum spool_rec type, const void *data, size_t len)
{
    unsigned char hdr[5];

    if (len > SPOOL_REC_MAX) {
        errno = EFBIG;
        return -1;
    }
    hdr[0] = (unsigned char)type;
    hdr[1] = (unsigned char)(len >> 24);
    hdr[2] = (unsigned char)(len >> 16);
    hdr[3] = (unsigned char)(len >> 8);
    hdr[4] = (unsigned char)len;
    if (write_all(fd, hdr, sizeof(hdr)) != 0)
        return -1;
    return len ? write_all(fd, data, len) : 0;
}

int spool_put_str(int fd, enum spool_rec type, const char *s)
{
    return spool_put(fd, type, s, strlen(s));
}

void spool_new_id(char out[SPOOL_ID_LEN + 1])
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    struct timespec ts;
    unsigned char rnd[12];
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
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        /* getrandom on Linux does not fail for 12 bytes once the pool is ready;
         * fall back to the clock rather than to a constant. */
        for (i = 0; i < 12; i++)
            rnd[i] = (unsigned char)(ts.tv_nsec >> (i % 4 * 8)) ^ (unsigned char)i;
    }
    for (i = 0; i < 12; i++)
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
    for (int i = 0; i < msg->nrcpt; i++)
        free(msg->rcpt[i]);
    free(msg->rcpt);
    free(msg->body);
    memset(msg, 0, sizeof(*msg));
}

static int read_file(const char *path, unsigned char **out, size_t *outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    unsigned char *buf;
    size_t got = 0;

    if (fd < 0)
        return -1;
    if (fstat(fd, &st) != 0 || st.st_size < 0 || st.st_size > (off_t)1 << 34) {
        close(fd);
        errno = EFBIG;
        return -1;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return -1;
    }
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *outlen = got;
    return 0;
}

static int copy_field(char *dst, size_t dstlen, const unsigned char *p, size_t n)
{
    if (n >= dstlen || memchr(p, '\0', n) != NULL)
        return -1;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return 0;
}

int spool_load(const char *path, struct spool_msg *msg, char *err, size_t errlen)
{
    unsigned char *buf;
    size_t len, pos = 0, body_cap = 0;
    int ended = 0;

    memset(msg, 0, sizeof(*msg));
    if (read_file(path, &buf, &len) != 0) {
        str_fmt(err, errlen, "cannot read: %s", strerror(errno));
        return -1;
    }
    while (pos < len && !ended) {
        unsigned char type;
        size_t n;
        const unsigned char *d;
        char num[32];

        if (len - pos < 5) {
            str_fmt(err, errlen, "torn: truncated record header at offset %zu", pos);
            goto fail;
        }
        type = buf[pos];
        n = ((size_t)buf[pos + 1] << 24) | ((size_t)buf[pos + 2] << 16) |
            ((size_t)buf[pos + 3] << 8) | buf[pos + 4];
        if (n > SPOOL_REC_MAX || n > len - pos - 5) {
            str_fmt(err, errlen, "torn: record at offset %zu overruns the file", pos);
            goto fail;
        }
        d = buf + pos + 5;
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
            char **r = realloc(msg->rcpt, sizeof(char *) * (size_t)(msg->nrcpt + 1));
            if (r == NULL)
                goto oom;
            msg->rcpt = r;
            msg->rcpt[msg->nrcpt] = malloc(n + 1);
            if (msg->rcpt[msg->nrcpt] == NULL)
                goto oom;
            if (copy_field(msg->rcpt[msg->nrcpt], n + 1, d, n) != 0 || n == 0) {
                free(msg->rcpt[msg->nrcpt]);
                goto bad;
            }
            msg->nrcpt++;
            break;
        }
        case SPOOL_BODY:
            if (msg->body_len + n > body_cap) {
                size_t cap = body_cap ? body_cap * 2 : 65536;
                char *b;
                while (cap < msg->body_len + n)
                    cap *= 2;
                b = realloc(msg->body, cap);
                if (b == NULL)
                    goto oom;
                msg->body = b;
                body_cap = cap;
            }
            memcpy(msg->body + msg->body_len, d, n);
            msg->body_len += n;
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
        default:
            str_fmt(err, errlen, "bad record type 0x%02x at offset %zu", type, pos - 5 - n);
            goto fail;
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
    free(buf);
    return 0;
bad:
    str_fmt(err, errlen, "malformed envelope record before offset %zu", pos);
    goto fail;
oom:
    str_fmt(err, errlen, "out of memory");
fail:
    free(buf);
    spool_msg_free(msg);
    return -1;
}
