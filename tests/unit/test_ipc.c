/*
 * Unit tests of submitd/lib/ipc.c: typed messages over a SOCK_SEQPACKET socketpair,
 * descriptor passing, and the validation every receiver relies on.
 */
#include "ipc.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct ipc_msg *tx, *rx;   /* 64 KiB each: not on the stack */

/* The lowest descriptor number that is free now (what the next open() returns). */
static int lowest_free_fd(void)
{
    int fd = dup(0), n;

    n = fd;
    if (fd >= 0)
        close(fd);
    return n;
}

/* Builds a raw datagram: 16-byte header (length = total, type, id 7) + payload. */
static size_t raw_msg(unsigned char *buf, uint32_t hdr_len, uint16_t type, const void *payload,
                      size_t plen)
{
    memset(buf, 0, 16);
    buf[0] = (unsigned char)(hdr_len >> 24);
    buf[1] = (unsigned char)(hdr_len >> 16);
    buf[2] = (unsigned char)(hdr_len >> 8);
    buf[3] = (unsigned char)hdr_len;
    buf[4] = (unsigned char)(type >> 8);
    buf[5] = (unsigned char)type;
    buf[15] = 7;
    if (plen > 0)
        memcpy(buf + 16, payload, plen);
    return 16 + plen;
}

/* Sends a raw datagram whose header length is its real length. */
static int send_raw(int sock, uint16_t type, const void *payload, size_t plen)
{
    unsigned char buf[256];
    size_t n = raw_msg(buf, (uint32_t)(16 + plen), type, payload, plen);

    return send(sock, buf, n, 0) == (ssize_t)n ? 0 : -1;
}

TEST(test_round_trip_with_fd)
{
    int sv[2], p[2];
    uint64_t v = 0;
    char s1[64], s2[8], s3[8];
    char readback[8] = "";

    CHECK(ipc_socketpair(sv) == 0);
    CHECK(pipe(p) == 0);
    CHECK(fcntl(sv[0], F_GETFD) & FD_CLOEXEC);

    ipc_init(tx, IPC_QUEUE_OPENED, 0x0123456789abcdefULL);
    CHECK(ipc_put_u64(tx, 0) == 0);
    CHECK(ipc_put_str(tx, "0123456789ABCDEFGHIJ") == 0);
    CHECK(ipc_put_str(tx, "") == 0);
    CHECK(ipc_put_str(tx, NULL) == 0);
    CHECK(ipc_put_u64(tx, UINT64_MAX) == 0);
    CHECK(ipc_put_u64(tx, 0x8000000000000001ULL) == 0);
    CHECK(tx->len == 16 + 9 + 23 + 3 + 3 + 9 + 9);
    tx->fd = p[1];
    CHECK(ipc_send(sv[0], tx) == 0);
    close(p[1]);

    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(rx->type == IPC_QUEUE_OPENED);
    CHECK(rx->id == 0x0123456789abcdefULL);
    CHECK(rx->len == tx->len);
    CHECK(ipc_get_u64(rx, &v) == 0 && v == 0);
    CHECK(ipc_get_str(rx, s1, sizeof(s1)) == 0);
    CHECK_STR(s1, "0123456789ABCDEFGHIJ");
    CHECK(ipc_get_str(rx, s2, sizeof(s2)) == 0);
    CHECK_STR(s2, "");
    CHECK(ipc_get_str(rx, s3, sizeof(s3)) == 0);
    CHECK_STR(s3, "");
    CHECK(ipc_get_u64(rx, &v) == 0 && v == UINT64_MAX);
    CHECK(ipc_get_u64(rx, &v) == 0 && v == 0x8000000000000001ULL);
    CHECK(ipc_end(rx) == 0);
    /* Nothing more to read. */
    CHECK(ipc_get_u64(rx, &v) == -1);
    CHECK(ipc_get_str(rx, s1, sizeof(s1)) == -1);

    /* The passed descriptor is close-on-exec and writes into the same pipe. */
    CHECK(rx->fd >= 0);
    if (rx->fd >= 0) {
        CHECK(fcntl(rx->fd, F_GETFD) & FD_CLOEXEC);
        CHECK(write(rx->fd, "hey", 3) == 3);
        close(rx->fd);
        CHECK(read(p[0], readback, sizeof(readback)) == 3);
        CHECK(memcmp(readback, "hey", 3) == 0);
    }
    close(p[0]);

    /* A message without a descriptor arrives with fd -1. */
    ipc_init(tx, IPC_AUTHZ_RESULT, 1);
    CHECK(ipc_put_u64(tx, IPC_DENY) == 0);
    CHECK(ipc_send(sv[0], tx) == 0);
    rx->fd = 12345;
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(rx->fd == -1);
    CHECK(rx->type == IPC_AUTHZ_RESULT && rx->id == 1);
    close(sv[0]);
    close(sv[1]);
}

TEST(test_wrong_field_types)
{
    int sv[2];
    uint64_t v = 99;
    char s[32];

    CHECK(ipc_socketpair(sv) == 0);
    ipc_init(tx, IPC_AUTHZ_SENDER, 2);
    CHECK(ipc_put_u64(tx, 42) == 0);
    CHECK(ipc_put_str(tx, "abc") == 0);
    CHECK(ipc_send(sv[0], tx) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    /* A string where a number is: refused, and the position does not move. */
    CHECK(ipc_get_str(rx, s, sizeof(s)) == -1);
    CHECK(ipc_get_u64(rx, &v) == 0 && v == 42);
    CHECK(ipc_get_u64(rx, &v) == -1);
    CHECK(v == 42);
    CHECK(ipc_get_str(rx, s, sizeof(s)) == 0);
    CHECK_STR(s, "abc");
    CHECK(ipc_end(rx) == 0);
    close(sv[0]);
    close(sv[1]);
}

TEST(test_string_bounds)
{
    int sv[2];
    char s5[5], s6[6];

    CHECK(ipc_socketpair(sv) == 0);
    ipc_init(tx, IPC_AUTHZ_SENDER, 3);
    CHECK(ipc_put_str(tx, "hello") == 0);
    CHECK(ipc_send(sv[0], tx) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    /* "hello" needs 6 bytes with its terminator. */
    memset(s5, 'Z', sizeof(s5));
    CHECK(ipc_get_str(rx, s5, sizeof(s5)) == -1);
    CHECK(s5[0] == 'Z');
    CHECK(ipc_get_str(rx, s6, 0) == -1);
    CHECK(ipc_get_str(rx, s6, sizeof(s6)) == 0);
    CHECK_STR(s6, "hello");
    CHECK(ipc_end(rx) == 0);
    close(sv[0]);
    close(sv[1]);
}

TEST(test_embedded_nul_and_truncated_fields)
{
    int sv[2];
    char s[32];
    uint64_t v;

    CHECK(ipc_socketpair(sv) == 0);
    /* 's', length 3, "a\0c" */
    CHECK(send_raw(sv[0], IPC_AUTHZ_SENDER, "s\0\3a\0c", 6) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(ipc_get_str(rx, s, sizeof(s)) == -1);
    CHECK(ipc_end(rx) == -1);
    /* A string whose declared length runs past the message. */
    CHECK(send_raw(sv[0], IPC_AUTHZ_SENDER, "s\0\12abc", 6) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(ipc_get_str(rx, s, sizeof(s)) == -1);
    /* A string header cut short. */
    CHECK(send_raw(sv[0], IPC_AUTHZ_SENDER, "s\0", 2) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(ipc_get_str(rx, s, sizeof(s)) == -1);
    /* A number cut short. */
    CHECK(send_raw(sv[0], IPC_AUTHZ_SENDER, "n\0\0\0\0\0\0\0", 8) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(ipc_get_u64(rx, &v) == -1);
    /* An unknown field tag. */
    CHECK(send_raw(sv[0], IPC_AUTHZ_SENDER, "x\0\1a", 4) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(ipc_get_str(rx, s, sizeof(s)) == -1);
    CHECK(ipc_get_u64(rx, &v) == -1);
    close(sv[0]);
    close(sv[1]);
}

TEST(test_trailing_garbage)
{
    int sv[2];
    uint64_t v;
    char s[8];

    CHECK(ipc_socketpair(sv) == 0);
    ipc_init(tx, IPC_QUEUE_ABORT, 4);
    CHECK(ipc_put_str(tx, "id") == 0);
    CHECK(ipc_put_u64(tx, 5) == 0);
    CHECK(ipc_send(sv[0], tx) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(ipc_get_str(rx, s, sizeof(s)) == 0);
    CHECK(ipc_end(rx) == -1);     /* the number was not read */
    CHECK(ipc_get_u64(rx, &v) == 0 && v == 5);
    CHECK(ipc_end(rx) == 0);
    /* One stray byte after a complete field. */
    CHECK(send_raw(sv[0], IPC_QUEUE_ABORT, "s\0\2id!", 6) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(ipc_get_str(rx, s, sizeof(s)) == 0);
    CHECK_STR(s, "id");
    CHECK(ipc_end(rx) == -1);
    /* An empty message is complete as it is. */
    CHECK(send_raw(sv[0], IPC_QUEUE_ABORT, NULL, 0) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(ipc_end(rx) == 0);
    close(sv[0]);
    close(sv[1]);
}

TEST(test_size_limit_put)
{
    char *big = malloc(IPC_MAX_MSG + 1);
    uint32_t len;

    CHECK(big != NULL);
    if (big == NULL)
        return;
    memset(big, 'x', IPC_MAX_MSG);
    /* A single string is at most 65535 bytes (16-bit length). */
    big[65536] = '\0';
    ipc_init(tx, IPC_AUTHZ_AUDIT, 0);
    CHECK(ipc_put_str(tx, big) == -1);
    CHECK(tx->len == 16);
    /* Filling the message exactly to IPC_MAX_MSG works; one more field does not. */
    big[IPC_MAX_MSG - 16 - 3] = '\0';
    CHECK(ipc_put_str(tx, big) == 0);
    CHECK(tx->len == IPC_MAX_MSG);
    len = tx->len;
    CHECK(ipc_put_u64(tx, 1) == -1);
    CHECK(ipc_put_str(tx, "") == -1);
    CHECK(ipc_put_str(tx, NULL) == -1);
    CHECK(tx->len == len);
    /* One byte short of fitting. */
    ipc_init(tx, IPC_AUTHZ_AUDIT, 0);
    big[IPC_MAX_MSG - 16 - 3] = 'x';
    big[IPC_MAX_MSG - 16 - 2] = '\0';
    CHECK(ipc_put_str(tx, big) == -1);
    CHECK(tx->len == 16);
    ipc_init(tx, IPC_AUTHZ_AUDIT, 0);
    big[IPC_MAX_MSG - 16 - 9 - 3] = '\0';
    CHECK(ipc_put_str(tx, big) == 0);
    CHECK(ipc_put_u64(tx, 1) == 0);
    CHECK(tx->len == IPC_MAX_MSG);
    CHECK(ipc_put_u64(tx, 1) == -1);
    free(big);
}

TEST(test_max_message_round_trip)
{
    int sv[2];
    char *s = malloc(IPC_MAX_MSG);

    CHECK(s != NULL && ipc_socketpair(sv) == 0);
    if (s == NULL)
        return;
    memset(s, 'q', IPC_MAX_MSG - 19);
    s[IPC_MAX_MSG - 19] = '\0';
    ipc_init(tx, IPC_AUTHZ_AUDIT, 9);
    CHECK(ipc_put_str(tx, s) == 0);
    CHECK(tx->len == IPC_MAX_MSG);
    CHECK(ipc_send(sv[0], tx) == 0);
    memset(s, 0, IPC_MAX_MSG);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(rx->len == IPC_MAX_MSG);
    CHECK(ipc_get_str(rx, s, IPC_MAX_MSG) == 0);
    CHECK(strlen(s) == IPC_MAX_MSG - 19 && s[0] == 'q');
    CHECK(ipc_end(rx) == 0);
    close(sv[0]);
    close(sv[1]);
    free(s);
}

/* Sends n bytes of data as one datagram with k descriptors (copies of fd, none
 * when k is 0) in one SCM_RIGHTS, as a hostile peer may. 0, or -1. */
static int send_fds(int sock, const void *data, size_t n, int fd, int k)
{
    struct msghdr mh;
    struct iovec iov;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * 200)];
    } cbuf;
    struct cmsghdr *c;

    if (k < 0 || k > 200)
        return -1;
    memset(&mh, 0, sizeof(mh));
    memset(&cbuf, 0, sizeof(cbuf));
    iov.iov_base = (void *)(uintptr_t)data;
    iov.iov_len = n;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (k > 0) {
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)k);
        if ((c = CMSG_FIRSTHDR(&mh)) == NULL)
            return -1;
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)k);
        for (int i = 0; i < k; i++)
            memcpy(CMSG_DATA(c) + (size_t)i * sizeof(int), &fd, sizeof(int));
    }
    return sendmsg(sock, &mh, 0) == (ssize_t)n ? 0 : -1;
}

/* A well-formed message (type IPC_QUEUE_ABORT, id 7, no fields) with k descriptors. */
static int send_with_fds(int sock, int fd, int k)
{
    unsigned char buf[16];
    size_t n = raw_msg(buf, 16, IPC_QUEUE_ABORT, NULL, 0);

    return send_fds(sock, buf, n, fd, k);
}

TEST(test_oversized_receive)
{
    int sv[2], p[2], before;
    unsigned char *buf = calloc(1, IPC_MAX_MSG + 16);
    size_t n = IPC_MAX_MSG + 1;

    CHECK(buf != NULL && ipc_socketpair(sv) == 0 && pipe(p) == 0);
    if (buf == NULL)
        return;
    (void)raw_msg(buf, (uint32_t)n, IPC_AUTHZ_AUDIT, NULL, 0);
    /* One byte over the limit, with a descriptor attached: refused, and the
     * descriptor is not leaked. */
    CHECK(send_fds(sv[0], buf, n, p[1], 1) == 0);
    close(p[1]);
    before = lowest_free_fd();
    errno = 0;
    CHECK(ipc_recv(sv[1], rx) == -1);
    CHECK(errno == EBADMSG);
    CHECK(rx->fd == -1);
    CHECK(lowest_free_fd() == before);
    /* The pipe has no writer left: the passed descriptor was closed. */
    {
        char x;
        CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
        CHECK(read(p[0], &x, 1) == 0);
    }
    close(p[0]);
    /* The channel stays in step: the next message is read normally. */
    ipc_init(tx, IPC_AUTHZ_RESULT, 5);
    CHECK(ipc_put_u64(tx, 1) == 0);
    CHECK(ipc_send(sv[0], tx) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1);
    CHECK(rx->id == 5);
    close(sv[0]);
    close(sv[1]);
    free(buf);
}

TEST(test_bad_headers)
{
    int sv[2];
    unsigned char buf[64];
    size_t n;

    CHECK(ipc_socketpair(sv) == 0);
    /* Shorter than the header. */
    CHECK(send(sv[0], "0123456789", 10, 0) == 10);
    errno = 0;
    CHECK(ipc_recv(sv[1], rx) == -1 && errno == EBADMSG);
    /* Header length that does not match the datagram. */
    n = raw_msg(buf, 20, IPC_AUTHZ_RESULT, "n\0\0\0\0\0\0\0\0", 9);
    CHECK(send(sv[0], buf, n, 0) == (ssize_t)n);
    errno = 0;
    CHECK(ipc_recv(sv[1], rx) == -1 && errno == EBADMSG);
    n = raw_msg(buf, 0x80000019u, IPC_AUTHZ_RESULT, "n\0\0\0\0\0\0\0\0", 9);
    CHECK(send(sv[0], buf, n, 0) == (ssize_t)n);
    errno = 0;
    CHECK(ipc_recv(sv[1], rx) == -1 && errno == EBADMSG);
    /* Types outside the enumeration. */
    CHECK(send_raw(sv[0], 0, NULL, 0) == 0);
    errno = 0;
    CHECK(ipc_recv(sv[1], rx) == -1 && errno == EBADMSG);
    CHECK(send_raw(sv[0], IPC_TYPE_MAX, NULL, 0) == 0);
    errno = 0;
    CHECK(ipc_recv(sv[1], rx) == -1 && errno == EBADMSG);
    CHECK(send_raw(sv[0], 0xffff, NULL, 0) == 0);
    errno = 0;
    CHECK(ipc_recv(sv[1], rx) == -1 && errno == EBADMSG);
    CHECK(send_raw(sv[0], IPC_TYPE_MAX - 1, NULL, 0) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1 && rx->type == IPC_TYPE_MAX - 1);
    close(sv[0]);
    close(sv[1]);
}

TEST(test_eof_and_eagain)
{
    int sv[2];

    CHECK(ipc_socketpair(sv) == 0);
    CHECK(fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);
    errno = 0;
    CHECK(ipc_recv(sv[1], rx) == -1 && errno == EAGAIN);
    close(sv[0]);
    CHECK(ipc_recv(sv[1], rx) == 0);
    close(sv[1]);
}

TEST(test_send_to_closed_peer)
{
    int sv[2];

    CHECK(ipc_socketpair(sv) == 0);
    close(sv[1]);
    ipc_init(tx, IPC_QUEUE_ABORT, 0);
    CHECK(ipc_put_str(tx, "x") == 0);
    /* No SIGPIPE: an error the caller handles. */
    errno = 0;
    CHECK(ipc_send(sv[0], tx) == -1 && errno == EPIPE);
    close(sv[0]);
}

/* A hostile sender attaches several descriptors to one message: the message is
 * refused and none of them stays open in the receiver, however many there were
 * (two fit where one int was meant, eight fill the buffer, more overflow it). */
TEST(test_extra_descriptors_are_refused_and_closed)
{
    static const int counts[] = {2, 3, 8, 9, 200};
    int sv[2], devnull = open("/dev/null", O_RDONLY), before;

    CHECK(devnull >= 0);
    CHECK(ipc_socketpair(sv) == 0);
    before = lowest_free_fd();
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        CHECK(send_with_fds(sv[0], devnull, counts[i]) == 0);
        errno = 0;
        CHECK(ipc_recv(sv[1], rx) == -1 && errno == EBADMSG);
        CHECK(rx->fd == -1);
        CHECK(lowest_free_fd() == before);
    }
    /* An empty datagram reads as the end of the channel; its descriptor is closed. */
    CHECK(send_fds(sv[0], "", 0, devnull, 1) == 0);
    CHECK(ipc_recv(sv[1], rx) == 0);
    CHECK(lowest_free_fd() == before);
    /* One descriptor is still a message, and the channel is in step. */
    CHECK(send_with_fds(sv[0], devnull, 1) == 0);
    CHECK(ipc_recv(sv[1], rx) == 1 && rx->type == IPC_QUEUE_ABORT && rx->id == 7);
    CHECK(rx->fd >= 0);
    close(rx->fd);
    CHECK(lowest_free_fd() == before);
    close(sv[0]);
    close(sv[1]);
    close(devnull);
}

int main(void)
{
    tx = calloc(1, sizeof(*tx));
    rx = calloc(1, sizeof(*rx));
    if (tx == NULL || rx == NULL)
        return 1;
    RUN(test_round_trip_with_fd);
    RUN(test_wrong_field_types);
    RUN(test_string_bounds);
    RUN(test_embedded_nul_and_truncated_fields);
    RUN(test_trailing_garbage);
    RUN(test_size_limit_put);
    RUN(test_max_message_round_trip);
    RUN(test_oversized_receive);
    RUN(test_bad_headers);
    RUN(test_eof_and_eagain);
    RUN(test_send_to_closed_peer);
    RUN(test_extra_descriptors_are_refused_and_closed);
    free(tx);
    free(rx);
    return UNIT_DONE();
}
