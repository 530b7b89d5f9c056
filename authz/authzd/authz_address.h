#ifndef SUBMITD_AUTHZ_ADDRESS_H
#define SUBMITD_AUTHZ_ADDRESS_H

#include "authz_answer.h"

#include "ipc.h"

/*
 * The addresses a granted session uses, always for the user of authz's own grant:
 * the envelope sender (owned by the user, within the hourly rate limits), every
 * address of the header From (check_header_from), and the authorization identity
 * of AUTH EXTERNAL (the user's name or an address the user owns). Each refusal is
 * answered and audited here; the caller sends the answer.
 */
void handle_sender(struct ipc_msg *m, struct answer *a);
void handle_header_from(struct ipc_msg *m, struct answer *a);
void handle_authzid(struct ipc_msg *m, struct answer *a);

#endif
