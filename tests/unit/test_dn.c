/* Unit tests of canonical distinguished names (submitd/lib/dn.c). */
#include "unit.h"

#include "dn.h"

#include <openssl/x509.h>

static char out[1024], err[256];

static X509_NAME *name_of(const char *cn, const char *o)
{
    X509_NAME *n = X509_NAME_new();

    /* ASN.1 order: O first, then CN (RFC 4514 prints CN first). */
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)o, -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    return n;
}

TEST(string_and_name_agree)
{
    X509_NAME *n = name_of("ext-alice", "Partner");
    char a[1024];

    CHECK(dn_canon_name(n, a, sizeof(a)) == 0);
    CHECK(dn_canon_string("CN=ext-alice,O=Partner", out, sizeof(out), err, sizeof(err)) == 0);
    CHECK_STR(a, out);
    CHECK_STR(out, "2.5.4.3=ext-alice,2.5.4.10=partner");
    X509_NAME_free(n);
}

TEST(case_and_spaces_do_not_matter)
{
    char a[1024];

    CHECK(dn_canon_string("CN=EXT-Alice,  O = partner ", a, sizeof(a), err, sizeof(err)) == 0);
    CHECK(dn_canon_string("cn=ext-alice,o=Partner", out, sizeof(out), err, sizeof(err)) == 0);
    CHECK_STR(a, out);
    CHECK(dn_canon_string("CN=Ext   Alice,O=P", a, sizeof(a), err, sizeof(err)) == 0);
    CHECK(dn_canon_string("CN=ext alice,O=p", out, sizeof(out), err, sizeof(err)) == 0);
    CHECK_STR(a, out);
}

TEST(long_and_short_type_names_are_the_same_attribute)
{
    char a[1024];

    CHECK(dn_canon_string("commonName=x,organizationName=y", a, sizeof(a), err, sizeof(err)) == 0);
    CHECK(dn_canon_string("CN=x,O=y", out, sizeof(out), err, sizeof(err)) == 0);
    CHECK_STR(a, out);
}

TEST(a_cn_alone_is_not_the_full_name)
{
    char a[1024];

    CHECK(dn_canon_string("CN=alice", a, sizeof(a), err, sizeof(err)) == 0);
    CHECK(dn_canon_string("CN=alice,O=Example", out, sizeof(out), err, sizeof(err)) == 0);
    CHECK(strcmp(a, out) != 0);
}

TEST(escapes_keep_separators_unambiguous)
{
    char a[1024];

    CHECK(dn_canon_string("CN=a\\,b,O=c", a, sizeof(a), err, sizeof(err)) == 0);
    CHECK(dn_canon_string("CN=a,O=b,O=c", out, sizeof(out), err, sizeof(err)) == 0);
    CHECK(strcmp(a, out) != 0);
    CHECK_STR(a, "2.5.4.3=a\\,b,2.5.4.10=c");
    CHECK(dn_canon_string("CN=a\\2cb,O=c", out, sizeof(out), err, sizeof(err)) == 0);
    CHECK_STR(a, out);
}

TEST(multi_valued_rdn)
{
    CHECK(dn_canon_string("CN=a+UID=b,O=c", out, sizeof(out), err, sizeof(err)) == 0);
    CHECK(strstr(out, "+") != NULL);
    CHECK(strstr(out, "2.5.4.10=c") != NULL);
}

TEST(bad_names_are_errors)
{
    CHECK(dn_canon_string("", out, sizeof(out), err, sizeof(err)) != 0);
    CHECK(dn_canon_string("alice", out, sizeof(out), err, sizeof(err)) != 0);
    CHECK(dn_canon_string("XYZZY=1", out, sizeof(out), err, sizeof(err)) != 0);
    CHECK(strstr(err, "XYZZY") != NULL);
    CHECK(dn_canon_string("CN=#0403616263", out, sizeof(out), err, sizeof(err)) != 0);
    CHECK(dn_canon_string("CN=a\\", out, sizeof(out), err, sizeof(err)) != 0);
}

TEST(too_small_output_is_an_error)
{
    char small[8];

    CHECK(dn_canon_string("CN=a-rather-long-name", small, sizeof(small), err, sizeof(err)) != 0);
}

int main(void)
{
    RUN(string_and_name_agree);
    RUN(case_and_spaces_do_not_matter);
    RUN(long_and_short_type_names_are_the_same_attribute);
    RUN(a_cn_alone_is_not_the_full_name);
    RUN(escapes_keep_separators_unambiguous);
    RUN(multi_valued_rdn);
    RUN(bad_names_are_errors);
    RUN(too_small_output_is_an_error);
    return UNIT_DONE();
}
