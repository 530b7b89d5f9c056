/* submit-admin audit and audit prune (admin_audit.h). */
#include "admin_audit.h"

#include "cli_out.h"
#include "db.h"
#include "util.h"

#include <stdio.h>

#define PROG "submit-admin"

/* The columns of text and CSV output, in the order of their header. */
#define AUDIT_NCOLS 14
static const char *const audit_header[AUDIT_NCOLS] = {
    "id",        "ts",        "session",      "event", "decision", "user",     "client_ip",
    "cert_sha256", "cert_subject", "mail_from", "rcpt",  "queue_id", "size", "reason",
};

static void audit_columns(const struct db_audit_row *r, char *id, size_t idlen, char *size,
                          size_t sizelen, char ts[DB_TIME_TEXT_LEN],
                          const char *cols[AUDIT_NCOLS])
{
    snprintf(id, idlen, "%lld", r->id);
    if (r->size < 0)
        size[0] = '\0';
    else
        snprintf(size, sizelen, "%lld", r->size);
    cols[0] = id, cols[1] = db_stamp_text(&r->ts, ts, DB_TIME_TEXT_LEN);
    cols[2] = r->session, cols[3] = r->event;
    cols[4] = r->decision, cols[5] = r->user, cols[6] = r->client_ip;
    cols[7] = r->cert_sha256, cols[8] = r->cert_subject, cols[9] = r->mail_from;
    cols[10] = r->rcpt, cols[11] = r->queue_id, cols[12] = size, cols[13] = r->reason;
}

struct show_state {
    enum admin_audit_format fmt;
    int rows;
};

static int print_row(void *arg, const struct db_audit_row *r)
{
    struct show_state *ss = arg;
    const char *cols[AUDIT_NCOLS];
    char id[24], size[24], ts[DB_TIME_TEXT_LEN];

    audit_columns(r, id, sizeof(id), size, sizeof(size), ts, cols);
    for (int i = 0; i < AUDIT_NCOLS; i++) {
        if (i > 0)
            putchar(ss->fmt == AUDIT_CSV ? ',' : '\t');
        if (ss->fmt == AUDIT_CSV)
            cli_csv_field(stdout, cols[i]);
        else
            cli_plain_field(stdout, cols[i]);
    }
    /* RFC 4180 ends records with CRLF. */
    fputs(ss->fmt == AUDIT_CSV ? "\r\n" : "\n", stdout);
    ss->rows++;
    return 0;
}

static int print_json(void *arg, const struct db_audit_row *r)
{
    struct show_state *ss = arg;
    char ts[DB_TIME_TEXT_LEN];

    fputs(ss->rows ? ",\n" : "\n", stdout);
    printf("{\"id\":%lld", r->id);
    cli_json_member(stdout, "ts", db_stamp_text(&r->ts, ts, sizeof(ts)), 0);
    cli_json_member(stdout, "session", r->session, 0);
    cli_json_member(stdout, "event", r->event, 0);
    cli_json_member(stdout, "decision", r->decision, 0);
    cli_json_member(stdout, "reason", r->reason, 0);
    cli_json_member(stdout, "client_ip", r->client_ip, 0);
    cli_json_member(stdout, "user", r->user, 0);
    cli_json_member(stdout, "cert_sha256", r->cert_sha256, 0);
    cli_json_member(stdout, "cert_subject", r->cert_subject, 0);
    cli_json_member(stdout, "mail_from", r->mail_from, 0);
    cli_json_member(stdout, "rcpt", r->rcpt, 0);
    cli_json_member(stdout, "queue_id", r->queue_id, 0);
    if (r->size < 0)
        fputs(",\"size\":null", stdout);
    else
        printf(",\"size\":%lld", r->size);
    cli_json_member(stdout, "tls", r->tls, 0);
    fputs("}", stdout);
    ss->rows++;
    return 0;
}

static void print_header(enum admin_audit_format fmt)
{
    for (int i = 0; i < AUDIT_NCOLS; i++) {
        if (i > 0)
            putchar(fmt == AUDIT_CSV ? ',' : '\t');
        fputs(audit_header[i], stdout);
    }
    fputs(fmt == AUDIT_CSV ? "\r\n" : "\n", stdout);
}

int admin_audit_show(struct db *db, const struct db_audit_filter *f, enum admin_audit_format fmt)
{
    struct show_state ss = { fmt, 0 };
    int rc;

    if (fmt == AUDIT_JSON) {
        fputs("[", stdout);
        rc = db_audit_search(db, f, print_json, &ss);
        fputs(ss.rows ? "\n]\n" : "]\n", stdout);
    } else {
        print_header(fmt);
        rc = db_audit_search(db, f, print_row, &ss);
    }
    if (rc != DB_OK) {
        fprintf(stderr, PROG ": audit: %s\n", db_errmsg(db));
        return 1;
    }
    return 0;
}

int admin_audit_prune(struct db *db, const char *before)
{
    char oldest[DB_TIME_TEXT_LEN], newest[DB_TIME_TEXT_LEN];
    struct db_stamp first, last;
    struct db_admin_log who = { 0 };
    struct db_actor actor;
    long long count = 0, cutoff;

    if (iso_time_parse(before, &cutoff) != 0) {
        fprintf(stderr, PROG ": audit prune: %s: expected an ISO-8601 UTC time\n", before);
        return 1;
    }
    db_actor_get(&actor);
    db_actor_fill(&who, &actor, PROG);
    if (db_audit_prune(db, cutoff, &who, &count, &first, &last) != DB_OK) {
        fprintf(stderr, PROG ": audit prune: %s\n", db_errmsg(db));
        return 1;
    }
    if (count == 0)
        printf("audit prune: no rows before %s\n", before);
    else
        printf("audit prune: %lld row%s before %s removed (%s to %s)\n", count,
               count == 1 ? "" : "s", before, db_stamp_text(&first, oldest, sizeof(oldest)),
               db_stamp_text(&last, newest, sizeof(newest)));
    return 0;
}
