#ifndef SUBMITD_CA_REVOKE_H
#define SUBMITD_CA_REVOKE_H

/* The revocation of one certificate, shared by revoke, renew and a failed issue. */

struct db;

/*
 * Revokes one certificate of the database (known to be valid) and records it in the
 * admin log, in one transaction; prints "revoked: ...". The CRL is the caller's to
 * rewrite. Returns 0 or -1.
 */
int ca_revoke_serial(struct db *db, const char *dbpath, const char *serial, const char *user,
                     int reason);

#endif
