#ifndef SUBMITD_ADMIN_H
#define SUBMITD_ADMIN_H

/*
 * What every part of submit-admin shares: its name and usage for messages (cli.h),
 * defined in submit-admin.c, and the report of a failed database call.
 */

#include "cli.h"
#include "db.h"

extern const struct cli_program admin_prog;

/* "submit-admin: <the database's last error>"; returns the failure exit status. */
static inline int admin_db_failed(struct db *db)
{
    cli_error(&admin_prog, "%s", db_errmsg(db));
    return CLI_EXIT_FAIL;
}

#endif
