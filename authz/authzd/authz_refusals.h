#ifndef SUBMITD_AUTHZ_REFUSALS_H
#define SUBMITD_AUTHZ_REFUSALS_H

#include "db.h"

#include <time.h>

/*
 * A bound on the audit rows of refused identities per client address (DESIGN §3;
 * IPv6 addresses count per /64): every handshake would otherwise cost a database
 * write, and a scanner can do thousands a second. Within one window the first
 * REFUSAL_ROWS refusals from an address are written as usual; the rest are
 * counted, and when the window ends one row says how many there were, with the
 * last one's details. Nothing is dropped without a trace.
 */
#define REFUSAL_WINDOW 10      /* seconds */
#define REFUSAL_ROWS 50        /* rows per address and window before aggregation */

/* 1 when row (a refused identity) is to be written now, 0 when it was counted
 * into the address's summary instead. */
int refusal_admit(const struct db_audit *row, time_t now,
                  int (*write)(const struct db_audit *row));
/* Writes the summaries of windows that ended (all of them when flush_all). */
void refusal_flush(time_t now, int flush_all, int (*write)(const struct db_audit *row));

#endif
