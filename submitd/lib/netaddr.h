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

/*
 * Whether the address ip (text) lies in one of the networks of list, a
 * comma-separated list of CIDRs ("192.0.2.0/24, 2001:db8::/32"; a bare address is
 * its own /32 or /128). An IPv4-mapped IPv6 address is compared as the IPv4
 * address it is. Returns 1 or 0; an entry that is not a network matches nothing.
 */
int addr_in_cidr_list(const char *ip, const char *list);
/*
 * Checks every entry of list. Returns 0, or -1 with the first bad entry named in
 * err ("\"10.0.0.0/33\" is not a network in CIDR notation").
 */
int addr_cidr_list_check(const char *list, char *err, size_t errlen);

#endif
