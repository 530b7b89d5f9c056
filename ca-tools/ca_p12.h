#ifndef SUBMITD_CA_P12_H
#define SUBMITD_CA_P12_H

/*
 * PKCS#12 bundles (key, certificate, CA certificate) for mail clients to import.
 * See pki-facts.md for which devices import which format.
 */

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

enum ca_p12_format {
    CA_P12_LEGACY = 0,  /* 3DES bags, SHA-1 MAC: older Android, iOS and macOS as well */
    CA_P12_MODERN       /* AES-256-CBC / PBKDF2 bags, SHA-256 MAC (OpenSSL 3 defaults) */
};

/* "legacy" or "modern" to the format; -1 when unknown. */
int ca_p12_format_parse(const char *name);
/* A short description for the user, e.g. "3DES, SHA-1 MAC". */
const char *ca_p12_format_describe(enum ca_p12_format fmt);

/*
 * Encodes a password-protected PKCS#12 (DER) into a memory BIO that is wiped when
 * freed. friendly_name is shown by the device when the identity is chosen.
 */
BIO *ca_p12_encode(EVP_PKEY *key, X509 *cert, X509 *ca_cert, const char *friendly_name,
                   const char *password, enum ca_p12_format fmt);

#endif
