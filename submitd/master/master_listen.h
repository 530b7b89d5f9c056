#ifndef SUBMITD_MASTER_LISTEN_H
#define SUBMITD_MASTER_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

/*
 * The listening sockets, bound by the root master before any worker starts and
 * handed to the smtp process on its command line (-l STARTTLS, -L implicit TLS).
 */

/* Binds every host:port of list (listen, or listen_tls when implicit is 1).
 * 0, or -1 with err naming the entry. */
int listen_bind_list(const char *list, int implicit, char *err, size_t errlen);
/*
 * 1 when two listening addresses cannot both be bound: the same port, and the same
 * address or a wildcard on either side (0.0.0.0 takes every IPv4 address; [::] every
 * IPv6 one, and every IPv4 one too while v6_takes_v4); an IPv4-mapped IPv6 address
 * counts as the IPv4 address.
 */
int listen_addrs_overlap(const struct sockaddr *a, const struct sockaddr *b, int v6_takes_v4);
/* Whether a socket bound to [::] also takes IPv4 here (net.ipv6.bindv6only is 0). */
int listen_v6_takes_v4(void);
/* How many sockets are bound, and the i-th with whether it is implicit TLS. */
int listen_count(void);
int listen_fd(int i, int *implicit);

#endif
