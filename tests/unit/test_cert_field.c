/*
 * Unit tests of authz/authzd/cert_field.c: the certificate field a rule map reads
 * the user from. Every certificate is built here with OpenSSL, signed, and read back
 * from its DER form, as authz would receive it.
 */
#include "../../authz/authzd/cert_field.h"
#include "unit.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdlib.h>

#define SMTPUTF8_OID "1.3.6.1.5.5.7.8.9"

static EVP_PKEY *key;
static char v[CERT_FIELD_SIZE], m[CERT_FIELD_SIZE];

static void die(const char *what)
{
    printf("cannot build a test certificate: %s\n", what);
    ERR_print_errors_fp(stdout);
    exit(2);
}

/* ---- building certificates ---------------------------------------------------------- */

static X509 *cert_new(void)
{
    X509 *x = X509_new();

    if (x == NULL || X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1 ||
        X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
        X509_gmtime_adj(X509_getm_notAfter(x), 86400) == NULL || X509_set_pubkey(x, key) != 1)
        die("X509_new");
    return x;
}

/* An attribute of the subject, of ASN.1 string type type (V_ASN1_*), len bytes. */
static void subject_add(X509 *x, int nid, int type, const char *bytes, int len)
{
    if (X509_NAME_add_entry_by_NID(X509_get_subject_name(x), nid, type,
                                   (const unsigned char *)bytes, len, -1, 0) != 1)
        die(OBJ_nid2sn(nid));
}

static GENERAL_NAME *san_email(const char *bytes, int len)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();

    if (g == NULL || s == NULL || ASN1_STRING_set(s, bytes, len) != 1)
        die("rfc822Name");
    GENERAL_NAME_set0_value(g, GEN_EMAIL, s);
    return g;
}

static GENERAL_NAME *san_dns(const char *name)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();

    if (g == NULL || s == NULL || ASN1_STRING_set(s, name, -1) != 1)
        die("dNSName");
    GENERAL_NAME_set0_value(g, GEN_DNS, s);
    return g;
}

/* An otherName of type oid whose value is an ASN.1 string of type type. */
static GENERAL_NAME *san_other(const char *oid, int type, const char *bytes, int len)
{
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_OBJECT *obj = OBJ_txt2obj(oid, 1);
    ASN1_STRING *s = ASN1_STRING_type_new(type);
    ASN1_TYPE *value = ASN1_TYPE_new();

    if (g == NULL || obj == NULL || s == NULL || value == NULL ||
        ASN1_STRING_set(s, bytes, len) != 1)
        die("otherName");
    ASN1_TYPE_set(value, type, s);
    if (GENERAL_NAME_set0_othername(g, obj, value) != 1)
        die("otherName");
    return g;
}

static GENERAL_NAME *san_upn(const char *upn)
{
    return san_other(CERT_FIELD_UPN_OID, V_ASN1_UTF8STRING, upn, -1);
}

/* A subjectAltName extension with the names given (NULL-terminated); X509V3_ADD_APPEND
 * lets a test add a second one, which RFC 5280 forbids. */
static void san_add(X509 *x, GENERAL_NAME *first, ...)
{
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    va_list ap;

    if (gens == NULL)
        die("GENERAL_NAMES_new");
    va_start(ap, first);
    for (GENERAL_NAME *g = first; g != NULL; g = va_arg(ap, GENERAL_NAME *))
        if (!sk_GENERAL_NAME_push(gens, g))
            die("push");
    va_end(ap);
    if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_APPEND) != 1)
        die("subjectAltName");
    GENERAL_NAMES_free(gens);
}

/* Signs x and returns the certificate read back from its DER form. */
static X509 *finish(X509 *x)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    int len;
    X509 *back;

    if (X509_set_issuer_name(x, X509_get_subject_name(x)) != 1 ||
        X509_sign(x, key, EVP_sha256()) == 0 || (len = i2d_X509(x, &der)) <= 0)
        die("sign");
    p = der;
    back = d2i_X509(NULL, &p, len);
    if (back == NULL)
        die("d2i_X509");
    OPENSSL_free(der);
    X509_free(x);
    return back;
}

static X509 *with_cn(const char *cn)
{
    X509 *x = cert_new();

    subject_add(x, NID_commonName, V_ASN1_UTF8STRING, cn, -1);
    return finish(x);
}

/* ---- names and reasons -------------------------------------------------------------- */

TEST(field_names)
{
    static const char *const all[] = {"email", "san-email", "upn", "cn"};
    enum cert_field f;

    for (int i = 0; i < CERT_FIELD_COUNT; i++) {
        CHECK(cert_field_parse(all[i], &f) == 0);
        CHECK(f == (enum cert_field)i);
        CHECK_STR(cert_field_name(f), all[i]);
    }
    CHECK(cert_field_parse("EMAIL", &f) == -1);
    CHECK(cert_field_parse("san_email", &f) == -1);
    CHECK(cert_field_parse("", &f) == -1);
    CHECK(cert_field_parse("upn ", &f) == -1);
    CHECK(cert_field_parse(NULL, &f) == -1);
    CHECK_STR(cert_field_name(CERT_FIELD_COUNT), "?");
}

/* The reasons are part of the contract (audit rows, SMTP replies): every one of
 * them, spelled out. */
TEST(reasons_are_exact)
{
    CHECK_STR(cert_field_reason(CERT_FIELD_UPN, CERT_FIELD_OK), "");
    CHECK_STR(cert_field_reason(CERT_FIELD_EMAIL, CERT_FIELD_MISSING),
              "certificate email missing");
    CHECK_STR(cert_field_reason(CERT_FIELD_SAN_EMAIL, CERT_FIELD_TWICE),
              "certificate san-email appears more than once");
    CHECK_STR(cert_field_reason(CERT_FIELD_UPN, CERT_FIELD_CONTROL),
              "certificate upn has a control character");
    CHECK_STR(cert_field_reason(CERT_FIELD_CN, CERT_FIELD_ENCODING), "certificate cn badly encoded");
    CHECK_STR(cert_field_reason(CERT_FIELD_CN, CERT_FIELD_TOO_LONG), "certificate cn too long");
    CHECK_STR(cert_field_reason(CERT_FIELD_UPN, CERT_FIELD_NOT_ADDRESS),
              "certificate upn not an address");
    CHECK_STR(cert_field_reason(CERT_FIELD_SAN_EMAIL, CERT_FIELD_DOMAIN),
              "certificate san-email outside the required domain");
    CHECK_STR(cert_field_reason(CERT_FIELD_COUNT, CERT_FIELD_MISSING), "?");
    CHECK_STR(cert_field_reason(CERT_FIELD_CN, CERT_FIELD_STATUS_COUNT), "?");
    /* Every pair is set, short, and names its field. */
    for (int f = 0; f < CERT_FIELD_COUNT; f++)
        for (int s = CERT_FIELD_MISSING; s < CERT_FIELD_STATUS_COUNT; s++) {
            const char *r = cert_field_reason((enum cert_field)f, (enum cert_field_status)s);
            char want[64];

            snprintf(want, sizeof(want), "certificate %s ", cert_field_name((enum cert_field)f));
            CHECK(strncmp(r, want, strlen(want)) == 0);
            CHECK(strlen(r) < 64);
        }
}

/* ---- upn ------------------------------------------------------------------------------ */

TEST(upn_taken)
{
    X509 *x = cert_new();

    subject_add(x, NID_commonName, V_ASN1_UTF8STRING, "Alice Example", -1);
    san_add(x, san_dns("laptop-17.corp.example"), san_upn("alice@corp.example"),
            san_email("alice.example@corp.example", -1), NULL);
    x = finish(x);
    CHECK(cert_field_get(x, CERT_FIELD_UPN, v) == CERT_FIELD_OK);
    CHECK_STR(v, "alice@corp.example");
    CHECK(cert_field_get(x, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_OK);
    CHECK_STR(v, "alice.example@corp.example");
    CHECK(cert_field_get(x, CERT_FIELD_CN, v) == CERT_FIELD_OK);
    CHECK_STR(v, "Alice Example");
    CHECK(cert_field_get(x, CERT_FIELD_EMAIL, v) == CERT_FIELD_MISSING);
    CHECK_STR(v, "");
    X509_free(x);
}

TEST(upn_missing)
{
    X509 *none = with_cn("alice");
    X509 *other = cert_new();

    /* No subjectAltName at all. */
    CHECK(cert_field_get(none, CERT_FIELD_UPN, v) == CERT_FIELD_MISSING);
    CHECK(cert_field_get(none, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_MISSING);
    /* An otherName of another type (SmtpUTF8Mailbox) is not a UPN. */
    san_add(other, san_other(SMTPUTF8_OID, V_ASN1_UTF8STRING, "alice@corp.example", -1),
            san_email("alice@corp.example", -1), NULL);
    other = finish(other);
    CHECK(cert_field_get(other, CERT_FIELD_UPN, v) == CERT_FIELD_MISSING);
    CHECK_STR(v, "");
    X509_free(none);
    X509_free(other);
}

TEST(upn_twice)
{
    X509 *two = cert_new(), *same = cert_new();

    san_add(two, san_upn("alice@corp.example"), san_upn("bob@corp.example"), NULL);
    two = finish(two);
    CHECK(cert_field_get(two, CERT_FIELD_UPN, v) == CERT_FIELD_TWICE);
    CHECK_STR(v, "");
    /* Equal values are still two: the certificate is not what a CA issues. */
    san_add(same, san_upn("alice@corp.example"), san_upn("alice@corp.example"), NULL);
    same = finish(same);
    CHECK(cert_field_get(same, CERT_FIELD_UPN, v) == CERT_FIELD_TWICE);
    X509_free(two);
    X509_free(same);
}

TEST(upn_not_utf8string)
{
    X509 *x = cert_new(), *y = cert_new();

    san_add(x, san_other(CERT_FIELD_UPN_OID, V_ASN1_IA5STRING, "alice@corp.example", -1), NULL);
    x = finish(x);
    CHECK(cert_field_get(x, CERT_FIELD_UPN, v) == CERT_FIELD_ENCODING);
    /* A badly typed one beside a good one is still two. */
    san_add(y, san_other(CERT_FIELD_UPN_OID, V_ASN1_IA5STRING, "bob@corp.example", -1),
            san_upn("alice@corp.example"), NULL);
    y = finish(y);
    CHECK(cert_field_get(y, CERT_FIELD_UPN, v) == CERT_FIELD_TWICE);
    X509_free(x);
    X509_free(y);
}

TEST(upn_nul_control_and_encoding)
{
    static const struct {
        const char *bytes;
        int len;
        enum cert_field_status want;
    } cases[] = {
        {"alice\0@corp.example", 19, CERT_FIELD_CONTROL},
        {"alice@corp.example\0", 19, CERT_FIELD_CONTROL},
        {"alice\r\n@corp.example", 20, CERT_FIELD_CONTROL},
        {"alice\x7f@corp.example", 19, CERT_FIELD_CONTROL},
        {"alice\xc2\x85@corp.example", 20, CERT_FIELD_CONTROL},   /* U+0085, C1 */
        {"alice\xc3(@corp.example", 20, CERT_FIELD_ENCODING},     /* cut sequence */
        {"alice\xc0\xae@corp.example", 20, CERT_FIELD_ENCODING},  /* overlong '.' */
        {"alice\xe0\x80\xae@corp.example", 21, CERT_FIELD_ENCODING},
        {"alice\xed\xa0\x80@corp.example", 21, CERT_FIELD_ENCODING}, /* surrogate */
        {"alice\xf4\x90\x80\x80@corp.example", 22, CERT_FIELD_ENCODING},
        {"alice\xff@corp.example", 19, CERT_FIELD_ENCODING},
        {"alice@corp.example\xe2\x82", 20, CERT_FIELD_ENCODING},  /* truncated at the end */
        {"\xff\x01", 2, CERT_FIELD_CONTROL},                      /* control wins */
        {"", 0, CERT_FIELD_MISSING},
        {"j\xc3\xb6rg@corp.example", 17, CERT_FIELD_OK},          /* "jörg" */
        {"\xf0\x9f\x93\xa7@corp.example", 17, CERT_FIELD_OK},     /* U+1F4E7 */
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509 *x = cert_new();
        enum cert_field_status st;

        san_add(x, san_other(CERT_FIELD_UPN_OID, V_ASN1_UTF8STRING, cases[i].bytes, cases[i].len),
                NULL);
        x = finish(x);
        st = cert_field_get(x, CERT_FIELD_UPN, v);
        if (st != cases[i].want)
            printf("  case %zu: status %d, want %d\n", i, (int)st, (int)cases[i].want);
        CHECK(st == cases[i].want);
        if (cases[i].want == CERT_FIELD_OK)
            CHECK(strlen(v) == (size_t)cases[i].len && memcmp(v, cases[i].bytes, strlen(v)) == 0);
        else
            CHECK_STR(v, "");
        X509_free(x);
    }
}

TEST(upn_must_be_an_address)
{
    static const char *const bad[] = {"alice", "@corp.example", "alice@", "a@b@corp.example"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        X509 *x = cert_new();

        san_add(x, san_upn(bad[i]), NULL);
        x = finish(x);
        CHECK(cert_field_get(x, CERT_FIELD_UPN, v) == CERT_FIELD_NOT_ADDRESS);
        CHECK_STR(v, "");
        X509_free(x);
    }
}

/* ---- san-email ------------------------------------------------------------------------ */

TEST(san_email_twice)
{
    X509 *x = cert_new();

    san_add(x, san_email("alice@corp.example", -1), san_dns("corp.example"),
            san_email("alice@other.example", -1), NULL);
    x = finish(x);
    CHECK(cert_field_get(x, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_TWICE);
    CHECK_STR(v, "");
    X509_free(x);
}

/* Two subjectAltName extensions (forbidden by RFC 5280; OpenSSL's chain check would
 * refuse the certificate first): the values of both count. */
TEST(san_email_in_two_extensions)
{
    X509 *x = cert_new(), *y = cert_new();

    san_add(x, san_email("alice@corp.example", -1), NULL);
    san_add(x, san_email("mallory@corp.example", -1), NULL);
    x = finish(x);
    CHECK(X509_get_ext_by_NID(x, NID_subject_alt_name, -1) >= 0);
    CHECK(cert_field_get(x, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_TWICE);
    /* The second extension holds no address: the one in the first is taken. */
    san_add(y, san_email("alice@corp.example", -1), NULL);
    san_add(y, san_dns("laptop.corp.example"), NULL);
    y = finish(y);
    CHECK(cert_field_get(y, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_OK);
    CHECK_STR(v, "alice@corp.example");
    X509_free(x);
    X509_free(y);
}

/* An IA5String can carry a NUL: "alice@corp.example\0.evil.example" must never be
 * read as alice@corp.example. */
TEST(san_email_with_nul)
{
    static const char nul[] = "alice@corp.example\0.evil.example";
    X509 *x = cert_new();

    san_add(x, san_email(nul, (int)sizeof(nul) - 1), NULL);
    x = finish(x);
    CHECK(cert_field_get(x, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_CONTROL);
    CHECK_STR(v, "");
    X509_free(x);
}

TEST(san_email_eight_bit_and_shape)
{
    X509 *latin = cert_new(), *bare = cert_new(), *dns = cert_new();

    /* rfc822Name is 7-bit; OpenSSL would read 0xE9 as Latin-1 "é". */
    san_add(latin, san_email("ren\xe9@corp.example", -1), NULL);
    latin = finish(latin);
    CHECK(cert_field_get(latin, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_ENCODING);
    /* A domain-wide "@corp.example" is a sender pattern, never one user's address. */
    san_add(bare, san_email("@corp.example", -1), NULL);
    bare = finish(bare);
    CHECK(cert_field_get(bare, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_NOT_ADDRESS);
    san_add(dns, san_dns("alice.corp.example"), NULL);
    dns = finish(dns);
    CHECK(cert_field_get(dns, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_MISSING);
    X509_free(latin);
    X509_free(bare);
    X509_free(dns);
}

/* ---- email (subject emailAddress) ---------------------------------------------------- */

TEST(subject_email)
{
    X509 *x = cert_new(), *two = cert_new();

    subject_add(x, NID_commonName, V_ASN1_UTF8STRING, "Alice", -1);
    subject_add(x, NID_pkcs9_emailAddress, V_ASN1_IA5STRING, "alice@corp.example", -1);
    san_add(x, san_email("alice.other@corp.example", -1), NULL);
    x = finish(x);
    CHECK(cert_field_get(x, CERT_FIELD_EMAIL, v) == CERT_FIELD_OK);
    CHECK_STR(v, "alice@corp.example");
    /* The two e-mail fields are separate: each rule reads its own. */
    CHECK(cert_field_get(x, CERT_FIELD_SAN_EMAIL, v) == CERT_FIELD_OK);
    CHECK_STR(v, "alice.other@corp.example");
    subject_add(two, NID_pkcs9_emailAddress, V_ASN1_IA5STRING, "alice@corp.example", -1);
    subject_add(two, NID_pkcs9_emailAddress, V_ASN1_IA5STRING, "alice@corp.example", -1);
    two = finish(two);
    CHECK(cert_field_get(two, CERT_FIELD_EMAIL, v) == CERT_FIELD_TWICE);
    X509_free(x);
    X509_free(two);
}

TEST(subject_email_nul_and_utf8)
{
    X509 *nul = cert_new(), *utf8 = cert_new();

    subject_add(nul, NID_pkcs9_emailAddress, V_ASN1_IA5STRING, "alice@corp.example\0x", 20);
    nul = finish(nul);
    CHECK(cert_field_get(nul, CERT_FIELD_EMAIL, v) == CERT_FIELD_CONTROL);
    /* Some CAs write it as a UTF8String; valid UTF-8 is taken as it is. */
    subject_add(utf8, NID_pkcs9_emailAddress, V_ASN1_UTF8STRING, "j\xc3\xb6rg@corp.example", -1);
    utf8 = finish(utf8);
    CHECK(cert_field_get(utf8, CERT_FIELD_EMAIL, v) == CERT_FIELD_OK);
    CHECK_STR(v, "j\xc3\xb6rg@corp.example");
    X509_free(nul);
    X509_free(utf8);
}

/* ---- cn ---------------------------------------------------------------------------------- */

TEST(cn_string_types)
{
    static const char bmp_alice[] = "\0a\0l\0i\0c\0e";
    static const char bmp_nul[] = "\0a\0\0\0b";
    X509 *bmp = cert_new(), *bmpnul = cert_new(), *pr = cert_new(),
         *t61 = cert_new(), *num = cert_new();

    subject_add(bmp, NID_commonName, V_ASN1_BMPSTRING, bmp_alice, 10);
    bmp = finish(bmp);
    CHECK(cert_field_get(bmp, CERT_FIELD_CN, v) == CERT_FIELD_OK);
    CHECK_STR(v, "alice");
    /* A NUL hides in a BMPString as 00 00. */
    subject_add(bmpnul, NID_commonName, V_ASN1_BMPSTRING, bmp_nul, 6);
    bmpnul = finish(bmpnul);
    CHECK(cert_field_get(bmpnul, CERT_FIELD_CN, v) == CERT_FIELD_CONTROL);
    subject_add(pr, NID_commonName, V_ASN1_PRINTABLESTRING, "alice", -1);
    pr = finish(pr);
    CHECK(cert_field_get(pr, CERT_FIELD_CN, v) == CERT_FIELD_OK);
    CHECK_STR(v, "alice");
    subject_add(t61, NID_commonName, V_ASN1_T61STRING, "ren\xe9", -1);
    t61 = finish(t61);
    CHECK(cert_field_get(t61, CERT_FIELD_CN, v) == CERT_FIELD_ENCODING);
    subject_add(num, NID_commonName, V_ASN1_NUMERICSTRING, "10042", -1);
    num = finish(num);
    CHECK(cert_field_get(num, CERT_FIELD_CN, v) == CERT_FIELD_OK);
    CHECK_STR(v, "10042");
    X509_free(bmp);
    X509_free(bmpnul);
    X509_free(pr);
    X509_free(t61);
    X509_free(num);
}

TEST(cn_length_and_count)
{
    char longest[CERT_FIELD_MAX + 2];
    X509 *ok, *over, *empty, *two = cert_new();

    memset(longest, 'a', sizeof(longest) - 1);
    longest[CERT_FIELD_MAX] = '\0';
    ok = with_cn(longest);
    CHECK(cert_field_get(ok, CERT_FIELD_CN, v) == CERT_FIELD_OK);
    CHECK(strlen(v) == CERT_FIELD_MAX);
    longest[CERT_FIELD_MAX] = 'a';
    longest[CERT_FIELD_MAX + 1] = '\0';
    over = with_cn(longest);
    CHECK(cert_field_get(over, CERT_FIELD_CN, v) == CERT_FIELD_TOO_LONG);
    CHECK_STR(v, "");
    empty = with_cn("");
    CHECK(cert_field_get(empty, CERT_FIELD_CN, v) == CERT_FIELD_MISSING);
    subject_add(two, NID_organizationName, V_ASN1_UTF8STRING, "Corp", -1);
    subject_add(two, NID_commonName, V_ASN1_UTF8STRING, "alice", -1);
    subject_add(two, NID_commonName, V_ASN1_UTF8STRING, "bob", -1);
    two = finish(two);
    CHECK(cert_field_get(two, CERT_FIELD_CN, v) == CERT_FIELD_TWICE);
    X509_free(ok);
    X509_free(over);
    X509_free(empty);
    X509_free(two);
}

/* A certificate with none of the fields: every one is missing. */
TEST(no_fields_at_all)
{
    X509 *x = cert_new();

    subject_add(x, NID_organizationName, V_ASN1_UTF8STRING, "Corp", -1);
    san_add(x, san_dns("laptop.corp.example"), NULL);
    x = finish(x);
    for (int f = 0; f < CERT_FIELD_COUNT; f++) {
        struct cert_field_rule rule = {(enum cert_field)f, NULL, NULL};

        v[0] = 'x';
        v[1] = '\0';
        CHECK(cert_field_get(x, (enum cert_field)f, v) == CERT_FIELD_MISSING);
        CHECK_STR(v, "");
        CHECK(cert_field_apply(x, &rule, v, m) == CERT_FIELD_MISSING);
        CHECK_STR(m, "");
    }
    X509_free(x);
}

/* ---- domain options ------------------------------------------------------------------- */

TEST(domain_valid)
{
    static const char *const good[] = {"corp.example", "a", "CORP.Example", "xn--bcher-kva.example",
                                       "a-b.c0.example"};
    static const char *const bad[] = {"", "@corp.example", "corp..example", ".corp.example",
                                      "corp.example.", "-corp.example", "corp-.example",
                                      "corp example", "corp_example", "b\xc3\xbc" "cher.example",
                                      "alice@corp.example"};
    char label[70], big[300];

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK(cert_field_domain_valid(good[i]) == 1);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(cert_field_domain_valid(bad[i]) == 0);
    CHECK(cert_field_domain_valid(NULL) == 0);
    memset(label, 'a', 63);
    label[63] = '\0';
    CHECK(cert_field_domain_valid(label) == 1);
    memset(label, 'a', 64);
    label[64] = '\0';
    CHECK(cert_field_domain_valid(label) == 0);
    /* 253 bytes: four labels of 62 and one of 1, with their dots. */
    memset(big, 'a', sizeof(big));
    for (int i = 62; i < 253; i += 63)
        big[i] = '.';
    big[253] = '\0';
    CHECK(cert_field_domain_valid(big) == 1);
    big[253] = 'a';
    big[254] = '\0';
    CHECK(cert_field_domain_valid(big) == 0);
}

TEST(require_domain)
{
    struct cert_field_rule r = {CERT_FIELD_UPN, NULL, "corp.example"};

    CHECK(cert_field_domain("alice@corp.example", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "alice@corp.example");
    /* Compared without regard to ASCII case. */
    CHECK(cert_field_domain("alice@CORP.Example", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "alice@CORP.Example");
    r.require_domain = "Corp.EXAMPLE";
    CHECK(cert_field_domain("alice@corp.example", &r, m) == CERT_FIELD_OK);
    /* Not a suffix match: a subdomain, a longer name or a shorter one is another domain. */
    CHECK(cert_field_domain("alice@mail.corp.example", &r, m) == CERT_FIELD_DOMAIN);
    CHECK_STR(m, "");
    CHECK(cert_field_domain("alice@evilcorp.example", &r, m) == CERT_FIELD_DOMAIN);
    CHECK(cert_field_domain("alice@corp.example.net", &r, m) == CERT_FIELD_DOMAIN);
    CHECK(cert_field_domain("alice@corp", &r, m) == CERT_FIELD_DOMAIN);
    CHECK(cert_field_domain("alice", &r, m) == CERT_FIELD_NOT_ADDRESS);
    /* A cn without a domain is outside any required domain. */
    r.field = CERT_FIELD_CN;
    CHECK(cert_field_domain("alice", &r, m) == CERT_FIELD_DOMAIN);
    CHECK(cert_field_domain("a@b@corp.example", &r, m) == CERT_FIELD_DOMAIN);
    CHECK(cert_field_domain("alice@corp.example", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "alice@corp.example");
}

TEST(strip_domain)
{
    struct cert_field_rule r = {CERT_FIELD_SAN_EMAIL, "corp.example", NULL};

    CHECK(cert_field_domain("alice@corp.example", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "alice");
    CHECK(cert_field_domain("Alice.Smith@CORP.EXAMPLE", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "Alice.Smith");
    /* Another domain is kept whole (--require-domain refuses it instead). */
    CHECK(cert_field_domain("alice@other.example", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "alice@other.example");
    CHECK(cert_field_domain("alice@sub.corp.example", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "alice@sub.corp.example");
    /* Both options: only the domain's values, without the domain. */
    r.require_domain = "corp.example";
    CHECK(cert_field_domain("alice@corp.example", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "alice");
    CHECK(cert_field_domain("alice@other.example", &r, m) == CERT_FIELD_DOMAIN);
    CHECK_STR(m, "");
    /* A cn: stripped when it has the domain, else kept. */
    r.field = CERT_FIELD_CN;
    r.require_domain = "";
    CHECK(cert_field_domain("bob@corp.example", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "bob");
    CHECK(cert_field_domain("bob", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "bob");
    /* No options: the value itself. */
    r.strip_domain = NULL;
    CHECK(cert_field_domain("Bob Smith", &r, m) == CERT_FIELD_OK);
    CHECK_STR(m, "Bob Smith");
}

TEST(apply_end_to_end)
{
    X509 *x = cert_new();
    struct cert_field_rule upn = {CERT_FIELD_UPN, "corp.example", "corp.example"};
    struct cert_field_rule email = {CERT_FIELD_EMAIL, NULL, "corp.example"};
    struct cert_field_rule san = {CERT_FIELD_SAN_EMAIL, NULL, "corp.example"};

    subject_add(x, NID_pkcs9_emailAddress, V_ASN1_IA5STRING, "alice@corp.example", -1);
    san_add(x, san_upn("alice@CORP.example"), san_email("alice@partner.example", -1), NULL);
    x = finish(x);
    CHECK(cert_field_apply(x, &upn, v, m) == CERT_FIELD_OK);
    CHECK_STR(v, "alice@CORP.example");
    CHECK_STR(m, "alice");
    CHECK(cert_field_apply(x, &email, v, m) == CERT_FIELD_OK);
    CHECK_STR(m, "alice@corp.example");
    /* Refused for the domain: the value stays for the audit row. */
    CHECK(cert_field_apply(x, &san, v, m) == CERT_FIELD_DOMAIN);
    CHECK_STR(v, "alice@partner.example");
    CHECK_STR(m, "");
    CHECK_STR(cert_field_reason(san.field, CERT_FIELD_DOMAIN),
              "certificate san-email outside the required domain");
    X509_free(x);
}

int main(void)
{
    key = EVP_EC_gen("P-256");
    if (key == NULL)
        die("EVP_EC_gen");
    RUN(field_names);
    RUN(reasons_are_exact);
    RUN(upn_taken);
    RUN(upn_missing);
    RUN(upn_twice);
    RUN(upn_not_utf8string);
    RUN(upn_nul_control_and_encoding);
    RUN(upn_must_be_an_address);
    RUN(san_email_twice);
    RUN(san_email_in_two_extensions);
    RUN(san_email_with_nul);
    RUN(san_email_eight_bit_and_shape);
    RUN(subject_email);
    RUN(subject_email_nul_and_utf8);
    RUN(cn_string_types);
    RUN(cn_length_and_count);
    RUN(no_fields_at_all);
    RUN(domain_valid);
    RUN(require_domain);
    RUN(strip_domain);
    RUN(apply_end_to_end);
    EVP_PKEY_free(key);
    return UNIT_DONE();
}
