#ifndef SUBMITD_SMTP_CMD_H
#define SUBMITD_SMTP_CMD_H

#include "session.h"

/*
 * Processes what waits in inbuf: complete command lines (and DATA) until input
 * runs out, the session must wait for an answer, or replies pile up. Replies go to
 * outbuf; nothing here reads or writes a socket.
 */
void session_input(struct session *s);

#endif
