#ifndef SUBMITD_SMTP_PARSE_H
#define SUBMITD_SMTP_PARSE_H

#include <stddef.h>

/*
 * Pure parsers for the SMTP session and the message it carries: no I/O, no globals,
 * so they are unit-tested directly (tests/unit/test_smtp_parse.c, test_headers.c)
 * and fuzzed. smtp uses them all; the queue reads the header From of a committed
 * message with the header helpers, so that both read the field the same way.
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
    int nul;              /* a NUL byte was seen (DESIGN §8: 550 5.6.0) */
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
 * Collecting the header section as the message arrives (the output of data_parse).
 * The section ends with the first empty line: a CRLF at the start of the message or
 * right after another CRLF; without one, the whole message is header.
 * hdr holds the hdrlen bytes collected so far, all header; p holds the next n bytes.
 * Returns how many bytes of p belong to the header section and sets *st:
 *   HDR_DONE  they complete it, the empty line included (the rest of p is body);
 *   HDR_MORE  all n bytes are header and the section goes on (hdrlen + n <= max);
 *   HDR_OVER  the section is longer than max bytes (returns 0).
 */
enum header_scan { HDR_MORE = 0, HDR_DONE, HDR_OVER };

size_t smtp_header_scan(const char *hdr, size_t hdrlen, const char *p, size_t n, size_t max,
                        enum header_scan *st);

/*
 * Header-section helpers for the message being submitted. hdr is the header
 * section (len bytes), CRLF line endings; NUL is an ordinary byte in it. Field names
 * compare case-insensitively, and white space may separate name and colon.
 * smtp_header_present: 1 when a field with that name exists.
 */
int smtp_header_present(const char *hdr, size_t len, const char *name);

/*
 * Copies the value of the first field called name, unfolded (the line ends before
 * white space removed), leading white space trimmed, NUL-terminated. Returns how
 * many such fields the header has (0 when none), or -1 when the first one's value
 * does not fit in outlen or contains a NUL byte (it could not be checked whole).
 */
int smtp_header_value(const char *hdr, size_t len, const char *name, char *out, size_t outlen);

/*
 * Extracts the addr-specs of a From value of len bytes (RFC 5322 mailbox-list,
 * groups allowed): "Name <a@b>, c@d, \"x, y\" <e@f>". Returns the count stored (at
 * most max), or -1 when an element is not a valid address, there are more than
 * max, or the value contains a NUL byte.
 */
int smtp_parse_mailbox_list(const char *value, size_t len, char (*addrs)[SMTP_ADDR_MAX + 1],
                            int max);

#endif
