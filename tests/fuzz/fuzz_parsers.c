/*
 * Fuzz target for the parsers that see untrusted bytes: the DATA state machine,
 * command verbs, paths, ESMTP parameters, header fields and From mailbox lists,
 * RFC 4514 names, and spool files (a corrupt spool must be refused, never crash);
 * and the DATA path of a session as one pure function: data_parse, the collection of
 * the header section, and the From check's parsers on what was collected.
 *
 * Built with libFuzzer by "make fuzz" (clang), and with tests/fuzz/driver.c by
 * "make test" so that the saved corpus runs as a regression test everywhere.
 * The first input byte selects the parser; the rest is its input.
 */
#include "dn.h"
#include "smtp_parse.h"
#include "spool.h"
#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Invariants of data_parse, checked while feeding the input in two pieces. */
static void fuzz_data(const char *in, size_t len, size_t split)
{
    struct data_parser one, two;
    char *out1 = malloc(len + 2), *out2 = malloc(len + 4);
    size_t o1 = 0, used1, o2a = 0, o2b = 0, used2;

    if (out1 == NULL || out2 == NULL)
        abort();
    data_parser_init(&one);
    used1 = data_parse(&one, in, len, out1, &o1);
    if (used1 > len || o1 > len + 2 || (used1 < len && one.state != DS_END))
        abort();
    if (one.state == DS_END && (used1 < 3 || memcmp(in + used1 - 3, ".\r\n", 3) != 0))
        abort();
    /* Streaming must not change the result. */
    if (split > len)
        split = len;
    data_parser_init(&two);
    used2 = data_parse(&two, in, split, out2, &o2a);
    if (two.state != DS_END && used2 == split)
        used2 += data_parse(&two, in + split, len - split, out2 + o2a, &o2b);
    if (used2 != used1 || o2a + o2b != o1 || memcmp(out1, out2, o1) != 0 ||
        two.bare != one.bare || two.line_too_long != one.line_too_long || two.nul != one.nul)
        abort();
    free(out1);
    free(out2);
}

static void fuzz_command(const char *line)
{
    const char *arg, *params, *why;
    char addr[SMTP_ADDR_MAX + 1];
    struct mail_params mp;
    char addrs[16][SMTP_ADDR_MAX + 1];

    (void)smtp_parse_verb(line, &arg);
    if (smtp_parse_path(line, "FROM:", addr, sizeof(addr), &params, &why) == 0) {
        if (strlen(addr) > SMTP_ADDR_MAX || (addr[0] && !smtp_addr_valid(addr)))
            abort();
        (void)smtp_parse_mail_params(params, &mp, &why);
    }
    int n = smtp_parse_mailbox_list(line, strlen(line), addrs, 16);
    for (int i = 0; i < n; i++)
        if (!smtp_addr_valid(addrs[i]))
            abort();
}

/*
 * A second implementation of smtp_header_value, written the other way round: unfold
 * the whole header first (remove CRLF or LF before white space), then look at whole
 * lines. Returns the number of fields called From; the first one's value (leading
 * white space trimmed) is left in *value, *vlen bytes, NUL bytes and all.
 */
static int ref_from(const char *hdr, size_t len, char **value, size_t *vlen)
{
    char *u = malloc(len + 1);
    size_t ul = 0, pos = 0;
    int count = 0;

    if (u == NULL)
        abort();
    *value = NULL;
    *vlen = 0;
    for (size_t i = 0; i < len;) {
        if (hdr[i] == '\r' && i + 2 < len && hdr[i + 1] == '\n' &&
            (hdr[i + 2] == ' ' || hdr[i + 2] == '\t'))
            i += 2;
        else if (hdr[i] == '\n' && i + 1 < len && (hdr[i + 1] == ' ' || hdr[i + 1] == '\t'))
            i += 1;
        else
            u[ul++] = hdr[i++];
    }
    while (pos < ul) {
        const char *lf = memchr(u + pos, '\n', ul - pos);
        size_t end = lf ? (size_t)(lf - u) : ul, k = pos + 4;

        if (end - pos > 4 && strncasecmp(u + pos, "from", 4) == 0) {
            while (k < end && (u[k] == ' ' || u[k] == '\t'))
                k++;
            if (k < end && u[k] == ':' && count++ == 0) {
                size_t stop = lf && end > k + 1 && u[end - 1] == '\r' ? end - 1 : end;

                k++;
                while (k < stop && (u[k] == ' ' || u[k] == '\t'))
                    k++;
                *value = malloc(stop - k + 1);
                if (*value == NULL)
                    abort();
                memcpy(*value, u + k, stop - k);
                *vlen = stop - k;
            }
        }
        pos = lf ? end + 1 : ul;
    }
    free(u);
    return count;
}

/*
 * The From check's parsers on a header section, as write_prelude and
 * request_header_from use them, compared with the reference; then the mailbox list
 * of the value, and the same value with a NUL put in, which must be refused.
 */
static void check_from(const char *hdr, size_t len, size_t outlen, unsigned seed)
{
    char *value = malloc(outlen ? outlen : 1), *ref = NULL;
    char addrs[16][SMTP_ADDR_MAX + 1];
    size_t rlen;
    int n, rn;

    if (value == NULL)
        abort();
    n = smtp_header_value(hdr, len, "From", value, outlen);
    rn = ref_from(hdr, len, &ref, &rlen);
    if (smtp_header_present(hdr, len, "From") != (rn > 0))
        abort();
    if (n == -1) {
        /* Only a first value that does not fit or holds a NUL is refused. */
        if (rn == 0 || (rlen + 1 < outlen && memchr(ref, '\0', rlen) == NULL))
            abort();
    } else if (n != rn || (n > 0 && (strlen(value) != rlen || memcmp(value, ref, rlen) != 0))) {
        abort();
    }
    if (n > 0) {
        size_t vl = strlen(value);
        int m = smtp_parse_mailbox_list(value, vl, addrs, 16);
        char *nul = malloc(vl + 1);
        size_t at = seed % (vl + 1);

        for (int i = 0; i < m; i++)
            if (strlen(addrs[i]) > SMTP_ADDR_MAX || !smtp_addr_valid(addrs[i]))
                abort();
        if (m > 16 || nul == NULL)
            abort();
        memcpy(nul, value, at);
        nul[at] = '\0';
        memcpy(nul + at + 1, value + at, vl - at);
        if (smtp_parse_mailbox_list(nul, vl + 1, addrs, 16) != -1)
            abort();
        free(nul);
    }
    free(ref);
    free(value);
}

/* Where the header section of msg ends by the definition (the first CRLF CRLF, or a
 * CRLF at the very start), or 0 when it does not. */
static size_t ref_header_end(const char *msg, size_t len)
{
    const char *e;

    if (len >= 2 && msg[0] == '\r' && msg[1] == '\n')
        return 2;
    e = memmem(msg, len, "\r\n\r\n", 4);
    return e ? (size_t)(e - msg) + 4 : 0;
}

/* What the session's DATA path collected from one message. */
struct collected {
    const char *all;      /* everything data_parse produced (or the raw input) */
    size_t alllen;
    char *hdr;            /* the header section as collected */
    size_t hdrlen;
    enum header_scan st;
};

/* Feeds the header collector one chunk of data_parse's output, as header_take does. */
static void collect(struct collected *c, const char *p, size_t n, size_t max)
{
    size_t take;

    if (c->st != HDR_MORE)
        return;
    take = smtp_header_scan(c->hdr, c->hdrlen, p, n, max, &c->st);
    if (take > n || (c->st == HDR_MORE && take != n) || (c->st == HDR_OVER && take != 0) ||
        c->hdrlen + take > max)
        abort();
    memcpy(c->hdr + c->hdrlen, p, take);
    c->hdrlen += take;
}

/* The collected header section against its definition over the whole output. */
static void check_collected(const struct collected *c, size_t max)
{
    size_t end = ref_header_end(c->all, c->alllen);

    if (memcmp(c->hdr, c->all, c->hdrlen) != 0)
        abort();
    if (end != 0 && end <= max && (c->st != HDR_DONE || c->hdrlen != end))
        abort();
    if (end != 0 && end > max && c->st != HDR_OVER)
        abort();
    if (end == 0 && c->alllen <= max && (c->st != HDR_MORE || c->hdrlen != c->alllen))
        abort();
    if (end == 0 && c->alllen > max && c->st != HDR_OVER)
        abort();
}

/* Header helpers on arbitrary bytes (bare CR and LF included, which data_parse
 * never lets through), and the collection of them in chunks of 1 to 64 bytes. */
static void fuzz_header(const char *hdr, size_t len)
{
    struct collected c;
    size_t max = len / 2 + (len & 1) * 64, pos = 0;

    check_from(hdr, len, 512, (unsigned)len);
    check_from(hdr, len, 8, (unsigned)len * 7);
    memset(&c, 0, sizeof(c));
    c.all = hdr;
    c.alllen = len;
    c.hdr = malloc(max + 1);
    if (c.hdr == NULL)
        abort();
    while (pos < len) {
        size_t n = 1 + (unsigned char)hdr[pos] % 64;

        if (n > len - pos)
            n = len - pos;
        collect(&c, hdr + pos, n, max);
        pos += n;
    }
    check_collected(&c, max);
    free(c.hdr);
}

/*
 * A whole DATA phase: the wire bytes in chunks of varying size through data_parse,
 * its output through the header collection (limit from the input), then the From
 * check on the section, as smtp_session.c does.
 */
static void fuzz_message(const uint8_t *data, size_t size)
{
    struct data_parser dp;
    struct collected c;
    const char *in = (const char *)data + 2;
    size_t len = size - 2, pos = 0, max = (size_t)data[0] * 16;
    unsigned rnd = data[1];
    char *out = malloc(len + 2), *all = malloc(len + 2);

    memset(&c, 0, sizeof(c));
    c.all = all;
    c.hdr = malloc(max + 1);
    if (out == NULL || all == NULL || c.hdr == NULL)
        abort();
    data_parser_init(&dp);
    while (pos < len && dp.state != DS_END) {
        size_t n, o = 0, used;

        rnd = rnd * 1103515245u + 12345u;
        n = 1 + (rnd >> 16) % (data[1] + 1u);
        if (n > len - pos)
            n = len - pos;
        used = data_parse(&dp, in + pos, n, out, &o);
        if (used > n || o > n + 2 || (used < n && dp.state != DS_END))
            abort();
        memcpy(all + c.alllen, out, o);
        c.alllen += o;
        collect(&c, out, o, max);
        pos += used;
    }
    /* Every NUL that was read is in the output, and flagged. */
    if (dp.nul != (memchr(in, '\0', pos) != NULL) ||
        dp.nul != (memchr(c.all, '\0', c.alllen) != NULL))
        abort();
    check_collected(&c, max);
    if (c.st != HDR_OVER) {
        size_t hl = c.st == HDR_DONE ? c.hdrlen - 2 : c.hdrlen;

        (void)smtp_header_present(c.hdr, hl, "Date");
        check_from(c.hdr, hl, 4096, rnd);
    }
    free(out);
    free(all);
    free(c.hdr);
}

static void fuzz_dn(const char *s)
{
    char out[1024], err[256];

    if (dn_canon_string(s, out, sizeof(out), err, sizeof(err)) == 0 && strlen(out) >= sizeof(out))
        abort();
}

static void fuzz_spool(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/submitd-fuzz-spool-XXXXXX", err[256];
    struct spool_msg msg;
    int fd = mkstemp(path);

    if (fd < 0)
        return;
    if (write_all(fd, data, size) == 0 && spool_load(path, &msg, err, sizeof(err)) == 0) {
        if (msg.nrcpt < 1 || !spool_id_valid(msg.id))
            abort();
        spool_msg_free(&msg);
    }
    close(fd);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    if (size < 1 || size > 1 << 20)
        return 0;
    /* A NUL-terminated copy for the string parsers. */
    s = malloc(size);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 6) {
    case 0:
        fuzz_data(s, size - 1, size > 1 ? data[1] % size : 0);
        break;
    case 1:
        fuzz_command(s);
        break;
    case 2:
        fuzz_header(s, size - 1);
        break;
    case 3:
        fuzz_dn(s);
        break;
    case 4:
        fuzz_spool(data + 1, size - 1);
        break;
    case 5:
        if (size >= 3)
            fuzz_message(data + 1, size - 1);
        break;
    }
    free(s);
    return 0;
}
