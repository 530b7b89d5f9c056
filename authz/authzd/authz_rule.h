#ifndef SUBMITD_AUTHZ_RULE_H
#define SUBMITD_AUTHZ_RULE_H

#include "authz_cert.h"

/*
 * Rule maps (issue 14, docs/enterprise-pki.md): a verified certificate of an
 * enterprise CA that no certs row and no exact subject map names is mapped by the
 * rule of the CA of client_ca that issued it, through the field the rule names.
 * The caller has already made sure that the certificate is not one of our own CA's:
 * rules never apply to those.
 */

enum rule_outcome {
    RULE_NONE = 0,    /* no rule for the issuing CA: the certificate is unknown */
    RULE_USER,        /* user names the user the rule maps to (who may not exist) */
    RULE_REFUSED,     /* reply and reason say why */
    RULE_ERROR        /* database error: a temporary failure */
};

struct rule_answer {
    char user[128];
    char reply[256];      /* "535 5.7.8 Not authorized: <reason>" when RULE_REFUSED */
    char reason[768];     /* for the audit row: names the rule and the value used */
    char via[640];        /* "rule upn of <issuer>: <value>" once a rule applied */
};

enum rule_outcome rule_identity(const struct cert_result *cr, struct rule_answer *out);

#endif
