#ifndef SUBMITD_CA_CERT_H
#define SUBMITD_CA_CERT_H

/*
 * What init, server-cert and issue share when they make a certificate: the end of
 * its validity and the lines that describe it.
 */

#include "ca_store.h"
#include "ca_x509.h"

/* "serial: ", "sha256: " and "not_after: " lines on standard output. */
void ca_print_cert(const struct ca_cert_info *ci);

/*
 * The end of a new certificate's validity, days from now, into *end: never past the
 * CA certificate, which could no longer vouch for it then (a warning says so). Fails
 * (-1, after the message) when the CA certificate expires within a day.
 */
int ca_validity_end(const struct ca_authority *ca, long long now, long long days,
                    long long *end);

#endif
