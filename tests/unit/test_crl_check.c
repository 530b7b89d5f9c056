/*
 * Unit tests of the CRL checker shared by `submitd -t` and the authz process
 * (submitd/lib/crl_check.c): CAs and CRLs are made here, written as PEM files the
 * way client_ca and crl are, and read back.
 */
#include "unit.h"

#include "crl_check.h"
#include "util.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char dir[64];

static EVP_PKEY *new_key(void)
{
    return EVP_EC_gen("P-256");
}

static X509_NAME *cn(const char *name)
{
    X509_NAME *n = X509_NAME_new();

    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)name, -1, -1, 0);
    return n;
}

/* A self-signed CA certificate named CN=name. */
static X509 *new_ca(const char *name, EVP_PKEY *key)
{
    X509 *x = X509_new();
    X509_NAME *n = cn(name);
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, key);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, key, EVP_sha256());
    X509_NAME_free(n);
    return x;
}

/* A CRL naming issuer, signed with key, valid from now+last to now+next (next 0:
 * no nextUpdate), with crlNumber number unless it is negative. */
static X509_CRL *new_crl(const X509 *issuer, EVP_PKEY *key, long last, long next, long number)
{
    X509_CRL *c = X509_CRL_new();
    time_t now = time(NULL);
    ASN1_TIME *t = ASN1_TIME_adj(NULL, now, 0, last);

    X509_CRL_set_version(c, 1);
    X509_CRL_set_issuer_name(c, X509_get_subject_name(issuer));
    X509_CRL_set1_lastUpdate(c, t);
    ASN1_TIME_free(t);
    if (next != 0) {
        t = ASN1_TIME_adj(NULL, now, 0, next);
        X509_CRL_set1_nextUpdate(c, t);
        ASN1_TIME_free(t);
    }
    if (number >= 0) {
        ASN1_INTEGER *num = ASN1_INTEGER_new();

        ASN1_INTEGER_set(num, number);
        X509_CRL_add1_ext_i2d(c, NID_crl_number, num, 0, 0);
        ASN1_INTEGER_free(num);
    }
    X509_CRL_sign(c, key, EVP_sha256());
    return c;
}

static const char *path_of(const char *name)
{
    static char p[128];

    str_fmt(p, sizeof(p), "%s/%s", dir, name);
    return p;
}

/* Writes the certificates (client_ca) or the CRLs (crl) as one PEM bundle. */
static const char *write_cas(const char *name, X509 *const *cas, int n)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "w");

    for (int i = 0; i < n; i++)
        PEM_write_X509(f, cas[i]);
    fclose(f);
    return p;
}

static const char *write_crls(const char *name, X509_CRL *const *crls, int n)
{
    const char *p = path_of(name);
    FILE *f = fopen(p, "w");

    for (int i = 0; i < n; i++)
        PEM_write_X509_CRL(f, crls[i]);
    fclose(f);
    return p;
}

/* Two client CAs, A and B, and a CA C that client_ca does not hold. */
static EVP_PKEY *ka, *kb, *kc;
static X509 *ca_a, *ca_b, *ca_c;

static STACK_OF(X509) *load_ab(void)
{
    X509 *both[2] = { ca_a, ca_b };
    int why = -1;
    STACK_OF(X509) *cas = crl_cas_load(write_cas("ab.crt", both, 2), &why);

    CHECK(cas != NULL && why == 0);
    return cas;
}

TEST(client_ca_bundle_is_read_in_order)
{
    STACK_OF(X509) *cas = load_ab();
    int why = 0;

    CHECK(sk_X509_num(cas) == 2);
    CHECK(X509_cmp(sk_X509_value(cas, 0), ca_a) == 0);
    CHECK(X509_cmp(sk_X509_value(cas, 1), ca_b) == 0);
    sk_X509_pop_free(cas, X509_free);
    CHECK(crl_cas_load(path_of("no-such.crt"), &why) == NULL && why == CRL_CAS_UNREADABLE);
    CHECK(crl_cas_load(write_cas("empty.crt", NULL, 0), &why) == NULL && why == CRL_CAS_EMPTY);
}

TEST(several_issuers_in_one_bundle)
{
    STACK_OF(X509) *cas = load_ab();
    X509_CRL *crls[2] = { new_crl(ca_b, kb, -60, 86400 * 7, 1),
                          new_crl(ca_a, ka, -60, 86400 * 7, 1) };
    struct crl_bundle b;
    char err[256] = "";

    CHECK(crl_bundle_read(write_crls("two.pem", crls, 2), cas, &b, err, sizeof(err)) == 0);
    CHECK(b.n == 2 && b.ncas == 2);
    CHECK(b.n == 2 && b.crls[0].ca == 1 && b.crls[0].state == CRL_GOOD);
    CHECK(b.n == 2 && b.crls[1].ca == 0 && b.crls[1].state == CRL_GOOD);
    CHECK(b.ncas == 2 && b.ca_named[0] && b.ca_named[1]);
    crl_bundle_free(&b);
    X509_CRL_free(crls[0]);
    X509_CRL_free(crls[1]);
    sk_X509_pop_free(cas, X509_free);
}

TEST(ca_without_crl_is_named)
{
    STACK_OF(X509) *cas = load_ab();
    X509_CRL *crl = new_crl(ca_a, ka, -60, 86400 * 7, 1);
    struct crl_bundle b;
    char err[256] = "";

    CHECK(crl_bundle_read(write_crls("a.pem", &crl, 1), cas, &b, err, sizeof(err)) == 0);
    CHECK(b.n == 1 && b.ncas == 2);
    CHECK(b.ncas == 2 && b.ca_named[0] == 1 && b.ca_named[1] == 0);
    crl_bundle_free(&b);
    X509_CRL_free(crl);
    sk_X509_pop_free(cas, X509_free);
}

TEST(issuer_not_in_client_ca)
{
    STACK_OF(X509) *cas = load_ab();
    X509_CRL *crl = new_crl(ca_c, kc, -60, 86400 * 7, 1);
    struct crl_bundle b;
    char err[256] = "";

    CHECK(crl_issuer_index(cas, crl) == -1);
    CHECK(crl_issuer_index(NULL, crl) == -1);
    CHECK(crl_bundle_read(write_crls("c.pem", &crl, 1), cas, &b, err, sizeof(err)) == 0);
    CHECK(b.n == 1 && b.crls[0].ca == -1 && b.crls[0].state == CRL_FOREIGN);
    CHECK(b.ncas == 2 && !b.ca_named[0] && !b.ca_named[1]);
    crl_bundle_free(&b);
    /* Without any client CA, every CRL is foreign. */
    CHECK(crl_bundle_read(path_of("c.pem"), NULL, &b, err, sizeof(err)) == 0);
    CHECK(b.n == 1 && b.ncas == 0 && b.crls[0].state == CRL_FOREIGN);
    crl_bundle_free(&b);
    X509_CRL_free(crl);
    sk_X509_pop_free(cas, X509_free);
}

TEST(bad_signature)
{
    STACK_OF(X509) *cas = load_ab();
    /* A's name, C's key: what a forged or corrupted CRL looks like. */
    X509_CRL *crl = new_crl(ca_a, kc, -60, 86400 * 7, 1);
    struct crl_bundle b;
    char err[256] = "";

    CHECK(crl_bundle_read(write_crls("forged.pem", &crl, 1), cas, &b, err, sizeof(err)) == 0);
    CHECK(b.n == 1 && b.crls[0].ca == 0 && b.crls[0].state == CRL_BAD_SIGNATURE);
    /* It names A all the same: -t reports the signature, not a missing CRL. */
    CHECK(b.ncas == 2 && b.ca_named[0] == 1);
    crl_bundle_free(&b);
    X509_CRL_free(crl);
    sk_X509_pop_free(cas, X509_free);
}

TEST(expired_and_expiring)
{
    STACK_OF(X509) *cas = load_ab();
    X509_CRL *crls[3] = { new_crl(ca_a, ka, -86400 * 8, -3600, 1),
                          new_crl(ca_b, kb, -60, 3600, 1),
                          new_crl(ca_a, ka, -60, 86400 * 3, 2) };
    struct crl_bundle b;
    char err[256] = "";
    time_t now = time(NULL);

    CHECK(crl_bundle_read(write_crls("dates.pem", crls, 3), cas, &b, err, sizeof(err)) == 0);
    CHECK(b.n == 3);
    if (b.n == 3) {
        CHECK(crl_time_flags(b.crls[0].last_update, b.crls[0].next_update, now, 86400) ==
              CRL_EXPIRED);
        CHECK(crl_time_flags(b.crls[1].last_update, b.crls[1].next_update, now, 86400) ==
              CRL_EXPIRES_SOON);
        CHECK(crl_time_flags(b.crls[2].last_update, b.crls[2].next_update, now, 86400) == 0);
        /* authz warns two days ahead: the same CRL is "soon" there. */
        CHECK(crl_time_flags(b.crls[1].last_update, b.crls[1].next_update, now, 2 * 86400) ==
              CRL_EXPIRES_SOON);
        CHECK(b.crls[0].next_update < (long long)now && b.crls[2].next_update > (long long)now);
    }
    crl_bundle_free(&b);
    for (int i = 0; i < 3; i++)
        X509_CRL_free(crls[i]);
    sk_X509_pop_free(cas, X509_free);
}

TEST(not_yet_valid)
{
    STACK_OF(X509) *cas = load_ab();
    X509_CRL *crl = new_crl(ca_a, ka, 3600, 86400 * 7, 1);
    struct crl_bundle b;
    char err[256] = "";

    CHECK(crl_bundle_read(write_crls("future.pem", &crl, 1), cas, &b, err, sizeof(err)) == 0);
    CHECK(b.n == 1 && b.crls[0].state == CRL_GOOD);
    CHECK(b.n == 1 && crl_time_flags(b.crls[0].last_update, b.crls[0].next_update, time(NULL),
                                     86400) == CRL_NOT_YET_VALID);
    crl_bundle_free(&b);
    X509_CRL_free(crl);
    sk_X509_pop_free(cas, X509_free);
}

TEST(time_flags_edges)
{
    /* OpenSSL refuses a CRL whose nextUpdate is now: so does the checker. */
    CHECK(crl_time_flags(900, 1000, 1000, 0) == CRL_EXPIRED);
    CHECK(crl_time_flags(900, 1001, 1000, 0) == 0);
    CHECK(crl_time_flags(900, 1001, 1000, 1) == CRL_EXPIRES_SOON);
    CHECK(crl_time_flags(900, 0, 1000, 86400) == 0);            /* no nextUpdate */
    CHECK(crl_time_flags(1001, 0, 1000, 0) == CRL_NOT_YET_VALID);
    CHECK(crl_time_flags(1000, 0, 1000, 0) == 0);
    CHECK(crl_time_flags(2000, 500, 1000, 0) == (CRL_EXPIRED | CRL_NOT_YET_VALID));
}

TEST(file_problems)
{
    struct crl_bundle b;
    char err[256] = "";
    FILE *f;

    CHECK(crl_bundle_read(path_of("no-such.pem"), NULL, &b, err, sizeof(err)) == -1);
    CHECK(strstr(err, "no-such.pem: cannot read CRL: No such file") != NULL);
    CHECK(b.crls == NULL && b.ca_named == NULL && b.n == 0);
    f = fopen(path_of("junk.pem"), "w");
    fputs("not a CRL\n", f);
    fclose(f);
    CHECK(crl_bundle_read(path_of("junk.pem"), NULL, &b, err, sizeof(err)) == 0);
    CHECK(b.n == 0);
    crl_bundle_free(&b);
}

TEST(order_by_number_then_by_date)
{
    X509_CRL *old = new_crl(ca_a, ka, -7200, 86400, 2);
    X509_CRL *cur = new_crl(ca_a, ka, -3600, 86400, 10);
    X509_CRL *plain_old = new_crl(ca_a, ka, -7200, 86400, -1);
    char da[128], db[128];

    CHECK(crl_order(old, cur, da, db, sizeof(da)) < 0);
    CHECK_STR(da, "crlNumber 2");
    CHECK_STR(db, "crlNumber 10");
    CHECK(crl_order(cur, old, da, db, sizeof(da)) > 0);
    CHECK(crl_order(cur, cur, da, db, sizeof(da)) == 0);
    /* One without a number: by lastUpdate. */
    CHECK(crl_order(plain_old, cur, da, db, sizeof(da)) < 0);
    CHECK(strncmp(da, "lastUpdate ", 11) == 0 && strncmp(db, "lastUpdate ", 11) == 0);
    CHECK(strlen(da) == 11 + 20 && da[strlen(da) - 1] == 'Z');
    X509_CRL_free(old);
    X509_CRL_free(cur);
    X509_CRL_free(plain_old);
}

TEST(verify_errors_of_the_crl)
{
    CHECK(crl_verify_error_is_crl(X509_V_ERR_UNABLE_TO_GET_CRL));
    CHECK(crl_verify_error_is_crl(X509_V_ERR_CRL_HAS_EXPIRED));
    CHECK(crl_verify_error_is_crl(X509_V_ERR_CRL_NOT_YET_VALID));
    CHECK(crl_verify_error_is_crl(X509_V_ERR_CRL_SIGNATURE_FAILURE));
    CHECK(!crl_verify_error_is_crl(X509_V_ERR_CERT_REVOKED));
    CHECK(!crl_verify_error_is_crl(X509_V_ERR_CERT_HAS_EXPIRED));
    CHECK_STR(crl_verify_problem(X509_V_ERR_UNABLE_TO_GET_CRL), "crl unavailable");
    CHECK_STR(crl_verify_problem(X509_V_ERR_CRL_HAS_EXPIRED), "crl expired");
    CHECK_STR(crl_verify_problem(X509_V_ERR_CRL_NOT_YET_VALID), "crl not yet valid");
    CHECK_STR(crl_verify_problem(X509_V_ERR_CRL_SIGNATURE_FAILURE), "crl invalid");
}

int main(void)
{
    const char *names[] = { "ab.crt", "empty.crt", "two.pem", "a.pem", "c.pem", "forged.pem",
                            "dates.pem", "future.pem", "junk.pem" };
    int rc;

    str_lcpy(dir, "/tmp/test_crl_check.XXXXXX", sizeof(dir));
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    ka = new_key();
    kb = new_key();
    kc = new_key();
    ca_a = new_ca("Test CA A", ka);
    ca_b = new_ca("Test CA B", kb);
    ca_c = new_ca("Other CA", kc);
    RUN(client_ca_bundle_is_read_in_order);
    RUN(several_issuers_in_one_bundle);
    RUN(ca_without_crl_is_named);
    RUN(issuer_not_in_client_ca);
    RUN(bad_signature);
    RUN(expired_and_expiring);
    RUN(not_yet_valid);
    RUN(time_flags_edges);
    RUN(file_problems);
    RUN(order_by_number_then_by_date);
    RUN(verify_errors_of_the_crl);
    rc = UNIT_DONE();
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        unlink(path_of(names[i]));
    rmdir(dir);
    X509_free(ca_a);
    X509_free(ca_b);
    X509_free(ca_c);
    EVP_PKEY_free(ka);
    EVP_PKEY_free(kb);
    EVP_PKEY_free(kc);
    return rc;
}
