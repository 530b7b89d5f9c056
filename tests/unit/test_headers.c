/* Unit tests of the header helpers used by check_header_from (submitd/lib/smtp_parse.c). */
#include "unit.h"

#include "smtp_parse.h"

static char addrs[16][SMTP_ADDR_MAX + 1];

#define HDR(s) s, sizeof(s) - 1
/* A string literal as a mailbox-list value: its bytes and their count. */
#define MBOX(s) s, sizeof(s) - 1

TEST(header_value_unfolds_and_counts)
{
    char v[256];

    CHECK(smtp_header_value(HDR("Subject: x\r\nFrom:  Alice\r\n <a@b.example>\r\nTo: c@d\r\n\r\n"),
                            "From", v, sizeof(v)) == 1);
    CHECK_STR(v, "Alice <a@b.example>");
    CHECK(smtp_header_value(HDR("from: a@b\r\nFROM : c@d\r\n\r\n"), "From", v, sizeof(v)) == 2);
    CHECK_STR(v, "a@b");
    CHECK(smtp_header_value(HDR("Subject: From: a@b\r\nX-From: c@d\r\n\r\n"), "From", v,
                            sizeof(v)) == 0);
    CHECK(smtp_header_value(HDR("From: aaaaaaaaaaaaaaaaaaaa@b\r\n\r\n"), "From", v, 8) == -1);
}

TEST(mailbox_list_forms)
{
    CHECK(smtp_parse_mailbox_list(MBOX("alice@example.com"), addrs, 16) == 1);
    CHECK_STR(addrs[0], "alice@example.com");
    CHECK(smtp_parse_mailbox_list(MBOX("Alice Smith <alice@example.com>"), addrs, 16) == 1);
    CHECK_STR(addrs[0], "alice@example.com");
    CHECK(smtp_parse_mailbox_list(MBOX("\"alice@example.com\" <mallory@evil.test>"), addrs, 16) == 1);
    CHECK_STR(addrs[0], "mallory@evil.test");
    CHECK(smtp_parse_mailbox_list(MBOX("\"Smith, Alice\" <a@x.example>, b@y.example"), addrs, 16) == 2);
    CHECK_STR(addrs[0], "a@x.example");
    CHECK_STR(addrs[1], "b@y.example");
    CHECK(smtp_parse_mailbox_list(MBOX("a@x.example (Alice, the boss)"), addrs, 16) == 1);
    CHECK_STR(addrs[0], "a@x.example");
    CHECK(smtp_parse_mailbox_list(MBOX("Team: a@x.example, b@x.example;"), addrs, 16) == 2);
    CHECK_STR(addrs[1], "b@x.example");
}

TEST(mailbox_list_refusals)
{
    CHECK(smtp_parse_mailbox_list(MBOX(""), addrs, 16) == 0);
    CHECK(smtp_parse_mailbox_list(MBOX("Alice"), addrs, 16) == -1);
    CHECK(smtp_parse_mailbox_list(MBOX("<a@b.example"), addrs, 16) == -1);
    CHECK(smtp_parse_mailbox_list(MBOX("\"unterminated <a@b.example>"), addrs, 16) == -1);
    CHECK(smtp_parse_mailbox_list(MBOX("<a@b.example> <c@d.example>"), addrs, 16) == -1);
    CHECK(smtp_parse_mailbox_list(MBOX("a@b.example, c@d.example"), addrs, 1) == -1);
}

int main(void)
{
    RUN(header_value_unfolds_and_counts);
    RUN(mailbox_list_forms);
    RUN(mailbox_list_refusals);
    return UNIT_DONE();
}
