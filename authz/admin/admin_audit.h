#ifndef SUBMITD_ADMIN_AUDIT_H
#define SUBMITD_ADMIN_AUDIT_H

/*
 * submit-admin audit: the audit trail filtered, as text with a header row, CSV
 * (RFC 4180, with a header row) or JSON; and audit prune, the one way rows leave it.
 */

struct db;
struct db_audit_filter;

enum admin_audit_format { AUDIT_TEXT, AUDIT_CSV, AUDIT_JSON };

/* Prints the rows the filter selects. Returns the exit status. */
int admin_audit_show(struct db *db, const struct db_audit_filter *f, enum admin_audit_format fmt);

/*
 * Deletes the rows before `before` (ISO-8601 UTC "YYYY-MM-DDTHH:MM:SSZ") and records
 * who did it, the range and the count in admin_log, in one transaction. Returns the
 * exit status.
 */
int admin_audit_prune(struct db *db, const char *before);

#endif
