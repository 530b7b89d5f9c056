/*
 * Unit tests of submitd/lib/cli_out.c: the JSON writer always produces valid UTF-8
 * JSON (invalid bytes, control characters, surrogates and overlong forms escaped),
 * and the CSV writer follows RFC 4180.
 */
#include "unit.h"

#include "cli_out.h"

#include <stdlib.h>

static char outbuf[4096];

/* What fn printed for s, in outbuf. */
static const char *printed(void (*fn)(FILE *, const char *), const char *s)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);

    if (f == NULL)
        return NULL;
    fn(f, s);
    fclose(f);
    snprintf(outbuf, sizeof(outbuf), "%s", p != NULL ? p : "");
    free(p);
    return outbuf;
}

static const char *json(const char *s)
{
    return printed(cli_json_string, s);
}

static const char *csv(const char *s)
{
    return printed(cli_csv_field, s);
}

static const char *plain(const char *s)
{
    return printed(cli_plain_field, s);
}

TEST(json_plain_and_quotes)
{
    CHECK_STR(json(""), "\"\"");
    CHECK_STR(json("CN=alice"), "\"CN=alice\"");
    CHECK_STR(json("a\"b\\c"), "\"a\\\"b\\\\c\"");
    CHECK_STR(json("/tmp/x"), "\"/tmp/x\"");
}

TEST(json_control_characters)
{
    CHECK_STR(json("x\ny\r\tz"), "\"x\\ny\\r\\tz\"");
    CHECK_STR(json("\x01\x1f\x7f"), "\"\\u0001\\u001f\\u007f\"");
    /* C1 controls are valid UTF-8 but escaped like C0 ones (U+0085 is NEL). */
    CHECK_STR(json("a\xc2\x85" "b"), "\"a\\u0085b\"");
    CHECK_STR(json("\x1b[31m"), "\"\\u001b[31m\"");
}

TEST(json_valid_utf8_copied)
{
    CHECK_STR(json("J\xc3\xbcrgen"), "\"J\xc3\xbcrgen\"");              /* U+00FC */
    CHECK_STR(json("\xe2\x82\xac"), "\"\xe2\x82\xac\"");                /* U+20AC */
    CHECK_STR(json("\xf0\x9f\x98\x80"), "\"\xf0\x9f\x98\x80\"");        /* U+1F600 */
    CHECK_STR(json("\xef\xbf\xbd"), "\"\xef\xbf\xbd\"");                /* U+FFFD itself */
    CHECK_STR(json("\xf4\x8f\xbf\xbf"), "\"\xf4\x8f\xbf\xbf\"");        /* U+10FFFF */
}

TEST(json_invalid_utf8_escaped)
{
    /* Latin-1 bytes, stray continuation bytes, bytes never valid in UTF-8. */
    CHECK_STR(json("caf\xe9"), "\"caf\\ufffd\"");
    CHECK_STR(json("\x80"), "\"\\ufffd\"");
    CHECK_STR(json("a\xbf" "b"), "\"a\\ufffdb\"");
    CHECK_STR(json("\xfe\xff"), "\"\\ufffd\\ufffd\"");
    /* A sequence cut short, by the end or by an ASCII byte. */
    CHECK_STR(json("\xe2\x82"), "\"\\ufffd\\ufffd\"");
    CHECK_STR(json("\xf0\x9f" "x"), "\"\\ufffd\\ufffdx\"");
    /* Code points above U+10FFFF. */
    CHECK_STR(json("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

TEST(json_overlong_forms)
{
    /* "/" and NUL in two bytes, "/" in three and four: never decoded. */
    CHECK_STR(json("\xc0\xaf"), "\"\\ufffd\\ufffd\"");
    CHECK_STR(json("\xc0\x80"), "\"\\ufffd\\ufffd\"");
    CHECK_STR(json("\xc1\xbf"), "\"\\ufffd\\ufffd\"");
    CHECK_STR(json("\xe0\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\"");
    CHECK_STR(json("\xf0\x80\x80\xaf"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");
    /* The shortest forms just above each limit are fine. */
    CHECK_STR(json("\xc2\x80"), "\"\\u0080\"");
    CHECK_STR(json("\xe0\xa0\x80"), "\"\xe0\xa0\x80\"");
    CHECK_STR(json("\xf0\x90\x80\x80"), "\"\xf0\x90\x80\x80\"");
}

TEST(json_surrogates)
{
    /* UTF-16 surrogates encoded as UTF-8 (CESU-8 and lone halves) are not UTF-8. */
    CHECK_STR(json("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");
    CHECK_STR(json("\xed\xbf\xbf"), "\"\\ufffd\\ufffd\\ufffd\"");
    CHECK_STR(json("\xed\xa0\xbd\xed\xb8\x80"),
              "\"\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
    /* The code points on either side of the surrogate range are fine. */
    CHECK_STR(json("\xed\x9f\xbf"), "\"\xed\x9f\xbf\"");
    CHECK_STR(json("\xee\x80\x80"), "\"\xee\x80\x80\"");
}

TEST(json_member_null)
{
    char *p = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&p, &n);

    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputc('{', f);
    cli_json_member(f, "user", "alice", 1);
    cli_json_member(f, "serial", "", 0);
    cli_json_member(f, "reason", "bad\xff", 0);
    fputc('}', f);
    fclose(f);
    CHECK_STR(p, "{\"user\":\"alice\",\"serial\":null,\"reason\":\"bad\\ufffd\"}");
    free(p);
}

TEST(csv_fields)
{
    CHECK_STR(csv(""), "");
    CHECK_STR(csv("alice"), "alice");
    CHECK_STR(csv("a,b"), "\"a,b\"");
    CHECK_STR(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
    CHECK_STR(csv("\"\""), "\"\"\"\"\"\"");
    CHECK_STR(csv("two\r\nlines"), "\"two\r\nlines\"");
    CHECK_STR(csv("one\nline,"), "\"one\nline,\"");
}

TEST(csv_controls_and_invalid_utf8)
{
    /* A field that needs no quotes: controls (LF and CR absent) and bad bytes are '?'. */
    CHECK_STR(csv("tab\there"), "tab?here");
    CHECK_STR(csv("caf\xe9"), "caf?");
    CHECK_STR(csv("J\xc3\xbcrgen"), "J\xc3\xbcrgen");
    CHECK_STR(csv("\xed\xa0\x80"), "???");
    CHECK_STR(csv("\xc0\xaf"), "??");
    /* In a quoted field CR and LF stay, other controls still become '?'. */
    CHECK_STR(csv("a\x01,\"\n\xff"), "\"a?,\"\"\n?\"");
}

TEST(plain_fields)
{
    CHECK_STR(plain(""), "-");
    CHECK_STR(plain("alice"), "alice");
    CHECK_STR(plain("a\tb\nc"), "a?b?c");
    CHECK_STR(plain("J\xc3\xbcrgen\xff"), "J\xc3\xbcrgen?");
    CHECK_STR(plain("\xc2\x85"), "?");
}

int main(void)
{
    RUN(json_plain_and_quotes);
    RUN(json_control_characters);
    RUN(json_valid_utf8_copied);
    RUN(json_invalid_utf8_escaped);
    RUN(json_overlong_forms);
    RUN(json_surrogates);
    RUN(json_member_null);
    RUN(csv_fields);
    RUN(csv_controls_and_invalid_utf8);
    RUN(plain_fields);
    return UNIT_DONE();
}
