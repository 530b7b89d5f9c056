#ifndef SUBMITD_CA_CRL_H
#define SUBMITD_CA_CRL_H

/*
 * The CRL of our CA, as init, revoke, renew --revoke-old and crl write it. It is
 * always rebuilt whole from the database, never edited.
 */

#include "ca_store.h"
#include "config.h"

#include <openssl/x509.h>

struct db;

/*
 * Writes crl to the CA directory and, when the configuration's crl names another
 * file, there as well (both replaced atomically). Prints "crl: PATH" for each.
 */
int ca_crl_write(const struct config *cfg, const struct ca_authority *ca, X509_CRL *crl);

/*
 * Rebuilds the full CRL from every revoked certificate of this CA in the database,
 * writes it (ca_crl_write), and records the publication in the admin log. Returns 0
 * or -1.
 */
int ca_crl_publish(const struct config *cfg, const struct ca_authority *ca, struct db *db,
                   long long days);

#endif
