#ifndef SUBMITD_SMTP_PARSE_H
#define SUBMITD_SMTP_PARSE_H

#include <stddef.h>

/*
 * Pure parsers for the SMTP session: no I/O, no globals, so they are unit-tested
 * directly (tests/unit/test_smtp_parse.c) and can be fuzzed.
 */

#define SMTP_LINE_MAX 1000   /* octets including CRLF (RFC 5321 §4.5.3.1.6) */
#define SMTP_ADDR_MAX 254

enum smtp_verb {
    CMD_UNKNOWN = 0, CMD_EHLO, CMD_HELO, CMD_STARTTLS, CMD_AUTH, CMD_MAIL, CMD_RCPT,
    CMD_DATA, CMD_BDAT, CMD_RSET, CMD_NOOP, CMD_QUIT, CMD_VRFY, CMD_EXPN, CMD_HELP
};

/*
 * Splits a command line (without CRLF) into verb and argument. The argument points
 * into line (after the separating space), or is "" when absent.
 */
enum smtp_verb smtp_parse_verb(const char *line, const char **arg);

/*
 * Parses the argument of MAIL ("FROM:<a@b> SIZE=10") or RCPT ("TO:<a@b>"): keyword
 * is "FROM:" or "TO:". The address is copied without angle brackets into addr;
 * params points at the ESMTP parameters ("" when none). Returns 0, or -1 with a
 * short description of the syntax error in *why.
 * The null path "<>" gives addr "" (allowed only where the caller allows it).
 */
int smtp_parse_path(const char *arg, const char *keyword, char *addr, size_t addrlen,
                    const char **params, const char **why);

/* Checks a mailbox "local@domain": printable ASCII, one unquoted '@', bounded parts. */
int smtp_addr_valid(const char *addr);

/* ESMTP MAIL parameters we support: SIZE=n and BODY=7BIT|8BITMIME. */
struct mail_params {
    long long size;     /* -1 when not given */
    int body_8bit;
};
/* Returns 0, or -1 with *why naming the bad parameter ("unsupported parameter"...). */
int smtp_parse_mail_params(const char *params, struct mail_params *out, const char **why);

/*
 * The DATA byte-level state machine (DESIGN §3.8). End of data is CRLF.CRLF and
 * nothing else; a bare CR or LF marks the message as rejected (the caller replies
 * at the real end of data). Dot-stuffing is removed from the output.
 */
enum data_state { DS_BOL = 0, DS_DOT, DS_DOT_CR, DS_MID, DS_CR, DS_END };

struct data_parser {
    enum data_state state;
    int bare;             /* a bare CR or LF was seen */
    int line_too_long;    /* a line exceeded SMTP_LINE_MAX */
    size_t line_len;      /* octets in the current line so far, CRLF excluded */
};

void data_parser_init(struct data_parser *dp);
/*
 * Consumes up to inlen bytes. Message bytes (CRLF line ends, unstuffed) are written
 * to out, which must hold inlen + 2 bytes; *outlen is set to their count. Returns
 * the number of input bytes consumed: fewer than inlen only when the end of data
 * was reached (dp->state == DS_END); the rest belongs to the next command.
 */
size_t data_parse(struct data_parser *dp, const char *in, size_t inlen, char *out,
                  size_t *outlen);

/*
 * Header-section helpers for the message being submitted. hdr is the header block
 * (up to and including the empty line), CRLF line endings.
 * smtp_header_present: 1 when a field with that name (case-insensitive) exists.
 */
int smtp_header_present(const char *hdr, size_t len, const char *name);

/*
 * Copies the value of the first field called name (case-insensitive), unfolded
 * (CRLF before white space removed), leading white space trimmed. Returns how many
 * such fields the header has (0 when none), or -1 when the value does not fit.
 */
int smtp_header_value(const char *hdr, size_t len, const char *name, char *out, size_t outlen);

/*
 * Extracts the addr-specs of a From value (RFC 5322 mailbox-list, groups allowed):
 * "Name <a@b>, c@d, \"x, y\" <e@f>". Returns the count stored (at most max), or -1
 * when an element is not a valid address or there are more than max.
 */
int smtp_parse_mailbox_list(const char *value, char (*addrs)[SMTP_ADDR_MAX + 1], int max);

#endif
