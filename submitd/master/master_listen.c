/* The listening sockets (see master_listen.h). */
#include "master_listen.h"

#include "master.h"

#include "log.h"
#include "util.h"

#include <errno.h>
#include <netdb.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_fds[MAX_LISTENERS], listen_tls[MAX_LISTENERS], nlisten;

/* The index of a socket this process already listens on at addr, or -1: an address
 * named twice (in listen and listen_tls, or twice in one list) would otherwise read
 * as "Address already in use", as if another program held it. */
static int already_bound(const struct sockaddr *addr, socklen_t len)
{
    for (int i = 0; i < nlisten; i++) {
        struct sockaddr_storage have;
        socklen_t have_len = sizeof(have);
        if (getsockname(listen_fds[i], (struct sockaddr *)&have, &have_len) == 0 &&
            have_len == len && memcmp(&have, addr, len) == 0)
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
        int twice = errno == EADDRINUSE ? already_bound(res->ai_addr, res->ai_addrlen) : -1;
        if (twice >= 0)
            str_fmt(err, errlen, "%s: %s %s: the address is named twice (it is also in %s)",
                    cfg.path, implicit ? "listen_tls" : "listen", item,
                    listen_tls[twice] ? "listen_tls" : "listen");
        else
            str_fmt(err, errlen, "listen %s: %s", item, strerror(errno));
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
