/*
 * What init, server-cert and issue share when they make a certificate (ca_cert.h):
 * the end of its validity and the lines that describe it.
 */
#include "ca_cert.h"

#include "ca_msg.h"

#include <stdio.h>

#define DAY_SECONDS 86400LL

void ca_print_cert(const struct ca_cert_info *ci)
{
    printf("serial: %s\n", ci->serial);
    printf("sha256: %s\n", ci->sha256);
    printf("not_after: %s\n", ci->not_after);
}

/*
 * The end of a new certificate's validity: days from now, but never past the CA
 * certificate, which could no longer vouch for it then.
 */
int ca_validity_end(const struct ca_authority *ca, long long now, long long days,
                        long long *end)
{
    const ASN1_TIME *ca_end = X509_get0_notAfter(ca->cert);
    char when[32];
    long long ca_end_epoch;

    if (ca_time_iso(ca_end, when, sizeof(when), &ca_end_epoch) != 0)
        return -1;
    *end = now + days * DAY_SECONDS;
    if (ca_end_epoch <= now + DAY_SECONDS) {
        ca_err("the CA certificate %s expires on %s; create a new CA first", ca->cert_path,
               when);
        return -1;
    }
    if (*end > ca_end_epoch) {
        ca_warn("validity shortened to the end of the CA certificate (%s)", when);
        *end = ca_end_epoch;
    }
    return 0;
}
