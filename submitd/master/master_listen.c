/* The listening sockets (see master_listen.h). */
#include "master_listen.h"

#include "master.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_fds[MAX_LISTENERS], listen_tls[MAX_LISTENERS], nlisten;

static char listen_items[MAX_LISTENERS][256];    /* as the configuration names them */

/* The address of sa as IPv4 when it is IPv4 or IPv4-mapped IPv6 (1), as IPv6
 * otherwise (0); -1 for another family. */
static int addr_of(const struct sockaddr *sa, struct in_addr *v4, struct in6_addr *v6,
                   in_port_t *port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        *v4 = in->sin_addr;
        *port = in->sin_port;
        return 1;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        *port = in6->sin6_port;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            memcpy(&v4->s_addr, &in6->sin6_addr.s6_addr[12], 4);
            return 1;
        }
        *v6 = in6->sin6_addr;
        return 0;
    }
    return -1;
}

int listen_addrs_overlap(const struct sockaddr *a, const struct sockaddr *b, int v6_takes_v4)
{
    struct in_addr a4 = { 0 }, b4 = { 0 };
    struct in6_addr a6 = IN6ADDR_ANY_INIT, b6 = IN6ADDR_ANY_INIT;
    in_port_t ap = 0, bp = 0;
    int af = addr_of(a, &a4, &a6, &ap), bf = addr_of(b, &b4, &b6, &bp);

    if (af < 0 || bf < 0 || ap != bp)
        return 0;
    if (af == 1 && bf == 1)
        return a4.s_addr == b4.s_addr || a4.s_addr == htonl(INADDR_ANY) ||
               b4.s_addr == htonl(INADDR_ANY);
    if (af == 0 && bf == 0)
        return IN6_ARE_ADDR_EQUAL(&a6, &b6) || IN6_IS_ADDR_UNSPECIFIED(&a6) ||
               IN6_IS_ADDR_UNSPECIFIED(&b6);
    /* One IPv4, one IPv6: only [::] reaches over, and only while it takes IPv4. */
    return v6_takes_v4 && ((af == 0 && IN6_IS_ADDR_UNSPECIFIED(&a6)) ||
                           (bf == 0 && IN6_IS_ADDR_UNSPECIFIED(&b6)));
}

int listen_v6_takes_v4(void)
{
    char c = '0';
    int fd = open("/proc/sys/net/ipv6/bindv6only", O_RDONLY | O_CLOEXEC);

    /* Unreadable: assume Linux's default (0). Without IPv6 at all [::] cannot be
     * bound anyway, so an overlap reported then is never a false alarm about a
     * configuration that would have started. */
    if (fd < 0)
        return 1;
    if (read(fd, &c, 1) != 1)
        c = '0';
    close(fd);
    return c == '0';
}

/* The index of a socket this process already listens on that overlaps addr, or -1:
 * an address named twice (in listen and listen_tls, twice in one list, or a wildcard
 * and an address it covers) would otherwise read as "Address already in use", as if
 * another program held it. */
static int already_bound(const struct sockaddr *addr)
{
    int v6_takes_v4 = listen_v6_takes_v4();

    for (int i = 0; i < nlisten; i++) {
        struct sockaddr_storage have;
        socklen_t have_len = sizeof(have);
        if (getsockname(listen_fds[i], (struct sockaddr *)&have, &have_len) == 0 &&
            listen_addrs_overlap((const struct sockaddr *)&have, addr, v6_takes_v4))
            return i;
    }
    return -1;
}

static int bind_one(const char *item, int implicit, char *err, size_t errlen)
{
    char host[256], port[16];
    struct addrinfo hints, *res;
    int fd, one = 1, rc;

    if (config_split_hostport(item, host, sizeof(host), port, sizeof(port)) != 0) {
        str_fmt(err, errlen, "%s: listen: \"%s\" is not host:port", cfg.path, item);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        str_fmt(err, errlen, "listen %s: %s", item, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        int twice = e == EADDRINUSE ? already_bound(res->ai_addr) : -1;
        if (twice >= 0)
            str_fmt(err, errlen, "%s: %s %s: it overlaps %s in %s: the same port, on the same address or a wildcard that covers it",
                    cfg.path, implicit ? "listen_tls" : "listen", item, listen_items[twice],
                    listen_tls[twice] ? "listen_tls" : "listen");
        else
            str_fmt(err, errlen, "listen %s: %s", item, strerror(e));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

int listen_bind_list(const char *list, int implicit, char *err, size_t errlen)
{
    char item[512];
    int rc;

    for (int i = 0; (rc = str_list_item(list, i, item, sizeof(item))) == 1; i++) {
        int fd;
        if (nlisten == MAX_LISTENERS) {
            str_fmt(err, errlen, "too many listeners (at most %d)", MAX_LISTENERS);
            return -1;
        }
        fd = bind_one(item, implicit, err, errlen);
        if (fd < 0)
            return -1;
        listen_fds[nlisten] = fd;
        listen_tls[nlisten] = implicit;
        str_lcpy(listen_items[nlisten], item, sizeof(listen_items[nlisten]));
        nlisten++;
        log_info("listening on %s (%s)", item, implicit ? "implicit TLS" : "STARTTLS");
    }
    if (rc < 0) {
        str_fmt(err, errlen, "%s: %s: malformed list \"%s\"", cfg.path,
                implicit ? "listen_tls" : "listen", list);
        return -1;
    }
    return 0;
}

int listen_count(void)
{
    return nlisten;
}

int listen_fd(int i, int *implicit)
{
    *implicit = listen_tls[i];
    return listen_fds[i];
}
