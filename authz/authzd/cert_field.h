#ifndef SUBMITD_CERT_FIELD_H
#define SUBMITD_CERT_FIELD_H

#include <openssl/x509.h>
#include <stddef.h>

/*
 * The field of a client certificate that a rule map of an enterprise CA reads the
 * user from (issue 14: certificates an MDM enrolls over SCEP). This module only
 * reads one already verified leaf certificate and judges the value it finds; the
 * chain, the CRL, the database and PAM are decided elsewhere. It does no I/O and
 * keeps no state, so every case is a unit test (tests/unit/test_cert_field.c).
 *
 * The fields, by the name a rule gives them (`--field`):
 *   email      the subject's emailAddress attribute (PKCS #9, 1.2.840.113549.1.9.1)
 *   san-email  an rfc822Name of the subjectAltName extension
 *   upn        an otherName of the subjectAltName with the Microsoft user principal
 *              name type 1.3.6.1.4.1.311.20.2.3, whose value is a UTF8String
 *   cn         the subject's commonName attribute
 *
 * A value is taken only when it is unambiguous and clean: exactly one value of the
 * field in the certificate (a second one, even an equal one, is a refusal: the
 * certificate does not say which user it is for), valid UTF-8 once decoded (single
 * byte string types must be 7-bit ASCII, since OpenSSL would otherwise read them
 * as Latin-1), no C0 or C1 control character and no DEL, not empty (an empty value
 * is a missing one), at most CERT_FIELD_MAX bytes. The e-mail fields and the UPN
 * must look like "local@domain": one '@', with something on both sides.
 *
 * Then the rule's domain options, compared case-insensitively (ASCII), with the
 * domain being the part after the value's '@':
 *   --require-domain D   a value in another domain, or a cn without a domain, is
 *                        refused;
 *   --strip-domain D     a value in domain D loses its "@D"; any other value is
 *                        kept whole (give --require-domain too to refuse those).
 *
 * Refusal reasons are short, stable strings: they go into the audit row and into
 * the reply "535 5.7.8 Not authorized: <reason>", and tests and admins match on
 * them. With <field> one of the names above, they are exactly:
 *   certificate <field> missing
 *   certificate <field> appears more than once
 *   certificate <field> has a control character
 *   certificate <field> badly encoded
 *   certificate <field> too long
 *   certificate <field> not an address
 *   certificate <field> outside the required domain
 * e.g. "certificate upn missing", "certificate san-email appears more than once".
 */

/* The longest value taken, in bytes of UTF-8: the longest forward path of RFC 5321
 * without its angle brackets. */
#define CERT_FIELD_MAX 254
#define CERT_FIELD_SIZE (CERT_FIELD_MAX + 1)
/* The longest domain a rule may name (RFC 1035). */
#define CERT_FIELD_DOMAIN_MAX 253

/* The object identifier of the user principal name otherName. */
#define CERT_FIELD_UPN_OID "1.3.6.1.4.1.311.20.2.3"

enum cert_field {
    CERT_FIELD_EMAIL = 0,
    CERT_FIELD_SAN_EMAIL,
    CERT_FIELD_UPN,
    CERT_FIELD_CN,
    CERT_FIELD_COUNT
};

/* What was found; each value but CERT_FIELD_OK is one of the reasons above. */
enum cert_field_status {
    CERT_FIELD_OK = 0,
    CERT_FIELD_MISSING,
    CERT_FIELD_TWICE,        /* more than one value of the field */
    CERT_FIELD_CONTROL,      /* NUL, another C0 or C1 control character, or DEL */
    CERT_FIELD_ENCODING,     /* not valid UTF-8, 8-bit bytes in an ASCII type, a UPN
                              * that is not a UTF8String, an unreadable extension */
    CERT_FIELD_TOO_LONG,
    CERT_FIELD_NOT_ADDRESS,  /* an e-mail field or UPN that is not local@domain */
    CERT_FIELD_DOMAIN,       /* not in the domain of --require-domain */
    CERT_FIELD_STATUS_COUNT
};

/* A rule's options; NULL or "" for an option not given. */
struct cert_field_rule {
    enum cert_field field;
    const char *strip_domain;
    const char *require_domain;
};

/* The field named by a rule ("email", "san-email", "upn", "cn"; exact, lower case).
 * 0, or -1 for any other name. */
int cert_field_parse(const char *name, enum cert_field *out);
/* The name of a field, as cert_field_parse() takes it; "?" for an invalid value. */
const char *cert_field_name(enum cert_field f);
/* 1 when domain can be the value of --strip-domain or --require-domain: 1 to
 * CERT_FIELD_DOMAIN_MAX bytes of non-empty dot-separated labels of letters, digits
 * and '-' (internationalised domains in their xn-- form), else 0. */
int cert_field_domain_valid(const char *domain);

/*
 * Reads field f of leaf into out (CERT_FIELD_SIZE bytes, NUL-terminated). Returns
 * CERT_FIELD_OK with the value, or the refusal with out empty.
 */
enum cert_field_status cert_field_get(const X509 *leaf, enum cert_field f, char *out);

/*
 * Applies the domain options of rule to value (already taken by cert_field_get for
 * rule->field) and writes what the rule maps: the value itself or its local part.
 * out has CERT_FIELD_SIZE bytes. Returns CERT_FIELD_OK, or CERT_FIELD_DOMAIN or
 * CERT_FIELD_NOT_ADDRESS with out empty.
 */
enum cert_field_status cert_field_domain(const char *value, const struct cert_field_rule *rule,
                                         char *out);

/*
 * Both steps for a rule: value gets the field as found (for the audit row, empty
 * when it could not be taken) and mapped what the rule maps. Both have
 * CERT_FIELD_SIZE bytes.
 */
enum cert_field_status cert_field_apply(const X509 *leaf, const struct cert_field_rule *rule,
                                        char *value, char *mapped);

/* The reason for a refusal of field f (see above); "" for CERT_FIELD_OK, "?" for
 * values out of range. The strings are constant. */
const char *cert_field_reason(enum cert_field f, enum cert_field_status s);

#endif
