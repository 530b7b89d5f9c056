#ifndef SUBMITD_SMTP_DATA_H
#define SUBMITD_SMTP_DATA_H

#include "ipc_codec.h"
#include "session.h"

/*
 * DATA (DESIGN §3.8, §3.9): the envelope goes to the queue, which hands back a
 * file; the message streams into it behind the headers we add (Received, and
 * Message-ID/Date when missing); the header From is checked by authz; the file is
 * committed, and the 250 waits for the queue and for the accept audit row.
 */

void data_cmd(struct session *s, const char *arg);
/* Consumes message bytes from inbuf (state SS_DATA). */
void data_input(struct session *s);

/* The queue's answers: the file (fd, or -1) and the commit. */
void data_on_opened(struct session *s, int status, const char *qid, const char *why, int fd);
void data_on_committed(struct session *s, int status, const char *qid, const char *why);

#endif
