/* What the queue checks in a committed spool file (see queue_content.h). */
#include "queue_content.h"

#include "smtp_parse.h"
#include "spool.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC_HDR 5              /* type, 4-byte big-endian length */
#define READ_CHUNK 65536       /* a small message, envelope included, is one read */
#define FROM_VALUE_MAX 4096    /* the longest From value smtp reads, the same here */

/* Where the walk over the file is: records, line endings, the header section. */
struct walk {
    unsigned char rh[REC_HDR];  /* a record header being read (it may span reads) */
    int rh_have;
    uint64_t rec_left;          /* bytes of the current BODY record still to come */
    uint64_t body;              /* BODY bytes so far */
    uint64_t records;           /* BODY records so far */
    int after_cr;               /* the last byte was a CR: a LF must come next */
    enum header_scan st;        /* HDR_MORE while the header section goes on */
    char *hdr;                  /* the header section so far (with want_from) */
    size_t len, cap;
};

/* The most BODY records a message of size bytes may take: smtp writes records of
 * 64 KiB but the last; millions of tiny ones would only cost the relay a loop per
 * record at every attempt. */
static uint64_t records_allowed(uint64_t size)
{
    return 2 + size / 1024;
}

/* Room for n more header bytes, in steps that double. 0, or -1. */
static int reserve(struct walk *w, size_t n)
{
    size_t want = w->cap ? w->cap : 4096;
    char *p;

    if (w->len + n <= w->cap)
        return 0;
    while (want < w->len + n)
        want *= 2;
    if ((p = realloc(w->hdr, want)) == NULL)
        return -1;
    w->hdr = p;
    w->cap = want;
    return 0;
}

/* NUL, or a CR or LF outside a CRLF, in n message bytes: why, or NULL. */
static const char *bytes_wrong(struct walk *w, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char b = p[i];

        if (w->after_cr) {
            if (b != '\n')
                return "bare CR in the message";
            w->after_cr = 0;
        } else if (b > '\r') {
            continue;
        } else if (b == '\r') {
            w->after_cr = 1;
        } else if (b == '\n') {
            return "bare LF in the message";
        } else if (b == '\0') {
            return "NUL character in the message";
        }
    }
    return NULL;
}

/* Message bytes of a BODY record: checked, and kept while they are header. */
static int message_bytes(struct walk *w, const struct content_check *c, const unsigned char *p,
                         size_t n, char *why, size_t whylen)
{
    const char *wrong = bytes_wrong(w, p, n);
    size_t took;

    if (wrong != NULL) {
        str_lcpy(why, wrong, whylen);
        return -1;
    }
    if (w->st != HDR_MORE)
        return 0;
    took = smtp_header_scan(w->hdr, w->len, (const char *)p, n, c->max_header, &w->st);
    if (w->st == HDR_OVER) {
        str_fmt(why, whylen, "header section longer than max_header_size with the added "
                "fields (%zu)", c->max_header);
        return -1;
    }
    if (reserve(w, took) != 0) {
        str_lcpy(why, "out of memory reading the header section", whylen);
        return -1;
    }
    memcpy(w->hdr + w->len, p, took);
    w->len += took;
    return 0;
}

/* A record header is complete; at is the file offset right after it. */
static int record_start(struct walk *w, const struct content_check *c, uint64_t at,
                        uint64_t fsize, char *why, size_t whylen)
{
    uint64_t len = ((uint64_t)w->rh[1] << 24) | ((uint64_t)w->rh[2] << 16) |
                   ((uint64_t)w->rh[3] << 8) | w->rh[4];

    w->rh_have = 0;
    if (w->rh[0] != SPOOL_BODY) {
        str_fmt(why, whylen, "record type 0x%02x after the envelope (only BODY may follow)",
                w->rh[0]);
        return -1;
    }
    if (len == 0) {
        str_lcpy(why, "empty BODY record after the envelope", whylen);
        return -1;
    }
    if (++w->records > records_allowed(c->size)) {
        str_fmt(why, whylen, "more BODY records than %llu bytes need",
                (unsigned long long)c->size);
        return -1;
    }
    if (len > SPOOL_REC_MAX || at + len > fsize) {
        str_lcpy(why, "BODY record longer than the file or the limit", whylen);
        return -1;
    }
    /* Refused before the rest is read: the file is bounded by the size smtp
     * announced, which the queue bounded by max_message_size. */
    if (w->body + len > c->size) {
        str_fmt(why, whylen, "BODY records hold more than the %llu bytes COMMIT announced",
                (unsigned long long)c->size);
        return -1;
    }
    w->rec_left = len;
    w->body += len;
    return 0;
}

/* The records after the envelope in buf (n bytes from file offset off). */
static int records(struct walk *w, const struct content_check *c, const unsigned char *buf,
                   size_t n, uint64_t off, uint64_t fsize, char *why, size_t whylen)
{
    size_t i = 0;

    while (i < n) {
        size_t take;

        if (w->rec_left == 0) {
            w->rh[w->rh_have++] = buf[i++];
            if (w->rh_have == REC_HDR && record_start(w, c, off + i, fsize, why, whylen) != 0)
                return -1;
            continue;
        }
        take = w->rec_left < n - i ? (size_t)w->rec_left : n - i;
        if (message_bytes(w, c, buf + i, take, why, whylen) != 0)
            return -1;
        i += take;
        w->rec_left -= take;
    }
    return 0;
}

/* The file from its start: the envelope compared, the records walked. */
static int walk_file(int fd, struct walk *w, const struct content_check *c, char *why,
                     size_t whylen)
{
    unsigned char *buf = malloc(READ_CHUNK);
    struct stat sb;
    uint64_t off = 0, fsize;
    int rc = -1;

    if (buf == NULL || fstat(fd, &sb) != 0) {
        str_fmt(why, whylen, "cannot check: %s", strerror(errno ? errno : ENOMEM));
        goto out;
    }
    fsize = (uint64_t)sb.st_size;
    if (fsize < c->env_len) {
        str_lcpy(why, "envelope records were changed after the queue wrote them", whylen);
        goto out;
    }
    /* The records the size allows, and their headers: nothing more is read. */
    if (fsize - c->env_len > c->size + REC_HDR * records_allowed(c->size)) {
        str_fmt(why, whylen, "the file holds more than the %llu bytes COMMIT announced",
                (unsigned long long)c->size);
        goto out;
    }
    while (off < fsize) {
        size_t want = fsize - off < READ_CHUNK ? (size_t)(fsize - off) : READ_CHUNK, skip = 0;
        ssize_t got = pread(fd, buf, want, (off_t)off);

        if (got != (ssize_t)want) {
            str_fmt(why, whylen, "cannot read the message: %s",
                    got < 0 ? strerror(errno) : "short read");
            goto out;
        }
        if (off < c->env_len) {
            skip = c->env_len - off < want ? (size_t)(c->env_len - off) : want;
            if (memcmp(buf, c->env + off, skip) != 0) {
                str_lcpy(why, "envelope records were changed after the queue wrote them",
                         whylen);
                goto out;
            }
        }
        if (records(w, c, buf + skip, want - skip, off + skip, fsize, why, whylen) != 0)
            goto out;
        off += want;
    }
    if (w->rh_have != 0) {
        str_lcpy(why, "torn record after the envelope", whylen);
        goto out;
    }
    if (w->after_cr) {
        str_lcpy(why, "bare CR in the message", whylen);
        goto out;
    }
    if (w->body != c->size) {
        str_fmt(why, whylen, "BODY records hold %llu bytes, COMMIT announced %llu",
                (unsigned long long)w->body, (unsigned long long)c->size);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

/* The From addresses of the header section the walk kept. */
static int from_addresses(const struct walk *w, struct ipc_header_from *from, char *why,
                          size_t whylen)
{
    char addrs[IPC_FROM_MAX][SMTP_ADDR_MAX + 1];
    /* The fields, without the empty line that ends the section, as smtp reads them. */
    size_t fields = w->st == HDR_DONE ? w->len - 2 : w->len;
    char *value = malloc(FROM_VALUE_MAX);
    int n, k = 0, rc = -1;

    if (value == NULL) {
        str_lcpy(why, "out of memory reading the From field", whylen);
        return -1;
    }
    n = w->len > 0 ? smtp_header_value(w->hdr, fields, "From", value, FROM_VALUE_MAX) : 0;
    if (n == 0) {
        rc = 0;
    } else if (n > 1) {
        str_lcpy(why, "header From is malformed: more than one From field", whylen);
    } else if (n < 0 ||
               (k = smtp_parse_mailbox_list(value, strlen(value), addrs, IPC_FROM_MAX)) <= 0) {
        str_lcpy(why, "header From is malformed: unreadable From field", whylen);
    } else {
        from->naddr = k;
        for (int i = 0; i < k; i++)
            str_lcpy(from->addr[i], addrs[i], sizeof(from->addr[i]));
        rc = 0;
    }
    free(value);
    return rc;
}

int queue_content_check(int fd, struct content_check *c, char *why, size_t whylen)
{
    struct walk w;
    int rc;

    memset(&w, 0, sizeof(w));
    memset(&c->from, 0, sizeof(c->from));
    w.st = c->want_from ? HDR_MORE : HDR_DONE;
    errno = 0;
    rc = walk_file(fd, &w, c, why, whylen);
    if (rc == 0 && c->want_from)
        rc = from_addresses(&w, &c->from, why, whylen);
    free(w.hdr);
    return rc;
}
