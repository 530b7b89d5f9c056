/*
 * The admin log as submit-ca writes it (ca_log_record: who ran which command, as
 * which Unix user) and reads it (submit-ca log).
 */
#include "ca_cmd.h"

#include "ca_log.h"
#include "ca_msg.h"
#include "cli_db.h"
#include "cli_out.h"
#include "db.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ca_log_record(struct db *db, const char *command, const char *serial, const char *user,
                  const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cli_log_vrecord(db, "submit-ca", command, serial != NULL ? serial : user, user, serial,
                         fmt, ap);
    va_end(ap);
    if (rc != 0)
        ca_err("cannot record \"%s\" in admin_log: %s", command, db_errmsg(db));
    return rc;
}

/* ---- submit-ca log --------------------------------------------------------------- */

struct log_state {
    int json;
    size_t count;
};

static int log_cb(void *arg, const struct db_ca_log_row *r)
{
    struct log_state *ls = arg;
    char ts[DB_TIME_TEXT_LEN];

    db_stamp_text(&r->ts, ts, sizeof(ts));
    if (ls->json) {
        printf("%s{\"id\":%lld", ls->count ? ",\n  " : "  ", r->id);
        cli_json_member(stdout, "ts", ts, 0);
        printf(",\"uid\":%lld", r->uid);
        cli_json_member(stdout, "unix_user", r->unix_user, 0);
        cli_json_member(stdout, "sudo_user", r->sudo_user, 0);
        cli_json_member(stdout, "command", r->command, 0);
        cli_json_member(stdout, "serial", r->serial, 0);
        cli_json_member(stdout, "user", r->user, 0);
        cli_json_member(stdout, "detail", r->detail, 0);
        printf("}");
    } else {
        char who[160];

        if (r->sudo_user[0] != '\0')
            str_fmt(who, sizeof(who), "%s(sudo:%s)", r->unix_user, r->sudo_user);
        else
            str_lcpy(who, r->unix_user, sizeof(who));
        printf("%-24s  %-20s  %-11s  %-32s  %-16s  %s\n", ts, who, r->command,
               r->serial[0] ? r->serial : "-", r->user[0] ? r->user : "-", r->detail);
    }
    ls->count++;
    return 0;
}

int ca_cmd_log(const struct config *cfg, const struct ca_opts *o)
{
    struct log_state ls;
    struct db *db;
    int r;

    memset(&ls, 0, sizeof(ls));
    ls.json = o->json;
    if ((db = cli_db_open(&ca_prog, cfg, NULL)) == NULL)
        return 1;
    if (ls.json)
        printf("[\n");
    else
        printf("%-24s  %-20s  %-11s  %-32s  %-16s  %s\n", "TIME", "RUN_BY", "COMMAND", "SERIAL",
               "USER", "DETAIL");
    r = db_ca_log_list(db, o->user, o->serial[0] ? o->serial : NULL, log_cb, &ls);
    if (ls.json)
        printf("%s]\n", ls.count ? "\n" : "");
    if (r == DB_ERROR)
        ca_err("cannot read ca_log: %s", db_errmsg(db));
    db_close(db);
    return r == DB_ERROR ? 1 : 0;
}
