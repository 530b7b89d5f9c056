/* The admin log as submit-admin writes and prints it (admin_log.h). */
#include "admin_log.h"

#include "admin_out.h"
#include "db.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PROG "submit-admin"

int admin_log_record(struct db *db, const char *command, const char *target, const char *user,
                     const char *serial, const char *fmt, ...)
{
    struct db_admin_log e;
    struct db_actor who;
    char details[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(details, sizeof(details), fmt, ap);
    va_end(ap);
    memset(&e, 0, sizeof(e));
    db_actor_get(&who);
    db_actor_fill(&e, &who, PROG);
    e.command = command;
    e.target = target;
    e.details = details;
    e.user = user;
    e.serial = serial;
    if (db_admin_log_insert(db, &e) != DB_OK) {
        fprintf(stderr, PROG ": %s: not done, it could not be recorded in admin_log: %s\n",
                command, db_errmsg(db));
        return -1;
    }
    return 0;
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
        out_field(cols[i]);
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
    out_json_member("ts", db_stamp_text(&r->ts, ts, sizeof(ts)), 0);
    printf(",\"uid\":%lld", r->uid);
    out_json_member("login", r->login, 0);
    out_json_member("program", r->program, 0);
    out_json_member("command", r->command, 0);
    out_json_member("target", r->target, 0);
    out_json_member("details", r->details, 0);
    out_json_member("user", r->user, 0);
    out_json_member("serial", r->serial, 0);
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
