/* Client addresses as the session limits and proxy_trusted see them. */
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

/* ---- networks (proxy_trusted) ---------------------------------------------- */

/* An address as 16 bytes: IPv4 (and IPv4-mapped IPv6) as ::ffff:a.b.c.d, so that
 * one comparison serves both. *v4 tells which it was. */
static int addr_bytes(const char *text, unsigned char out[16], int *v4)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, text, &a4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &a4, 4);
        *v4 = 1;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &a6) != 1)
        return -1;
    memcpy(out, &a6, 16);
    *v4 = IN6_IS_ADDR_V4MAPPED(&a6);
    return 0;
}

/* Parses "addr[/prefix]" into its 16 bytes and a prefix length counted over them. */
static int cidr_parse(const char *cidr, unsigned char net[16], int *bits)
{
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(cidr, '/');
    size_t alen = slash ? (size_t)(slash - cidr) : strlen(cidr);
    long long prefix;
    int v4;

    if (alen == 0 || alen >= sizeof(addr))
        return -1;
    memcpy(addr, cidr, alen);
    addr[alen] = '\0';
    if (addr_bytes(addr, net, &v4) != 0)
        return -1;
    if (slash == NULL)
        prefix = v4 ? 32 : 128;
    else if (str_to_ll(slash + 1, 0, v4 ? 32 : 128, &prefix) != 0)
        return -1;
    *bits = (int)prefix + (v4 ? 96 : 0);
    return 0;
}

static int prefix_equal(const unsigned char *a, const unsigned char *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;

    if (memcmp(a, b, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((a[whole] ^ b[whole]) & (0xff << (8 - rest)) & 0xff) == 0;
}

int addr_in_cidr_list(const char *ip, const char *list)
{
    unsigned char a[16], net[16];
    char item[128];
    int v4, bits, rc;

    if (addr_bytes(ip, a, &v4) != 0)
        return 0;
    for (int i = 0; (rc = str_list_item(list, i, item, sizeof(item))) != 0; i++)
        if (rc == 1 && cidr_parse(item, net, &bits) == 0 && prefix_equal(a, net, bits))
            return 1;
    return 0;
}

int addr_cidr_list_check(const char *list, char *err, size_t errlen)
{
    unsigned char net[16];
    char item[128];
    int bits, rc;

    for (int i = 0; (rc = str_list_item(list, i, item, sizeof(item))) != 0; i++) {
        if (rc < 0) {
            str_fmt(err, errlen, "entry %d is empty or too long", i + 1);
            return -1;
        }
        if (cidr_parse(item, net, &bits) != 0) {
            str_fmt(err, errlen, "\"%s\" is not a network in CIDR notation", item);
            return -1;
        }
    }
    return 0;
}
