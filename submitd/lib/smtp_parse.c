/* Pure SMTP parsers: command verbs, paths, parameters, DATA unstuffing, the header
 * section and its From field. */
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
        /* Recorded, not dropped: the message is refused at the end of data. */
        if (c == '\0')
            dp->nul = 1;
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

/* ---- the header section ------------------------------------------------------ */

/*
 * Where the header section ends: after the first empty line, i.e. a CRLF at the start
 * of the message or right after another CRLF. k is the index (in the message) of a
 * LF; the bytes before it are in hdr (hdrlen of them) and then in p.
 */
static char byte_at(const char *hdr, size_t hdrlen, const char *p, size_t k)
{
    return k < hdrlen ? hdr[k] : p[k - hdrlen];
}

static int ends_empty_line(const char *hdr, size_t hdrlen, const char *p, size_t k)
{
    if (k < 1 || byte_at(hdr, hdrlen, p, k - 1) != '\r')
        return 0;
    return k == 1 || (k >= 3 && byte_at(hdr, hdrlen, p, k - 2) == '\n' &&
                      byte_at(hdr, hdrlen, p, k - 3) == '\r');
}

size_t smtp_header_scan(const char *hdr, size_t hdrlen, const char *p, size_t n, size_t max,
                        enum header_scan *st)
{
    /* Only the bytes that fit under max can belong to an acceptable section. */
    size_t room = hdrlen < max ? max - hdrlen : 0;
    size_t look = n < room ? n : room;
    size_t i = 0;
    const char *lf;

    while (i < look && (lf = memchr(p + i, '\n', look - i)) != NULL) {
        i = (size_t)(lf - p) + 1;
        if (ends_empty_line(hdr, hdrlen, p, hdrlen + i - 1)) {
            *st = HDR_DONE;
            return i;
        }
    }
    if (n > room) {
        *st = HDR_OVER;
        return 0;
    }
    *st = HDR_MORE;
    return n;
}

/* ASCII only, whatever the locale; NUL is an ordinary byte that matches nothing. */
static int ascii_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return 1;
}

/* The index after the line that starts at pos: after its LF, or len. */
static size_t next_line(const char *hdr, size_t len, size_t pos)
{
    const char *lf = memchr(hdr + pos, '\n', len - pos);

    return lf != NULL ? (size_t)(lf - hdr) + 1 : len;
}

/* A fold: a line end (CRLF, or a bare LF) followed by white space. Returns its
 * length (without the white space), or 0. */
static size_t fold_at(const char *hdr, size_t len, size_t k)
{
    size_t n = 0;

    if (k < len && hdr[k] == '\r')
        n = 1;
    if (k + n >= len || hdr[k + n] != '\n')
        return 0;
    n++;
    return k + n < len && (hdr[k + n] == ' ' || hdr[k + n] == '\t') ? n : 0;
}

/*
 * When the line at pos starts a field called name, returns the index after its
 * colon, else 0. White space may stand between name and colon, folded too (which
 * RFC 5322 does not allow): a parser downstream that unfolds first would see a From
 * field there, so it is one here as well. Finding one field too many costs a
 * refusal; missing one would skip the From check.
 */
static size_t field_value_start(const char *hdr, size_t len, size_t pos, const char *name)
{
    size_t nl = strlen(name), k = pos + nl;

    if (len - pos <= nl || !ascii_ieq(hdr + pos, name, nl))
        return 0;
    for (;;) {
        size_t f;

        if (k < len && (hdr[k] == ' ' || hdr[k] == '\t'))
            k++;
        else if ((f = fold_at(hdr, len, k)) > 0)
            k += f;
        else
            break;
    }
    return k < len && hdr[k] == ':' ? k + 1 : 0;
}

int smtp_header_present(const char *hdr, size_t len, const char *name)
{
    for (size_t pos = 0; pos < len; pos = next_line(hdr, len, pos))
        if (field_value_start(hdr, len, pos, name) > 0)
            return 1;
    return 0;
}

/*
 * Copies the field value starting at k, unfolded, to out. Returns 0, or -1 when it
 * does not fit or holds a NUL: a NUL would end the copy as a C string early and
 * hide whatever follows it from the address check.
 */
static int copy_unfolded(const char *hdr, size_t len, size_t k, char *out, size_t outlen)
{
    size_t o = 0;

    while (k < len) {
        size_t f = fold_at(hdr, len, k);
        char c = hdr[k];

        if (f > 0) {
            k += f; /* unfolding removes the line end; the white space stays */
            continue;
        }
        if (c == '\n' || (c == '\r' && k + 1 < len && hdr[k + 1] == '\n'))
            break; /* the end of the field */
        k++;
        if (c == '\0')
            return -1;
        if (o == 0 && (c == ' ' || c == '\t'))
            continue; /* leading white space, on whichever line it is */
        if (o + 1 >= outlen)
            return -1;
        out[o++] = c;
    }
    if (outlen == 0)
        return -1;
    out[o] = '\0';
    return 0;
}

int smtp_header_value(const char *hdr, size_t len, const char *name, char *out, size_t outlen)
{
    int found = 0;

    if (outlen > 0)
        out[0] = '\0';
    for (size_t pos = 0; pos < len; pos = next_line(hdr, len, pos)) {
        size_t k = field_value_start(hdr, len, pos, name);

        if (k == 0)
            continue;
        if (found++ == 0 && copy_unfolded(hdr, len, k, out, outlen) != 0)
            return -1;
    }
    return found;
}

/* ---- From mailbox lists ---------------------------------------------------------- */

struct mbox_scan {
    char angle[SMTP_ADDR_MAX + 2];  /* the <addr-spec> of the element */
    char plain[SMTP_ADDR_MAX + 2];  /* the element's text outside <> and comments */
    size_t al, pl;
    int quoted, comment, in_angle, had_angle, in_group;
};

static int mbox_put(char *buf, size_t *n, size_t cap, char c)
{
    if (*n + 1 >= cap)
        return -1;
    buf[(*n)++] = c;
    return 0;
}

/* Finishes one element of a mailbox list: the angle address if there was one,
 * else the bare text. Empty elements (",,") are skipped. */
static int mailbox_done(struct mbox_scan *m, char (*addrs)[SMTP_ADDR_MAX + 1], int *n, int max)
{
    const char *a = m->had_angle ? m->angle : m->plain;

    if (m->quoted || m->comment || m->in_angle)
        return -1;
    m->angle[m->al] = m->plain[m->pl] = '\0';
    if (m->had_angle || m->pl > 0) {
        if (*n >= max || strlen(a) > SMTP_ADDR_MAX || !smtp_addr_valid(a))
            return -1;
        str_lcpy(addrs[*n], a, SMTP_ADDR_MAX + 1);
        (*n)++;
    }
    m->al = m->pl = 0;
    m->had_angle = 0;
    return 0;
}

/*
 * "name:" starts a group, and what came before was its display name: a phrase. An
 * address there ("a@b:c@d"), a group in a group, or a name after an angle address
 * would make the text mean something else to another parser.
 */
static int mbox_group_start(struct mbox_scan *m)
{
    if (m->in_group || m->had_angle || memchr(m->plain, '@', m->pl) != NULL)
        return -1;
    m->in_group = 1;
    m->pl = 0;
    return 0;
}

/* One byte inside a quoted string or a comment; *i may skip an escaped byte. */
static int mbox_quoted_or_comment(struct mbox_scan *m, const char *v, size_t len, size_t *i)
{
    char c = v[*i];

    if (m->comment) {
        if (c == '\\' && *i + 1 < len)
            (*i)++;
        else if (c == '(')
            m->comment++;
        else if (c == ')')
            m->comment--;
        return 0;
    }
    /* A quoted display name is not the address; quoted local parts of bare
     * addresses ("a b"@c) stay in the plain text, escapes and all. */
    if (c == '\\' && *i + 1 < len) {
        if (mbox_put(m->plain, &m->pl, sizeof(m->plain), c) != 0)
            return -1;
        c = v[++(*i)];
    } else if (c == '"') {
        m->quoted = 0;
    }
    return mbox_put(m->plain, &m->pl, sizeof(m->plain), c);
}

/* One byte outside quotes, comments and angle brackets. */
static int mbox_plain(struct mbox_scan *m, char c)
{
    switch (c) {
    case '"':
        m->quoted = 1;
        return mbox_put(m->plain, &m->pl, sizeof(m->plain), c);
    case '(':
        m->comment = 1;
        return 0;
    case '<':
        if (m->had_angle)
            return -1;
        m->in_angle = 1;
        m->had_angle = 1;
        return 0;
    case ':':
        return mbox_group_start(m);
    case ' ':
    case '\t':
        return 0;
    default:
        return mbox_put(m->plain, &m->pl, sizeof(m->plain), c);
    }
}

int smtp_parse_mailbox_list(const char *value, size_t len, char (*addrs)[SMTP_ADDR_MAX + 1],
                            int max)
{
    struct mbox_scan m;
    int n = 0;

    /* A NUL ends the value for any C string function that sees it later. */
    if (memchr(value, '\0', len) != NULL)
        return -1;
    memset(&m, 0, sizeof(m));
    for (size_t i = 0; i < len; i++) {
        char c = value[i];
        int bad = 0;

        if (m.quoted || m.comment) {
            bad = mbox_quoted_or_comment(&m, value, len, &i);
        } else if (m.in_angle && c == '>') {
            m.in_angle = 0;
        } else if (m.in_angle) {
            bad = mbox_put(m.angle, &m.al, sizeof(m.angle), c);
        } else if (c == ',' || c == ';') {
            bad = mailbox_done(&m, addrs, &n, max);
            if (c == ';')
                m.in_group = 0;
        } else {
            bad = mbox_plain(&m, c);
        }
        if (bad != 0)
            return -1;
    }
    return mailbox_done(&m, addrs, &n, max) == 0 ? n : -1;
}
