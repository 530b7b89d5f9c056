/*
 * Fuzz target for the parsers that see untrusted bytes: the DATA state machine,
 * command verbs, paths, ESMTP parameters, header fields and From mailbox lists,
 * RFC 4514 names, and spool files (a corrupt spool must be refused, never crash).
 *
 * Built with libFuzzer by "make fuzz" (clang), and with tests/fuzz/driver.c by
 * "make test" so that the saved corpus runs as a regression test everywhere.
 * The first input byte selects the parser; the rest is its input.
 */
#include "dn.h"
#include "smtp_parse.h"
#include "spool.h"
#include "util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Invariants of data_parse, checked while feeding the input in two pieces. */
static void fuzz_data(const char *in, size_t len, size_t split)
{
    struct data_parser one, two;
    char *out1 = malloc(len + 2), *out2 = malloc(len + 4);
    size_t o1 = 0, used1, o2a = 0, o2b = 0, used2;

    if (out1 == NULL || out2 == NULL)
        abort();
    data_parser_init(&one);
    used1 = data_parse(&one, in, len, out1, &o1);
    if (used1 > len || o1 > len + 2 || (used1 < len && one.state != DS_END))
        abort();
    if (one.state == DS_END && (used1 < 3 || memcmp(in + used1 - 3, ".\r\n", 3) != 0))
        abort();
    /* Streaming must not change the result. */
    if (split > len)
        split = len;
    data_parser_init(&two);
    used2 = data_parse(&two, in, split, out2, &o2a);
    if (two.state != DS_END && used2 == split)
        used2 += data_parse(&two, in + split, len - split, out2 + o2a, &o2b);
    if (used2 != used1 || o2a + o2b != o1 || memcmp(out1, out2, o1) != 0 ||
        two.bare != one.bare || two.line_too_long != one.line_too_long)
        abort();
    free(out1);
    free(out2);
}

static void fuzz_command(const char *line)
{
    const char *arg, *params, *why;
    char addr[SMTP_ADDR_MAX + 1];
    struct mail_params mp;
    char addrs[16][SMTP_ADDR_MAX + 1];

    (void)smtp_parse_verb(line, &arg);
    if (smtp_parse_path(line, "FROM:", addr, sizeof(addr), &params, &why) == 0) {
        if (strlen(addr) > SMTP_ADDR_MAX || (addr[0] && !smtp_addr_valid(addr)))
            abort();
        (void)smtp_parse_mail_params(params, &mp, &why);
    }
    int n = smtp_parse_mailbox_list(line, strlen(line), addrs, 16);
    for (int i = 0; i < n; i++)
        if (!smtp_addr_valid(addrs[i]))
            abort();
}

static void fuzz_header(const char *hdr, size_t len)
{
    char value[512];

    (void)smtp_header_present(hdr, len, "From");
    if (smtp_header_value(hdr, len, "From", value, sizeof(value)) > 0 &&
        strlen(value) >= sizeof(value))
        abort();
}

static void fuzz_dn(const char *s)
{
    char out[1024], err[256];

    if (dn_canon_string(s, out, sizeof(out), err, sizeof(err)) == 0 && strlen(out) >= sizeof(out))
        abort();
}

static void fuzz_spool(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/submitd-fuzz-spool-XXXXXX", err[256];
    struct spool_msg msg;
    int fd = mkstemp(path);

    if (fd < 0)
        return;
    if (write_all(fd, data, size) == 0 && spool_load(path, &msg, err, sizeof(err)) == 0) {
        if (msg.nrcpt < 1 || !spool_id_valid(msg.id))
            abort();
        spool_msg_free(&msg);
    }
    close(fd);
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;

    if (size < 1 || size > 1 << 20)
        return 0;
    /* A NUL-terminated copy for the string parsers. */
    s = malloc(size);
    if (s == NULL)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    switch (data[0] % 5) {
    case 0:
        fuzz_data(s, size - 1, size > 1 ? data[1] % size : 0);
        break;
    case 1:
        fuzz_command(s);
        break;
    case 2:
        fuzz_header(s, size - 1);
        break;
    case 3:
        fuzz_dn(s);
        break;
    case 4:
        fuzz_spool(data + 1, size - 1);
        break;
    }
    free(s);
    return 0;
}
