/* The CRL file read against the client CAs (see crl_check.h). */
#include "crl_check.h"

#include "util.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

STACK_OF(X509) *crl_cas_load(const char *path, int *why)
{
    STACK_OF(X509) *cas = sk_X509_new_null();
    STACK_OF(X509_INFO) *infos = NULL;
    BIO *in;

    *why = CRL_CAS_UNREADABLE;
    if (cas == NULL || (in = BIO_new_file(path, "r")) == NULL) {
        sk_X509_free(cas);
        return NULL;
    }
    infos = PEM_X509_INFO_read_bio(in, NULL, NULL, NULL);
    BIO_free(in);
    for (int i = 0; infos != NULL && i < sk_X509_INFO_num(infos); i++) {
        X509_INFO *xi = sk_X509_INFO_value(infos, i);

        if (xi->x509 != NULL && X509_up_ref(xi->x509) == 1 && !sk_X509_push(cas, xi->x509))
            X509_free(xi->x509);
    }
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    if (sk_X509_num(cas) == 0) {
        *why = CRL_CAS_EMPTY;
        sk_X509_free(cas);
        return NULL;
    }
    *why = 0;
    return cas;
}

int crl_issuer_index(const STACK_OF(X509) *cas, const X509_CRL *c)
{
    for (int i = 0; cas != NULL && i < sk_X509_num(cas); i++) {
        const X509 *ca = sk_X509_value(cas, i);

        if (X509_NAME_cmp(X509_get_subject_name(ca), X509_CRL_get_issuer(c)) == 0)
            return i;
    }
    return -1;
}

long long crl_asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (long long)timegm(&tm);
}

static void crl_examine(const STACK_OF(X509) *cas, X509_CRL *c, struct crl_entry *e)
{
    memset(e, 0, sizeof(*e));
    e->crl = c;
    e->ca = crl_issuer_index(cas, c);
    e->last_update = crl_asn1_epoch(X509_CRL_get0_lastUpdate(c));
    e->next_update = crl_asn1_epoch(X509_CRL_get0_nextUpdate(c));
    if (e->ca < 0)
        e->state = CRL_FOREIGN;
    else if (X509_CRL_verify(c, X509_get0_pubkey(sk_X509_value(cas, e->ca))) != 1)
        e->state = CRL_BAD_SIGNATURE;
    else
        e->state = CRL_GOOD;
    ERR_clear_error();
}

/* Room for one more entry; -1 when memory runs out. */
static int bundle_grow(struct crl_bundle *b, int *cap)
{
    struct crl_entry *more;

    if (b->n < *cap)
        return 0;
    if (*cap > 1 << 20)
        return -1;
    more = realloc(b->crls, (size_t)(*cap ? *cap * 2 : 8) * sizeof(*more));
    if (more == NULL)
        return -1;
    b->crls = more;
    *cap = *cap ? *cap * 2 : 8;
    return 0;
}

int crl_bundle_read(const char *path, const STACK_OF(X509) *cas, struct crl_bundle *b,
                    char *err, size_t errlen)
{
    X509_CRL *c;
    FILE *f;
    int cap = 0, rc = 0;

    memset(b, 0, sizeof(*b));
    b->ncas = cas != NULL ? sk_X509_num(cas) : 0;
    b->ca_named = calloc((size_t)b->ncas + 1, 1);
    if (b->ca_named == NULL) {
        str_fmt(err, errlen, "%s: out of memory", path);
        return -1;
    }
    if ((f = fopen(path, "re")) == NULL) {
        str_fmt(err, errlen, "%s: cannot read CRL: %s", path, strerror(errno));
        crl_bundle_free(b);
        return -1;
    }
    while ((c = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
        if (bundle_grow(b, &cap) != 0) {
            X509_CRL_free(c);
            str_fmt(err, errlen, "%s: out of memory", path);
            rc = -1;
            break;
        }
        crl_examine(cas, c, &b->crls[b->n]);
        if (b->crls[b->n].ca >= 0)
            b->ca_named[b->crls[b->n].ca] = 1;
        b->n++;
    }
    /* The loop ends with "no start line" at the end of the file. */
    ERR_clear_error();
    if (rc == 0 && ferror(f)) {
        str_fmt(err, errlen, "%s: cannot read CRL: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    if (rc != 0)
        crl_bundle_free(b);
    return rc;
}

void crl_bundle_free(struct crl_bundle *b)
{
    for (int i = 0; b->crls != NULL && i < b->n; i++)
        X509_CRL_free(b->crls[i].crl);
    free(b->crls);
    free(b->ca_named);
    memset(b, 0, sizeof(*b));
}

int crl_time_flags(long long last, long long next, time_t now, long long soon)
{
    int flags = 0;

    if (next != 0 && next <= (long long)now)
        flags |= CRL_EXPIRED;
    else if (next != 0 && next - (long long)now <= soon)
        flags |= CRL_EXPIRES_SOON;
    if (last > (long long)now)
        flags |= CRL_NOT_YET_VALID;
    return flags;
}

/* One CRL's place in its issuer's sequence, for the log: "crlNumber N", or
 * "lastUpdate DATE" when the comparison is by date. */
static void crl_version_text(X509_CRL *c, const ASN1_INTEGER *num, char *out, size_t outlen)
{
    char *dec = num != NULL ? i2s_ASN1_INTEGER(NULL, num) : NULL;
    char when[32];

    if (dec != NULL) {
        str_fmt(out, outlen, "crlNumber %s", dec);
    } else {
        iso_time_utc(when, sizeof(when), crl_asn1_epoch(X509_CRL_get0_lastUpdate(c)));
        str_fmt(out, outlen, "lastUpdate %s", when);
    }
    OPENSSL_free(dec);
}

int crl_order(X509_CRL *a, X509_CRL *b, char *da, char *db, size_t len)
{
    ASN1_INTEGER *na = X509_CRL_get_ext_d2i(a, NID_crl_number, NULL, NULL);
    ASN1_INTEGER *nb = X509_CRL_get_ext_d2i(b, NID_crl_number, NULL, NULL);
    int both = na != NULL && nb != NULL, r;

    if (both) {
        r = ASN1_INTEGER_cmp(na, nb);
    } else {
        long long la = crl_asn1_epoch(X509_CRL_get0_lastUpdate(a));
        long long lb = crl_asn1_epoch(X509_CRL_get0_lastUpdate(b));
        r = la < lb ? -1 : la > lb;
    }
    crl_version_text(a, both ? na : NULL, da, len);
    crl_version_text(b, both ? nb : NULL, db, len);
    ASN1_INTEGER_free(na);
    ASN1_INTEGER_free(nb);
    ERR_clear_error();
    return r;
}

int crl_verify_error_is_crl(int code)
{
    return code == X509_V_ERR_UNABLE_TO_GET_CRL || code == X509_V_ERR_CRL_HAS_EXPIRED ||
           code == X509_V_ERR_CRL_NOT_YET_VALID || code == X509_V_ERR_CRL_SIGNATURE_FAILURE ||
           code == X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE ||
           code == X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER;
}

const char *crl_verify_problem(int code)
{
    switch (code) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
        return "crl unavailable";
    case X509_V_ERR_CRL_HAS_EXPIRED:
        return "crl expired";
    case X509_V_ERR_CRL_NOT_YET_VALID:
        return "crl not yet valid";
    default:
        return "crl invalid";
    }
}
