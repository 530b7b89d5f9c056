/* Pure SMTP parsers: command verbs, paths, parameters, DATA unstuffing. */
#include "smtp_parse.h"

#include "util.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static const struct {
    const char *name;
    enum smtp_verb verb;
} verbs[] = {
    { "EHLO", CMD_EHLO }, { "HELO", CMD_HELO }, { "STARTTLS", CMD_STARTTLS },
    { "AUTH", CMD_AUTH }, { "MAIL", CMD_MAIL }, { "RCPT", CMD_RCPT },
    { "DATA", CMD_DATA }, { "BDAT", CMD_BDAT }, { "RSET", CMD_RSET },
    { "NOOP", CMD_NOOP }, { "QUIT", CMD_QUIT }, { "VRFY", CMD_VRFY },
    { "EXPN", CMD_EXPN }, { "HELP", CMD_HELP },
};

enum smtp_verb smtp_parse_verb(const char *line, const char **arg)
{
    size_t n = 0;

    while (line[n] != '\0' && line[n] != ' ')
        n++;
    *arg = line[n] == ' ' ? line + n + 1 : line + n;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (strlen(verbs[i].name) == n && strncasecmp(line, verbs[i].name, n) == 0)
            return verbs[i].verb;
    return CMD_UNKNOWN;
}

int smtp_addr_valid(const char *addr)
{
    const char *at = strrchr(addr, '@');
    size_t len = strlen(addr);
    int in_quote = 0;

    if (at == NULL || len > SMTP_ADDR_MAX || at == addr || at[1] == '\0')
        return 0;
    if ((size_t)(at - addr) > 64)
        return 0;
    for (const char *p = addr; p < at; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x21 || c > 0x7e) {
            if (!(in_quote && c == ' '))
                return 0;
        }
        if (c == '"')
            in_quote = !in_quote;
        else if (!in_quote && (c == '<' || c == '>' || c == '(' || c == ')' || c == ',' ||
                               c == ';' || c == ':' || c == '\\' || c == '[' || c == ']' ||
                               c == '@'))
            return 0;
    }
    if (in_quote)
        return 0;
    /* Domain: letters, digits, '-', '.', or an address literal in brackets. */
    if (at[1] == '[')
        return addr[len - 1] == ']' && at + 3 < addr + len && strspn(at + 2, "0123456789abcdefABCDEF.:IPv6") == len - (size_t)(at - addr) - 3;
    for (const char *p = at + 1; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == '-' || c == '.'))
            return 0;
    }
    if (at[1] == '.' || addr[len - 1] == '.' || strstr(at, "..") != NULL)
        return 0;
    return 1;
}

int smtp_parse_path(const char *arg, const char *keyword, char *addr, size_t addrlen,
                    const char **params, const char **why)
{
    size_t kl = strlen(keyword);
    const char *p, *close;
    size_t n;

    if (strncasecmp(arg, keyword, kl) != 0) {
        *why = "Syntax error in parameters";
        return -1;
    }
    p = arg + kl;
    /* Tolerate "FROM: <a@b>": common in the field and unambiguous. */
    while (*p == ' ')
        p++;
    if (*p != '<') {
        *why = "Address must be in angle brackets";
        return -1;
    }
    p++;
    /* Source routes (RFC 5321 §4.1.2 "@a,@b:") are obsolete: skip them. */
    if (*p == '@') {
        const char *colon = strchr(p, ':'), *gt = strchr(p, '>');
        if (colon == NULL || (gt != NULL && gt < colon)) {
            *why = "Bad source route";
            return -1;
        }
        p = colon + 1;
    }
    close = strchr(p, '>');
    if (close == NULL) {
        *why = "Missing closing angle bracket";
        return -1;
    }
    n = (size_t)(close - p);
    if (n >= addrlen || n > SMTP_ADDR_MAX) {
        *why = "Address too long";
        return -1;
    }
    memcpy(addr, p, n);
    addr[n] = '\0';
    if (n > 0 && !smtp_addr_valid(addr)) {
        *why = "Bad address syntax";
        return -1;
    }
    p = close + 1;
    if (*p != '\0' && *p != ' ') {
        *why = "Garbage after address";
        return -1;
    }
    while (*p == ' ')
        p++;
    *params = p;
    return 0;
}

int smtp_parse_mail_params(const char *params, struct mail_params *out, const char **why)
{
    const char *p = params;

    out->size = -1;
    out->body_8bit = 0;
    while (*p != '\0') {
        char tok[128];
        size_t n = strcspn(p, " ");

        if (n >= sizeof(tok)) {
            *why = "Parameter too long";
            return -1;
        }
        memcpy(tok, p, n);
        tok[n] = '\0';
        if (strncasecmp(tok, "SIZE=", 5) == 0) {
            if (str_to_ll(tok + 5, 0, (long long)1 << 50, &out->size) != 0) {
                *why = "Bad SIZE parameter";
                return -1;
            }
        } else if (strcasecmp(tok, "BODY=8BITMIME") == 0) {
            out->body_8bit = 1;
        } else if (strcasecmp(tok, "BODY=7BIT") == 0) {
            out->body_8bit = 0;
        } else {
            *why = "Unsupported parameter";
            return -1;
        }
        p += n;
        while (*p == ' ')
            p++;
    }
    return 0;
}

void data_parser_init(struct data_parser *dp)
{
    memset(dp, 0, sizeof(*dp));
    dp->state = DS_BOL;
}

/*
 * Only CRLF ends a line, and only CRLF "." CRLF ends the data. A bare CR or LF is
 * recorded (the message will be refused) and treated as an ordinary byte in the
 * middle of a line, so "\n.\n" or "\r\n.\n" can never end the data early: the
 * bytes after such a fake end are message content, never commands (SMTP smuggling).
 */
size_t data_parse(struct data_parser *dp, const char *in, size_t inlen, char *out,
                  size_t *outlen)
{
    size_t i, o = 0;

    for (i = 0; i < inlen && dp->state != DS_END; i++) {
        char c = in[i];

        if (c != '\r' && c != '\n' && ++dp->line_len > SMTP_LINE_MAX - 2)
            dp->line_too_long = 1;
        switch (dp->state) {
        case DS_BOL:
            if (c == '.') {
                dp->state = DS_DOT;
                break;
            }
            goto mid; /* any other byte is handled as in the middle of a line */
        case DS_MID:
        mid:
            if (c == '\r') {
                dp->state = DS_CR;
            } else if (c == '\n') {
                dp->bare = 1;
                dp->state = DS_MID;
            } else {
                out[o++] = c;
                dp->state = DS_MID;
            }
            break;
        case DS_DOT:
            if (c == '\r') {
                dp->state = DS_DOT_CR;
                break;
            }
            /* The leading dot was stuffing: drop it and handle this byte. */
            goto mid;
        case DS_DOT_CR:
            if (c == '\n') {
                dp->state = DS_END;
                break;
            }
            /* ".\r" then something else: a bare CR after a stuffed dot. */
            dp->bare = 1;
            goto mid;
        case DS_CR:
            if (c == '\n') {
                out[o++] = '\r';
                out[o++] = '\n';
                dp->line_len = 0;
                dp->state = DS_BOL;
                break;
            }
            dp->bare = 1;
            goto mid;
        case DS_END:
            break;
        }
    }
    *outlen = o;
    return i;
}

int smtp_header_present(const char *hdr, size_t len, const char *name)
{
    size_t nl = strlen(name);
    size_t pos = 0;

    while (pos < len) {
        const char *eol = memchr(hdr + pos, '\n', len - pos);
        size_t linelen = eol ? (size_t)(eol - (hdr + pos)) + 1 : len - pos;

        if (linelen > nl && strncasecmp(hdr + pos, name, nl) == 0) {
            size_t k = nl;
            while (k < linelen && (hdr[pos + k] == ' ' || hdr[pos + k] == '\t'))
                k++;
            if (k < linelen && hdr[pos + k] == ':')
                return 1;
        }
        pos += linelen;
    }
    return 0;
}

int smtp_header_value(const char *hdr, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name), pos = 0;
    int found = 0;

    if (outlen > 0)
        out[0] = '\0';
    while (pos < len) {
        const char *eol = memchr(hdr + pos, '\n', len - pos);
        size_t linelen = eol ? (size_t)(eol - (hdr + pos)) + 1 : len - pos;
        size_t k = nl;

        if (linelen > nl && strncasecmp(hdr + pos, name, nl) == 0) {
            while (k < linelen && (hdr[pos + k] == ' ' || hdr[pos + k] == '\t'))
                k++;
        }
        if (linelen > nl && strncasecmp(hdr + pos, name, nl) == 0 && k < linelen &&
            hdr[pos + k] == ':') {
            if (found++ == 0) {
                /* Copy this line and its continuation lines, unfolded. */
                size_t o = 0, p = pos + k + 1;
                int first = 1;

                for (;;) {
                    const char *e = memchr(hdr + p, '\n', len - p);
                    size_t end = e ? (size_t)(e - hdr) : len;
                    size_t stop = (end > p && hdr[end - 1] == '\r') ? end - 1 : end;

                    for (size_t i = p; i < stop; i++) {
                        if (first && o == 0 && (hdr[i] == ' ' || hdr[i] == '\t'))
                            continue;
                        if (o + 1 >= outlen)
                            return -1;
                        out[o++] = hdr[i];
                    }
                    first = 0;
                    /* Unfolding removes the CRLF only; the white space stays. */
                    if (e == NULL || end + 1 >= len || (hdr[end + 1] != ' ' && hdr[end + 1] != '\t'))
                        break;
                    p = end + 1;
                }
                out[o] = '\0';
            }
        }
        pos += linelen;
    }
    return found;
}

/* Finishes one element of a mailbox list: the angle address if there was one,
 * else the bare text. Empty elements (",,") are skipped. */
static int mailbox_done(const char *angle, int had_angle, const char *plain,
                        char (*addrs)[SMTP_ADDR_MAX + 1], int *n, int max)
{
    const char *a = had_angle ? angle : plain;

    if (!had_angle && plain[0] == '\0')
        return 0;
    if (*n >= max || strlen(a) > SMTP_ADDR_MAX || !smtp_addr_valid(a))
        return -1;
    str_lcpy(addrs[*n], a, SMTP_ADDR_MAX + 1);
    (*n)++;
    return 0;
}

int smtp_parse_mailbox_list(const char *value, char (*addrs)[SMTP_ADDR_MAX + 1], int max)
{
    char angle[SMTP_ADDR_MAX + 2], plain[SMTP_ADDR_MAX + 2];
    size_t al = 0, pl = 0;
    int n = 0, quoted = 0, comment = 0, in_angle = 0, had_angle = 0;

    angle[0] = plain[0] = '\0';
    for (const char *p = value;; p++) {
        char c = *p;

        if (c == '\0' || (!quoted && !comment && !in_angle && (c == ',' || c == ';'))) {
            if (quoted || comment || in_angle)
                return -1;
            angle[al] = plain[pl] = '\0';
            if (mailbox_done(angle, had_angle, plain, addrs, &n, max) != 0)
                return -1;
            if (c == '\0')
                return n;
            al = pl = 0;
            had_angle = 0;
            continue;
        }
        if (in_angle) {
            if (c == '>') {
                in_angle = 0;
            } else {
                if (al + 1 >= sizeof(angle))
                    return -1;
                angle[al++] = c;
            }
            continue;
        }
        if (comment) {
            if (c == '\\' && p[1] != '\0')
                p++;
            else if (c == '(')
                comment++;
            else if (c == ')')
                comment--;
            continue;
        }
        if (quoted) {
            if (c == '\\' && p[1] != '\0')
                p++;
            else if (c == '"')
                quoted = 0;
            /* A quoted display name is not the address; keep quoted local parts of
             * bare addresses ("a b"@c) in the plain text. */
            if (pl + 1 >= sizeof(plain))
                return -1;
            plain[pl++] = c;
            continue;
        }
        switch (c) {
        case '"':
            quoted = 1;
            if (pl + 1 >= sizeof(plain))
                return -1;
            plain[pl++] = c;
            break;
        case '(':
            comment = 1;
            break;
        case '<':
            if (had_angle)
                return -1;
            in_angle = 1;
            had_angle = 1;
            break;
        case ':':
            /* "group name:" starts a group: what came before was its name. */
            pl = 0;
            break;
        case ' ':
        case '\t':
            break;
        default:
            if (pl + 1 >= sizeof(plain))
                return -1;
            plain[pl++] = c;
            break;
        }
    }
}
