/* The record of CA operations: who ran submit-ca, as which Unix user, and what it did. */
#include "ca_log.h"

#include "ca_msg.h"
#include "db.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ca_log_record(struct db *db, const char *command, const char *serial, const char *user,
                  const char *fmt, ...)
{
    struct db_admin_log e;
    struct db_actor who;
    char detail[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);

    memset(&e, 0, sizeof(e));
    db_actor_get(&who);
    db_actor_fill(&e, &who, "submit-ca");
    e.command = command;
    e.target = serial != NULL ? serial : user;
    e.details = detail;
    e.user = user;
    e.serial = serial;
    if (db_admin_log_insert(db, &e) != DB_OK) {
        ca_err("cannot record \"%s\" in admin_log: %s", command, db_errmsg(db));
        return -1;
    }
    return 0;
}
