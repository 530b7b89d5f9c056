#ifndef SUBMITD_NETADDR_H
#define SUBMITD_NETADDR_H

#include <stddef.h>

/*
 * The key under which a client is counted for max_sessions_per_ip (DESIGN §3.1).
 * An IPv4 address, and an IPv4-mapped IPv6 address, is its own key. Any other IPv6
 * address is counted by its /64 prefix ("2001:db8:1:2::/64"): that is what one
 * subscriber or one host is given, so counting /128s would let one client take
 * every session. Text that is not an address is its own key. Returns 0, or -1 when
 * the key does not fit in out.
 */
int addr_limit_key(const char *ip, char *out, size_t outlen);

#endif
