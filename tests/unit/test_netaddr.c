/* Unit tests of submitd/lib/netaddr.c: the key of max_sessions_per_ip, proxy_trusted. */
#include "unit.h"

#include "netaddr.h"

static const char *key(const char *ip)
{
    static char out[64];

    if (addr_limit_key(ip, out, sizeof(out)) != 0)
        return "(error)";
    return out;
}

TEST(test_ipv4_per_address)
{
    CHECK_STR(key("192.0.2.1"), "192.0.2.1");
    CHECK_STR(key("192.0.2.2"), "192.0.2.2");
}

TEST(test_ipv6_per_64)
{
    CHECK_STR(key("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
    CHECK_STR(key("2001:db8:1:2::ffff"), "2001:db8:1:2::/64");
    CHECK_STR(key("2001:db8:1:2::1"), key("2001:db8:1:2:abcd::1"));
    CHECK_STR(key("2001:db8:1:3::1"), "2001:db8:1:3::/64");
    CHECK_STR(key("::1"), "::/64");
    CHECK_STR(key("fe80::1"), "fe80::/64");
}

TEST(test_v4_mapped_per_address)
{
    CHECK_STR(key("::ffff:192.0.2.1"), "::ffff:192.0.2.1");
    CHECK_STR(key("::ffff:192.0.2.2"), "::ffff:192.0.2.2");
}

TEST(test_not_an_address)
{
    CHECK_STR(key("unknown"), "unknown");
    CHECK_STR(key(""), "");
}

TEST(test_small_buffer)
{
    char out[8];

    CHECK(addr_limit_key("2001:db8:1:2::1", out, sizeof(out)) == -1);
    CHECK(addr_limit_key("192.0.2.123", out, sizeof(out)) == -1);
    CHECK(addr_limit_key("1.2.3.4", out, sizeof(out)) == 0);
}

TEST(test_cidr_match)
{
    const char *list = "10.0.0.0/8, 192.0.2.7, 2001:db8:ab::/48, 198.51.100.128/25";

    CHECK(addr_in_cidr_list("10.1.2.3", list) == 1);
    CHECK(addr_in_cidr_list("11.0.0.1", list) == 0);
    CHECK(addr_in_cidr_list("192.0.2.7", list) == 1);
    CHECK(addr_in_cidr_list("192.0.2.8", list) == 0);
    CHECK(addr_in_cidr_list("198.51.100.128", list) == 1);
    CHECK(addr_in_cidr_list("198.51.100.255", list) == 1);
    CHECK(addr_in_cidr_list("198.51.100.127", list) == 0);
    CHECK(addr_in_cidr_list("2001:db8:ab:1::5", list) == 1);
    CHECK(addr_in_cidr_list("2001:db8:ac::5", list) == 0);
    /* An IPv4 client on a dual-stack socket is the IPv4 address it is. */
    CHECK(addr_in_cidr_list("::ffff:10.9.9.9", list) == 1);
    CHECK(addr_in_cidr_list("::ffff:11.9.9.9", list) == 0);
    CHECK(addr_in_cidr_list("unknown", list) == 0);
    CHECK(addr_in_cidr_list("10.0.0.1", "") == 0);
    CHECK(addr_in_cidr_list("203.0.113.9", "0.0.0.0/0") == 1);
    CHECK(addr_in_cidr_list("2001:db8::1", "0.0.0.0/0") == 0);
    CHECK(addr_in_cidr_list("2001:db8::1", "::/0") == 1);
    CHECK(addr_in_cidr_list("::1", "::1") == 1);
    CHECK(addr_in_cidr_list("127.0.0.1", "127.0.0.1/32") == 1);
    CHECK(addr_in_cidr_list("127.0.0.2", "127.0.0.1/32") == 0);
    /* A bad entry matches nothing, the good ones still do. */
    CHECK(addr_in_cidr_list("10.0.0.1", "bogus, 10.0.0.0/8") == 1);
}

TEST(test_cidr_check)
{
    char err[128];

    CHECK(addr_cidr_list_check("10.0.0.0/8, ::1, 2001:db8::/32", err, sizeof(err)) == 0);
    CHECK(addr_cidr_list_check("", err, sizeof(err)) == 0);
    CHECK(addr_cidr_list_check("10.0.0.0/33", err, sizeof(err)) == -1);
    CHECK_STR(err, "\"10.0.0.0/33\" is not a network in CIDR notation");
    CHECK(addr_cidr_list_check("2001:db8::/129", err, sizeof(err)) == -1);
    CHECK(addr_cidr_list_check("10.0.0.0/", err, sizeof(err)) == -1);
    CHECK(addr_cidr_list_check("10.0.0.0/-1", err, sizeof(err)) == -1);
    CHECK(addr_cidr_list_check("/8", err, sizeof(err)) == -1);
    CHECK(addr_cidr_list_check("10.0.0/8", err, sizeof(err)) == -1);
    CHECK(addr_cidr_list_check(", 10.0.0.0/8", err, sizeof(err)) == -1);
    CHECK_STR(err, "entry 1 is empty or too long");
}

int main(void)
{
    RUN(test_ipv4_per_address);
    RUN(test_ipv6_per_64);
    RUN(test_v4_mapped_per_address);
    RUN(test_not_an_address);
    RUN(test_small_buffer);
    RUN(test_cidr_match);
    RUN(test_cidr_check);
    return UNIT_DONE();
}
