#ifndef SUBMITD_SMTP_SASL_H
#define SUBMITD_SMTP_SASL_H

#include "ipc_codec.h"
#include "session.h"

/*
 * AUTH (RFC 4954): EXTERNAL for the certificate's identity, PLAIN with a password
 * checked by authz when auth_password allows it (DESIGN §3.5).
 */

#define SASL_EXTERNAL 0x1
#define SASL_PLAIN 0x2

/* The mechanisms EHLO advertises now: the one rule for EHLO and AUTH. */
unsigned sasl_offered(const struct session *s);
/* The AUTH command, and the response line a 334 asked for. */
void sasl_cmd_auth(struct session *s, const char *arg);
void sasl_response(struct session *s, const char *line);
/* authz's answers to a password and to an authorization identity. */
void sasl_on_password(struct session *s, const struct ipc_result *r);
void sasl_on_authzid(struct session *s, const struct ipc_result *r);

#endif
