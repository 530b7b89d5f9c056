/*
 * submit-admin user and sender: the people who may send and the addresses each owns
 * (admin_user.h). Every change is made with its admin_log row in one transaction.
 */
#include "admin_user.h"

#include "admin.h"
#include "admin_log.h"
#include "cli_out.h"
#include "db.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static void lowered(const char *in, char *out, size_t outlen)
{
    str_lcpy(out, in, outlen);
    str_lower(out);
}

/*
 * Refuses an address that another user owns already, naming the owner, unless the
 * admin said --shared: two owners of one address is a decision, not an accident.
 * Returns 0 when the address may be added, else the exit status (after the message).
 */
static int check_not_owned(struct db *db, const char *cmd, const char *user,
                           const char *address, int shared)
{
    char owner[128], addr[400];
    int rc;

    if (shared)
        return 0;
    rc = db_sender_other_owner(db, user, address, owner, sizeof(owner));
    if (rc == DB_NOTFOUND)
        return 0;
    if (rc != DB_OK)
        return admin_db_failed(db);
    lowered(address, addr, sizeof(addr));
    cli_error(&admin_prog, "%s: %s is owned by user %s; add --shared to give it to %s as well", cmd, addr,
           owner, user);
    return CLI_EXIT_FAIL;
}

/* ---- user --------------------------------------------------------------- */

/* The senders of a user add, without repeats, lower-cased, into list ("a,b"). */
static void sender_words(const struct admin_user_args *cl, char *list, size_t listlen)
{
    list[0] = '\0';
    for (int i = 0; i < cl->nsenders; i++) {
        char addr[400];
        size_t n = strlen(list);
        int dup = 0;

        for (int j = 0; j < i && !dup; j++)
            dup = strcasecmp(cl->senders[i], cl->senders[j]) == 0;
        if (dup)
            continue;
        lowered(cl->senders[i], addr, sizeof(addr));
        (void)str_fmt(list + n, listlen - n, "%s%s", n ? "," : "", addr);
    }
}

static int user_add_rows(struct db *db, const struct admin_user_args *cl, const char *list)
{
    const char *name = cl->user;
    int rc = db_user_add(db, name);

    if (rc == DB_EXISTS) {
        cli_error(&admin_prog, "user %s already exists", name);
        return CLI_EXIT_FAIL;
    }
    if (rc != DB_OK)
        return admin_db_failed(db);
    for (int i = 0; i < cl->nsenders; i++) {
        if ((rc = check_not_owned(db, cl->cmd, name, cl->senders[i],
                                  cl->shared)) != 0)
            return rc;
        rc = db_sender_add(db, name, cl->senders[i]);
        if (rc != DB_OK && rc != DB_EXISTS)    /* the same --sender twice is fine */
            return admin_db_failed(db);
    }
    if (admin_log_record(db, "user add", name, name, NULL, "senders=%s%s",
                         list[0] ? list : "-",
                         cl->shared ? " shared=yes" : "") != 0)
        return CLI_EXIT_FAIL;
    return 0;
}

int admin_user_add(struct db *db, const struct admin_user_args *cl)
{
    char list[ADMIN_MAX_SENDERS * 330];
    int rc;

    sender_words(cl, list, sizeof(list));
    if (db_begin(db) != DB_OK)
        return admin_db_failed(db);
    if ((rc = user_add_rows(db, cl, list)) != 0 || db_commit(db) != DB_OK) {
        rc = rc != 0 ? rc : admin_db_failed(db);
        db_rollback(db);
        return rc;
    }
    if (list[0] != '\0')
        printf("user %s added with sender(s) %s\n", cl->user, list);
    else
        printf("user %s added\n", cl->user);
    return CLI_EXIT_OK;
}

struct revoke_log {
    struct db *db;
    const char *user;
    int valid;
    int failed;
};

/* Records the revocation of each still valid certificate, as a CA operation. */
static int log_revocation(void *arg, const struct db_cert *c)
{
    struct revoke_log *rl = arg;

    if (c->status != CERT_VALID)
        return 0;
    rl->valid++;
    if (admin_log_record(rl->db, "revoke", c->serial, rl->user, c->serial,
                         "reason=cessationOfOperation by=\"user del\"") != 0) {
        rl->failed = 1;
        return 1;
    }
    return 0;
}

int admin_user_del(struct db *db, const char *name)
{
    struct revoke_log rl = { db, name, 0, 0 };
    int rc;

    if (db_begin(db) != DB_OK)
        return admin_db_failed(db);
    rc = db_user_get(db, name, NULL);
    if (rc == DB_NOTFOUND) {
        db_rollback(db);
        cli_error(&admin_prog, "user %s does not exist", name);
        return CLI_EXIT_FAIL;
    }
    if (rc != DB_OK || db_cert_list(db, name, DB_TIME_NONE, log_revocation, &rl) != DB_OK)
        goto dberr;
    if (rl.failed) {
        db_rollback(db);
        return CLI_EXIT_FAIL;
    }
    if (db_user_del(db, name) != DB_OK ||
        admin_log_record(db, "user del", name, name, NULL, "revoked=%d", rl.valid) != 0 ||
        db_commit(db) != DB_OK)
        goto dberr;
    if (rl.valid > 0)
        printf("user %s deleted; %d certificate%s revoked (run submit-ca crl to publish the CRL)\n",
               name, rl.valid, rl.valid == 1 ? "" : "s");
    else
        printf("user %s deleted\n", name);
    return CLI_EXIT_OK;

dberr:
    rc = admin_db_failed(db);
    db_rollback(db);
    return rc;
}

int admin_user_set_enabled(struct db *db, const char *name, int enabled)
{
    const char *cmd = enabled ? "user enable" : "user disable";
    int rc;

    if (db_begin(db) != DB_OK)
        return admin_db_failed(db);
    rc = db_user_set_enabled(db, name, enabled);
    if (rc == DB_NOTFOUND) {
        db_rollback(db);
        cli_error(&admin_prog, "user %s does not exist", name);
        return CLI_EXIT_FAIL;
    }
    if (rc != DB_OK || admin_log_record(db, cmd, name, name, NULL, "%s", "") != 0 ||
        db_commit(db) != DB_OK) {
        rc = rc != DB_OK ? admin_db_failed(db) : CLI_EXIT_FAIL;
        db_rollback(db);
        return rc;
    }
    printf("user %s %s\n", name, enabled ? "enabled" : "disabled");
    return CLI_EXIT_OK;
}

struct list_state {
    struct db *db;
    int json;
    int rows;
    int n;       /* senders printed for the current user */
    int failed;
};

static int print_sender(void *arg, const char *address)
{
    struct list_state *ls = arg;

    fputs(ls->n ? "," : "", stdout);
    if (ls->json)
        cli_json_string(stdout, address);
    else
        cli_plain_field(stdout, address);
    ls->n++;
    return 0;
}

static int print_user(void *arg, const struct db_user *u)
{
    struct list_state *ls = arg;
    char created_at[DB_TIME_TEXT_LEN];

    db_time_text(u->created_at, created_at, sizeof(created_at));
    ls->n = 0;
    if (ls->json) {
        fputs(ls->rows ? ",\n" : "\n", stdout);
        fputs("{", stdout);
        cli_json_member(stdout, "name", u->name, 1);
        printf(",\"enabled\":%s", u->enabled ? "true" : "false");
        cli_json_member(stdout, "created_at", created_at, 0);
        fputs(",\"senders\":[", stdout);
    } else {
        cli_plain_field(stdout, u->name);
        printf("\t%s\t", u->enabled ? "enabled" : "disabled");
        cli_plain_field(stdout, created_at);
        putchar('\t');
    }
    /* The full list: db_user.senders may be cut short. */
    if (db_sender_list(ls->db, u->name, print_sender, ls) == DB_ERROR) {
        ls->failed = 1;
        return 1;
    }
    if (ls->json)
        fputs("]}", stdout);
    else if (ls->n == 0)
        putchar('-');
    if (!ls->json)
        putchar('\n');
    ls->rows++;
    return 0;
}

int admin_user_list(struct db *db, int json)
{
    struct list_state ls = { .db = db, .json = json };

    if (json)
        fputs("[", stdout);
    if (db_user_list(db, print_user, &ls) != DB_OK || ls.failed) {
        if (json)
            fputs("\n", stdout);
        return admin_db_failed(db);
    }
    if (json)
        fputs(ls.rows ? "\n]\n" : "]\n", stdout);
    return CLI_EXIT_OK;
}

/* ---- sender ------------------------------------------------------------- */

static int sender_add_rows(struct db *db, const struct admin_user_args *cl, const char *addr)
{
    const char *user = cl->user;
    int shared = cl->shared;
    int rc = db_user_get(db, user, NULL);

    if (rc == DB_NOTFOUND) {
        cli_error(&admin_prog, "user %s does not exist", user);
        return CLI_EXIT_FAIL;
    }
    if (rc != DB_OK)
        return admin_db_failed(db);
    if ((rc = check_not_owned(db, cl->cmd, user, addr, shared)) != 0)
        return rc;
    rc = db_sender_add(db, user, addr);
    if (rc == DB_EXISTS) {
        cli_error(&admin_prog, "user %s already owns sender %s", user, addr);
        return CLI_EXIT_FAIL;
    }
    if (rc != DB_OK)
        return admin_db_failed(db);
    return admin_log_record(db, "sender add", addr, user, NULL, "user=%s%s", user,
                            shared ? " shared=yes" : "") != 0 ? CLI_EXIT_FAIL : 0;
}

int admin_sender_add(struct db *db, const struct admin_user_args *cl)
{
    char addr[400];
    int rc;

    lowered(cl->address, addr, sizeof(addr));
    if (db_begin(db) != DB_OK)
        return admin_db_failed(db);
    if ((rc = sender_add_rows(db, cl, addr)) != 0 || db_commit(db) != DB_OK) {
        rc = rc != 0 ? rc : admin_db_failed(db);
        db_rollback(db);
        return rc;
    }
    printf("sender %s added to user %s\n", addr, cl->user);
    return CLI_EXIT_OK;
}

static int sender_del_rows(struct db *db, const char *user, const char *addr)
{
    int rc = db_sender_del(db, user, addr);

    if (rc == DB_NOTFOUND) {
        rc = db_user_get(db, user, NULL);
        if (rc == DB_ERROR)
            return admin_db_failed(db);
        if (rc == DB_NOTFOUND)
            cli_error(&admin_prog, "user %s does not exist", user);
        else
            cli_error(&admin_prog, "user %s does not own sender %s", user, addr);
        return CLI_EXIT_FAIL;
    }
    if (rc != DB_OK)
        return admin_db_failed(db);
    return admin_log_record(db, "sender del", addr, user, NULL, "user=%s", user) != 0
               ? CLI_EXIT_FAIL
               : 0;
}

int admin_sender_del(struct db *db, const char *user, const char *address)
{
    char addr[400];
    int rc;

    lowered(address, addr, sizeof(addr));
    if (db_begin(db) != DB_OK)
        return admin_db_failed(db);
    if ((rc = sender_del_rows(db, user, addr)) != 0 || db_commit(db) != DB_OK) {
        rc = rc != 0 ? rc : admin_db_failed(db);
        db_rollback(db);
        return rc;
    }
    printf("sender %s removed from user %s\n", addr, user);
    return CLI_EXIT_OK;
}
