/* The PROXY protocol header, versions 1 and 2 (proxy_proto.h). */
#include "proxy_proto.h"


#include <arpa/inet.h>
#include <string.h>
#include <sys/socket.h>

static const unsigned char v2_sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                          0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };
static const char v1_sig[] = "PROXY ";

/* Address block sizes of the v2 families (INET, INET6, UNIX). */
#define V2_INET_LEN 12
#define V2_INET6_LEN 36
#define V2_UNIX_LEN 216

static enum proxy_status fail(struct proxy_result *out, const char *reason)
{
    out->reason = reason;
    return PROXY_ERROR;
}

/* ---- version 2 ------------------------------------------------------------- */

/* The TLVs after the address block: skipped, but each must fit exactly. */
static int v2_tlvs_valid(const unsigned char *p, size_t n)
{
    while (n > 0) {
        size_t vlen;

        if (n < 3)
            return 0;
        vlen = ((size_t)p[1] << 8) | p[2];
        if (vlen > n - 3)
            return 0;
        p += 3 + vlen;
        n -= 3 + vlen;
    }
    return 1;
}

static enum proxy_status parse_v2(const unsigned char *buf, size_t len, struct proxy_result *out)
{
    size_t body, total, addrlen;
    unsigned cmd, fam, proto;
    const unsigned char *a;

    if (len < 16)
        return PROXY_NEED_MORE;
    if ((buf[12] >> 4) != 2)
        return fail(out, "unsupported PROXY v2 version");
    cmd = buf[12] & 0x0F;
    if (cmd > 1)
        return fail(out, "unknown PROXY v2 command");
    fam = buf[13] >> 4;
    proto = buf[13] & 0x0F;
    if (fam > 3 || proto > 2)
        return fail(out, "unknown PROXY v2 address family");
    body = ((size_t)buf[14] << 8) | buf[15];
    total = 16 + body;
    if (total > PROXY_HEADER_MAX)
        return fail(out, "PROXY v2 header too long");
    if (len < total)
        return PROXY_NEED_MORE;
    out->version = 2;
    out->len = total;
    /* LOCAL: the balancer speaks for itself (a health check); the address block,
     * whatever it holds, is not looked at. */
    if (cmd == 0)
        return PROXY_OK;
    addrlen = fam == 1 ? V2_INET_LEN : fam == 2 ? V2_INET6_LEN : fam == 3 ? V2_UNIX_LEN : 0;
    if (body < addrlen)
        return fail(out, "PROXY v2 address block too short");
    if (!v2_tlvs_valid(buf + 16 + addrlen, body - addrlen))
        return fail(out, "malformed PROXY v2 TLV");
    if (fam == 0 || fam == 3)
        return PROXY_OK; /* no IP address of the client: the connection's stands */
    if (proto != 1)
        return fail(out, "PROXY v2 header for a connection that is not TCP");
    a = buf + 16;
    if (fam == 1) {
        out->family = AF_INET;
        inet_ntop(AF_INET, a, out->src, sizeof(out->src));
        inet_ntop(AF_INET, a + 4, out->dst, sizeof(out->dst));
        a += 8;
    } else {
        out->family = AF_INET6;
        inet_ntop(AF_INET6, a, out->src, sizeof(out->src));
        inet_ntop(AF_INET6, a + 16, out->dst, sizeof(out->dst));
        a += 32;
    }
    out->src_port = ((unsigned)a[0] << 8) | a[1];
    out->dst_port = ((unsigned)a[2] << 8) | a[3];
    out->has_address = 1;
    return PROXY_OK;
}

/* ---- version 1 ------------------------------------------------------------- */

/* A port: 1 to 5 digits, no leading zero, at most 65535. */
static int v1_port(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;

    if (n == 0 || n > 5 || (s[0] == '0' && n > 1))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = v;
    return 0;
}

/* An address of the given family, written back by inet_ntop in canonical form. */
static int v1_addr(int af, const char *s, size_t n, char *out, size_t outlen)
{
    unsigned char bin[16];
    char tmp[64];

    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (inet_pton(af, tmp, bin) != 1 || inet_ntop(af, bin, out, (socklen_t)outlen) == NULL)
        return -1;
    return 0;
}

static enum proxy_status parse_v1(const unsigned char *buf, size_t len, struct proxy_result *out)
{
    const char *line = (const char *)buf, *tok[6];
    size_t toklen[6], end, i, ntok = 0;
    int af;

    /* The CR of the line's CRLF is at index PROXY_V1_MAX - 2 at the latest. */
    for (end = 0; end < len && end < PROXY_V1_MAX - 1; end++) {
        if (buf[end] == '\r')
            break;
        /* Only printable ASCII belongs on the line: no NUL, no bare LF. */
        if (buf[end] < 0x20 || buf[end] > 0x7E)
            return fail(out, "bad character in PROXY v1 line");
    }
    if (end == PROXY_V1_MAX - 1)
        return fail(out, "PROXY v1 line too long");
    if (end + 2 > len)
        return PROXY_NEED_MORE;
    if (buf[end + 1] != '\n')
        return fail(out, "PROXY v1 line without CRLF");
    /* Tokens separated by single spaces, as the specification writes them. */
    for (i = 0; i <= end; i++) {
        size_t start = i;

        while (i < end && line[i] != ' ')
            i++;
        if (ntok == 6 || i == start)
            return fail(out, "malformed PROXY v1 line");
        tok[ntok] = line + start;
        toklen[ntok++] = i - start;
    }
    out->version = 1;
    out->len = end + 2;
    if (toklen[1] == 7 && memcmp(tok[1], "UNKNOWN", 7) == 0)
        return PROXY_OK; /* whatever follows is to be ignored */
    if (toklen[1] == 4 && memcmp(tok[1], "TCP4", 4) == 0)
        af = AF_INET;
    else if (toklen[1] == 4 && memcmp(tok[1], "TCP6", 4) == 0)
        af = AF_INET6;
    else
        return fail(out, "unknown PROXY v1 protocol");
    if (ntok != 6)
        return fail(out, "malformed PROXY v1 line");
    if (v1_addr(af, tok[2], toklen[2], out->src, sizeof(out->src)) != 0 ||
        v1_addr(af, tok[3], toklen[3], out->dst, sizeof(out->dst)) != 0)
        return fail(out, "bad address in PROXY v1 line");
    if (v1_port(tok[4], toklen[4], &out->src_port) != 0 ||
        v1_port(tok[5], toklen[5], &out->dst_port) != 0)
        return fail(out, "bad port in PROXY v1 line");
    out->family = af;
    out->has_address = 1;
    return PROXY_OK;
}

enum proxy_status proxy_parse(const unsigned char *buf, size_t len, struct proxy_result *out)
{
    size_t n;

    memset(out, 0, sizeof(*out));
    out->family = AF_UNSPEC;
    if (len == 0)
        return PROXY_NEED_MORE;
    n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    if (len > 0 && buf[0] == v2_sig[0]) {
        if (memcmp(buf, v2_sig, n) != 0)
            return fail(out, "bad PROXY v2 signature");
        return n < sizeof(v2_sig) ? PROXY_NEED_MORE : parse_v2(buf, len, out);
    }
    n = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
    if (memcmp(buf, v1_sig, n) != 0)
        return fail(out, "no PROXY header");
    return n < sizeof(v1_sig) - 1 ? PROXY_NEED_MORE : parse_v1(buf, len, out);
}
