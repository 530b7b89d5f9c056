#ifndef SUBMITD_ADMIN_LOG_H
#define SUBMITD_ADMIN_LOG_H

/*
 * submit-admin's side of the admin log (DESIGN §7 admin_log): every change it makes
 * is recorded, in the transaction of the change when the change is in the database,
 * so that no change is left without its row; and `submit-admin log` prints them.
 */

struct db;

/*
 * Appends one row for program submit-admin, naming the person who runs it (uid,
 * SUDO_USER). target, user and serial may be NULL; details is a printf format for
 * "key=value" words. Prints an error and returns -1 when the row is not written.
 */
int admin_log_record(struct db *db, const char *command, const char *target, const char *user,
                     const char *serial, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/*
 * submit-admin log: rows at or after since (ISO-8601 UTC, or NULL), about or by user
 * (or NULL); a header row and tab-separated columns, or a JSON array. Exit status.
 */
int admin_log_show(struct db *db, const char *since, const char *user, int json);

#endif
