#ifndef SUBMITD_CA_X509_H
#define SUBMITD_CA_X509_H

/*
 * Building keys, certificates and CRLs in memory, and reading the facts submit-ca
 * records about a certificate. Nothing here touches files or the database; every
 * function prints its own error (ca_msg.h) and returns NULL or -1 on failure.
 */

#include "ca_util.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>

enum ca_key_type { CA_KEY_EC = 0, CA_KEY_RSA };

/* ECDSA P-256 or RSA-3072. */
EVP_PKEY *ca_key_generate(enum ca_key_type type);

enum ca_cert_kind {
    CA_CERT_ROOT,    /* self-signed CA: keyCertSign, cRLSign */
    CA_CERT_SERVER,  /* TLS server: serverAuth, SAN dNSName / iPAddress */
    CA_CERT_CLIENT   /* mail user: clientAuth + emailProtection, SAN rfc822Name */
};

struct ca_cert_spec {
    enum ca_cert_kind kind;
    const char *cn;             /* commonName; NULL: empty subject, SAN made critical */
    const char *email;          /* CLIENT: the rfc822Name */
    const char *dns;            /* SERVER: the dNSName */
    const char *const *ips;     /* SERVER: iPAddress entries (textual v4 or v6) */
    int nips;
    long long not_before;       /* seconds since the epoch */
    long long not_after;
};

/*
 * Builds and signs a v3 certificate with a fresh 128-bit random positive serial.
 * issuer_cert NULL means self-signed: subject_key must then be issuer_key.
 */
X509 *ca_cert_build(const struct ca_cert_spec *spec, EVP_PKEY *subject_key, X509 *issuer_cert,
                    EVP_PKEY *issuer_key);

/* What the database and the user are told about a certificate. */
struct ca_cert_info {
    char serial[CA_SERIAL_HEX_MAX + 1];  /* upper-case hex, no separators */
    char sha256[65];                     /* lower-case hex of the DER encoding */
    char subject[512];                   /* RFC 2253 */
    char issuer[512];
    char not_before[32];                 /* YYYY-MM-DDTHH:MM:SSZ */
    char not_after[32];
    long long not_before_epoch;
    long long not_after_epoch;
};
int ca_cert_info(X509 *x, struct ca_cert_info *out);
/* RFC 2253 form of a name, as `openssl x509 -nameopt RFC2253` prints it. */
int ca_name_rfc2253(const X509_NAME *name, char *out, size_t outlen);
/* ASN1_TIME to "YYYY-MM-DDTHH:MM:SSZ" and seconds since the epoch (epoch may be NULL). */
int ca_time_iso(const ASN1_TIME *t, char *out, size_t outlen, long long *epoch);

struct ca_crl_entry {
    char serial[CA_SERIAL_HEX_MAX + 1];  /* canonical hex (ca_serial_normalize) */
    long long revoked_at;
    int reason;                          /* CA_REASON_*; unspecified adds no extension */
};

/*
 * Builds a full v2 CRL (sorted entries with reason codes, crlNumber, AKI), signs it
 * with the CA key, and returns it decoded again from its DER form so that it carries
 * exactly what a verifier will see (pki-facts.md).
 */
X509_CRL *ca_crl_build(X509 *ca_cert, EVP_PKEY *ca_key, const struct ca_crl_entry *entries,
                       size_t n, uint64_t number, long long this_update, long long next_update);
/* The crlNumber of a CRL: 0 when present, -1 when absent or too large. */
int ca_crl_number(const X509_CRL *crl, uint64_t *out);

/*
 * PEM encodings into a memory BIO that is wiped when freed (keys pass through it).
 * Return NULL on failure.
 */
BIO *ca_pem_cert(X509 *x);
BIO *ca_pem_key(EVP_PKEY *key);
BIO *ca_pem_crl(X509_CRL *crl);
/* PKCS#8 encrypted with AES-256-CBC under passphrase (key derived with PBKDF2). */
BIO *ca_pem_key_encrypted(EVP_PKEY *key, const char *passphrase);

/*
 * Reads a PKCS#10 request (PEM or DER) and returns its public key, after checking
 * that the request's signature verifies with it and that the key is of a supported
 * type and strength. Nothing else of the request is used.
 */
EVP_PKEY *ca_csr_public_key(const char *path);

#endif
