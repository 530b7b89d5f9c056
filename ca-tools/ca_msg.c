/* One-line error and warning messages of submit-ca. */
#include "ca_msg.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>

static void ca_vemit(const char *prefix, const char *suffix, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void ca_vemit(const char *prefix, const char *suffix, const char *fmt, va_list ap)
{
    char line[1024];

    vsnprintf(line, sizeof(line), fmt, ap);
    /* Names come from the command line and from certificates: keep them on one line. */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    fprintf(stderr, "submit-ca: %s%s%s%s\n", prefix, line, suffix ? ": " : "",
            suffix ? suffix : "");
}

void ca_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ca_vemit("", NULL, fmt, ap);
    va_end(ap);
}

void ca_warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ca_vemit("warning: ", NULL, fmt, ap);
    va_end(ap);
}

void ca_err_ssl(const char *fmt, ...)
{
    unsigned long e = ERR_peek_last_error();
    const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
    va_list ap;

    va_start(ap, fmt);
    ca_vemit("", reason != NULL ? reason : "unknown OpenSSL error", fmt, ap);
    va_end(ap);
    ERR_clear_error();
}
