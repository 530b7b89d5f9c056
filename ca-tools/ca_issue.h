#ifndef SUBMITD_CA_ISSUE_H
#define SUBMITD_CA_ISSUE_H

/* The issuing of a client certificate, shared by issue and renew. */

#include "ca_cmd.h"

#include <stddef.h>

struct db;

/*
 * No silent surprises: a second valid certificate for a user (issue only), or an
 * address that another user owns, must be asked for (--add, --shared). command is
 * "issue" or "renew". Returns 0 when issuing may go on, else 1 after naming what is
 * in the way.
 */
int ca_issue_check(struct db *db, const struct ca_opts *o, const char *command);

/*
 * Everything of issuing once the database is open and the CA loaded: key (unless
 * --csr), certificate, files, database rows, printout. command ("issue", "renew")
 * names the operation in the admin log. serial_out, when not NULL, receives the new
 * certificate's serial. Returns the exit status.
 */
int ca_issue_with_db(const struct config *cfg, const struct ca_opts *o, struct db *db,
                     const struct ca_authority *ca, const char *command, char *serial_out,
                     size_t serial_outlen);

#endif
