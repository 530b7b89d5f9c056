/*
 * libFuzzer target over authz/authzd/cert_field.c: any bytes that decode as a
 * certificate, through every field and a rule with both domain options. The
 * invariants are those of cert_field.h: a value taken is 1 to CERT_FIELD_MAX bytes
 * of valid text without a control character, a refusal leaves no value behind and
 * has its reason, and what a rule maps is the value or its local part.
 */
#include "../../authz/authzd/cert_field.h"

#include <openssl/err.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(const char *v)
{
    size_t n = strlen(v);

    if (n == 0 || n > CERT_FIELD_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char *p = data;
    X509 *x;

    if (size > 65535)
        return 0;
    x = d2i_X509(NULL, &p, (long)size);
    ERR_clear_error();
    if (x == NULL)
        return 0;
    for (int f = 0; f < CERT_FIELD_COUNT; f++) {
        struct cert_field_rule rule = {(enum cert_field)f, "corp.example", "corp.example"};
        char v[CERT_FIELD_SIZE], m[CERT_FIELD_SIZE];
        enum cert_field_status st = cert_field_get(x, (enum cert_field)f, v);

        if ((unsigned)st >= CERT_FIELD_STATUS_COUNT)
            abort();
        if (st != CERT_FIELD_OK) {
            if (v[0] != '\0' || cert_field_reason((enum cert_field)f, st)[0] == '\0')
                abort();
            continue;
        }
        check_value(v);
        st = cert_field_apply(x, &rule, v, m);
        if (st == CERT_FIELD_OK) {
            /* Required and stripped: the local part, never with an '@' left. */
            check_value(m);
            if (strchr(m, '@') != NULL || strncmp(v, m, strlen(m)) != 0 || v[strlen(m)] != '@')
                abort();
        } else if (m[0] != '\0' || (st != CERT_FIELD_DOMAIN && st != CERT_FIELD_NOT_ADDRESS)) {
            abort();
        }
    }
    X509_free(x);
    return 0;
}
