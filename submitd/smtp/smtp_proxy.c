/*
 * The PROXY header before the greeting (smtp_proxy.h). The bytes are peeked, parsed
 * with everything received so far, and then read, exactly as many as belong to the
 * header: whatever follows it in the socket is the client's and stays there.
 */
#include "smtp_proxy.h"

#include "log.h"
#include "netaddr.h"
#include "proxy_proto.h"
#include "session.h"
#include "smtp_io.h"
#include "util.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The header is held in inbuf, which no command uses before the greeting. */
_Static_assert(PROXY_HEADER_MAX <= SESS_INBUF, "inbuf must hold a whole PROXY header");

/* A balancer sends the header with its connect: a few seconds are plenty, and a
 * slot is not held longer by a peer that sends nothing. */
#define PROXY_TIMEOUT_MAX 10

int session_proxy_trusted(const struct session *s)
{
    return addr_in_cidr_list(s->client_ip, s->cfg->proxy_trusted);
}

time_t proxy_header_timeout(const struct session *s)
{
    int t = s->cfg->tls_handshake_timeout;

    return t < PROXY_TIMEOUT_MAX ? t : PROXY_TIMEOUT_MAX;
}

static int refuse(struct session *s, const char *reason)
{
    log_info("session=%s client=%s PROXY header refused: %s", s->id, s->client_ip, reason);
    return -1;
}

/* The header is whole: the client it names is the session's client from now on. */
static void proxy_apply(struct session *s, const struct proxy_result *pr)
{
    str_lcpy(s->proxy_ip, s->client_ip, sizeof(s->proxy_ip));
    if (pr->has_address)
        str_lcpy(s->client_ip, pr->src, sizeof(s->client_ip));
    s->proxy_local = !pr->has_address;
    s->inlen = 0;
}

int session_proxy_read(struct session *s)
{
    if (inbuf_take(s) != 0)
        return -1;
    for (;;) {
        unsigned char *have = (unsigned char *)s->inbuf;
        size_t room = PROXY_HEADER_MAX - s->inlen, take;
        struct proxy_result pr;
        enum proxy_status st;
        ssize_t n;

        if (room == 0)
            return refuse(s, "PROXY header too long");
        n = recv(s->fd, have + s->inlen, room, MSG_PEEK);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return refuse(s, strerror(errno));
        }
        if (n == 0)
            return refuse(s, s->inlen ? "connection closed inside the PROXY header"
                                      : "connection closed before a PROXY header");
        s->last_active = time(NULL);
        st = proxy_parse(have, s->inlen + (size_t)n, &pr);
        if (st == PROXY_ERROR)
            return refuse(s, pr.reason);
        /* Every byte seen so far belongs to the header while it is incomplete. */
        take = st == PROXY_OK ? pr.len - s->inlen : (size_t)n;
        if (read(s->fd, have + s->inlen, take) != (ssize_t)take)
            return refuse(s, "read failed after peek");
        s->inlen += take;
        if (st == PROXY_OK) {
            proxy_apply(s, &pr);
            return 1;
        }
    }
}
