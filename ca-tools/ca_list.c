/* submit-ca list: the certificates in the database, as a table or JSON. */
#include "ca_cmd.h"

#include "ca_msg.h"
#include "cli_db.h"
#include "cli_out.h"
#include "db.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define DAY_SECONDS 86400LL

struct list_state {
    int json;
    int only_valid_unexpired;
    int64_t now;
    size_t count;
};

static int list_cb(void *arg, const struct db_cert *c)
{
    struct list_state *ls = arg;
    char not_before[DB_TIME_TEXT_LEN], not_after[DB_TIME_TEXT_LEN], revoked_at[DB_TIME_TEXT_LEN];

    if (ls->only_valid_unexpired && !db_cert_in_force(c, ls->now))
        return 0;
    db_time_text(c->not_before, not_before, sizeof(not_before));
    db_time_text(c->not_after, not_after, sizeof(not_after));
    db_time_text(c->revoked_at, revoked_at, sizeof(revoked_at));
    if (ls->json) {
        printf("%s{", ls->count ? ",\n  " : "  ");
        cli_json_member(stdout, "serial", c->serial, 1);
        cli_json_member(stdout, "user", c->user, 0);
        cli_json_member(stdout, "sha256", c->sha256, 0);
        cli_json_member(stdout, "subject", c->subject, 0);
        cli_json_member(stdout, "issuer", c->issuer, 0);
        cli_json_member(stdout, "not_before", not_before, 0);
        cli_json_member(stdout, "not_after", not_after, 0);
        cli_json_member(stdout, "status", db_cert_status_name(c->status), 0);
        cli_json_member(stdout, "revoked_at", revoked_at, 0);
        cli_json_member(stdout, "revoke_reason", c->revoke_reason, 0);
        printf("}");
    } else {
        printf("%-32s  %-16s  %-24s  %-20s  %-7s  %s\n", c->serial, c->user[0] ? c->user : "-",
               c->subject, not_after, db_cert_status_name(c->status),
               c->revoke_reason[0] ? c->revoke_reason : "-");
    }
    ls->count++;
    return 0;
}

/* One blocked certificate (submit-admin cert block), as submit-admin cert list shows it. */
static int block_cb(void *arg, const struct db_cert_block *b)
{
    struct list_state *ls = arg;
    char at[DB_TIME_TEXT_LEN];

    db_time_text(b->blocked_at, at, sizeof(at));
    if (ls->json) {
        printf("%s  {", ls->count ? ",\n" : "");
        cli_json_member(stdout, "sha256", b->sha256, 1);
        cli_json_member(stdout, "issuer", b->issuer_text, 0);
        cli_json_member(stdout, "serial", b->serial, 0);
        cli_json_member(stdout, "reason", b->reason, 0);
        cli_json_member(stdout, "blocked_at", at, 0);
        cli_json_member(stdout, "blocked_by", b->blocked_by, 0);
        printf("}");
    } else {
        const char *cols[] = { b->sha256, b->issuer_text, b->serial, at, b->blocked_by,
                               b->reason };

        for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
            if (i)
                putchar('\t');
            cli_plain_field(stdout, cols[i]);
        }
        putchar('\n');
    }
    ls->count++;
    return 0;
}

static int list_blocked(struct db *db, struct list_state *ls)
{
    int r;

    printf(ls->json ? "[\n" : "sha256\tissuer\tserial\tblocked\tby\treason\n");
    r = db_cert_block_list(db, block_cb, ls);
    if (ls->json)
        printf("%s]\n", ls->count ? "\n" : "");
    if (r == DB_ERROR)
        ca_err("cannot list blocked certificates: %s", db_errmsg(db));
    db_close(db);
    return r == DB_ERROR;
}

int ca_cmd_list(const struct config *cfg, const struct ca_opts *o)
{
    struct list_state ls;
    struct db *db;
    int64_t before = DB_TIME_NONE;
    long long now = (long long)time(NULL);
    int r;

    memset(&ls, 0, sizeof(ls));
    ls.json = o->json;
    ls.now = (int64_t)now;
    if (o->expiring >= 0) {
        /* Certificates that still work today and stop working within DAYS. */
        ls.only_valid_unexpired = 1;
        before = now + o->expiring * DAY_SECONDS;
    }
    if ((db = cli_db_open(&ca_prog, cfg, NULL)) == NULL)
        return 1;
    if (o->blocked)
        return list_blocked(db, &ls);
    if (ls.json)
        printf("[\n");
    else
        printf("%-32s  %-16s  %-24s  %-20s  %-7s  %s\n", "SERIAL", "USER", "SUBJECT",
               "NOT_AFTER", "STATUS", "REVOKE_REASON");
    r = db_cert_list(db, o->user, before, list_cb, &ls);
    if (ls.json)
        printf("%s]\n", ls.count ? "\n" : "");
    if (r == DB_ERROR) {
        ca_err("cannot list certificates: %s", db_errmsg(db));
        db_close(db);
        return 1;
    }
    db_close(db);
    return 0;
}
