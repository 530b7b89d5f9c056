#ifndef SUBMITD_CA_LOG_H
#define SUBMITD_CA_LOG_H

/*
 * The record of CA operations (admin_log, append-only; ca_log is its view of them):
 * every submit-ca command that changes something or signs with the CA key writes one
 * row naming the Unix user that ran it (and SUDO_USER when it came through sudo),
 * what it did and to which certificate and user.
 */

struct db;

/*
 * Appends one row. serial and user may be NULL; detail is a printf format for
 * "key=value" words. Prints an error and returns -1 when the row is not written.
 */
int ca_log_record(struct db *db, const char *command, const char *serial, const char *user,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
