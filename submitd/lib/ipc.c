/* Length-prefixed, typed messages over SOCK_SEQPACKET socketpairs. */
#include "ipc.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IPC_HDR 16 /* u32 length, u16 type, u16 reserved, u64 id */

static void put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;

    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

void ipc_init(struct ipc_msg *m, enum ipc_type type, uint64_t id)
{
    m->type = (uint16_t)type;
    m->id = id;
    m->fd = -1;
    m->len = IPC_HDR;
    m->rpos = IPC_HDR;
}

int ipc_put_u64(struct ipc_msg *m, uint64_t v)
{
    if (m->len + 9 > IPC_MAX_MSG)
        return -1;
    m->buf[m->len] = 'n';
    put_be(m->buf + m->len + 1, v, 8);
    m->len += 9;
    return 0;
}

int ipc_put_str(struct ipc_msg *m, const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n > 0xffff || m->len + 3 + n > IPC_MAX_MSG)
        return -1;
    m->buf[m->len] = 's';
    put_be(m->buf + m->len + 1, n, 2);
    if (n > 0)
        memcpy(m->buf + m->len + 3, s, n);
    m->len += (uint32_t)(3 + n);
    return 0;
}

int ipc_put_bytes(struct ipc_msg *m, const void *p, size_t n)
{
    if (n > 0xffff || m->len + 3 + n > IPC_MAX_MSG)
        return -1;
    m->buf[m->len] = 'b';
    put_be(m->buf + m->len + 1, n, 2);
    if (n > 0)
        memcpy(m->buf + m->len + 3, p, n);
    m->len += (uint32_t)(3 + n);
    return 0;
}

int ipc_get_u64(struct ipc_msg *m, uint64_t *v)
{
    if (m->rpos + 9 > m->len || m->buf[m->rpos] != 'n')
        return -1;
    *v = get_be(m->buf + m->rpos + 1, 8);
    m->rpos += 9;
    return 0;
}

int ipc_get_str(struct ipc_msg *m, char *out, size_t outlen)
{
    size_t n;

    if (m->rpos + 3 > m->len || m->buf[m->rpos] != 's')
        return -1;
    n = (size_t)get_be(m->buf + m->rpos + 1, 2);
    if (m->rpos + 3 + n > m->len || n >= outlen)
        return -1;
    if (n > 0 && memchr(m->buf + m->rpos + 3, '\0', n) != NULL)
        return -1;
    memcpy(out, m->buf + m->rpos + 3, n);
    out[n] = '\0';
    m->rpos += 3 + n;
    return 0;
}

int ipc_get_bytes(struct ipc_msg *m, const unsigned char **p, size_t *n, size_t max)
{
    size_t len;

    if (m->rpos + 3 > m->len || m->buf[m->rpos] != 'b')
        return -1;
    len = (size_t)get_be(m->buf + m->rpos + 1, 2);
    if (m->rpos + 3 + len > m->len || len > max)
        return -1;
    *p = m->buf + m->rpos + 3;
    *n = len;
    m->rpos += 3 + len;
    return 0;
}

int ipc_end(const struct ipc_msg *m)
{
    return m->rpos == m->len ? 0 : -1;
}

int ipc_send(int sock, struct ipc_msg *m)
{
    struct msghdr mh;
    struct iovec iov;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int))];
    } cbuf;
    ssize_t n;

    put_be(m->buf, m->len, 4);
    put_be(m->buf + 4, m->type, 2);
    put_be(m->buf + 6, 0, 2);
    put_be(m->buf + 8, m->id, 8);

    memset(&mh, 0, sizeof(mh));
    iov.iov_base = m->buf;
    iov.iov_len = m->len;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (m->fd >= 0) {
        struct cmsghdr *c;

        memset(&cbuf, 0, sizeof(cbuf));
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = sizeof(cbuf.buf);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &m->fd, sizeof(int));
    }
    do {
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if ((size_t)n != m->len) {
        errno = EMSGSIZE;
        return -1;
    }
    return 0;
}

/* Closes every descriptor a control message carried. */
static void close_passed_fds(struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c != NULL; c = CMSG_NXTHDR(mh, c)) {
        size_t n;

        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
            c->cmsg_len < CMSG_LEN(0))
            continue;
        n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;

            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (fd >= 0)
                close(fd);
        }
    }
}

/*
 * A message carries one descriptor at most. The buffer has room for several so that
 * a sender's extra descriptors arrive where they can be counted and closed: one
 * sized for a single int is 24 bytes after alignment and silently takes two, and
 * the kernel closes only those that do not fit at all (MSG_CTRUNC).
 */
#define IPC_RECV_FDS 8

int ipc_recv(int sock, struct ipc_msg *m)
{
    struct msghdr mh;
    struct iovec iov;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * IPC_RECV_FDS)];
    } cbuf;
    struct cmsghdr *c;
    ssize_t n;
    int nfds = 0, bad;

    memset(&mh, 0, sizeof(mh));
    iov.iov_base = m->buf;
    iov.iov_len = sizeof(m->buf);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf.buf;
    mh.msg_controllen = sizeof(cbuf.buf);
    m->fd = -1;
    do {
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    if (n == 0) {
        /* The end of the channel, or an empty datagram: nothing it carried stays. */
        close_passed_fds(&mh);
        return 0;
    }
    for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            nfds += c->cmsg_len >= CMSG_LEN(0)
                        ? (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int)) : 0;
            if (c->cmsg_len == CMSG_LEN(sizeof(int)))
                memcpy(&m->fd, CMSG_DATA(c), sizeof(int));
        }
    bad = (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || n < IPC_HDR ||
          get_be(m->buf, 4) != (uint64_t)n;
    if (!bad) {
        m->type = (uint16_t)get_be(m->buf + 4, 2);
        bad = m->type == 0 || m->type >= IPC_TYPE_MAX;
    }
    /* More than one descriptor is not a message of this protocol: none is kept. */
    if (bad || nfds > 1) {
        close_passed_fds(&mh);
        m->fd = -1;
        errno = EBADMSG;
        return -1;
    }
    m->len = (uint32_t)n;
    m->id = get_be(m->buf + 8, 8);
    m->rpos = IPC_HDR;
    return 1;
}

int ipc_socketpair(int sv[2])
{
    int size = 4 * 1024 * 1024;

    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    for (int i = 0; i < 2; i++) {
        /* Best effort: a bigger buffer absorbs bursts. A request that finds it full
         * is a tempfail for smtp; authz and the queue take a peer that leaves its
         * answers unread until it is full for a broken one (fatal: the master
         * restarts the set). */
        (void)setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
        (void)setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
    return 0;
}
