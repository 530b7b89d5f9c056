#ifndef SUBMITD_CA_MSG_H
#define SUBMITD_CA_MSG_H

/*
 * Messages of submit-ca: one line on stderr, prefixed "submit-ca: ", naming the
 * file, user or serial at fault. Functions that fail print their message and return
 * -1 (or NULL); callers only decide the exit status.
 */

#include "cli.h"

/* submit-ca for the shared command-line helpers (cli.h), defined in submit-ca.c. */
extern const struct cli_program ca_prog;

void ca_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ca_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Like ca_err, followed by ": " and the reason of the last OpenSSL error; clears the
 * OpenSSL error queue. */
void ca_err_ssl(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
