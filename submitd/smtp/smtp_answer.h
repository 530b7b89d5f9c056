#ifndef SUBMITD_SMTP_ANSWER_H
#define SUBMITD_SMTP_ANSWER_H

#include "session.h"

/*
 * Answers of authz and queue to a session's requests (smtp_req.h). Every answer is
 * validated; a malformed one, or one the session did not wait for, is fatal
 * (DESIGN §2: messages between our own processes are hostile input).
 */

enum answer_next {
    ANSWER_RESUME = 0,  /* go on with the session: its input, its replies */
    ANSWER_CLOSE        /* the client had left: the session is over */
};
enum answer_next session_answer(struct session *s, struct ipc_msg *m);

/*
 * An answer for a session that is gone. It is validated all the same; a queue file
 * opened for it is closed, and 1 is returned with m now holding the abort to send
 * to the queue (0: nothing to send).
 */
int session_answer_orphan(struct ipc_msg *m);

#endif
