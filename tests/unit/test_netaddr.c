/* Unit tests of submitd/lib/netaddr.c: the key of max_sessions_per_ip. */
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

int main(void)
{
    RUN(test_ipv4_per_address);
    RUN(test_ipv6_per_64);
    RUN(test_v4_mapped_per_address);
    RUN(test_not_an_address);
    RUN(test_small_buffer);
    return UNIT_DONE();
}
