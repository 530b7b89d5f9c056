#ifndef SUBMITD_QUEUE_CONTENT_H
#define SUBMITD_QUEUE_CONTENT_H

#include "ipc_codec.h"

#include <stddef.h>
#include <stdint.h>

/*
 * What the queue checks in a committed spool file, in one pass over it. smtp wrote
 * the message through a descriptor the queue handed it and is assumed compromised,
 * so nothing smtp checked is taken on its word:
 * - the envelope records are the ones the queue wrote;
 * - only BODY records follow, none empty, each within the file and SPOOL_REC_MAX,
 *   and their bytes add up to the size smtp announced;
 * - the message holds no NUL, and every CR and LF belongs to a CRLF, as smtp
 *   required of the client: a bare one could make a later reader find a line (a
 *   From field, the end of the data) that neither check below nor authz saw;
 * - with want_from (check_header_from), the addresses of the From field, read with
 *   the parsers smtp uses (smtp_parse.h). smtp reads the field first, to refuse an
 *   unreadable one with its own reply; for an honest smtp both readings agree, and
 *   authz checks the queue's.
 */
struct content_check {
    const unsigned char *env;    /* the envelope records as the queue wrote them */
    size_t env_len;
    uint64_t size;               /* the BODY bytes smtp announced */
    size_t max_header;           /* the most the header section may hold, with the
                                    fields smtp adds */
    int want_from;
    struct ipc_header_from from; /* out: none when the message has no From field */
};

/*
 * Returns 0 when the file passes (c->from filled when wanted), or -1 with why: the
 * first thing found wrong, or a read error. A malformed From field (more than one,
 * or one that cannot be read whole) or a header section longer than max_header is
 * "header From is malformed: ..." or says so.
 */
int queue_content_check(int fd, struct content_check *c, char *why, size_t whylen);

#endif
