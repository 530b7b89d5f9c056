/*
 * Unit tests of submitd/queue/queue_content.c: what the queue checks in a committed
 * spool file (envelope, records, line endings, NUL) and the From addresses it reads
 * there, across BODY records and read chunks, as smtp reads them.
 */
#include "../../submitd/queue/queue_content.h"
#include "spool.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const unsigned char envelope[] = "\x01\x00\x00\x00\x05" "a@b.c";   /* as written */
#define ENV_LEN (sizeof(envelope) - 1)

/* A spool file: the envelope, then the message (len bytes) in BODY records of at
 * most rec bytes, the first of them split at split when 0 < split < len (two
 * records where one would do). Returns the descriptor, or -1. */
static int spool_file_split(const char *msg, size_t len, size_t rec, size_t split)
{
    char path[] = "/tmp/test_queue_content.XXXXXX";
    int fd = mkstemp(path);
    size_t off = 0;

    if (fd < 0)
        return -1;
    unlink(path);
    if (write(fd, envelope, ENV_LEN) != (ssize_t)ENV_LEN)
        return -1;
    if (split > 0 && split < len) {
        if (spool_put(fd, SPOOL_BODY, msg, split) != 0)
            return -1;
        off = split;
    }
    for (; off < len; off += rec)
        if (spool_put(fd, SPOOL_BODY, msg + off, len - off < rec ? len - off : rec) != 0)
            return -1;
    return fd;
}

static int spool_file(const char *msg, size_t len, size_t rec)
{
    return spool_file_split(msg, len, rec, 0);
}

/* Checks a file holding msg (len bytes, records of rec bytes); announced: size. */
static int check_file(int fd, uint64_t size, size_t max, int want_from,
                      struct ipc_header_from *from, char *why, size_t whylen)
{
    struct content_check c;
    int rc;

    memset(&c, 0, sizeof(c));
    c.env = envelope;
    c.env_len = ENV_LEN;
    c.size = size;
    c.max_header = max;
    c.want_from = want_from;
    why[0] = '\0';
    rc = queue_content_check(fd, &c, why, whylen);
    *from = c.from;
    return rc;
}

static int check_split(const char *msg, size_t len, size_t rec, size_t split, size_t max,
                       struct ipc_header_from *from, char *why, size_t whylen)
{
    int fd = spool_file_split(msg, len, rec, split), rc;

    if (fd < 0)
        return -2;
    rc = check_file(fd, len, max, 1, from, why, whylen);
    close(fd);
    return rc;
}

static int check_msg(const char *msg, size_t len, size_t rec, size_t max,
                     struct ipc_header_from *from, char *why, size_t whylen)
{
    return check_split(msg, len, rec, 0, max, from, why, whylen);
}

#define CHECK_MSG(msg, rec, max) check_msg((msg), strlen(msg), (rec), (max), &f, why, sizeof(why))

/* The header section read the same wherever a record boundary falls in it. */
TEST(test_from_addresses_at_every_record_boundary)
{
    static const char msg[] =
        "Received: from x by y\r\n"
        "From: \"Smith, Alice\" <alice@example.com>,\r\n bob@example.com\r\n"
        "Subject: s\r\n\r\nFrom: not-a-header@example.com\r\n";
    struct ipc_header_from f;
    char why[256];

    for (size_t split = 0; split < strlen(msg); split++) {
        CHECK(check_split(msg, strlen(msg), 65536, split, 1 << 20, &f, why, sizeof(why)) == 0);
        CHECK(f.naddr == 2);
        CHECK_STR(f.addr[0], "alice@example.com");
        CHECK_STR(f.addr[1], "bob@example.com");
    }
}

TEST(test_a_header_longer_than_a_read_chunk)
{
    size_t cap = 140000, n = 0, hlen;
    char *msg = malloc(cap);
    struct ipc_header_from f;
    char why[256];

    CHECK(msg != NULL);
    if (msg == NULL)
        return;
    /* 1,300 padding fields (over 64 KiB, one read), then From. */
    for (int i = 0; i < 1300; i++)
        n += (size_t)snprintf(msg + n, cap - n, "X-Pad: %090d\r\n", i);
    n += (size_t)snprintf(msg + n, cap - n, "From: carol@example.com\r\n");
    hlen = n + 2;
    snprintf(msg + n, cap - n, "\r\nbody\r\n");
    CHECK(CHECK_MSG(msg, 65536, 1 << 20) == 0);
    CHECK(f.naddr == 1 && strcmp(f.addr[0], "carol@example.com") == 0);
    CHECK(CHECK_MSG(msg, 3000, 1 << 20) == 0);
    CHECK(f.naddr == 1 && strcmp(f.addr[0], "carol@example.com") == 0);
    /* The limit is exact: the whole section fits at its own length, not one less. */
    CHECK(CHECK_MSG(msg, 4096, hlen) == 0);
    CHECK(CHECK_MSG(msg, 4096, hlen - 1) == -1);
    CHECK(strstr(why, "header section longer than") != NULL);
    free(msg);
}

TEST(test_no_from_field_and_no_body)
{
    struct ipc_header_from f;
    char why[256];

    CHECK(CHECK_MSG("Subject: none\r\n\r\nFrom: x@y.z\r\n", 64, 1 << 20) == 0);
    CHECK(f.naddr == 0);
    /* No empty line: the whole message is header, as smtp takes it. */
    CHECK(CHECK_MSG("Subject: s\r\nFrom: dave@example.com\r\n", 64, 1 << 20) == 0);
    CHECK(f.naddr == 1 && strcmp(f.addr[0], "dave@example.com") == 0);
    CHECK(CHECK_MSG("", 64, 1 << 20) == 0);
    CHECK(f.naddr == 0);
    /* An empty line first: no header at all. */
    CHECK(CHECK_MSG("\r\nFrom: eve@example.com\r\n", 64, 1 << 20) == 0);
    CHECK(f.naddr == 0);
}

TEST(test_malformed_from_fields_are_refused)
{
    static const char *bad[] = {
        "From: a@example.com\r\nFrom: b@example.com\r\n\r\n",
        "From: not an address\r\n\r\n",
        "From: <a@example.com\r\n\r\n",
        "From:\r\n\r\n",
    };
    struct ipc_header_from f;
    char why[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(CHECK_MSG(bad[i], 64, 1 << 20) == -1);
        CHECK(strncmp(why, "header From is malformed: ", 26) == 0);
        CHECK(f.naddr == 0);
    }
}

/* What smtp refuses from a client is refused here too, wherever it is: a bare CR
 * could hide a From field from this reading ("Subject: x\rFrom: ..."). */
TEST(test_bare_line_ends_and_nul_are_refused)
{
#define MSG(text) text, sizeof(text) - 1
    static const struct { const char *msg; size_t len; const char *why; } bad[] = {
        {MSG("Subject: hi\rFrom: ceo@example.org\r\n\r\nb\r\n"), "bare CR"},
        {MSG("Subject: hi\nFrom: ceo@example.org\r\n\r\nb\r\n"), "bare LF"},
        {MSG("Subject: hi\r\n\r\nbody\n.\nmore\r\n"), "bare LF"},
        {MSG("Subject: hi\r\n\r\nbody\r.\rmore\r\n"), "bare CR"},
        {MSG("Subject: hi\r\n\r\nbody ends in CR\r"), "bare CR"},
        {MSG("Subject: hi\r\n\r\nnul \0 here\r\n"), "NUL"},
        {MSG("From\0: ceo@example.org\r\n\r\n"), "NUL"},
    };
#undef MSG
    struct ipc_header_from f;
    char why[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t len = bad[i].len;
        size_t splits[] = {0, 1, len / 2, len - 1};

        for (size_t k = 0; k < sizeof(splits) / sizeof(splits[0]); k++) {
            CHECK(check_split(bad[i].msg, len, 65536, splits[k], 1 << 20, &f, why,
                              sizeof(why)) == -1);
            CHECK(strstr(why, bad[i].why) != NULL);
        }
    }
    /* A CRLF split between two records is one line end. */
    CHECK(check_split("From: a@example.com\r\n\r\nb\r\n", 26, 65536, 20, 1 << 20, &f, why,
                      sizeof(why)) == 0);
    CHECK(f.naddr == 1);
}

TEST(test_records_and_envelope_are_checked)
{
    struct ipc_header_from f;
    char why[256];
    static const char msg[] = "Subject: s\r\n\r\nb\r\n";
    int fd;

    /* The announced size must be what the records hold. */
    fd = spool_file(msg, strlen(msg), 64);
    CHECK(check_file(fd, strlen(msg) + 1, 1 << 20, 1, &f, why, sizeof(why)) == -1);
    CHECK(strstr(why, "COMMIT announced") != NULL);
    /* An empty BODY record (millions would only cost reads). */
    CHECK(spool_put(fd, SPOOL_BODY, "", 0) == 0);
    CHECK(check_file(fd, strlen(msg), 1 << 20, 1, &f, why, sizeof(why)) == -1);
    CHECK(strstr(why, "empty BODY record") != NULL);
    close(fd);
    /* Many more records than the bytes need (1-byte records of 4 KiB). */
    {
        char big[4096];

        memset(big, 'x', sizeof(big));
        memcpy(big + sizeof(big) - 2, "\r\n", 2);
        int fd1;

        CHECK(check_msg(big, sizeof(big), 1, 1 << 20, &f, why, sizeof(why)) == -1);
        CHECK(strstr(why, "the file holds more than the 4096 bytes") != NULL);
        /* Within the file size the bytes allow, but in too many records. */
        fd1 = spool_file(big, sizeof(big), 1);
        CHECK(check_file(fd1, 8 * sizeof(big), 1 << 20, 1, &f, why, sizeof(why)) == -1);
        CHECK(strstr(why, "more BODY records than") != NULL);
        close(fd1);
        CHECK(check_msg(big, sizeof(big), 1024, 1 << 20, &f, why, sizeof(why)) == 0);
    }
    /* A record of another type after the envelope. */
    fd = spool_file(msg, strlen(msg), 64);
    CHECK(spool_put_str(fd, SPOOL_FROM, "ceo@example.org") == 0);
    CHECK(check_file(fd, strlen(msg) + 100, 1 << 20, 1, &f, why, sizeof(why)) == -1);
    CHECK(strstr(why, "only BODY may follow") != NULL);
    /* Announced as it is: the extra bytes are refused before they are read. */
    CHECK(check_file(fd, strlen(msg), 1 << 20, 1, &f, why, sizeof(why)) == -1);
    CHECK(strstr(why, "the file holds more than") != NULL);
    close(fd);
    /* Records beyond the announced size are refused when they begin (a file of
     * 1 MiB records under a small announced size is never read whole). */
    {
        static char mib[1 << 20];

        memset(mib, 'y', sizeof(mib));
        memcpy(mib + sizeof(mib) - 2, "\r\n", 2);
        fd = spool_file(mib, sizeof(mib), sizeof(mib));
        CHECK(spool_put(fd, SPOOL_BODY, mib, sizeof(mib)) == 0);
        CHECK(check_file(fd, 2 * sizeof(mib) - 1, 1 << 20, 1, &f, why, sizeof(why)) == -1);
        CHECK(strstr(why, "BODY records hold more than the") != NULL);
        close(fd);
    }
    /* A record longer than the file, and a torn record header. */
    fd = spool_file(msg, strlen(msg), 64);
    CHECK(write(fd, "B\0\0\1\0xx", 7) == 7);
    CHECK(check_file(fd, strlen(msg) + 256, 1 << 20, 1, &f, why, sizeof(why)) == -1);
    CHECK(strstr(why, "longer than the file") != NULL);
    close(fd);
    fd = spool_file(msg, strlen(msg), 64);
    CHECK(write(fd, "B\0", 2) == 2);
    CHECK(check_file(fd, strlen(msg), 1 << 20, 1, &f, why, sizeof(why)) == -1);
    CHECK(strstr(why, "torn record") != NULL);
    close(fd);
    /* The envelope changed, and a file shorter than it. */
    fd = spool_file(msg, strlen(msg), 64);
    CHECK(pwrite(fd, "X", 1, 6) == 1);
    CHECK(check_file(fd, strlen(msg), 1 << 20, 1, &f, why, sizeof(why)) == -1);
    CHECK(strstr(why, "envelope records were changed") != NULL);
    CHECK(ftruncate(fd, 3) == 0);
    CHECK(check_file(fd, 0, 1 << 20, 1, &f, why, sizeof(why)) == -1);
    CHECK(strstr(why, "envelope records were changed") != NULL);
    close(fd);
}

TEST(test_without_check_header_from_the_field_is_not_read)
{
    struct ipc_header_from f;
    char why[256];
    static const char msg[] = "From: a@example.com\r\nFrom: b@example.com\r\n\r\n";
    int fd = spool_file(msg, strlen(msg), 64);

    CHECK(check_file(fd, strlen(msg), 1 << 20, 0, &f, why, sizeof(why)) == 0);
    CHECK(f.naddr == 0);
    close(fd);
}

int main(void)
{
    RUN(test_from_addresses_at_every_record_boundary);
    RUN(test_a_header_longer_than_a_read_chunk);
    RUN(test_no_from_field_and_no_body);
    RUN(test_malformed_from_fields_are_refused);
    RUN(test_bare_line_ends_and_nul_are_refused);
    RUN(test_records_and_envelope_are_checked);
    RUN(test_without_check_header_from_the_field_is_not_read);
    return UNIT_DONE();
}
