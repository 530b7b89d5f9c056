#ifndef SUBMITD_AUTHZ_CERT_H
#define SUBMITD_AUTHZ_CERT_H

#include "cert_field.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct config;

/*
 * Client certificate verification in the authz process (DESIGN §3.4). The smtp
 * process only relays the chain the client sent; it is verified here, against the
 * configured client CAs only (never the system store) and the CRL, for full and
 * resumed TLS sessions alike:
 *   - chain to a CA of client_ca, validity dates, CRL (a revoked certificate is
 *     refused; a CA without a CRL in `crl`, or an expired CRL, is a temporary
 *     failure that names the issuer);
 *   - an extendedKeyUsage extension that includes clientAuth (a certificate
 *     without the extension is refused: OpenSSL's purpose check lets it pass);
 *   - keys and signatures at OpenSSL security level 2 (RSA/DSA/DH >= 2048 bits,
 *     ECC >= 224 bits, no SHA-1 or MD5 signatures);
 *   - no NUL or control character in any attribute of the names or any e-mail,
 *     DNS or URI alternative name of the certificates sent.
 */

enum cert_verdict {
    CERT_NONE = 0,      /* the client sent no certificate */
    CERT_OK,            /* verified: sha256, names and canonical names are set */
    CERT_REJECTED,      /* permanently refused: reason */
    CERT_UNCHECKABLE    /* cannot be decided now (CRL missing or stale): reason */
};

struct cert_result {
    int verdict;                 /* enum cert_verdict */
    char reason[256];            /* short, for the SMTP reply: "expired", "revoked"... */
    char detail[512];            /* for the audit row and the log */
    char sha256[65];             /* of the leaf's DER; set whenever it could be decoded */
    char subject[512];           /* RFC 2253, control characters escaped */
    char issuer[512];
    char subject_canon[1024];    /* dn.h canonical forms, for subject maps */
    char issuer_canon[1024];
    /* Set with CERT_OK only: */
    char serial[80];             /* the leaf's, upper-case hex */
    int64_t not_after;
    /*
     * The certificate of client_ca that issued the leaf in the verified chain (never
     * one the client sent that is not in client_ca): its SHA-256 and canonical
     * subject; both "" when the leaf's issuer is not itself in client_ca.
     */
    char ca_sha256[65];
    char ca_canon[1024];
    /* Every field a rule map may read (cert_field.h), with what was found. */
    char field_value[CERT_FIELD_COUNT][CERT_FIELD_SIZE];
    unsigned char field_status[CERT_FIELD_COUNT];   /* enum cert_field_status */
};

/* Loads client_ca and the CRL (as root, at start-up). 0, or -1 with err. */
int cert_init(const struct config *cfg, char *err, size_t errlen);
/* At a reload: client_ca and the CRL again, from cfg. On failure the running
 * ones stay, and err says why. Sessions already verified keep their grants. */
int cert_reload(const struct config *cfg, char *err, size_t errlen);
/*
 * Looks at the CRL file at most once per second and reloads it when it changed;
 * warns as its nextUpdate approaches. A CRL that cannot be loaded leaves the
 * previous one in use, and says so.
 */
void cert_tick(time_t now);
/* Verifies the chain (DER, leaf first; n 0: no certificate). */
void cert_verify(const unsigned char *const *der, const size_t *len, int n,
                 struct cert_result *out);
void cert_free(void);

#endif
