/* The header From of a committed message (see queue_header.h). */
#include "queue_header.h"

#include "smtp_parse.h"
#include "util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REC_HDR 5              /* type, 4-byte big-endian length */
#define READ_CHUNK 4096        /* most header sections end within the first */
#define FROM_VALUE_MAX 4096    /* the longest From value smtp reads, the same here */

/* Room for n more bytes after len, in steps that double. 0, or -1. */
static int reserve(char **buf, size_t *cap, size_t len, size_t n)
{
    size_t want = *cap ? *cap : READ_CHUNK;
    char *p;

    if (len + n <= *cap)
        return 0;
    while (want < len + n)
        want *= 2;
    if ((p = realloc(*buf, want)) == NULL)
        return -1;
    *buf = p;
    *cap = want;
    return 0;
}

/*
 * Reads the header section into *hdr: up to and including the empty line that ends
 * it, or the whole message when it has none. *fields is how many bytes hold fields
 * (the section without its empty line), as smtp hands them to the same parsers.
 * 0, or -1 with why.
 */
static int read_header_section(int fd, uint64_t off, size_t max, char **hdr, size_t *fields,
                               char *why, size_t whylen)
{
    size_t len = 0, cap = 0;
    enum header_scan st = HDR_MORE;
    unsigned char rh[REC_HDR];

    *hdr = NULL;
    while (st == HDR_MORE) {
        ssize_t got = pread(fd, rh, REC_HDR, (off_t)off);
        uint64_t rlen, pos = 0;

        if (got == 0)
            break;                      /* no empty line: the message is all header */
        if (got != REC_HDR)
            goto unreadable;
        rlen = ((uint64_t)rh[1] << 24) | ((uint64_t)rh[2] << 16) | ((uint64_t)rh[3] << 8) | rh[4];
        off += REC_HDR;
        while (pos < rlen && st == HDR_MORE) {
            size_t want = rlen - pos < READ_CHUNK ? (size_t)(rlen - pos) : READ_CHUNK, took;

            if (reserve(hdr, &cap, len, want) != 0) {
                str_lcpy(why, "out of memory reading the header section", whylen);
                return -1;
            }
            if (pread(fd, *hdr + len, want, (off_t)(off + pos)) != (ssize_t)want)
                goto unreadable;
            took = smtp_header_scan(*hdr, len, *hdr + len, want, max, &st);
            if (st == HDR_OVER) {
                str_fmt(why, whylen, "header section longer than max_header_size with the "
                        "added fields (%zu)", max);
                return -1;
            }
            len += took;
            pos += want;
        }
        off += rlen;
    }
    *fields = st == HDR_DONE ? len - 2 : len;
    return 0;
unreadable:
    str_fmt(why, whylen, "cannot read the message: %s", errno ? strerror(errno) : "short read");
    return -1;
}

int queue_header_from(int fd, uint64_t body_off, size_t max_header,
                      struct ipc_header_from *from, char *why, size_t whylen)
{
    char addrs[IPC_FROM_MAX][SMTP_ADDR_MAX + 1];
    char *hdr = NULL, *value = NULL;
    size_t fields = 0;
    int n, k, rc = -1;

    memset(from, 0, sizeof(*from));
    errno = 0;
    if (read_header_section(fd, body_off, max_header, &hdr, &fields, why, whylen) != 0)
        goto out;
    if ((value = malloc(FROM_VALUE_MAX)) == NULL) {
        str_lcpy(why, "out of memory reading the From field", whylen);
        goto out;
    }
    n = hdr != NULL ? smtp_header_value(hdr, fields, "From", value, FROM_VALUE_MAX) : 0;
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
out:
    free(value);
    free(hdr);
    return rc;
}
