/*
 * Unit tests of submitd/lib/smtp_parse.c: command verbs, paths, addresses, MAIL
 * parameters, the DATA byte-level state machine, the header section and its From
 * field.
 */
#include "smtp_parse.h"
#include "unit.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

static char addrs[16][SMTP_ADDR_MAX + 1];

/* ---- verbs ---------------------------------------------------------------- */

TEST(test_verb_known_and_case)
{
    const char *arg = NULL;

    CHECK(smtp_parse_verb("EHLO client.example", &arg) == CMD_EHLO);
    CHECK_STR(arg, "client.example");
    CHECK(smtp_parse_verb("ehlo client.example", &arg) == CMD_EHLO);
    CHECK_STR(arg, "client.example");
    CHECK(smtp_parse_verb("eHlO x", &arg) == CMD_EHLO);
    CHECK(smtp_parse_verb("HELO x", &arg) == CMD_HELO);
    CHECK(smtp_parse_verb("StartTLS", &arg) == CMD_STARTTLS);
    CHECK_STR(arg, "");
    CHECK(smtp_parse_verb("AUTH EXTERNAL =", &arg) == CMD_AUTH);
    CHECK_STR(arg, "EXTERNAL =");
    CHECK(smtp_parse_verb("MAIL FROM:<a@b.example> SIZE=10", &arg) == CMD_MAIL);
    CHECK_STR(arg, "FROM:<a@b.example> SIZE=10");
    CHECK(smtp_parse_verb("rcpt TO:<a@b.example>", &arg) == CMD_RCPT);
    CHECK_STR(arg, "TO:<a@b.example>");
    CHECK(smtp_parse_verb("DATA", &arg) == CMD_DATA);
    CHECK_STR(arg, "");
    CHECK(smtp_parse_verb("BDAT 10 LAST", &arg) == CMD_BDAT);
    CHECK_STR(arg, "10 LAST");
    CHECK(smtp_parse_verb("RSET", &arg) == CMD_RSET);
    CHECK(smtp_parse_verb("NOOP", &arg) == CMD_NOOP);
    CHECK(smtp_parse_verb("QUIT", &arg) == CMD_QUIT);
    CHECK(smtp_parse_verb("VRFY postmaster", &arg) == CMD_VRFY);
    CHECK_STR(arg, "postmaster");
    CHECK(smtp_parse_verb("EXPN list", &arg) == CMD_EXPN);
    CHECK(smtp_parse_verb("HELP", &arg) == CMD_HELP);
}

TEST(test_verb_arguments)
{
    const char *arg = NULL;

    /* Only the first space separates; the rest is the argument verbatim. */
    CHECK(smtp_parse_verb("NOOP a  b ", &arg) == CMD_NOOP);
    CHECK_STR(arg, "a  b ");
    CHECK(smtp_parse_verb("QUIT ", &arg) == CMD_QUIT);
    CHECK_STR(arg, "");
    CHECK(smtp_parse_verb("MAIL  FROM:<a@b>", &arg) == CMD_MAIL);
    CHECK_STR(arg, " FROM:<a@b>");
}

TEST(test_verb_unknown)
{
    const char *arg = NULL;

    CHECK(smtp_parse_verb("MAILX FROM:<a@b>", &arg) == CMD_UNKNOWN);
    CHECK_STR(arg, "FROM:<a@b>");
    CHECK(smtp_parse_verb("MAI", &arg) == CMD_UNKNOWN);
    CHECK(smtp_parse_verb("MAIL:", &arg) == CMD_UNKNOWN);
    CHECK(smtp_parse_verb("DATAX", &arg) == CMD_UNKNOWN);
    CHECK(smtp_parse_verb("STARTTLSX", &arg) == CMD_UNKNOWN);
    CHECK(smtp_parse_verb("GET / HTTP/1.0", &arg) == CMD_UNKNOWN);
    CHECK(smtp_parse_verb(" EHLO x", &arg) == CMD_UNKNOWN);
    arg = NULL;
    CHECK(smtp_parse_verb("", &arg) == CMD_UNKNOWN);
    CHECK_STR(arg, "");
    CHECK(smtp_parse_verb(" ", &arg) == CMD_UNKNOWN);
    CHECK_STR(arg, "");
}

/* ---- paths ---------------------------------------------------------------- */

/* Parses and returns the address, or "ERR:<why>" on failure. */
static const char *path_of(const char *arg, const char *kw, const char **params)
{
    static char addr[SMTP_ADDR_MAX + 1];
    static char result[SMTP_ADDR_MAX + 128];
    const char *why = NULL, *p = NULL;

    if (smtp_parse_path(arg, kw, addr, sizeof(addr), &p, &why) != 0) {
        snprintf(result, sizeof(result), "ERR:%s", why ? why : "(null)");
        return result;
    }
    if (params != NULL)
        *params = p;
    return addr;
}

TEST(test_path_basic)
{
    const char *params = NULL;

    CHECK_STR(path_of("FROM:<alice@example.com>", "FROM:", &params), "alice@example.com");
    CHECK_STR(params, "");
    CHECK_STR(path_of("from:<alice@example.com>", "FROM:", NULL), "alice@example.com");
    CHECK_STR(path_of("To:<bob@example.org>", "TO:", &params), "bob@example.org");
    CHECK_STR(params, "");
    /* The null reverse path. */
    CHECK_STR(path_of("FROM:<>", "FROM:", &params), "");
    CHECK_STR(params, "");
    /* A space after the colon is tolerated. */
    CHECK_STR(path_of("FROM: <alice@example.com>", "FROM:", NULL), "alice@example.com");
    CHECK_STR(path_of("FROM:   <alice@example.com>", "FROM:", NULL), "alice@example.com");
    /* The keyword must match. */
    CHECK_STR(path_of("TO:<a@b.c>", "FROM:", NULL), "ERR:Syntax error in parameters");
    CHECK_STR(path_of("FROM <a@b.c>", "FROM:", NULL), "ERR:Syntax error in parameters");
    CHECK_STR(path_of("", "TO:", NULL), "ERR:Syntax error in parameters");
}

TEST(test_path_params)
{
    const char *params = NULL;
    char addr[SMTP_ADDR_MAX + 1];
    const char *why = NULL;
    const char *arg = "FROM:<a@b.example> SIZE=100 BODY=8BITMIME";

    CHECK(smtp_parse_path(arg, "FROM:", addr, sizeof(addr), &params, &why) == 0);
    CHECK_STR(addr, "a@b.example");
    /* params points into arg, at the first parameter. */
    CHECK(params == arg + strlen("FROM:<a@b.example> "));
    CHECK_STR(params, "SIZE=100 BODY=8BITMIME");
    CHECK_STR(path_of("FROM:<a@b.example>   SIZE=1", "FROM:", &params), "a@b.example");
    CHECK_STR(params, "SIZE=1");
    CHECK_STR(path_of("FROM:<> BODY=7BIT", "FROM:", &params), "");
    CHECK_STR(params, "BODY=7BIT");
    CHECK_STR(path_of("TO:<a@b.example> ", "TO:", &params), "a@b.example");
    CHECK_STR(params, "");
}

TEST(test_path_source_route)
{
    CHECK_STR(path_of("TO:<@relay1.example,@relay2.example:bob@example.org>", "TO:", NULL),
              "bob@example.org");
    CHECK_STR(path_of("TO:<@relay.example:bob@example.org>", "TO:", NULL), "bob@example.org");
    CHECK_STR(path_of("TO:<@relay.example>", "TO:", NULL), "ERR:Bad source route");
    /* The route's colon must be inside the brackets: a colon found in the text after
     * '>' must not make the parser pick an address from outside the path. */
    CHECK(strncmp(path_of("TO:<@relay.example> X=y:bob@example.org>", "TO:", NULL), "ERR:",
                  4) == 0);
}

TEST(test_path_errors)
{
    CHECK_STR(path_of("TO:bob@example.org", "TO:", NULL), "ERR:Address must be in angle brackets");
    CHECK_STR(path_of("TO:", "TO:", NULL), "ERR:Address must be in angle brackets");
    CHECK_STR(path_of("TO:<bob@example.org", "TO:", NULL), "ERR:Missing closing angle bracket");
    CHECK_STR(path_of("TO:<bob@example.org>x", "TO:", NULL), "ERR:Garbage after address");
    CHECK_STR(path_of("TO:<bob@example.org>>", "TO:", NULL), "ERR:Garbage after address");
    CHECK_STR(path_of("TO:<bob@example.org><c@d.e>", "TO:", NULL), "ERR:Garbage after address");
    CHECK_STR(path_of("TO:<bob>", "TO:", NULL), "ERR:Bad address syntax");
    CHECK_STR(path_of("TO:<b ob@example.org>", "TO:", NULL), "ERR:Bad address syntax");
    CHECK_STR(path_of("TO:< >", "TO:", NULL), "ERR:Bad address syntax");
    CHECK_STR(path_of("TO:<<bob@example.org>>", "TO:", NULL), "ERR:Bad address syntax");
}

TEST(test_path_length)
{
    char arg[600], addr[SMTP_ADDR_MAX + 1], small[6];
    char local[65], domain[200];
    const char *params = NULL, *why = NULL;

    /* 64-character local part + '@' + 189-character domain = 254: the maximum. */
    memset(local, 'l', 64);
    local[64] = '\0';
    memset(domain, 'd', 189);
    domain[189] = '\0';
    domain[50] = '.';
    domain[120] = '.';
    snprintf(arg, sizeof(arg), "TO:<%s@%s>", local, domain);
    CHECK(smtp_parse_path(arg, "TO:", addr, sizeof(addr), &params, &why) == 0);
    CHECK(strlen(addr) == 254);
    /* One more character is too long. */
    domain[189] = 'd';
    domain[190] = '\0';
    snprintf(arg, sizeof(arg), "TO:<%s@%s>", local, domain);
    CHECK_STR(path_of(arg, "TO:", NULL), "ERR:Address too long");
    /* A very long path is refused before anything is copied. */
    memset(arg, 'x', sizeof(arg) - 1);
    arg[sizeof(arg) - 1] = '\0';
    memcpy(arg, "TO:<", 4);
    arg[sizeof(arg) - 2] = '>';
    CHECK_STR(path_of(arg, "TO:", NULL), "ERR:Address too long");
    /* The caller's buffer bounds the copy too (needs n + 1 bytes). */
    memset(small, 'Z', sizeof(small));
    why = NULL;
    CHECK(smtp_parse_path("TO:<ab@c.d>", "TO:", small, sizeof(small), &params, &why) == -1);
    CHECK_STR(why, "Address too long");
    CHECK(small[0] == 'Z');
    CHECK(smtp_parse_path("TO:<a@c.d>", "TO:", small, sizeof(small), &params, &why) == 0);
    CHECK_STR(small, "a@c.d");
    /* A 65-character local part is invalid even though the path fits. */
    snprintf(arg, sizeof(arg), "TO:<%sl@example.com>", local);
    CHECK_STR(path_of(arg, "TO:", NULL), "ERR:Bad address syntax");
}

/* ---- addresses ------------------------------------------------------------ */

TEST(test_addr_valid)
{
    static const char *const good[] = {
        "a@b", "alice@example.com", "a.b+tag@sub-domain.example.org", "A_B-c=d@x.io",
        "\"john doe\"@example.com", "\"a@b\"@example.com", "a@[127.0.0.1]",
        "a@[IPv6:2001:db8::1]", "x@localhost", "o'brien@example.ie",
    };
    static const char *const bad[] = {
        "", "a", "@", "@b.c", "a@", "a@b@c", "a b@c.d", "a@b c.d", "a<b@c.d", "a>b@c.d",
        "a(b@c.d", "a,b@c.d", "a;b@c.d", "a:b@c.d", "a\\b@c.d", "a[b@c.d", "a@b_c.d",
        "a@.b", "a@b.", "a@b..c", "\"a@b.c", "a\"@b.c", "a\t@b.c", "a\x7f@b.c",
        "a\xc3\xa9@b.c", "a@b\xc3\xa9.c", "a@[1.2.3.4", "a@[1.2.3.4]x", "a@[1.2.3.4/x]",
        "a@b.c\r", "a\r\n@b.c",
        /* An empty address literal is no address. */
        "a@[]",
    };
    char buf[400];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (!smtp_addr_valid(good[i])) {
            printf("  expected valid: %s\n", good[i]);
            CHECK(smtp_addr_valid(good[i]));
        }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (smtp_addr_valid(bad[i])) {
            printf("  expected invalid: \"%s\"\n", bad[i]);
            CHECK(!smtp_addr_valid(bad[i]));
        }
    /* Local part: 64 octets at most. */
    memset(buf, 'a', 64);
    str_lcpy(buf + 64, "@example.com", sizeof(buf) - 64);
    CHECK(smtp_addr_valid(buf));
    memset(buf, 'a', 65);
    str_lcpy(buf + 65, "@example.com", sizeof(buf) - 65);
    CHECK(!smtp_addr_valid(buf));
    /* The whole address: 254 octets at most. */
    memset(buf, 'd', sizeof(buf));
    memcpy(buf, "a@", 2);
    buf[254] = '\0';
    CHECK(smtp_addr_valid(buf));
    buf[254] = 'd';
    buf[255] = '\0';
    CHECK(!smtp_addr_valid(buf));
}

/* ---- MAIL parameters ------------------------------------------------------ */

TEST(test_mail_params_ok)
{
    struct mail_params mp;
    const char *why = NULL;

    mp.size = 77;
    mp.body_8bit = 77;
    CHECK(smtp_parse_mail_params("", &mp, &why) == 0);
    CHECK(mp.size == -1 && mp.body_8bit == 0);
    CHECK(smtp_parse_mail_params("SIZE=1000", &mp, &why) == 0);
    CHECK(mp.size == 1000 && mp.body_8bit == 0);
    CHECK(smtp_parse_mail_params("size=0", &mp, &why) == 0);
    CHECK(mp.size == 0);
    CHECK(smtp_parse_mail_params("BODY=8BITMIME", &mp, &why) == 0);
    CHECK(mp.size == -1 && mp.body_8bit == 1);
    CHECK(smtp_parse_mail_params("body=8bitmime", &mp, &why) == 0);
    CHECK(mp.body_8bit == 1);
    CHECK(smtp_parse_mail_params("BODY=7BIT", &mp, &why) == 0);
    CHECK(mp.body_8bit == 0);
    CHECK(smtp_parse_mail_params("SIZE=26214400 BODY=8BITMIME", &mp, &why) == 0);
    CHECK(mp.size == 26214400 && mp.body_8bit == 1);
    CHECK(smtp_parse_mail_params("BODY=8BITMIME  SIZE=5", &mp, &why) == 0);
    CHECK(mp.size == 5 && mp.body_8bit == 1);
    CHECK(smtp_parse_mail_params("SIZE=1125899906842624", &mp, &why) == 0); /* 2^50 */
    CHECK(mp.size == 1125899906842624LL);
}

TEST(test_mail_params_bad)
{
    static const char *const bad_size[] = {
        "SIZE=", "SIZE=abc", "SIZE=-1", "SIZE=10x", "SIZE=1125899906842625",
        "SIZE=99999999999999999999999", "SIZE=1 SIZE=x",
    };
    static const char *const unsupported[] = {
        "AUTH=<>", "BODY=BINARYMIME", "BODY=", "SMTPUTF8", "RET=FULL", "SIZE", "BODY",
        "SIZE=1 ENVID=x", "BODY=8BITMIMEX",
    };
    struct mail_params mp;
    const char *why;
    char longp[300];

    for (size_t i = 0; i < sizeof(bad_size) / sizeof(bad_size[0]); i++) {
        why = NULL;
        CHECK(smtp_parse_mail_params(bad_size[i], &mp, &why) == -1);
        CHECK_STR(why, "Bad SIZE parameter");
    }
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        why = NULL;
        if (smtp_parse_mail_params(unsupported[i], &mp, &why) != -1)
            printf("  accepted: %s\n", unsupported[i]);
        CHECK_STR(why, "Unsupported parameter");
    }
    memset(longp, 'A', sizeof(longp) - 1);
    longp[sizeof(longp) - 1] = '\0';
    why = NULL;
    CHECK(smtp_parse_mail_params(longp, &mp, &why) == -1);
    CHECK_STR(why, "Parameter too long");
}

/* ---- DATA ----------------------------------------------------------------- */

struct data_result {
    char out[8192];
    size_t outlen;
    size_t consumed;
    int ended;
    int bare;
    int nul;
    int too_long;
};

/*
 * Feeds in[0..len) in chunks whose sizes come from cuts (a list of cut offsets,
 * ascending), stopping after the end of data like the session does.
 */
static void data_feed(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                      struct data_result *r)
{
    struct data_parser dp;
    size_t pos = 0, k = 0;
    char *tmp = malloc(len + 2);

    memset(r, 0, sizeof(*r));
    data_parser_init(&dp);
    if (tmp == NULL)
        return;
    while (pos < len && dp.state != DS_END) {
        size_t end = k < ncuts ? cuts[k++] : len;
        size_t n, got, outlen = 0;

        if (end < pos)
            continue;
        n = end - pos;
        got = data_parse(&dp, in + pos, n, tmp, &outlen);
        if (got > n || outlen > n + 2) {
            printf("  data_parse consumed %zu of %zu, output %zu\n", got, n, outlen);
            r->consumed = (size_t)-1;
            break;
        }
        if (got < n && dp.state != DS_END) {
            printf("  data_parse stopped early without end of data\n");
            r->consumed = (size_t)-1;
            break;
        }
        if (r->outlen + outlen <= sizeof(r->out)) {
            memcpy(r->out + r->outlen, tmp, outlen);
            r->outlen += outlen;
        }
        r->consumed += got;
        pos += got;
    }
    r->ended = dp.state == DS_END;
    r->bare = dp.bare;
    r->nul = dp.nul;
    r->too_long = dp.line_too_long;
    free(tmp);
}

static void data_once(const char *in, size_t len, struct data_result *r)
{
    data_feed(in, len, NULL, 0, r);
}

static int data_out_is(const struct data_result *r, const char *expect)
{
    size_t n = strlen(expect);

    if (r->outlen == n && memcmp(r->out, expect, n) == 0)
        return 1;
    printf("  output (%zu bytes) \"%.*s\" != expected (%zu) \"%s\"\n", r->outlen,
           (int)r->outlen, r->out, n, expect);
    return 0;
}

#define DATA(s) (s), (sizeof(s) - 1)

TEST(test_data_simple_end)
{
    struct data_result r;
    static const char msg[] = "Subject: hi\r\n\r\nhello\r\nworld\r\n.\r\n";

    data_once(DATA(msg), &r);
    CHECK(r.ended);
    CHECK(r.consumed == sizeof(msg) - 1);
    CHECK(!r.bare && !r.too_long);
    CHECK(data_out_is(&r, "Subject: hi\r\n\r\nhello\r\nworld\r\n"));
}

TEST(test_data_empty_message)
{
    struct data_result r;

    data_once(DATA(".\r\n"), &r);
    CHECK(r.ended && r.consumed == 3 && !r.bare && r.outlen == 0);
    data_once(DATA(".\r\nQUIT\r\n"), &r);
    CHECK(r.ended && r.consumed == 3 && !r.bare && r.outlen == 0);
    /* An empty line then the end: one CRLF of content. */
    data_once(DATA("\r\n.\r\n"), &r);
    CHECK(r.ended && r.consumed == 5 && !r.bare);
    CHECK(data_out_is(&r, "\r\n"));
}

TEST(test_data_pipelined_rest)
{
    struct data_result r;
    static const char in[] = "a\r\n.\r\nMAIL FROM:<x@y.z>\r\n";

    data_once(DATA(in), &r);
    CHECK(r.ended);
    CHECK(r.consumed == 6);
    CHECK(strcmp(in + r.consumed, "MAIL FROM:<x@y.z>\r\n") == 0);
    CHECK(data_out_is(&r, "a\r\n"));
    /* A second "." line after the end belongs to the next command, not to us. */
    data_once(DATA("a\r\n.\r\n.\r\n"), &r);
    CHECK(r.ended && r.consumed == 6);
}

TEST(test_data_after_end_consumes_nothing)
{
    struct data_parser dp;
    char out[64];
    size_t outlen = 99;

    data_parser_init(&dp);
    CHECK(data_parse(&dp, ".\r\n", 3, out, &outlen) == 3);
    CHECK(dp.state == DS_END && outlen == 0);
    outlen = 99;
    CHECK(data_parse(&dp, "more\r\n", 6, out, &outlen) == 0);
    CHECK(outlen == 0);
}

TEST(test_data_not_end)
{
    struct data_result r;

    /* None of these is CRLF.CRLF; the data continues. */
    data_once(DATA("a\r\n.x\r\n"), &r);
    CHECK(!r.ended && r.consumed == 7 && !r.bare);
    CHECK(data_out_is(&r, "a\r\nx\r\n"));
    data_once(DATA("a\r\n. \r\n"), &r);
    CHECK(!r.ended && !r.bare);
    CHECK(data_out_is(&r, "a\r\n \r\n"));
    data_once(DATA("a.\r\n"), &r);
    CHECK(!r.ended && !r.bare);
    CHECK(data_out_is(&r, "a.\r\n"));
    data_once(DATA("a\r\n.."), &r);
    CHECK(!r.ended && !r.bare);
    data_once(DATA("a\r\n.\r"), &r);
    CHECK(!r.ended && !r.bare && r.consumed == 5);
    CHECK(data_out_is(&r, "a\r\n"));
    data_once(DATA("a\r\n"), &r);
    CHECK(!r.ended && r.consumed == 3);
}

TEST(test_data_unstuffing)
{
    struct data_result r;

    data_once(DATA("..x\r\n...\r\n..\r\n. .\r\nend\r\n.\r\n"), &r);
    CHECK(r.ended && !r.bare);
    CHECK(data_out_is(&r, ".x\r\n..\r\n.\r\n .\r\nend\r\n"));
    /* Only a dot at the start of a line is stuffing. */
    data_once(DATA("a..b\r\n.\r\n"), &r);
    CHECK(data_out_is(&r, "a..b\r\n"));
}

TEST(test_data_bare_lf)
{
    struct data_result r;

    data_once(DATA("a\nb\r\n.\r\n"), &r);
    CHECK(r.bare && r.ended && r.consumed == 8);
    /* A bare-LF message still ends at CRLF.CRLF, so the client gets its 550; what
     * follows stays for the next command. */
    data_once(DATA("line\nmore\r\n.\r\nQUIT\r\n"), &r);
    CHECK(r.bare && r.ended && r.consumed == strlen("line\nmore\r\n.\r\n"));
    data_once(DATA("x\n.\n\r\n.\r\nQUIT\r\n"), &r);
    CHECK(r.bare && r.ended && r.consumed == strlen("x\n.\n\r\n.\r\n"));
    /* Nothing but CRLF.CRLF ends the data (DESIGN 3.8): the bytes after a fake end
     * made of bare LFs are message content, never commands (SMTP smuggling). */
    data_once(DATA("Subject: x\n\nbody\n.\nMAIL FROM:<x@y.z>\r\n"), &r);
    CHECK(r.bare && !r.ended && r.consumed == strlen("Subject: x\n\nbody\n.\nMAIL FROM:<x@y.z>\r\n"));
    data_once(DATA("a\r\n.\nMAIL FROM:<x@y.z>\r\n"), &r);
    CHECK(r.bare && !r.ended);
    data_once(DATA("line\n.\r\nMAIL FROM:<x@y.z>\r\n"), &r);
    CHECK(r.bare && !r.ended);
    data_once(DATA("\n.\n"), &r);
    CHECK(r.bare && !r.ended && r.consumed == 3);
    data_once(DATA("a\n.x\nb\n"), &r);
    CHECK(r.bare && !r.ended && r.consumed == 7);
}

TEST(test_data_bare_cr)
{
    struct data_result r;

    data_once(DATA("a\rb\r\n.\r\n"), &r);
    CHECK(r.bare && r.ended && r.consumed == 8);
    data_once(DATA("a\r\r\n.\r\n"), &r);
    CHECK(r.bare && r.ended && r.consumed == 7);
    data_once(DATA(".\rx\r\n.\r\n"), &r);
    CHECK(r.bare && r.ended && r.consumed == 8);
    data_once(DATA("\rabc\r\n.\r\nNOOP\r\n"), &r);
    CHECK(r.bare && r.ended && r.consumed == 9);
    /* "\r.\r" is neither an end nor accepted. */
    data_once(DATA("a\r.\rMAIL FROM:<x@y.z>\r\n"), &r);
    CHECK(r.bare && !r.ended);
    data_once(DATA("a\r\n.\r.\r\nMAIL FROM:<x@y.z>\r\n"), &r);
    CHECK(r.bare && !r.ended);
    data_once(DATA("a\rb\n.\r\nNOOP\r\n"), &r);
    CHECK(r.bare && !r.ended);
}

TEST(test_data_line_length)
{
    static char in[2100];
    struct data_result r;
    size_t n;

    /* 998 octets + CRLF = 1000: the longest allowed line. */
    memset(in, 'x', 998);
    memcpy(in + 998, "\r\n.\r\n", 5);
    n = 998 + 5;
    data_once(in, n, &r);
    CHECK(r.ended && !r.too_long && !r.bare && r.outlen == 1000);
    /* 999 octets + CRLF is too long. */
    memset(in, 'x', 999);
    memcpy(in + 999, "\r\n.\r\n", 5);
    n = 999 + 5;
    data_once(in, n, &r);
    CHECK(r.ended && r.too_long && !r.bare);
    /* Many short lines adding up to more than 1000 are fine. */
    for (n = 0; n + 10 < 2000; n += 10)
        memcpy(in + n, "12345678\r\n", 10);
    memcpy(in + n, ".\r\n", 3);
    n += 3;
    data_once(in, n, &r);
    CHECK(r.ended && !r.too_long && !r.bare);
    /* A dot-stuffed line counts its stuffing dot as sent on the wire. */
    in[0] = '.';
    memset(in + 1, 'y', 998);
    memcpy(in + 999, "\r\n.\r\n", 5);
    data_once(in, 1004, &r);
    CHECK(r.ended && r.too_long);
    /* The long line flag is set also when the line comes in pieces. */
    memset(in, 'z', 1500);
    memcpy(in + 1500, "\r\n.\r\n", 5);
    {
        size_t cuts[] = { 1, 500, 998, 999, 1000, 1499 };
        data_feed(in, 1505, cuts, 6, &r);
    }
    CHECK(r.ended && r.too_long);
}

/* Every way of cutting the input in two, and byte by byte, gives the same result
 * as feeding it at once. */
static int data_split_equal(const char *in, size_t len)
{
    struct data_result whole, part;
    size_t *cuts;
    int ok = 1;

    data_once(in, len, &whole);
    for (size_t k = 0; k <= len; k++) {
        data_feed(in, len, &k, 1, &part);
        if (part.consumed != whole.consumed || part.ended != whole.ended ||
            part.bare != whole.bare || part.too_long != whole.too_long ||
            (!whole.bare && (part.outlen != whole.outlen ||
                             memcmp(part.out, whole.out, whole.outlen) != 0))) {
            printf("  split at %zu differs for input \"%.*s\"\n", k, (int)(len > 60 ? 60 : len),
                   in);
            ok = 0;
            break;
        }
    }
    cuts = malloc(sizeof(*cuts) * (len + 1));
    if (cuts == NULL)
        return 0;
    for (size_t k = 0; k <= len; k++)
        cuts[k] = k;
    data_feed(in, len, cuts, len + 1, &part);
    if (part.consumed != whole.consumed || part.ended != whole.ended || part.bare != whole.bare ||
        part.too_long != whole.too_long ||
        (!whole.bare &&
         (part.outlen != whole.outlen || memcmp(part.out, whole.out, whole.outlen) != 0))) {
        printf("  byte-by-byte differs for input \"%.*s\"\n", (int)(len > 60 ? 60 : len), in);
        ok = 0;
    }
    free(cuts);
    return ok;
}

TEST(test_data_streaming_splits)
{
    static const char *const inputs[] = {
        "Subject: hi\r\n\r\nhello\r\n.\r\nQUIT\r\n",
        "..x\r\n...\r\n..\r\n.\r\n",
        ".\r\nNOOP\r\n",
        "\r\n\r\n.\r\n",
        "a\r\n.x\r\n.\r\nRSET\r\n",
        "a\nb\n.\nQUIT\r\n",
        "a\nb\r\n.\r\nQUIT\r\n",
        "a\rb\r\n.\r\nNOOP\r\n",
        "a\r\n.\nQUIT\r\n",
        "a\r\r\n.\r\n",
        ".\rx\r\n.\r\n",
        "no end here\r\n.",
        "x\r\n.\r",
    };
    static char longline[1200];

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++)
        CHECK(data_split_equal(inputs[i], strlen(inputs[i])));
    memset(longline, 'q', 1000);
    memcpy(longline + 1000, "\r\n.\r\nQUIT\r\n", 11);
    CHECK(data_split_equal(longline, 1011));
}

/* The output never exceeds what the header promises (inlen + 2). */
TEST(test_data_output_bound)
{
    struct data_parser dp;
    char out[8];
    size_t outlen = 0;

    data_parser_init(&dp);
    CHECK(data_parse(&dp, "a\r", 2, out, &outlen) == 2);
    CHECK(outlen == 1);
    CHECK(data_parse(&dp, "\n", 1, out, &outlen) == 1);
    CHECK(outlen == 2 && memcmp(out, "\r\n", 2) == 0);
}

/* ---- headers -------------------------------------------------------------- */

TEST(test_header_present)
{
    static const char hdr[] = "From: a@b.c\r\nDATE : Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                              "X-Message-ID-Tracking: 1\r\nSubject: Message-ID: no\r\n"
                              " Received: folded\r\n\r\n";
    size_t len = sizeof(hdr) - 1;

    CHECK(smtp_header_present(hdr, len, "From") == 1);
    CHECK(smtp_header_present(hdr, len, "from") == 1);
    CHECK(smtp_header_present(hdr, len, "Date") == 1);
    CHECK(smtp_header_present(hdr, len, "Subject") == 1);
    CHECK(smtp_header_present(hdr, len, "Message-ID") == 0);
    CHECK(smtp_header_present(hdr, len, "Received") == 0);
    CHECK(smtp_header_present(hdr, len, "Fro") == 0);
    CHECK(smtp_header_present(hdr, len, "Tracking") == 0);
    /* Only the first len bytes count. */
    CHECK(smtp_header_present(hdr, strlen("From: a@b.c\r\n"), "Date") == 0);
    CHECK(smtp_header_present(hdr, 0, "From") == 0);
    CHECK(smtp_header_present("Date:x", 6, "Date") == 1);
    CHECK(smtp_header_present("Date", 4, "Date") == 0);
    CHECK(smtp_header_present("Message-Id:\t<x@y>\r\n\r\n", 21, "Message-ID") == 1);
    CHECK(smtp_header_present("Message-Id\t:<x@y>\r\n", 19, "Message-ID") == 1);
}


/* A NUL byte anywhere is recorded (the session refuses the message), and kept in
 * the output so that nothing about the rest of the parse changes. */
TEST(test_data_nul)
{
    struct data_result r;

    data_once(DATA("From: a@b.example\0, c@d.example\r\n\r\nbody\r\n.\r\n"), &r);
    CHECK(r.nul && r.ended && !r.bare && !r.too_long);
    CHECK(r.outlen == strlen("From: a@b.example") + 1 + strlen(", c@d.example\r\n\r\nbody\r\n"));
    data_once(DATA("Subject: x\r\n\r\nbody \0 here\r\n.\r\nNOOP\r\n"), &r);
    CHECK(r.nul && r.ended && r.consumed == strlen("Subject: x\r\n\r\nbody ") + 1 +
                                            strlen(" here\r\n.\r\n"));
    data_once(DATA("\0\r\n.\r\n"), &r);
    CHECK(r.nul && r.ended);
    data_once(DATA(".\0\r\n.\r\n"), &r);
    CHECK(r.nul && r.ended && r.outlen == 3 && memcmp(r.out, "\0\r\n", 3) == 0);
    data_once(DATA("no nul\r\n.\r\n"), &r);
    CHECK(!r.nul && r.ended);
}

/* ---- the header section ---------------------------------------------------- */

/*
 * Collects in[0..len) in chunks of the given size as the session does; returns the
 * scan's final state, with the collected length in *hdrlen (-1 on a broken
 * invariant).
 */
static enum header_scan header_collect(const char *in, size_t len, size_t chunk, size_t max,
                                       char *hdr, size_t *hdrlen)
{
    enum header_scan st = HDR_MORE;
    size_t pos = 0;

    *hdrlen = 0;
    while (pos < len && st == HDR_MORE) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        size_t take = smtp_header_scan(hdr, *hdrlen, in + pos, n, max, &st);

        if (take > n || (st == HDR_MORE && take != n) || (st == HDR_OVER && take != 0) ||
            *hdrlen + take > max) {
            printf("  scan took %zu of %zu (state %d, have %zu, max %zu)\n", take, n, st,
                   *hdrlen, max);
            *hdrlen = (size_t)-1;
            return st;
        }
        memcpy(hdr + *hdrlen, in + pos, take);
        *hdrlen += take;
        pos += n;
    }
    return st;
}

TEST(test_header_scan_end)
{
    static const char *const msgs[] = {
        "Subject: x\r\n\r\nbody\r\n\r\nmore\r\n",
        "\r\nbody only\r\n",
        "A: 1\r\nB: 2\r\n folded\r\n\r\n",
        "A: 1\r\n\r\n\r\n\r\n",
    };
    static const size_t ends[] = { 14, 2, 23, 8 };
    char hdr[64];

    for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        for (size_t chunk = 1; chunk <= strlen(msgs[i]); chunk++) {
            size_t got;
            enum header_scan st = header_collect(msgs[i], strlen(msgs[i]), chunk, 1024, hdr, &got);

            CHECK(st == HDR_DONE && got == ends[i]);
        }
    }
}

TEST(test_header_scan_no_end_and_limit)
{
    static const char msg[] = "A: 1\r\nB: 2\r\n"; /* 12 bytes, no empty line */
    char hdr[64];
    size_t got;

    /* Without an empty line all of it is header, up to the limit exactly. */
    for (size_t chunk = 1; chunk <= 12; chunk++) {
        CHECK(header_collect(DATA(msg), chunk, 12, hdr, &got) == HDR_MORE && got == 12);
        CHECK(header_collect(DATA(msg), chunk, 11, hdr, &got) == HDR_OVER && got <= 11);
    }
    /* The empty line ends the section within the limit, or the section is over it. */
    CHECK(header_collect(DATA("A: 1\r\n\r\nbody"), 13, 8, hdr, &got) == HDR_DONE && got == 8);
    CHECK(header_collect(DATA("A: 1\r\n\r\nbody"), 13, 7, hdr, &got) == HDR_OVER);
    CHECK(header_collect(DATA("A: 1\r\n\r\nbody"), 3, 7, hdr, &got) == HDR_OVER);
    /* An empty line that straddles the boundary of what was collected. */
    CHECK(header_collect(DATA("A: 1\r\n\r\nbody"), 7, 8, hdr, &got) == HDR_DONE && got == 8);
    /* Bare CR or LF never makes an empty line. */
    CHECK(header_collect(DATA("A: 1\n\nB: 2\r\r\n\r\n"), 4, 64, hdr, &got) == HDR_DONE &&
          got == strlen("A: 1\n\nB: 2\r\r\n\r\n"));
}

/* ~270 KB of padding before the field that matters, as in an attack on a header
 * buffer of 256 KiB: the From there is found, in any chunking. */
static char *padded_header(const char *field, size_t *len)
{
    size_t cap = 300 * 902 + 4096, n = 0;
    char *h = malloc(cap);

    if (h == NULL)
        return NULL;
    for (int i = 0; i < 300; i++) {
        n += (size_t)snprintf(h + n, cap - n, "X-Padding-%04d: ", i);
        while (n % 902 != 900)
            h[n++] = 'p';
        h[n++] = '\r';
        h[n++] = '\n';
    }
    n += (size_t)snprintf(h + n, cap - n, "%s\r\nDate: x\r\n\r\nbody\r\n", field);
    *len = n;
    return h;
}

TEST(test_header_very_long_section)
{
    size_t len, got;
    char *msg = padded_header("From: CEO <ceo@victim.example>", &len);
    char *hdr = malloc(len);
    char v[4096];

    CHECK(msg != NULL && hdr != NULL);
    if (msg == NULL || hdr == NULL)
        goto out;
    CHECK(header_collect(msg, len, 8192, 1 << 20, hdr, &got) == HDR_DONE);
    CHECK(got == len - strlen("body\r\n"));
    CHECK(got > 256 * 1024);
    CHECK(smtp_header_value(hdr, got - 2, "From", v, sizeof(v)) == 1);
    CHECK_STR(v, "CEO <ceo@victim.example>");
    CHECK(smtp_header_present(hdr, got - 2, "Date") == 1);
    CHECK(smtp_parse_mailbox_list(v, strlen(v), addrs, 16) == 1);
    CHECK_STR(addrs[0], "ceo@victim.example");
    /* The same section over a limit of 256 KiB is refused, never cut short. */
    CHECK(header_collect(msg, len, 8192, 256 * 1024, hdr, &got) == HDR_OVER);
out:
    free(msg);
    free(hdr);
}

TEST(test_header_value_nul)
{
    static const char hdr[] = "From: alice@corp.example\0, CEO <ceo@victim.example>\r\n";
    static const char later[] = "From: alice@corp.example,\r\n\tCEO\0 <ceo@victim.example>\r\n";
    static const char other[] = "X-A: \0\r\nFrom: alice@corp.example\r\n";
    static const char second[] = "From: a@b.example\r\nFrom: \0x\r\n";
    char v[256];

    CHECK(smtp_header_value(DATA(hdr), "From", v, sizeof(v)) == -1);
    CHECK(smtp_header_value(DATA(later), "From", v, sizeof(v)) == -1);
    /* Only the value that is copied matters to this function (the session refuses
     * any NUL in DATA anyway); the second From still counts. */
    CHECK(smtp_header_value(DATA(other), "From", v, sizeof(v)) == 1);
    CHECK_STR(v, "alice@corp.example");
    CHECK(smtp_header_value(DATA(second), "From", v, sizeof(v)) == 2);
    /* A NUL in a name is just a byte that matches nothing. */
    CHECK(smtp_header_value(DATA("Fr\0om: x@y.example\r\n"), "From", v, sizeof(v)) == 0);
    CHECK(smtp_header_present(DATA("Fr\0om: x@y.example\r\nFrom: a\r\n"), "From") == 1);
}

TEST(test_header_value_every_from)
{
    char v[256];

    CHECK(smtp_header_value(DATA("From:\r\n CEO\r\n <ceo@v.example>\r\n"), "From", v, sizeof(v)) == 1);
    CHECK_STR(v, "CEO <ceo@v.example>");
    CHECK(smtp_header_value(DATA("fRoM\t:\tceo@v.example\r\n"), "From", v, sizeof(v)) == 1);
    CHECK_STR(v, "ceo@v.example");
    /* White space folded between the name and the colon: still a From field. */
    CHECK(smtp_header_value(DATA("From\r\n : ceo@v.example\r\n"), "From", v, sizeof(v)) == 1);
    CHECK_STR(v, "ceo@v.example");
    CHECK(smtp_header_value(DATA("From\r\nX: ceo@v.example\r\n"), "From", v, sizeof(v)) == 0);
    /* Not From: a longer name, a continuation line, a name inside a value. */
    CHECK(smtp_header_value(DATA("From-X: a\r\n From: b\r\nX: From: c\r\n"), "From", v,
                            sizeof(v)) == 0);
    /* The value ends where the field does; an unfolded CRLF is not part of it. */
    CHECK(smtp_header_value(DATA("From: a@b.example\r\nTo: c\r\n"), "From", v, sizeof(v)) == 1);
    CHECK_STR(v, "a@b.example");
    CHECK(smtp_header_value(DATA("From: a@b.example"), "From", v, sizeof(v)) == 1);
    CHECK_STR(v, "a@b.example");
    CHECK(smtp_header_value(DATA("From:"), "From", v, sizeof(v)) == 1);
    CHECK_STR(v, "");
    /* Two From fields far apart are both counted. */
    {
        size_t len;
        char *msg = padded_header("from: x@y.example", &len);

        CHECK(msg != NULL);
        if (msg != NULL) {
            memcpy(msg, "From: a@b.example\r\n", 19); /* over the first padding line */
            msg[19] = 'X';
            CHECK(smtp_header_value(msg, len, "From", v, sizeof(v)) == 2);
            CHECK_STR(v, "a@b.example");
        }
        free(msg);
    }
    /* A value longer than the buffer is refused, not cut. */
    CHECK(smtp_header_value(DATA("From: abcdefgh@b.example\r\n"), "From", v, 8) == -1);
    CHECK(smtp_header_value(DATA("From: a\r\n"), "From", v, 0) == -1);
}

TEST(test_mailbox_list_nul_and_length)
{
    static const char hidden[] = "alice@corp.example\0, CEO <ceo@victim.example>";

    CHECK(smtp_parse_mailbox_list(DATA(hidden), addrs, 16) == -1);
    CHECK(smtp_parse_mailbox_list(DATA("\"a\0b\" <alice@corp.example>"), addrs, 16) == -1);
    CHECK(smtp_parse_mailbox_list(DATA("alice@corp.example (\\\0)"), addrs, 16) == -1);
    CHECK(smtp_parse_mailbox_list(DATA("<alice@corp.example>\0"), addrs, 16) == -1);
    /* The length decides, not a terminator: only the first 18 bytes are the value. */
    CHECK(smtp_parse_mailbox_list("alice@corp.example, ceo@victim.example", 18, addrs, 16) == 1);
    CHECK_STR(addrs[0], "alice@corp.example");
    CHECK(smtp_parse_mailbox_list("", 0, addrs, 16) == 0);
}

TEST(test_mailbox_list_groups_and_quotes)
{
    CHECK(smtp_parse_mailbox_list(DATA("Team: a@x.example, b@y.example;"), addrs, 16) == 2);
    CHECK_STR(addrs[1], "b@y.example");
    /* Not a group name: an address, a second group, a name after an address. */
    CHECK(smtp_parse_mailbox_list(DATA("ceo@victim.example:alice@corp.example"), addrs, 16) == -1);
    CHECK(smtp_parse_mailbox_list(DATA("A: B: a@x.example;;"), addrs, 16) == -1);
    CHECK(smtp_parse_mailbox_list(DATA("A <a@x.example>: b@x.example"), addrs, 16) == -1);
    /* Two groups one after the other are fine. */
    CHECK(smtp_parse_mailbox_list(DATA("A: a@x.example; B: b@x.example;"), addrs, 16) == 2);
    /* An escaped quote does not end a quoted display name. */
    CHECK(smtp_parse_mailbox_list(DATA("\"x\\\" <alice@corp.example>\" <ceo@victim.example>"),
                                  addrs, 16) == 1);
    CHECK_STR(addrs[0], "ceo@victim.example");
    CHECK(smtp_parse_mailbox_list(DATA("ceo@victim.example (x\\) alice@corp.example)"), addrs,
                                  16) == 1);
    CHECK_STR(addrs[0], "ceo@victim.example");
}

int main(void)
{
    RUN(test_verb_known_and_case);
    RUN(test_verb_arguments);
    RUN(test_verb_unknown);
    RUN(test_path_basic);
    RUN(test_path_params);
    RUN(test_path_source_route);
    RUN(test_path_errors);
    RUN(test_path_length);
    RUN(test_addr_valid);
    RUN(test_mail_params_ok);
    RUN(test_mail_params_bad);
    RUN(test_data_simple_end);
    RUN(test_data_empty_message);
    RUN(test_data_pipelined_rest);
    RUN(test_data_after_end_consumes_nothing);
    RUN(test_data_not_end);
    RUN(test_data_unstuffing);
    RUN(test_data_bare_lf);
    RUN(test_data_bare_cr);
    RUN(test_data_line_length);
    RUN(test_data_streaming_splits);
    RUN(test_data_output_bound);
    RUN(test_header_present);
    RUN(test_data_nul);
    RUN(test_header_scan_end);
    RUN(test_header_scan_no_end_and_limit);
    RUN(test_header_very_long_section);
    RUN(test_header_value_nul);
    RUN(test_header_value_every_from);
    RUN(test_mailbox_list_nul_and_length);
    RUN(test_mailbox_list_groups_and_quotes);
    return UNIT_DONE();
}
