/* Client addresses as the session limits see them. */
#include "netaddr.h"

#include "util.h"

#include <arpa/inet.h>
#include <string.h>

int addr_limit_key(const char *ip, char *out, size_t outlen)
{
    struct in6_addr a6;
    char text[INET6_ADDRSTRLEN];

    if (inet_pton(AF_INET6, ip, &a6) != 1 || IN6_IS_ADDR_V4MAPPED(&a6))
        return str_lcpy(out, ip, outlen) < outlen ? 0 : -1;
    memset(a6.s6_addr + 8, 0, 8);
    if (inet_ntop(AF_INET6, &a6, text, sizeof(text)) == NULL)
        return -1;
    return str_fmt(out, outlen, "%s/64", text);
}
