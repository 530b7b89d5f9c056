#ifndef SUBMITD_AUTHZ_ADDRESS_H
#define SUBMITD_AUTHZ_ADDRESS_H

#include "authz_answer.h"

#include "ipc.h"
#include "ipc_codec.h"

/*
 * The addresses a granted session uses, always for the user of authz's own grant:
 * the envelope sender (owned by the user, within the hourly rate limits), every
 * address of the header From (check_header_from), and the authorization identity
 * of AUTH EXTERNAL (the user's name or an address the user owns). Each refusal is
 * answered and audited here; the caller sends the answer.
 */
void handle_sender(struct ipc_msg *m, struct answer *a);
/* check_header_from, when the queue asks to record a message: 1 when g's user owns
 * every address of from (none: nothing to check), else 0 with the refusal (DENY,
 * or TEMPFAIL when the database cannot tell) answered in a and audited. */
int header_from_owned(const struct grant *g, const struct ipc_header_from *from,
                      struct answer *a);
void handle_authzid(struct ipc_msg *m, struct answer *a);

#endif
