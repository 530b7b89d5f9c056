#ifndef SUBMITD_AUTHZ_ANSWER_H
#define SUBMITD_AUTHZ_ANSWER_H

#include "authz_grant.h"
#include "db.h"
#include "ipc.h"

#include <stdint.h>

/*
 * What every handler of the authz process needs: the tri-state answer sent back on
 * a channel, the audit row's identity columns (always authz's own knowledge of the
 * session, never what smtp claims), and whether a session may relay.
 */

#define TEMPFAIL_REPLY "454 4.7.0 Temporary authentication failure"

struct answer {
    int decision;
    char user[IPC_USER_MAX];
    char reply[IPC_REPLY_MAX];
    uint64_t rcpt_budget;   /* recipients the user may still send to; UINT64_MAX: no limit */
};

void answer_set(struct answer *a, int decision, const char *reply);
/* "accept", "reject" or "tempfail": the audit table's word for a decision. */
const char *decision_word(int decision);
/* Sends the answer to request req on chan; fatal when it cannot. */
void send_answer(int chan, uint64_t req, const struct answer *a, struct ipc_msg *m);

/* Writes one audit row. 0, or -1 (logged loudly). */
int write_audit(const struct db_audit *row);
/* An optional text column: NULL for "" or NULL. */
#define OPT(s) ((s) != NULL && (s)[0] ? (s) : NULL)
/* The identity columns of an audit row, from the session's record. */
void row_identity(struct db_audit *row, const struct grant *g);

/* May this session relay, under auth_password (DESIGN §3.5)? */
int may_relay(const struct grant *g);
/* The session's record, or stand_in made to name the session: audit rows about a
 * session authz does not know (it ended, or was never granted) still carry its id. */
struct grant *grant_or_stand_in(const char *session, struct grant *stand_in);

#endif
