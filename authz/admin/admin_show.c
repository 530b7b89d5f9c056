/* submit-admin user show and sender who (admin_show.h). */
#include "admin_show.h"

#include "cli_out.h"
#include "db.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#define PROG "submit-admin"

struct show {
    struct db *db;
    int json;
    int n;
    int failed;
    int64_t now;
};

/* ---- user show ---------------------------------------------------------- */

static int show_sender(void *arg, const char *address)
{
    struct show *s = arg;

    if (s->json) {
        fputs(s->n ? "," : "", stdout);
        cli_json_string(stdout, address);
    } else {
        fputs(s->n ? ", " : "", stdout);
        cli_plain_field(stdout, address);
    }
    s->n++;
    return 0;
}

/* Certificates that a session would accept today: valid and not expired. */
static int show_cert(void *arg, const struct db_cert *c)
{
    struct show *s = arg;
    char not_after[DB_TIME_TEXT_LEN];

    if (!db_cert_in_force(c, s->now))
        return 0;
    db_time_text(c->not_after, not_after, sizeof(not_after));
    if (s->json) {
        fputs(s->n ? ",{" : "{", stdout);
        cli_json_member(stdout, "serial", c->serial, 1);
        cli_json_member(stdout, "sha256", c->sha256, 0);
        cli_json_member(stdout, "not_after", not_after, 0);
        cli_json_member(stdout, "subject", c->subject, 0);
        fputs("}", stdout);
    } else {
        fputs("certificate:\t", stdout);
        cli_plain_field(stdout, c->serial);
        fputs("\texpires ", stdout);
        cli_plain_field(stdout, not_after);
        fputs("\tsha256 ", stdout);
        cli_plain_field(stdout, c->sha256);
        putchar('\n');
    }
    s->n++;
    return 0;
}

/* The certificates the user was seen with (recorded by authz at most hourly). */
static int show_device(void *arg, const struct db_device *d)
{
    struct show *s = arg;
    char not_after[DB_TIME_TEXT_LEN], seen[DB_TIME_TEXT_LEN];

    db_time_text(d->not_after, not_after, sizeof(not_after));
    db_time_text(d->last_seen, seen, sizeof(seen));
    if (s->json) {
        fputs(s->n ? ",{" : "{", stdout);
        cli_json_member(stdout, "issuer", d->issuer, 1);
        cli_json_member(stdout, "serial", d->serial, 0);
        cli_json_member(stdout, "not_after", not_after, 0);
        cli_json_member(stdout, "last_seen", seen, 0);
        cli_json_member(stdout, "sha256", d->sha256, 0);
        fputs("}", stdout);
    } else {
        fputs("device:	", stdout);
        cli_plain_field(stdout, d->serial);
        fputs("	issuer ", stdout);
        cli_plain_field(stdout, d->issuer);
        fputs("	expires ", stdout);
        cli_plain_field(stdout, not_after);
        fputs("	last seen ", stdout);
        cli_plain_field(stdout, seen);
        putchar('\n');
    }
    s->n++;
    return 0;
}

static int keep_row(void *arg, const struct db_audit_row *r)
{
    *(struct db_audit_row *)arg = *r;
    return 1;
}

/* The newest audit row of user with this decision, as "label:" or a JSON member. */
static int show_last(struct show *s, const char *user, const char *decision, const char *label)
{
    static struct db_audit_row row;    /* large: kept off the stack */
    struct db_audit_filter f = { .user = user, .decision = decision, .newest_first = 1,
                                 .limit = 1 };
    char ts[DB_TIME_TEXT_LEN];

    row.id = 0;
    if (db_audit_search(s->db, &f, keep_row, &row) != DB_OK)
        return -1;
    db_stamp_text(&row.ts, ts, sizeof(ts));
    if (s->json) {
        printf(",\"%s\":", label);
        if (row.id == 0) {
            fputs("null", stdout);
            return 0;
        }
        putchar('{');
        cli_json_member(stdout, "ts", ts, 1);
        cli_json_member(stdout, "event", row.event, 0);
        cli_json_member(stdout, "client_ip", row.client_ip, 0);
        cli_json_member(stdout, "cert_sha256", row.cert_sha256, 0);
        cli_json_member(stdout, "reason", row.reason, 0);
        fputs("}", stdout);
        return 0;
    }
    printf("last %s:\t", label);
    if (row.id == 0) {
        fputs("never\n", stdout);
        return 0;
    }
    cli_plain_field(stdout, ts);
    putchar('\t');
    cli_plain_field(stdout, row.event);
    fputs("\tfrom ", stdout);
    cli_plain_field(stdout, row.client_ip);
    putchar('\t');
    cli_plain_field(stdout, row.reason);
    putchar('\n');
    return 0;
}

int admin_user_show(struct db *db, const char *user, int json)
{
    struct show s = { .db = db, .json = json };
    int enabled = 0, rc = db_user_get(db, user, &enabled);

    if (rc == DB_NOTFOUND) {
        fprintf(stderr, PROG ": user show: user %s does not exist\n", user);
        return 1;
    }
    if (rc != DB_OK)
        goto dberr;
    s.now = (int64_t)time(NULL);
    if (json) {
        fputs("{", stdout);
        cli_json_member(stdout, "name", user, 1);
        printf(",\"enabled\":%s,\"senders\":[", enabled ? "true" : "false");
    } else {
        printf("user:\t%s\nenabled:\t%s\nsenders:\t", user, enabled ? "yes" : "no");
    }
    if (db_sender_list(db, user, show_sender, &s) == DB_ERROR)
        goto dberr;
    if (!json && s.n == 0)
        putchar('-');
    fputs(json ? "],\"certificates\":[" : "\n", stdout);
    s.n = 0;
    if (db_cert_list(db, user, DB_TIME_NONE, show_cert, &s) != DB_OK)
        goto dberr;
    if (!json && s.n == 0)
        fputs("certificate:\tnone valid\n", stdout);
    fputs(json ? "],\"devices\":[" : "", stdout);
    s.n = 0;
    if (db_device_list(db, user, show_device, &s) != DB_OK)
        goto dberr;
    if (json)
        fputs("]", stdout);
    if (show_last(&s, user, "accept", "accepted") != 0 ||
        show_last(&s, user, "reject", "refused") != 0)
        goto dberr;
    if (json)
        fputs("}\n", stdout);
    return 0;

dberr:
    if (json || s.n)
        putchar('\n');
    fprintf(stderr, PROG ": user show: %s\n", db_errmsg(db));
    return 1;
}

/* ---- sender who --------------------------------------------------------- */

static int show_owner(void *arg, const char *user, const char *address, int domain_owner)
{
    struct show *s = arg;
    int enabled = 0;

    if (db_user_get(s->db, user, &enabled) == DB_ERROR) {
        s->failed = 1;
        return 1;
    }
    if (s->json) {
        fputs(s->n ? ",\n{" : "\n{", stdout);
        cli_json_member(stdout, "user", user, 1);
        cli_json_member(stdout, "address", address, 0);
        printf(",\"via\":\"%s\",\"enabled\":%s}", domain_owner ? "domain" : "address",
               enabled ? "true" : "false");
    } else {
        cli_plain_field(stdout, user);
        putchar('\t');
        cli_plain_field(stdout, address);
        printf("\t%s\t%s\n", domain_owner ? "domain" : "address", enabled ? "enabled" : "disabled");
    }
    s->n++;
    return 0;
}

int admin_sender_who(struct db *db, const char *address, int json)
{
    struct show s = { .db = db, .json = json };
    int rc;

    if (json)
        fputs("[", stdout);
    else
        fputs("USER\tOWNS\tVIA\tSTATE\n", stdout);
    rc = db_sender_owners(db, address, show_owner, &s);
    if (json)
        fputs(s.n ? "\n]\n" : "]\n", stdout);
    if (rc != DB_OK || s.failed) {
        fprintf(stderr, PROG ": sender who: %s\n", db_errmsg(db));
        return 1;
    }
    if (s.n == 0) {
        fprintf(stderr, PROG ": sender who: nobody may send as %s\n", address);
        return 1;
    }
    return 0;
}
