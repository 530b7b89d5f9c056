#ifndef SUBMITD_CLI_DB_H
#define SUBMITD_CLI_DB_H

/*
 * The database as the administration tools open it, and the record of who changed
 * what (admin_log). This is the only module of submitd/lib that uses db.h: only the
 * tools link it (lib.a is an archive, so the daemon's processes, which never call it,
 * do not pull it in).
 */

#include <stdarg.h>

struct cli_program;
struct config;
struct db;

/*
 * Loads the configuration at path into cfg; prints "<program>: <problem>" and returns
 * -1 when it cannot be used.
 */
int cli_config_load(const struct cli_program *p, struct config *cfg, const char *path);

/*
 * Opens the configured database (created and migrated when new). On failure prints
 * "<program>: <problem>", or "<program>: <what>: <problem>" when what is not NULL,
 * and returns NULL.
 */
struct db *cli_db_open(const struct cli_program *p, const struct config *cfg, const char *what);

/*
 * Appends one row to the admin log for program, naming the person who runs it (uid,
 * SUDO_USER). target, user and serial may be NULL; details is formatted from fmt and
 * ap ("key=value" words). Returns 0, or -1 (the reason in db_errmsg) when the row is
 * not written; the caller says so in its own words.
 */
int cli_log_vrecord(struct db *db, const char *program, const char *command, const char *target,
                    const char *user, const char *serial, const char *fmt, va_list ap)
    __attribute__((format(printf, 7, 0)));

#endif
