/* Unit tests of submitd/lib/proxy_proto.c: PROXY protocol headers v2 and v1. */
#include "unit.h"

#include "proxy_proto.h"

#include <stdint.h>
#include <sys/socket.h>

static const unsigned char sig[12] = { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A };

/* Builds a v2 header: signature, ver_cmd, fam, length, then body. */
static size_t v2(unsigned char *out, unsigned ver_cmd, unsigned fam, const unsigned char *body,
                 size_t bodylen)
{
    memcpy(out, sig, 12);
    out[12] = (unsigned char)ver_cmd;
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(bodylen >> 8);
    out[15] = (unsigned char)bodylen;
    if (bodylen > 0)
        memcpy(out + 16, body, bodylen);
    return 16 + bodylen;
}

static const unsigned char inet_body[12] = { 192, 0, 2, 7, 198, 51, 100, 1, 0xC3, 0x50, 0x02, 0x4B };

/* Every proper prefix of a valid header needs more; the whole header is OK. */
static int prefixes_need_more(const unsigned char *h, size_t len)
{
    struct proxy_result r;

    for (size_t i = 0; i < len; i++)
        if (proxy_parse(h, i, &r) != PROXY_NEED_MORE) {
            printf("  prefix of %zu bytes not NEED_MORE\n", i);
            return 0;
        }
    return 1;
}

TEST(test_v2_inet)
{
    unsigned char h[64];
    struct proxy_result r;
    size_t n = v2(h, 0x21, 0x11, inet_body, sizeof(inet_body));

    CHECK(proxy_parse(h, n, &r) == PROXY_OK);
    CHECK(r.len == 28 && r.version == 2 && r.has_address && r.family == AF_INET);
    CHECK_STR(r.src, "192.0.2.7");
    CHECK_STR(r.dst, "198.51.100.1");
    CHECK(r.src_port == 50000 && r.dst_port == 587);
    CHECK(prefixes_need_more(h, n));
    /* Bytes after the header are not the header's. */
    memcpy(h + n, "EHLO x\r\n", 8);
    CHECK(proxy_parse(h, n + 8, &r) == PROXY_OK && r.len == 28);
}

TEST(test_v2_inet6)
{
    unsigned char body[36], h[64];
    struct proxy_result r;
    size_t n;

    memset(body, 0, sizeof(body));
    body[0] = 0x20; body[1] = 0x01; body[2] = 0x0d; body[3] = 0xb8; body[15] = 0x09;
    body[16] = 0x20; body[17] = 0x01; body[18] = 0x0d; body[19] = 0xb8; body[31] = 0x01;
    body[32] = 0x04; body[33] = 0xD2; body[34] = 0x01; body[35] = 0xD1;
    n = v2(h, 0x21, 0x21, body, sizeof(body));
    CHECK(proxy_parse(h, n, &r) == PROXY_OK);
    CHECK(r.len == 52 && r.has_address && r.family == AF_INET6);
    CHECK_STR(r.src, "2001:db8::9");
    CHECK_STR(r.dst, "2001:db8::1");
    CHECK(r.src_port == 1234 && r.dst_port == 465);
    CHECK(prefixes_need_more(h, n));
}

TEST(test_v2_local_unspec_unix)
{
    unsigned char body[216], h[300];
    struct proxy_result r;
    size_t n;

    /* LOCAL (a health check): no address, whatever the family says. */
    n = v2(h, 0x20, 0x00, NULL, 0);
    CHECK(proxy_parse(h, n, &r) == PROXY_OK && r.len == 16 && !r.has_address &&
          r.family == AF_UNSPEC);
    CHECK(prefixes_need_more(h, n));
    n = v2(h, 0x20, 0x11, inet_body, sizeof(inet_body));
    CHECK(proxy_parse(h, n, &r) == PROXY_OK && r.len == 28 && !r.has_address);
    /* PROXY with UNSPEC: the connection's own addresses stand. */
    n = v2(h, 0x21, 0x00, NULL, 0);
    CHECK(proxy_parse(h, n, &r) == PROXY_OK && !r.has_address);
    /* PROXY over a Unix socket: no IP address either. */
    memset(body, 0, sizeof(body));
    memcpy(body, "/run/a", 6);
    n = v2(h, 0x21, 0x31, body, sizeof(body));
    CHECK(proxy_parse(h, n, &r) == PROXY_OK && r.len == 232 && !r.has_address);
    CHECK(proxy_parse(h, n - 1, &r) == PROXY_NEED_MORE);
    n = v2(h, 0x21, 0x31, body, 100);
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
}

TEST(test_v2_tlvs)
{
    unsigned char body[64], h[128];
    struct proxy_result r;
    size_t n;

    memcpy(body, inet_body, 12);
    /* PP2_TYPE_ALPN "smtp", then a NOOP of length 0, then a unique id of 3 bytes. */
    memcpy(body + 12, "\x01\x00\x04smtp\x04\x00\x00\x05\x00\x03" "abc", 16);
    n = v2(h, 0x21, 0x11, body, 28);
    CHECK(proxy_parse(h, n, &r) == PROXY_OK && r.len == 44 && r.has_address);
    CHECK_STR(r.src, "192.0.2.7");
    CHECK(prefixes_need_more(h, n));
    /* A TLV whose length runs past the header. */
    n = v2(h, 0x21, 0x11, body, 27);
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
    CHECK_STR(r.reason, "malformed PROXY v2 TLV");
    /* A TLV header cut short. */
    n = v2(h, 0x21, 0x11, body, 14);
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
}

TEST(test_v2_bad)
{
    unsigned char h[128];
    struct proxy_result r;
    size_t n;

    n = v2(h, 0x21, 0x11, inet_body, sizeof(inet_body));
    for (size_t i = 0; i < 12; i++) {
        h[i] ^= 0x40;
        CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
        /* Refused as soon as the wrong byte is there, not when the rest arrives. */
        CHECK(proxy_parse(h, i + 1, &r) == PROXY_ERROR);
        h[i] ^= 0x40;
    }
    v2(h, 0x11, 0x11, inet_body, sizeof(inet_body));
    CHECK(proxy_parse(h, 16, &r) == PROXY_ERROR);
    CHECK_STR(r.reason, "unsupported PROXY v2 version");
    v2(h, 0x31, 0x11, inet_body, sizeof(inet_body));
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
    v2(h, 0x22, 0x11, inet_body, sizeof(inet_body));
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
    CHECK_STR(r.reason, "unknown PROXY v2 command");
    v2(h, 0x21, 0x41, inet_body, sizeof(inet_body));
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
    v2(h, 0x21, 0x13, inet_body, sizeof(inet_body));
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
    /* UDP is not what a mail client speaks. */
    v2(h, 0x21, 0x12, inet_body, sizeof(inet_body));
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
    /* An address block shorter than the family's. */
    n = v2(h, 0x21, 0x11, inet_body, 8);
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
    CHECK_STR(r.reason, "PROXY v2 address block too short");
    n = v2(h, 0x21, 0x21, inet_body, 12);
    CHECK(proxy_parse(h, n, &r) == PROXY_ERROR);
    /* A length beyond the maximum is refused at once, not waited for. */
    v2(h, 0x21, 0x11, inet_body, sizeof(inet_body));
    h[14] = 0xFF;
    h[15] = 0xFF;
    CHECK(proxy_parse(h, 16, &r) == PROXY_ERROR);
    CHECK_STR(r.reason, "PROXY v2 header too long");
    h[14] = (unsigned char)((PROXY_HEADER_MAX - 16 + 1) >> 8);
    h[15] = (unsigned char)(PROXY_HEADER_MAX - 16 + 1);
    CHECK(proxy_parse(h, 16, &r) == PROXY_ERROR);
    h[14] = (unsigned char)((PROXY_HEADER_MAX - 16) >> 8);
    h[15] = (unsigned char)(PROXY_HEADER_MAX - 16);
    CHECK(proxy_parse(h, 16, &r) == PROXY_NEED_MORE);
}

TEST(test_v1)
{
    static const char tcp4[] = "PROXY TCP4 192.0.2.7 198.51.100.1 50000 587\r\n";
    static const char tcp6[] = "PROXY TCP6 2001:db8:0:0::9 2001:db8::1 1234 465\r\nEHLO";
    static const char unknown[] = "PROXY UNKNOWN\r\n";
    static const char unknown_full[] = "PROXY UNKNOWN ffff:f:: ffff:f:: 65535 65535\r\n";
    const unsigned char *u;
    struct proxy_result r;

    u = (const unsigned char *)tcp4;
    CHECK(proxy_parse(u, strlen(tcp4), &r) == PROXY_OK);
    CHECK(r.version == 1 && r.len == strlen(tcp4) && r.has_address && r.family == AF_INET);
    CHECK_STR(r.src, "192.0.2.7");
    CHECK(r.src_port == 50000 && r.dst_port == 587);
    CHECK(prefixes_need_more(u, strlen(tcp4)));
    u = (const unsigned char *)tcp6;
    CHECK(proxy_parse(u, strlen(tcp6), &r) == PROXY_OK && r.len == strlen(tcp6) - 4);
    CHECK_STR(r.src, "2001:db8::9");
    CHECK(r.family == AF_INET6);
    u = (const unsigned char *)unknown;
    CHECK(proxy_parse(u, strlen(unknown), &r) == PROXY_OK && !r.has_address && r.len == 15);
    u = (const unsigned char *)unknown_full;
    CHECK(proxy_parse(u, strlen(unknown_full), &r) == PROXY_OK && !r.has_address);
}

static int v1_fails(const char *line)
{
    struct proxy_result r;

    if (proxy_parse((const unsigned char *)line, strlen(line), &r) != PROXY_ERROR) {
        printf("  accepted: %s\n", line);
        return 0;
    }
    return 1;
}

TEST(test_v1_bad)
{
    char longline[200];
    struct proxy_result r;

    CHECK(v1_fails("PROXY TCP4 192.0.2.7 198.51.100.1 50000\r\n"));
    CHECK(v1_fails("PROXY TCP4 192.0.2.7 198.51.100.1 50000 587 9\r\n"));
    CHECK(v1_fails("PROXY TCP4 192.0.2.256 198.51.100.1 50000 587\r\n"));
    CHECK(v1_fails("PROXY TCP4 2001:db8::1 198.51.100.1 50000 587\r\n"));
    CHECK(v1_fails("PROXY TCP6 192.0.2.7 2001:db8::1 50000 587\r\n"));
    CHECK(v1_fails("PROXY TCP4 192.0.2.07 198.51.100.1 50000 587\r\n"));
    CHECK(v1_fails("PROXY TCP4 192.0.2.7 198.51.100.1 65536 587\r\n"));
    CHECK(v1_fails("PROXY TCP4 192.0.2.7 198.51.100.1 050000 587\r\n"));
    CHECK(v1_fails("PROXY TCP4 192.0.2.7 198.51.100.1 -1 587\r\n"));
    CHECK(v1_fails("PROXY TCP4  192.0.2.7 198.51.100.1 50000 587\r\n"));
    CHECK(v1_fails("PROXY TCP4 192.0.2.7 198.51.100.1 50000 587 \r\n"));
    CHECK(v1_fails("PROXY UDP4 192.0.2.7 198.51.100.1 50000 587\r\n"));
    CHECK(v1_fails("PROXY TCP4 192.0.2.7 198.51.100.1 50000 587\n"));
    CHECK(v1_fails("PROXY TCP4 192.0.2.7 198.51.100.1 50000 587\rX"));
    CHECK(v1_fails("PROXY \r\n"));
    CHECK(v1_fails("PROXY\r\n"));
    CHECK(v1_fails("proxy TCP4 192.0.2.7 198.51.100.1 50000 587\r\n"));
    CHECK(v1_fails("EHLO client.example\r\n"));
    CHECK(proxy_parse((const unsigned char *)"P\x00OXY", 5, &r) == PROXY_ERROR);
    CHECK(proxy_parse((const unsigned char *)"PROXY TCP4 1\x00", 13, &r) == PROXY_ERROR);
    /* The longest line is 107 bytes with its CRLF: one more is refused, also before
     * its end arrives. */
    memset(longline, 0, sizeof(longline));
    memcpy(longline, "PROXY UNKNOWN ", 14);
    memset(longline + 14, 'x', 91);
    memcpy(longline + 105, "\r\n", 2);
    CHECK(proxy_parse((const unsigned char *)longline, 107, &r) == PROXY_OK && r.len == 107);
    memset(longline + 14, 'x', 92);
    memcpy(longline + 106, "\r\n", 2);
    CHECK(proxy_parse((const unsigned char *)longline, 108, &r) == PROXY_ERROR);
    CHECK_STR(r.reason, "PROXY v1 line too long");
    CHECK(proxy_parse((const unsigned char *)longline, 106, &r) == PROXY_ERROR);
    CHECK(proxy_parse((const unsigned char *)longline, 105, &r) == PROXY_NEED_MORE);
}

TEST(test_empty_and_garbage)
{
    struct proxy_result r;
    unsigned char junk[4] = { 0x16, 0x03, 0x01, 0x00 }; /* a TLS ClientHello */

    CHECK(proxy_parse((const unsigned char *)"", 0, &r) == PROXY_NEED_MORE);
    CHECK(proxy_parse(junk, sizeof(junk), &r) == PROXY_ERROR);
    CHECK_STR(r.reason, "no PROXY header");
    CHECK(proxy_parse(junk, 1, &r) == PROXY_ERROR);
}

int main(void)
{
    RUN(test_v2_inet);
    RUN(test_v2_inet6);
    RUN(test_v2_local_unspec_unix);
    RUN(test_v2_tlvs);
    RUN(test_v2_bad);
    RUN(test_v1);
    RUN(test_v1_bad);
    RUN(test_empty_and_garbage);
    return UNIT_DONE();
}
