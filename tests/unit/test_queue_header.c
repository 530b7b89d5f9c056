/*
 * Unit tests of submitd/queue/queue_header.c: the header From of a committed spool
 * file, read across BODY records and read chunks, as smtp reads it.
 */
#include "../../submitd/queue/queue_header.h"
#include "spool.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ENVELOPE "an envelope the reader must skip"

/* A spool file: an envelope record, then the message in BODY records of at most
 * rec bytes. Returns the descriptor, the BODY records' offset in *body_off. */
static int spool_file(const char *msg, size_t len, size_t rec, uint64_t *body_off)
{
    char path[] = "/tmp/test_queue_header.XXXXXX";
    int fd = mkstemp(path);

    if (fd < 0)
        return -1;
    unlink(path);
    if (spool_put_str(fd, SPOOL_FROM, ENVELOPE) != 0)
        return -1;
    *body_off = (uint64_t)lseek(fd, 0, SEEK_CUR);
    for (size_t off = 0; off < len; off += rec)
        if (spool_put(fd, SPOOL_BODY, msg + off, len - off < rec ? len - off : rec) != 0)
            return -1;
    return fd;
}

/* Reads the From addresses of msg written in records of rec bytes: the return
 * value of queue_header_from, the reason in why. */
static int from_of(const char *msg, size_t rec, size_t max, struct ipc_header_from *from,
                   char *why, size_t whylen)
{
    uint64_t off = 0;
    int fd = spool_file(msg, strlen(msg), rec, &off), rc;

    if (fd < 0)
        return -2;
    why[0] = '\0';
    rc = queue_header_from(fd, off, max, from, why, whylen);
    close(fd);
    return rc;
}

TEST(test_from_addresses_in_every_record_size)
{
    static const char msg[] =
        "Received: from x by y\r\n"
        "From: \"Smith, Alice\" <alice@example.com>,\r\n bob@example.com\r\n"
        "Subject: s\r\n\r\nFrom: not-a-header@example.com\r\n";
    static const size_t recs[] = {1, 2, 7, 64, 4096, 65536};
    struct ipc_header_from f;
    char why[256];

    for (size_t i = 0; i < sizeof(recs) / sizeof(recs[0]); i++) {
        CHECK(from_of(msg, recs[i], 1 << 20, &f, why, sizeof(why)) == 0);
        CHECK(f.naddr == 2);
        CHECK_STR(f.addr[0], "alice@example.com");
        CHECK_STR(f.addr[1], "bob@example.com");
    }
}

TEST(test_a_header_longer_than_a_read_chunk)
{
    size_t pad = 10000, n = 0;
    char *msg = malloc(pad + 200);
    struct ipc_header_from f;
    char why[256];

    CHECK(msg != NULL);
    if (msg == NULL)
        return;
    /* Folded padding fields, then From beyond the first 4 KiB. */
    for (size_t i = 0; i < pad / 100; i++)
        n += (size_t)snprintf(msg + n, pad + 200 - n, "X-Pad: %090d\r\n", (int)i);
    snprintf(msg + n, pad + 200 - n, "From: carol@example.com\r\n\r\nbody\r\n");
    CHECK(from_of(msg, 65536, 1 << 20, &f, why, sizeof(why)) == 0);
    CHECK(f.naddr == 1 && strcmp(f.addr[0], "carol@example.com") == 0);
    CHECK(from_of(msg, 3000, 1 << 20, &f, why, sizeof(why)) == 0);
    CHECK(f.naddr == 1 && strcmp(f.addr[0], "carol@example.com") == 0);
    /* Over the limit: refused, and the reason says so. */
    CHECK(from_of(msg, 65536, 5000, &f, why, sizeof(why)) == -1);
    CHECK(strstr(why, "header section longer than") != NULL);
    free(msg);
}

TEST(test_no_from_field_and_no_body)
{
    struct ipc_header_from f;
    char why[256];

    CHECK(from_of("Subject: none\r\n\r\nFrom: x@y.z\r\n", 64, 1 << 20, &f, why,
                  sizeof(why)) == 0);
    CHECK(f.naddr == 0);
    /* No empty line: the whole message is header, as smtp takes it. */
    CHECK(from_of("Subject: s\r\nFrom: dave@example.com\r\n", 5, 1 << 20, &f, why,
                  sizeof(why)) == 0);
    CHECK(f.naddr == 1 && strcmp(f.addr[0], "dave@example.com") == 0);
    CHECK(from_of("", 64, 1 << 20, &f, why, sizeof(why)) == 0);
    CHECK(f.naddr == 0);
    /* An empty line first: no header at all. */
    CHECK(from_of("\r\nFrom: eve@example.com\r\n", 64, 1 << 20, &f, why, sizeof(why)) == 0);
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
        CHECK(from_of(bad[i], 64, 1 << 20, &f, why, sizeof(why)) == -1);
        CHECK(strncmp(why, "header From is malformed: ", 26) == 0);
        CHECK(f.naddr == 0);
    }
    /* A NUL byte in the value: it cannot be checked whole. */
    {
        static const char msg[] = "From: a@example.com\0b\r\n\r\n";
        uint64_t off = 0;
        int fd = spool_file(msg, sizeof(msg) - 1, 64, &off);

        CHECK(fd >= 0);
        CHECK(queue_header_from(fd, off, 1 << 20, &f, why, sizeof(why)) == -1);
        CHECK(strstr(why, "unreadable From field") != NULL);
        close(fd);
    }
}

int main(void)
{
    RUN(test_from_addresses_in_every_record_size);
    RUN(test_a_header_longer_than_a_read_chunk);
    RUN(test_no_from_field_and_no_body);
    RUN(test_malformed_from_fields_are_refused);
    return UNIT_DONE();
}
