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
/*
 * Group commit. The database writes of one turn of the event loop (audit rows, rate
 * records) are one transaction, opened by the first of them (batch_join), and the
 * turn's answers wait in memory. batch_end commits it, at most one sync for the whole
 * turn, then sends the answers in order; when the commit fails, every ALLOW among them
 * becomes a temporary failure, since it may rest on a row that was not written (the
 * accept row that a 250 waits for, the row of a granted identity).
 */
/* Opens the turn's transaction if it is not open yet. 0, or -1 (db_errmsg says); once
 * it failed, -1 at once until the turn ends. */
int batch_join(void);
/* The turn holds the accept row of a queued message: its commit must be durable
 * (db_commit) before its answers go. Other turns commit lazily (db_commit_lazy). */
void batch_need_durable(void);
/* Commits the turn's writes and sends its answers; m is scratch space. */
void batch_end(struct ipc_msg *m);
/*
 * Makes the lazy commits durable (db_sync) once the oldest has waited a second;
 * called once per turn of the loop, which waits at most the returned number of
 * milliseconds before the next call (-1: no limit, nothing waits to be synced).
 */
int batch_tick(void);
/* Makes the lazy commits durable now (on the way out). */
void batch_sync(void);
void batch_free(void);
/* Queues the answer to request req on chan for batch_end; fatal when it cannot be
 * sent then. */
void send_answer(int chan, uint64_t req, const struct answer *a, struct ipc_msg *m);

/* Writes one audit row into the turn's transaction. 0, or -1 (logged loudly). */
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
