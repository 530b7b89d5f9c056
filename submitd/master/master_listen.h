#ifndef SUBMITD_MASTER_LISTEN_H
#define SUBMITD_MASTER_LISTEN_H

#include <stddef.h>

/*
 * The listening sockets, bound by the root master before any worker starts and
 * handed to the smtp process on its command line (-l STARTTLS, -L implicit TLS).
 */

/* Binds every host:port of list (listen, or listen_tls when implicit is 1).
 * 0, or -1 with err naming the entry. */
int listen_bind_list(const char *list, int implicit, char *err, size_t errlen);
/* How many sockets are bound, and the i-th with whether it is implicit TLS. */
int listen_count(void);
int listen_fd(int i, int *implicit);

#endif
