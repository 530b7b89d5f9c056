#ifndef SUBMITD_CA_UTIL_H
#define SUBMITD_CA_UTIL_H

/*
 * Pure helpers of submit-ca: validation of names given on the command line, serial
 * and time formats, revocation reason names and the password alphabet.
 * Nothing here does I/O or touches OpenSSL, so every function is unit-tested.
 */

#include <stddef.h>

/* Longest values accepted on the command line. */
#define CA_USER_MAX 64        /* also the upper bound of an X.509 commonName */
#define CA_EMAIL_MAX 254
#define CA_HOSTNAME_MAX 253
#define CA_CN_MAX 64
#define CA_SERIAL_HEX_MAX 64  /* 32 bytes: RFC 5280 allows 20, we issue 16 */

/*
 * User names follow the database's rule (db_user_name_valid): at most CA_USER_MAX
 * bytes, safe as a file name (USER.crt) and as a certificate commonName.
 *
 * An address for a certificate is "local@domain" of printable ASCII without spaces,
 * commas, quotes, angle brackets or backslashes; the domain is a host name. At most
 * 254 bytes. (The database's own sender rule also allows "@domain": a certificate
 * names one mailbox.)
 */
int ca_valid_email(const char *addr);
/* A DNS host name: dot-separated labels of [A-Za-z0-9-], 1..63 bytes each, no
 * leading or trailing hyphen; a leading "*." label is allowed for wildcards. */
int ca_valid_hostname(const char *name);

/*
 * Canonical form of a serial number typed by a person: colons and spaces removed,
 * upper-case, leading zero bytes dropped, an even number of digits (the form
 * BN_bn2hex prints and the database stores). Returns 0, or -1 when the input is
 * not hexadecimal, is zero, or does not fit.
 */
int ca_serial_normalize(const char *in, char *out, size_t outlen);

/* RFC 5280 CRLReason codes; CA_REASON_NONE is "no such name". */
enum {
    CA_REASON_NONE = -1,
    CA_REASON_UNSPECIFIED = 0,
    CA_REASON_KEY_COMPROMISE = 1,
    CA_REASON_CA_COMPROMISE = 2,
    CA_REASON_AFFILIATION_CHANGED = 3,
    CA_REASON_SUPERSEDED = 4,
    CA_REASON_CESSATION_OF_OPERATION = 5,
    CA_REASON_CERTIFICATE_HOLD = 6,
    CA_REASON_REMOVE_FROM_CRL = 8,
    CA_REASON_PRIVILEGE_WITHDRAWN = 9,
    CA_REASON_AA_COMPROMISE = 10
};
/* Exact, case-sensitive RFC 5280 name ("keyCompromise") to code, or CA_REASON_NONE. */
int ca_reason_parse(const char *name);
/* Code to name; NULL for an unknown code. */
const char *ca_reason_name(int code);

/*
 * Parses "YYYY-MM-DDTHH:MM:SSZ" (the database's time format) into seconds since the
 * epoch. Returns 0 or -1.
 */
int ca_iso_parse(const char *s, long long *epoch);

/*
 * Turns random bytes into a password over an alphabet without look-alike characters
 * (no 0/O, 1/l/I). Bytes that would bias the choice are skipped. Writes len
 * characters and a terminator into out (outlen > len). Returns 0, or -1 when rnd ran
 * out before len characters were produced; the caller then retries with fresh bytes.
 */
int ca_password_from_bytes(const unsigned char *rnd, size_t rndlen, char *out, size_t outlen,
                           size_t len);

#endif
