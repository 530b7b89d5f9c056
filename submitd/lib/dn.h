#ifndef SUBMITD_DN_H
#define SUBMITD_DN_H

#include <openssl/x509.h>
#include <stddef.h>

/*
 * Canonical distinguished names, for mapping certificates of other CAs to users
 * (DESIGN §5 "map add"). Two names are equal when their canonical strings are:
 * RDNs in RFC 4514 order (most specific first), attribute types as dotted OIDs,
 * values as UTF-8 with ASCII letters lower-cased, leading/trailing spaces removed
 * and inner runs of white space collapsed, as X.500 matching rules and OpenSSL's
 * own name comparison do. "CN=EXT-Alice, O=partner" and "cn=ext-alice,o=Partner"
 * are the same name; a CN alone never equals a full name.
 */

/* The name as RFC 2253 text, for logs and audit rows: control characters come out
 * escaped. "" when it cannot be printed. */
void dn_text(const X509_NAME *name, char *out, size_t outlen);

/* 0, or -1 when the name cannot be represented (too long, undecodable value). */
int dn_canon_name(const X509_NAME *name, char *out, size_t outlen);

/*
 * Parses an RFC 4514 string ("CN=a\,b,O=Example") into its canonical form.
 * Returns 0, or -1 with a reason naming the problem in err.
 */
int dn_canon_string(const char *rfc4514, char *out, size_t outlen, char *err, size_t errlen);

#endif
