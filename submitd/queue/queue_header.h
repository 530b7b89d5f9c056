#ifndef SUBMITD_QUEUE_HEADER_H
#define SUBMITD_QUEUE_HEADER_H

#include "ipc_codec.h"

#include <stddef.h>
#include <stdint.h>

/*
 * The header From of a committed message, read from its spool file for
 * check_header_from.
 *
 * authz refuses a message unless the session's user owns every address of its From
 * field. The addresses are read here, from the message as it was committed, rather
 * than taken from the smtp process's word: a compromised smtp could leave out an
 * address that no user owns. smtp reads the field first with the same parsers
 * (smtp_parse.h), to refuse an unreadable one with its own reply; for an honest smtp
 * both readings agree.
 *
 * fd is the spool file, body_off where its BODY records start (after the envelope),
 * which the caller has checked: only BODY records, within the file. max_header is
 * the most the header section may hold, the fields smtp adds included. Returns 0
 * with the addresses in *from (none when the message has no From field), or -1 with
 * why: more than one From field, one that cannot be read whole, a header section
 * longer than max_header, or a read error.
 */
int queue_header_from(int fd, uint64_t body_off, size_t max_header,
                      struct ipc_header_from *from, char *why, size_t whylen);

#endif
