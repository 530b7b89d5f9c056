/* The JSON, CSV and plain-column writers of the command-line tools (cli_out.h). */
#include "cli_out.h"

#include <string.h>

/*
 * Length of the valid UTF-8 sequence at p (1-4) with its code point in *cp, or 0
 * when the bytes there are not valid UTF-8 (overlong forms and surrogates included).
 */
static size_t utf8_seq(const unsigned char *p, unsigned long *cp)
{
    unsigned long c, min;
    size_t n;

    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2, c = p[0] & 0x1f, min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3, c = p[0] & 0x0f, min = 0x800;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4, c = p[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;    /* also stops at the terminating NUL */
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

static int is_control(unsigned long cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp < 0xa0);
}

/*
 * Prints the bytes from s up to end (or the NUL) with every control character (except
 * those in keep) and invalid byte as '?'. end is a NUL or an ASCII byte, which no
 * UTF-8 sequence crosses, so no character is cut.
 */
static void put_printable_to(FILE *f, const char *s, const char *end, const char *keep)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0' && (end == NULL || p < (const unsigned char *)end)) {
        unsigned long cp;
        size_t n = utf8_seq(p, &cp);

        if (n == 0 || (is_control(cp) && (cp == 0 || strchr(keep, (int)cp) == NULL))) {
            fputc('?', f);
            p += n == 0 ? 1 : n;
        } else {
            fwrite(p, 1, n, f);
            p += n;
        }
    }
}

void cli_plain_field(FILE *f, const char *s)
{
    if (*s == '\0')
        fputc('-', f);
    else
        put_printable_to(f, s, NULL, "");
}

void cli_json_string(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', f);
    while (*p != '\0') {
        unsigned long cp;
        size_t n = utf8_seq(p, &cp);

        if (n == 0) {
            /* One replacement per invalid byte: the reader sees where they were. */
            fputs("\\ufffd", f);
            p++;
            continue;
        }
        if (cp == '"' || cp == '\\')
            fprintf(f, "\\%c", (int)cp);
        else if (cp == '\n')
            fputs("\\n", f);
        else if (cp == '\t')
            fputs("\\t", f);
        else if (cp == '\r')
            fputs("\\r", f);
        else if (is_control(cp))
            fprintf(f, "\\u%04lx", cp);
        else
            fwrite(p, 1, n, f);
        p += n;
    }
    fputc('"', f);
}

void cli_json_member(FILE *f, const char *name, const char *value, int first)
{
    fprintf(f, "%s\"%s\":", first ? "" : ",", name);
    if (value[0] == '\0')
        fputs("null", f);
    else
        cli_json_string(f, value);
}

void cli_csv_field(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        put_printable_to(f, s, NULL, "");
        return;
    }
    fputc('"', f);
    for (const char *q; (q = strchr(s, '"')) != NULL; s = q + 1) {
        put_printable_to(f, s, q, "\r\n");
        fputs("\"\"", f);
    }
    put_printable_to(f, s, NULL, "\r\n");
    fputc('"', f);
}
