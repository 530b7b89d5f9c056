/* Pure helpers of submit-ca (see ca_util.h). */
#include "ca_util.h"

#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int ca_valid_hostname(const char *name)
{
    size_t n = strlen(name);
    const char *p = name;

    if (n == 0 || n > CA_HOSTNAME_MAX)
        return 0;
    if (p[0] == '*' && p[1] == '.')
        p += 2;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);

        if (len == 0 || len > 63 || p[0] == '-' || p[len - 1] == '-')
            return 0;
        for (size_t i = 0; i < len; i++)
            if (!is_alnum((unsigned char)p[i]) && p[i] != '-')
                return 0;
        if (dot == NULL)
            return 1;
        p = dot + 1;
    }
}

int ca_valid_email(const char *addr)
{
    const char *at = strchr(addr, '@');
    size_t n = strlen(addr);

    if (n == 0 || n > CA_EMAIL_MAX || at == NULL || at == addr || strchr(at + 1, '@') != NULL)
        return 0;
    for (const char *p = addr; p < at; p++) {
        unsigned char c = (unsigned char)*p;
        /* Characters that would need quoting, or that mean something in a SAN string. */
        if (c <= 0x20 || c >= 0x7f || strchr("\",:;<>()[]\\", c) != NULL)
            return 0;
    }
    return ca_valid_hostname(at + 1) && at[1] != '*';
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ca_serial_normalize(const char *in, char *out, size_t outlen)
{
    static const char digits[] = "0123456789ABCDEF";
    char hex[CA_SERIAL_HEX_MAX + 2];
    size_t n = 0, start = 0, len;

    for (const char *p = in; *p; p++) {
        if (*p == ':' || *p == ' ')
            continue;
        if (hex_value((unsigned char)*p) < 0 || n >= sizeof(hex) - 2)
            return -1;
        hex[n++] = digits[hex_value((unsigned char)*p)];
    }
    hex[n] = '\0';
    while (start < n && hex[start] == '0')
        start++;
    if (start == n)
        return -1;
    len = n - start;
    /* Whole bytes, as BN_bn2hex prints them: an odd count gets one leading zero. */
    if (len > CA_SERIAL_HEX_MAX || len + (len & 1) + 1 > outlen)
        return -1;
    if (len & 1) {
        out[0] = '0';
        memcpy(out + 1, hex + start, len + 1);
    } else {
        memcpy(out, hex + start, len + 1);
    }
    return 0;
}

static const struct {
    int code;
    const char *name;
} reasons[] = {
    { CA_REASON_UNSPECIFIED, "unspecified" },
    { CA_REASON_KEY_COMPROMISE, "keyCompromise" },
    { CA_REASON_CA_COMPROMISE, "cACompromise" },
    { CA_REASON_AFFILIATION_CHANGED, "affiliationChanged" },
    { CA_REASON_SUPERSEDED, "superseded" },
    { CA_REASON_CESSATION_OF_OPERATION, "cessationOfOperation" },
    { CA_REASON_CERTIFICATE_HOLD, "certificateHold" },
    { CA_REASON_REMOVE_FROM_CRL, "removeFromCRL" },
    { CA_REASON_PRIVILEGE_WITHDRAWN, "privilegeWithdrawn" },
    { CA_REASON_AA_COMPROMISE, "aACompromise" },
};

int ca_reason_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (strcmp(reasons[i].name, name) == 0)
            return reasons[i].code;
    return CA_REASON_NONE;
}

const char *ca_reason_name(int code)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].code == code)
            return reasons[i].name;
    return NULL;
}

int ca_iso_parse(const char *s, long long *epoch)
{
    /* Only the canonical form the database stores: "YYYY-MM-DDTHH:MM:SSZ". */
    if (strlen(s) != 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' ||
        s[16] != ':' || s[19] != 'Z')
        return -1;
    return iso_time_parse(s, epoch);
}

/* 55 characters: no 0 O o, 1 l I i, which are easy to misread when typed from paper. */
static const char password_alphabet[] = "23456789abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ";

int ca_password_from_bytes(const unsigned char *rnd, size_t rndlen, char *out, size_t outlen,
                           size_t len)
{
    const unsigned k = (unsigned)(sizeof(password_alphabet) - 1);
    /* Largest multiple of k that fits in a byte: values at or above it are skipped. */
    const unsigned limit = 256u - 256u % k;
    size_t n = 0;

    if (outlen <= len)
        return -1;
    for (size_t i = 0; i < rndlen && n < len; i++)
        if (rnd[i] < limit)
            out[n++] = password_alphabet[rnd[i] % k];
    out[n] = '\0';
    return n == len ? 0 : -1;
}
