/* Output sanitizers of submit-admin: plain, JSON and CSV (admin_out.h). */
#include "admin_out.h"

#include <stdio.h>
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
static void put_printable_to(const char *s, const char *end, const char *keep)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p != '\0' && (end == NULL || p < (const unsigned char *)end)) {
        unsigned long cp;
        size_t n = utf8_seq(p, &cp);

        if (n == 0 || (is_control(cp) && (cp == 0 || strchr(keep, (int)cp) == NULL))) {
            fputc('?', stdout);
            p += n == 0 ? 1 : n;
        } else {
            fwrite(p, 1, n, stdout);
            p += n;
        }
    }
}

static void put_printable(const char *s, const char *keep)
{
    put_printable_to(s, NULL, keep);
}

void out_field(const char *s)
{
    if (*s == '\0')
        fputc('-', stdout);
    else
        put_printable(s, "");
}

void out_json_string(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', stdout);
    while (*p != '\0') {
        unsigned long cp;
        size_t n = utf8_seq(p, &cp);

        if (n == 0) {
            fputs("\\ufffd", stdout);
            p++;
            continue;
        }
        if (cp == '"' || cp == '\\')
            printf("\\%c", (int)cp);
        else if (cp == '\n')
            fputs("\\n", stdout);
        else if (cp == '\t')
            fputs("\\t", stdout);
        else if (cp == '\r')
            fputs("\\r", stdout);
        else if (is_control(cp))
            printf("\\u%04lx", cp);
        else
            fwrite(p, 1, n, stdout);
        p += n;
    }
    fputc('"', stdout);
}

void out_json_member(const char *name, const char *value, int first)
{
    printf("%s\"%s\":", first ? "" : ",", name);
    if (value[0] == '\0')
        fputs("null", stdout);
    else
        out_json_string(value);
}

void out_csv_field(const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        put_printable(s, "");
        return;
    }
    fputc('"', stdout);
    for (const char *q; (q = strchr(s, '"')) != NULL; s = q + 1) {
        put_printable_to(s, q, "\r\n");
        fputs("\"\"", stdout);
    }
    put_printable(s, "\r\n");
    fputc('"', stdout);
}
