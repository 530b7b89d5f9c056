/* The administration tools' database opener and admin-log writer (cli_db.h). */
#include "cli_db.h"

#include "cli.h"
#include "config.h"
#include "db.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

int cli_config_load(const struct cli_program *p, struct config *cfg, const char *path)
{
    char err[PATH_MAX + 512];

    if (config_load(cfg, path, err, sizeof(err)) != 0) {
        cli_error(p, "%s", err);
        return -1;
    }
    return 0;
}

struct db *cli_db_open(const struct cli_program *p, const struct config *cfg, const char *what)
{
    char err[PATH_MAX + 512];
    struct db *db = db_open(cfg->database, err, sizeof(err));

    if (db == NULL && what != NULL)
        cli_error(p, "%s: %s", what, err);
    else if (db == NULL)
        cli_error(p, "%s", err);
    return db;
}

int cli_log_vrecord(struct db *db, const char *program, const char *command, const char *target,
                    const char *user, const char *serial, const char *fmt, va_list ap)
{
    struct db_admin_log e;
    struct db_actor who;
    char details[1024];

    vsnprintf(details, sizeof(details), fmt, ap);
    memset(&e, 0, sizeof(e));
    db_actor_get(&who);
    db_actor_fill(&e, &who, program);
    e.command = command;
    e.target = target;
    e.details = details;
    e.user = user;
    e.serial = serial;
    return db_admin_log_insert(db, &e) == DB_OK ? 0 : -1;
}
