#ifndef SUBMITD_CRL_CHECK_H
#define SUBMITD_CRL_CHECK_H

#include <openssl/x509.h>
#include <stddef.h>
#include <time.h>

/*
 * The one reading of the CRL file (`crl`) against the client CAs (`client_ca`).
 * `submitd -t` (the master) and the authz process at run time both use it, so they
 * cannot disagree about which CA a CRL belongs to, whether its signature holds,
 * whether it is current, which CA has no CRL, or which of two CRLs is the newer.
 * What each caller then says and does about it stays its own: -t prints problems
 * and warnings, authz loads the CRLs into its store and logs.
 *
 * A CRL belongs to the first certificate of client_ca whose subject is the CRL's
 * issuer name (compared as names, as OpenSSL's own lookup does); its signature must
 * verify with that certificate's key. Nothing here prints or logs.
 */

/* The certificates of the PEM bundle at path (client_ca), in file order. NULL when
 * the file cannot be read (*why = CRL_CAS_UNREADABLE) or holds no certificate
 * (CRL_CAS_EMPTY); OpenSSL's error queue then says more, and is the caller's to
 * clear. Free with sk_X509_pop_free(cas, X509_free). */
#define CRL_CAS_UNREADABLE 1
#define CRL_CAS_EMPTY 2
STACK_OF(X509) *crl_cas_load(const char *path, int *why);

/* The index in cas of the CA that issued c (by name), or -1. cas may be NULL. */
int crl_issuer_index(const STACK_OF(X509) *cas, const X509_CRL *c);

enum crl_state {
    CRL_GOOD = 0,          /* issued by a client CA, whose key verifies its signature */
    CRL_FOREIGN,           /* its issuer is not in client_ca */
    CRL_BAD_SIGNATURE      /* its issuer is in client_ca, but the signature is not its */
};

/* One CRL of the file, as examined against the client CAs. */
struct crl_entry {
    X509_CRL *crl;
    int ca;                    /* index of the issuer in cas, -1: not a client CA's */
    int state;                 /* enum crl_state */
    long long last_update;     /* seconds since the epoch; 0 when it cannot be read */
    long long next_update;     /* 0 when the CRL has none (or it cannot be read) */
};

/* Every CRL of the file, in file order. */
struct crl_bundle {
    struct crl_entry *crls;
    int n;
    /* One flag per certificate of cas: 1 when a CRL in the file names it as its
     * issuer (whatever its signature or dates). A CA without one has its users'
     * certificates refused with a temporary failure while CRLs are checked. */
    unsigned char *ca_named;
    int ncas;
};

/*
 * Reads every PEM CRL of path and examines each against cas (NULL: no client CA).
 * Reading stops at the first block that is not a PEM CRL, as OpenSSL's readers do.
 * 0 (b->n may be 0), or -1 with err when the file cannot be opened or read.
 */
int crl_bundle_read(const char *path, const STACK_OF(X509) *cas, struct crl_bundle *b,
                    char *err, size_t errlen);
void crl_bundle_free(struct crl_bundle *b);

/* How the dates of a CRL stand at now (flags). */
#define CRL_EXPIRED       0x1  /* nextUpdate is now or past: OpenSSL refuses the CRL */
#define CRL_EXPIRES_SOON  0x2  /* not expired, but nextUpdate is at most `soon` s away */
#define CRL_NOT_YET_VALID 0x4  /* lastUpdate is still to come (a clock problem) */

/* The flags for lastUpdate `last` and nextUpdate `next` (epoch seconds; 0: none). */
int crl_time_flags(long long last, long long next, time_t now, long long soon);

/* An ASN1_TIME as seconds since the epoch, 0 when it is absent or unreadable. */
long long crl_asn1_epoch(const ASN1_TIME *t);

/*
 * Orders two CRLs of one issuer (RFC 5280 5.2.3: crlNumber increases with every
 * CRL): by crlNumber when both have one, else by lastUpdate. Returns < 0 when a is
 * older than b, 0 when they are the same version, > 0 when a is newer; da and db
 * (len bytes each) receive "crlNumber N" or "lastUpdate DATE" for the log.
 */
int crl_order(X509_CRL *a, X509_CRL *b, char *da, char *db, size_t len);

/*
 * Verification errors (X509_V_ERR_*) that say nothing about the certificate, only
 * that its CA's CRL is not usable (missing, expired, not yet valid, badly signed):
 * a temporary failure, never a refusal. crl_verify_problem gives the words that the
 * audit rows and the log use for one ("crl unavailable", "crl expired", ...).
 */
int crl_verify_error_is_crl(int code);
const char *crl_verify_problem(int code);

#endif
