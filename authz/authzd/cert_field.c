/* The field of a certificate that a rule map reads the user from (see cert_field.h). */
#include "cert_field.h"

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <string.h>

#define REASONS(f)                                                                  \
    {                                                                               \
        "", "certificate " f " missing", "certificate " f " appears more than once", \
            "certificate " f " has a control character",                            \
            "certificate " f " badly encoded", "certificate " f " too long",        \
            "certificate " f " not an address",                                     \
            "certificate " f " outside the required domain"                         \
    }

/* Indexed by enum cert_field, then enum cert_field_status; the order of the enums. */
static const char *const reasons[CERT_FIELD_COUNT][CERT_FIELD_STATUS_COUNT] = {
    REASONS("email"), REASONS("san-email"), REASONS("upn"), REASONS("cn")};

static const char *const names[CERT_FIELD_COUNT] = {"email", "san-email", "upn", "cn"};

int cert_field_parse(const char *name, enum cert_field *out)
{
    for (int i = 0; name != NULL && i < CERT_FIELD_COUNT; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (enum cert_field)i;
            return 0;
        }
    return -1;
}

const char *cert_field_name(enum cert_field f)
{
    return (unsigned)f < CERT_FIELD_COUNT ? names[f] : "?";
}

const char *cert_field_reason(enum cert_field f, enum cert_field_status s)
{
    if ((unsigned)f >= CERT_FIELD_COUNT || (unsigned)s >= CERT_FIELD_STATUS_COUNT)
        return "?";
    return reasons[f][s];
}

static int is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

int cert_field_domain_valid(const char *domain)
{
    size_t n = domain != NULL ? strlen(domain) : 0, label = 0;

    if (n == 0 || n > CERT_FIELD_DOMAIN_MAX)
        return 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)domain[i];

        if (c == '.' || c == '\0') {
            /* Labels are 1-63 bytes and do not begin or end with a hyphen. */
            if (label == 0 || label > 63 || domain[i - 1] == '-' || domain[i - label] == '-')
                return 0;
            label = 0;
        } else if (is_alnum(c) || c == '-') {
            label++;
        } else {
            return 0;
        }
    }
    return 1;
}

/* ---- values ------------------------------------------------------------------------ */

/*
 * Checks UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF) and looks for control characters (C0, DEL, C1). A control character
 * wins over bad encoding: it is the sharper sign of a forged value.
 */
static enum cert_field_status utf8_check(const unsigned char *p, size_t n)
{
    int bad = 0;
    size_t i = 0;

    while (i < n) {
        unsigned char c = p[i];
        size_t len, k;
        unsigned long cp;

        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return CERT_FIELD_CONTROL;
            i++;
            continue;
        }
        /* C0 and C1 can only begin overlong forms; F5-FF nothing at all. */
        len = c >= 0xc2 && c <= 0xdf   ? 2
              : c >= 0xe0 && c <= 0xef ? 3
              : c >= 0xf0 && c <= 0xf4 ? 4
                                       : 0;
        if (len == 0 || n - i < len) {
            bad = 1;
            i++;
            continue;
        }
        cp = c & (len == 2 ? 0x1f : len == 3 ? 0x0f : 0x07);
        for (k = 1; k < len && (p[i + k] & 0xc0) == 0x80; k++)
            cp = (cp << 6) | (p[i + k] & 0x3f);
        if (k < len) {
            bad = 1;
            i += k;
            continue;
        }
        i += len;
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            bad = 1;
        else if (cp <= 0x9f)
            return CERT_FIELD_CONTROL;
    }
    return bad ? CERT_FIELD_ENCODING : CERT_FIELD_OK;
}

/* The string types of one byte per character must hold 7-bit ASCII only. */
static enum cert_field_status ascii_check(const unsigned char *p, size_t n)
{
    int bad = 0;

    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            return CERT_FIELD_CONTROL;
        if (p[i] >= 0x80)
            bad = 1;
    }
    return bad ? CERT_FIELD_ENCODING : CERT_FIELD_OK;
}

/* Decodes s into out (CERT_FIELD_SIZE bytes) as UTF-8, or says why not. */
static enum cert_field_status string_value(const ASN1_STRING *s, char *out)
{
    const unsigned char *p = ASN1_STRING_get0_data(s);
    int n = ASN1_STRING_length(s);
    unsigned char *utf8 = NULL;
    enum cert_field_status st;

    if (p == NULL || n < 0)
        return CERT_FIELD_ENCODING;
    switch (ASN1_STRING_type(s)) {
    case V_ASN1_UTF8STRING:
        st = utf8_check(p, (size_t)n);
        break;
    case V_ASN1_NUMERICSTRING:
    case V_ASN1_PRINTABLESTRING:
    case V_ASN1_IA5STRING:
    case V_ASN1_VISIBLESTRING:
    case V_ASN1_T61STRING:
        st = ascii_check(p, (size_t)n);
        break;
    case V_ASN1_BMPSTRING:
    case V_ASN1_UNIVERSALSTRING:
        /* Two or four bytes per character: a NUL hides as 00 00, so the check is
         * made on the converted text. */
        n = ASN1_STRING_to_UTF8(&utf8, s);
        if (n < 0) {
            ERR_clear_error();
            return CERT_FIELD_ENCODING;
        }
        p = utf8;
        st = utf8_check(p, (size_t)n);
        break;
    default:
        return CERT_FIELD_ENCODING;
    }
    if (st == CERT_FIELD_OK && n == 0)
        st = CERT_FIELD_MISSING;
    if (st == CERT_FIELD_OK && n > CERT_FIELD_MAX)
        st = CERT_FIELD_TOO_LONG;
    if (st == CERT_FIELD_OK) {
        memcpy(out, p, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_free(utf8);
    return st;
}

/* The one value of attribute nid in the subject. */
static enum cert_field_status subject_value(const X509 *leaf, int nid, char *out)
{
    const X509_NAME *name = X509_get_subject_name(leaf);
    int at = name != NULL ? X509_NAME_get_index_by_NID(name, nid, -1) : -1;

    if (at < 0)
        return CERT_FIELD_MISSING;
    if (X509_NAME_get_index_by_NID(name, nid, at) >= 0)
        return CERT_FIELD_TWICE;
    return string_value(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at)), out);
}

/* The string of g when it is a value of field f (san-email or upn), else NULL;
 * *wrong_type is set for a UPN whose value is not a UTF8String. */
static const ASN1_STRING *san_match(const GENERAL_NAME *g, enum cert_field f,
                                    const ASN1_OBJECT *upn, int *wrong_type)
{
    if (f == CERT_FIELD_SAN_EMAIL)
        return g->type == GEN_EMAIL ? g->d.rfc822Name : NULL;
    if (g->type != GEN_OTHERNAME || g->d.otherName == NULL ||
        OBJ_cmp(g->d.otherName->type_id, upn) != 0)
        return NULL;
    if (g->d.otherName->value == NULL || g->d.otherName->value->type != V_ASN1_UTF8STRING) {
        *wrong_type = 1;
        return NULL;
    }
    return g->d.otherName->value->value.utf8string;
}

/*
 * The one value of field f among the subjectAltName extensions. RFC 5280 allows one
 * such extension and OpenSSL's verification refuses a second, but this module does
 * not rely on that: the values of every one of them are counted.
 */
static enum cert_field_status san_value(const X509 *leaf, enum cert_field f, char *out)
{
    ASN1_OBJECT *upn = OBJ_txt2obj(CERT_FIELD_UPN_OID, 1);
    enum cert_field_status st = CERT_FIELD_MISSING;
    int count = 0, wrong_type = 0, at = -1;

    while (upn != NULL && (at = X509_get_ext_by_NID(leaf, NID_subject_alt_name, at)) >= 0) {
        GENERAL_NAMES *gens = X509V3_EXT_d2i(X509_get_ext(leaf, at));

        if (gens == NULL) {
            st = CERT_FIELD_ENCODING;
            goto done;
        }
        for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
            int wrong = 0;
            const ASN1_STRING *s = san_match(sk_GENERAL_NAME_value(gens, i), f, upn, &wrong);

            if (s == NULL && !wrong)
                continue;
            wrong_type |= wrong;
            /* Only the first value is decoded: a second one makes it ambiguous anyway. */
            if (++count == 1 && s != NULL)
                st = string_value(s, out);
        }
        GENERAL_NAMES_free(gens);
    }
    if (upn == NULL)
        st = CERT_FIELD_ENCODING;
    else if (count > 1)
        st = CERT_FIELD_TWICE;
    else if (count == 1 && wrong_type)
        st = CERT_FIELD_ENCODING;
done:
    ERR_clear_error();
    ASN1_OBJECT_free(upn);
    return st;
}

/* The domain of value when it is "local@domain" (one '@', something on either
 * side), else NULL. */
static const char *address_domain(const char *value)
{
    const char *at = strchr(value, '@');

    if (at == NULL || at == value || at[1] == '\0' || strchr(at + 1, '@') != NULL)
        return NULL;
    return at + 1;
}

static int is_address_field(enum cert_field f)
{
    return f == CERT_FIELD_EMAIL || f == CERT_FIELD_SAN_EMAIL || f == CERT_FIELD_UPN;
}

/* ASCII case-insensitive equality; other bytes must be equal. */
static int domain_equal(const char *a, const char *b)
{
    for (; *a != '\0' && *b != '\0'; a++, b++) {
        unsigned char x = (unsigned char)*a, y = (unsigned char)*b;

        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z')
            y = (unsigned char)(y - 'A' + 'a');
        if (x != y)
            return 0;
    }
    return *a == *b;
}

enum cert_field_status cert_field_get(const X509 *leaf, enum cert_field f, char *out)
{
    enum cert_field_status st;

    out[0] = '\0';
    switch (f) {
    case CERT_FIELD_EMAIL:
        st = subject_value(leaf, NID_pkcs9_emailAddress, out);
        break;
    case CERT_FIELD_CN:
        st = subject_value(leaf, NID_commonName, out);
        break;
    case CERT_FIELD_SAN_EMAIL:
    case CERT_FIELD_UPN:
        st = san_value(leaf, f, out);
        break;
    default:
        return CERT_FIELD_MISSING;
    }
    if (st == CERT_FIELD_OK && is_address_field(f) && address_domain(out) == NULL)
        st = CERT_FIELD_NOT_ADDRESS;
    if (st != CERT_FIELD_OK)
        out[0] = '\0';
    return st;
}

enum cert_field_status cert_field_domain(const char *value, const struct cert_field_rule *rule,
                                         char *out)
{
    const char *domain = address_domain(value);
    const char *strip = rule->strip_domain, *require = rule->require_domain;
    size_t n = strlen(value);

    out[0] = '\0';
    if (n > CERT_FIELD_MAX)
        return CERT_FIELD_TOO_LONG;
    if (domain == NULL && is_address_field(rule->field))
        return CERT_FIELD_NOT_ADDRESS;
    if (require != NULL && require[0] != '\0' &&
        (domain == NULL || !domain_equal(domain, require)))
        return CERT_FIELD_DOMAIN;
    if (strip != NULL && strip[0] != '\0' && domain != NULL && domain_equal(domain, strip))
        n = (size_t)(domain - 1 - value);
    memcpy(out, value, n);
    out[n] = '\0';
    return CERT_FIELD_OK;
}

enum cert_field_status cert_field_apply(const X509 *leaf, const struct cert_field_rule *rule,
                                        char *value, char *mapped)
{
    enum cert_field_status st = cert_field_get(leaf, rule->field, value);

    mapped[0] = '\0';
    if (st != CERT_FIELD_OK)
        return st;
    return cert_field_domain(value, rule, mapped);
}
