/* The admin log as submit-admin writes and prints it (admin_log.h). */
#include "admin_log.h"

#include "cli_db.h"
#include "cli_out.h"
#include "db.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PROG "submit-admin"

int admin_log_record(struct db *db, const char *command, const char *target, const char *user,
                     const char *serial, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = cli_log_vrecord(db, PROG, command, target, user, serial, fmt, ap);
    va_end(ap);
    if (rc != 0)
        fprintf(stderr, PROG ": %s: not done, it could not be recorded in admin_log: %s\n",
                command, db_errmsg(db));
    return rc;
}

struct show_state {
    int json;
    int rows;
};

static int print_plain(void *arg, const struct db_admin_log_row *r)
{
    char ts[DB_TIME_TEXT_LEN];
    const char *cols[] = { db_stamp_text(&r->ts, ts, sizeof(ts)), r->login, r->program,
                           r->command, r->target, r->details };
    struct show_state *ss = arg;

    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
        if (i > 0)
            putchar('\t');
        cli_plain_field(stdout, cols[i]);
    }
    putchar('\n');
    ss->rows++;
    return 0;
}

static int print_json(void *arg, const struct db_admin_log_row *r)
{
    struct show_state *ss = arg;
    char ts[DB_TIME_TEXT_LEN];

    fputs(ss->rows ? ",\n" : "\n", stdout);
    printf("{\"id\":%lld", r->id);
    cli_json_member(stdout, "ts", db_stamp_text(&r->ts, ts, sizeof(ts)), 0);
    printf(",\"uid\":%lld", r->uid);
    cli_json_member(stdout, "login", r->login, 0);
    cli_json_member(stdout, "program", r->program, 0);
    cli_json_member(stdout, "command", r->command, 0);
    cli_json_member(stdout, "target", r->target, 0);
    cli_json_member(stdout, "details", r->details, 0);
    cli_json_member(stdout, "user", r->user, 0);
    cli_json_member(stdout, "serial", r->serial, 0);
    fputs("}", stdout);
    ss->rows++;
    return 0;
}

int admin_log_show(struct db *db, const char *since, const char *user, int json)
{
    struct show_state ss = { json, 0 };
    long long from = DB_TIME_NONE;
    int rc;

    if (since != NULL && iso_time_parse(since, &from) != 0) {
        fprintf(stderr, PROG ": log: --since %s: expected an ISO-8601 UTC time\n", since);
        return 1;
    }
    if (json) {
        fputs("[", stdout);
        rc = db_admin_log_list(db, from, user, print_json, &ss);
        fputs(ss.rows ? "\n]\n" : "]\n", stdout);
    } else {
        fputs("TIME\tLOGIN\tPROGRAM\tCOMMAND\tTARGET\tDETAILS\n", stdout);
        rc = db_admin_log_list(db, from, user, print_plain, &ss);
    }
    if (rc != DB_OK) {
        fprintf(stderr, PROG ": log: %s\n", db_errmsg(db));
        return 1;
    }
    return 0;
}
