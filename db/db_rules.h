#ifndef SUBMITD_DB_RULES_H
#define SUBMITD_DB_RULES_H
/*
 * What every backend of db.h computes the same way, so that two backends cannot
 * disagree on it: the words a certificate status is stored as, the minutes of the
 * rate window, and the text form of stored times. For db/ only; callers use db.h.
 */
#include "db.h"

#include <stddef.h>
#include <stdint.h>

/* DB_OK with *out for "valid" or "revoked"; DB_ERROR for anything else. */
int db_cert_status_parse(const char *name, enum cert_status *out);

/* DB_OK with *out for a word of db_rule_field_name(); DB_ERROR for anything else. */
int db_rule_field_parse(const char *name, enum db_rule_field *out);
/* db_device_seen rewrites a device last seen before this time (an hour before now). */
int64_t db_device_rewrite_before(int64_t now);

/*
 * Rate usage is counted per user and minute (Unix time / 60). A check sums the last
 * sixty minutes, the current one included; minutes older than two hours are no use
 * to any window and are dropped now and then (every ten minutes of the clock).
 */
int64_t db_rate_minute(int64_t now);
/* The window of now is every minute after this one. */
int64_t db_rate_window_after(int64_t now);
/* Whether a record at now should also drop old minutes, and which: those before. */
int db_rate_prune_due(int64_t now);
int64_t db_rate_prune_before(int64_t now);

/*
 * Stored times are ISO-8601 UTC text: "YYYY-MM-DDTHH:MM:SSZ" for certificates and
 * users, with milliseconds ("...:SS.mmmZ") for the rows the database stamps itself.
 * The 19 characters "YYYY-MM-DDTHH:MM:SS" of a time compare with both as strings:
 * a row at or after them is in the same second or later.
 */
#define DB_ISO_LEN 32
/* "YYYY-MM-DDTHH:MM:SSZ" into out; "" when t is out of range. */
void db_time_iso(int64_t t, char out[DB_ISO_LEN]);
/* The 19-character prefix of t, for comparing with stored times. */
void db_time_key(int64_t t, char out[DB_ISO_LEN]);
/* Parses a stored time, milliseconds optional; DB_OK or DB_ERROR. */
int db_time_parse(const char *s, struct db_stamp *out);
/*
 * A stored time into *out (out may be NULL), with sec DB_TIME_NONE and msec 0 when
 * s is NULL, "" or not a time.
 */
void db_stamp_or_none(const char *s, struct db_stamp *out);
/*
 * The bound of an audit prune: "YYYY-MM-DDTHH:MM:SS.000Z", the first instant of the
 * second of before, since audit rows carry milliseconds. DB_ERROR when before is
 * DB_TIME_NONE or out of range.
 */
int db_prune_key(int64_t before, char key[DB_ISO_LEN]);

#endif
