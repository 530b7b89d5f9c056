/*
 * submit-admin: the administrator's tool for users, their sender addresses and the
 * audit trail (DESIGN §5). It opens the daemon's SQLite file directly, through db.h;
 * WAL and the busy timeout let it do so while submitd runs.
 *
 * Exit status: 0 success, 1 failure (named on stderr), 2 misuse (with a usage).
 * Everything from the database is printed through admin_out.h: the audit trail holds
 * bytes that SMTP clients chose. Every change is recorded in admin_log (admin_log.h)
 * in the transaction that makes it.
 */
#include "admin_audit.h"
#include "admin_log.h"
#include "admin_map.h"
#include "admin_out.h"
#include "admin_queue.h"
#include "admin_show.h"
#include "admin_stats.h"
#include "config.h"
#include "db.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define PROG "submit-admin"
#define MAX_SENDER_OPTS 64

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

static const char usage_text[] =
    "usage: " PROG " [-c FILE] COMMAND ...\n"
    "  user add USER [--sender ADDR]... [--shared]\n"
    "  user del|disable|enable USER\n"
    "  user list [--json] | user show USER [--json]\n"
    "  sender add USER ADDR [--shared]     ADDR: local@domain or @domain\n"
    "  sender del USER ADDR | sender who ADDR [--json]\n"
    "  audit [--user USER] [--since WHEN] [--until WHEN] [--decision accept|reject|tempfail]\n"
    "        [--event EVENT] [--ip ADDR] [--queue-id ID] [--json|--csv]\n"
    "  audit prune --before WHEN           WHEN: 30m, 1h, 2d, 1w ago, or ISO-8601\n"
    "  log [--since WHEN] [--user USER] [--json]\n"
    "  map add --subject DN [--issuer DN] USER      certificates of another CA\n"
    "  map del --subject DN [--issuer DN] | map list [--json]\n"
    "  queue list [--json] | queue flush | queue delete ID\n"
    "  stats [--json|--prometheus]         queue, decisions, CRL and certificate expiry\n"
    "  --help | --version\n"
    "FILE defaults to " CONFIG_DEFAULT_PATH ".\n";

static void errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on stderr: "submit-admin: <what is wrong>". */
static void errorf(const char *fmt, ...)
{
    va_list ap;

    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int misuse(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A one-line diagnosis, then the usage; returns the misuse exit status. */
static int misuse(const char *fmt, ...)
{
    va_list ap;

    fputs(PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(usage_text, stderr);
    return EXIT_USAGE;
}

/* ---- command line ------------------------------------------------------- */

enum opt {
    OPT_SENDER, OPT_USER, OPT_SINCE, OPT_UNTIL, OPT_DECISION, OPT_EVENT, OPT_IP, OPT_QUEUE_ID,
    OPT_BEFORE, OPT_JSON, OPT_CSV, OPT_SHARED, OPT_COUNT
};

#define BIT(o) (1u << (o))

static const struct {
    const char *name;
    int valued;
} opt_defs[OPT_COUNT] = {
    [OPT_SENDER] = { "sender", 1 },     [OPT_USER] = { "user", 1 },
    [OPT_SINCE] = { "since", 1 },       [OPT_UNTIL] = { "until", 1 },
    [OPT_DECISION] = { "decision", 1 }, [OPT_EVENT] = { "event", 1 },
    [OPT_IP] = { "ip", 1 },             [OPT_QUEUE_ID] = { "queue-id", 1 },
    [OPT_BEFORE] = { "before", 1 },     [OPT_JSON] = { "json", 0 },
    [OPT_CSV] = { "csv", 0 },           [OPT_SHARED] = { "shared", 0 },
};

/* The longest value an option takes: addresses, ISO times, events, IPs, queue ids. */
#define OPT_VALUE_MAX 320

struct cmdline {
    const char *cmd;                 /* "user add", for messages */
    const char *pos[4];
    int npos;
    const char *senders[MAX_SENDER_OPTS];
    int nsenders;
    const char *val[OPT_COUNT];      /* the last value of each valued option */
    unsigned seen;                   /* BIT(OPT_*) */
};

/* The option named by "--name" or "--name=value" at a; -1 when there is none. */
static int find_opt(const char *a, const char **inline_value)
{
    const char *eq = strchr(a, '=');
    size_t n = eq != NULL ? (size_t)(eq - a) : strlen(a);

    *inline_value = eq != NULL ? eq + 1 : NULL;
    for (int k = 0; k < OPT_COUNT; k++)
        if (strlen(opt_defs[k].name) == n && strncmp(a, opt_defs[k].name, n) == 0)
            return k;
    return -1;
}

/* Records one option of a command; 0, or the misuse exit status. */
static int take_opt(struct cmdline *cl, int k, const char *v)
{
    if (opt_defs[k].valued && strlen(v) > OPT_VALUE_MAX)
        return misuse("%s: --%s: value longer than %d bytes", cl->cmd, opt_defs[k].name,
                      OPT_VALUE_MAX);
    if (k == OPT_SENDER) {
        if (cl->nsenders >= MAX_SENDER_OPTS)
            return misuse("%s: at most %d --sender options", cl->cmd, MAX_SENDER_OPTS);
        cl->senders[cl->nsenders++] = v;
    }
    cl->val[k] = v;
    cl->seen |= BIT(k);
    return 0;
}

/*
 * Parses the arguments of one command: positionals (exactly npos of them) and the
 * options in allowed. Returns 0, or the misuse exit status after saying why.
 */
static int parse_args(struct cmdline *cl, int argc, char **argv, int npos, unsigned allowed)
{
    int only_positional = 0;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        int k, rc;

        if (only_positional || a[0] != '-' || a[1] == '\0') {
            if (cl->npos >= npos)
                return misuse("%s: unexpected argument \"%s\"", cl->cmd, a);
            cl->pos[cl->npos++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = 1;
            continue;
        }
        k = strncmp(a, "--", 2) == 0 ? find_opt(a + 2, &v) : -1;
        if (k < 0 || !(allowed & BIT(k)))
            return misuse("%s: unknown option \"%s\"", cl->cmd, a);
        if (!opt_defs[k].valued && v != NULL)
            return misuse("%s: --%s takes no value", cl->cmd, opt_defs[k].name);
        if (opt_defs[k].valued && v == NULL) {
            if (i + 1 >= argc)
                return misuse("%s: option --%s needs a value", cl->cmd, opt_defs[k].name);
            v = argv[++i];
        }
        if ((rc = take_opt(cl, k, v != NULL ? v : "")) != 0)
            return rc;
    }
    if (cl->npos < npos)
        return misuse("%s: missing argument", cl->cmd);
    return 0;
}

/* ---- times -------------------------------------------------------------- */

/* "30m", "1h", "2d", "1w", "90s" before now, or an ISO-8601 time; into "...Z" form. */
static int parse_when(const char *s, char *out, size_t outlen)
{
    size_t n = strlen(s);
    long long epoch;

    if (n >= 2 && strchr("smhdw", s[n - 1]) != NULL && strspn(s, "0123456789") == n - 1) {
        static const long long unit[] = { 1, 60, 3600, 86400, 604800 };
        char num[24];
        long long v;

        if (n - 1 >= sizeof(num))
            return -1;
        memcpy(num, s, n - 1);
        num[n - 1] = '\0';
        if (str_to_ll(num, 0, 200LL * 365 * 86400, &v) != 0)
            return -1;
        v *= unit[strchr("smhdw", s[n - 1]) - "smhdw"];
        if (v > 200LL * 365 * 86400)
            return -1;
        epoch = (long long)time(NULL) - v;
    } else if (iso_time_parse(s, &epoch) != 0) {
        return -1;
    }
    if (epoch < 0)
        epoch = 0;
    iso_time_utc(out, outlen, epoch);
    return out[0] != '\0' ? 0 : -1;
}

/* ---- database ----------------------------------------------------------- */

static struct db *open_db(const char *config_path)
{
    static struct config cfg;
    char err[PATH_MAX + 512];
    struct db *db;

    if (config_load(&cfg, config_path, err, sizeof(err)) != 0) {
        errorf("%s", err);
        return NULL;
    }
    db = db_open(cfg.database, err, sizeof(err));
    if (db == NULL)
        errorf("%s", err);
    return db;
}

static int db_failed(struct db *db)
{
    errorf("%s", db_errmsg(db));
    return EXIT_FAIL;
}

/* Misuse: the command cannot mean anything with this word. */
static int check_user_name(const struct cmdline *cl, const char *name)
{
    if (db_user_name_valid(name))
        return 0;
    errorf("%s: invalid user name \"%s\": use 1-64 of A-Z a-z 0-9 . _ -, not starting "
           "with . or -", cl->cmd, name);
    return EXIT_USAGE;
}

static int check_address(const struct cmdline *cl, const char *address)
{
    if (db_sender_address_valid(address))
        return 0;
    errorf("%s: invalid sender address \"%s\": expected local@domain or @domain", cl->cmd,
           address);
    return EXIT_USAGE;
}

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
        return db_failed(db);
    lowered(address, addr, sizeof(addr));
    errorf("%s: %s is owned by user %s; add --shared to give it to %s as well", cmd, addr,
           owner, user);
    return EXIT_FAIL;
}

/* ---- user --------------------------------------------------------------- */

/* The senders of a user add, without repeats, lower-cased, into list ("a,b"). */
static void sender_words(const struct cmdline *cl, char *list, size_t listlen)
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

static int user_add_rows(struct db *db, const struct cmdline *cl, const char *list)
{
    const char *name = cl->pos[0];
    int rc = db_user_add(db, name);

    if (rc == DB_EXISTS) {
        errorf("user %s already exists", name);
        return EXIT_FAIL;
    }
    if (rc != DB_OK)
        return db_failed(db);
    for (int i = 0; i < cl->nsenders; i++) {
        if ((rc = check_not_owned(db, cl->cmd, name, cl->senders[i],
                                  (cl->seen & BIT(OPT_SHARED)) != 0)) != 0)
            return rc;
        rc = db_sender_add(db, name, cl->senders[i]);
        if (rc != DB_OK && rc != DB_EXISTS)    /* the same --sender twice is fine */
            return db_failed(db);
    }
    if (admin_log_record(db, "user add", name, name, NULL, "senders=%s%s",
                         list[0] ? list : "-",
                         (cl->seen & BIT(OPT_SHARED)) ? " shared=yes" : "") != 0)
        return EXIT_FAIL;
    return 0;
}

static int user_add(struct db *db, const struct cmdline *cl)
{
    char list[MAX_SENDER_OPTS * 330];
    int rc;

    sender_words(cl, list, sizeof(list));
    if (db_begin(db) != DB_OK)
        return db_failed(db);
    if ((rc = user_add_rows(db, cl, list)) != 0 || db_commit(db) != DB_OK) {
        rc = rc != 0 ? rc : db_failed(db);
        db_rollback(db);
        return rc;
    }
    if (list[0] != '\0')
        printf("user %s added with sender(s) %s\n", cl->pos[0], list);
    else
        printf("user %s added\n", cl->pos[0]);
    return EXIT_OK;
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

static int user_del(struct db *db, const char *name)
{
    struct revoke_log rl = { db, name, 0, 0 };
    int rc;

    if (db_begin(db) != DB_OK)
        return db_failed(db);
    rc = db_user_get(db, name, NULL);
    if (rc == DB_NOTFOUND) {
        db_rollback(db);
        errorf("user %s does not exist", name);
        return EXIT_FAIL;
    }
    if (rc != DB_OK || db_cert_list(db, name, DB_TIME_NONE, log_revocation, &rl) != DB_OK)
        goto dberr;
    if (rl.failed) {
        db_rollback(db);
        return EXIT_FAIL;
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
    return EXIT_OK;

dberr:
    rc = db_failed(db);
    db_rollback(db);
    return rc;
}

static int user_set_enabled(struct db *db, const char *name, int enabled)
{
    const char *cmd = enabled ? "user enable" : "user disable";
    int rc;

    if (db_begin(db) != DB_OK)
        return db_failed(db);
    rc = db_user_set_enabled(db, name, enabled);
    if (rc == DB_NOTFOUND) {
        db_rollback(db);
        errorf("user %s does not exist", name);
        return EXIT_FAIL;
    }
    if (rc != DB_OK || admin_log_record(db, cmd, name, name, NULL, "%s", "") != 0 ||
        db_commit(db) != DB_OK) {
        rc = rc != DB_OK ? db_failed(db) : EXIT_FAIL;
        db_rollback(db);
        return rc;
    }
    printf("user %s %s\n", name, enabled ? "enabled" : "disabled");
    return EXIT_OK;
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
        out_json_string(address);
    else
        out_field(address);
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
        out_json_member("name", u->name, 1);
        printf(",\"enabled\":%s", u->enabled ? "true" : "false");
        out_json_member("created_at", created_at, 0);
        fputs(",\"senders\":[", stdout);
    } else {
        out_field(u->name);
        printf("\t%s\t", u->enabled ? "enabled" : "disabled");
        out_field(created_at);
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

static int user_list(struct db *db, int json)
{
    struct list_state ls = { .db = db, .json = json };

    if (json)
        fputs("[", stdout);
    if (db_user_list(db, print_user, &ls) != DB_OK || ls.failed) {
        if (json)
            fputs("\n", stdout);
        return db_failed(db);
    }
    if (json)
        fputs(ls.rows ? "\n]\n" : "]\n", stdout);
    return EXIT_OK;
}

/* ---- sender ------------------------------------------------------------- */

static int sender_add_rows(struct db *db, const struct cmdline *cl, const char *addr)
{
    const char *user = cl->pos[0];
    int shared = (cl->seen & BIT(OPT_SHARED)) != 0;
    int rc = db_user_get(db, user, NULL);

    if (rc == DB_NOTFOUND) {
        errorf("user %s does not exist", user);
        return EXIT_FAIL;
    }
    if (rc != DB_OK)
        return db_failed(db);
    if ((rc = check_not_owned(db, cl->cmd, user, addr, shared)) != 0)
        return rc;
    rc = db_sender_add(db, user, addr);
    if (rc == DB_EXISTS) {
        errorf("user %s already owns sender %s", user, addr);
        return EXIT_FAIL;
    }
    if (rc != DB_OK)
        return db_failed(db);
    return admin_log_record(db, "sender add", addr, user, NULL, "user=%s%s", user,
                            shared ? " shared=yes" : "") != 0 ? EXIT_FAIL : 0;
}

static int sender_add(struct db *db, const struct cmdline *cl)
{
    char addr[400];
    int rc;

    lowered(cl->pos[1], addr, sizeof(addr));
    if (db_begin(db) != DB_OK)
        return db_failed(db);
    if ((rc = sender_add_rows(db, cl, addr)) != 0 || db_commit(db) != DB_OK) {
        rc = rc != 0 ? rc : db_failed(db);
        db_rollback(db);
        return rc;
    }
    printf("sender %s added to user %s\n", addr, cl->pos[0]);
    return EXIT_OK;
}

static int sender_del_rows(struct db *db, const char *user, const char *addr)
{
    int rc = db_sender_del(db, user, addr);

    if (rc == DB_NOTFOUND) {
        rc = db_user_get(db, user, NULL);
        if (rc == DB_ERROR)
            return db_failed(db);
        if (rc == DB_NOTFOUND)
            errorf("user %s does not exist", user);
        else
            errorf("user %s does not own sender %s", user, addr);
        return EXIT_FAIL;
    }
    if (rc != DB_OK)
        return db_failed(db);
    return admin_log_record(db, "sender del", addr, user, NULL, "user=%s", user) != 0
               ? EXIT_FAIL
               : 0;
}

static int sender_del(struct db *db, const char *user, const char *address)
{
    char addr[400];
    int rc;

    lowered(address, addr, sizeof(addr));
    if (db_begin(db) != DB_OK)
        return db_failed(db);
    if ((rc = sender_del_rows(db, user, addr)) != 0 || db_commit(db) != DB_OK) {
        rc = rc != 0 ? rc : db_failed(db);
        db_rollback(db);
        return rc;
    }
    printf("sender %s removed from user %s\n", addr, user);
    return EXIT_OK;
}

/* ---- main --------------------------------------------------------------- */

enum action {
    ACT_USER_ADD,
    ACT_USER_DEL,
    ACT_USER_DISABLE,
    ACT_USER_ENABLE,
    ACT_USER_LIST,
    ACT_USER_SHOW,
    ACT_SENDER_ADD,
    ACT_SENDER_DEL,
    ACT_SENDER_WHO,
    ACT_AUDIT,
    ACT_AUDIT_PRUNE,
    ACT_LOG,
};

#define AUDIT_OPTS                                                                          \
    (BIT(OPT_USER) | BIT(OPT_SINCE) | BIT(OPT_UNTIL) | BIT(OPT_DECISION) | BIT(OPT_EVENT) | \
     BIT(OPT_IP) | BIT(OPT_QUEUE_ID) | BIT(OPT_JSON) | BIT(OPT_CSV))

static const struct command {
    const char *cmd, *sub;       /* sub is NULL for commands without one */
    enum action act;
    const char *args;            /* one letter per positional: u user, a address */
    unsigned allowed;            /* BIT(OPT_*) */
} commands[] = {
    { "user", "add", ACT_USER_ADD, "u", BIT(OPT_SENDER) | BIT(OPT_SHARED) },
    { "user", "del", ACT_USER_DEL, "u", 0 },
    { "user", "disable", ACT_USER_DISABLE, "u", 0 },
    { "user", "enable", ACT_USER_ENABLE, "u", 0 },
    { "user", "list", ACT_USER_LIST, "", BIT(OPT_JSON) },
    { "user", "show", ACT_USER_SHOW, "u", BIT(OPT_JSON) },
    { "sender", "add", ACT_SENDER_ADD, "ua", BIT(OPT_SHARED) },
    { "sender", "del", ACT_SENDER_DEL, "ua", 0 },
    { "sender", "who", ACT_SENDER_WHO, "a", BIT(OPT_JSON) },
    { "audit", "prune", ACT_AUDIT_PRUNE, "", BIT(OPT_BEFORE) },
    { "audit", NULL, ACT_AUDIT, "", AUDIT_OPTS },
    { "log", NULL, ACT_LOG, "", BIT(OPT_SINCE) | BIT(OPT_USER) | BIT(OPT_JSON) },
};

/*
 * Finds the command named by argv[*i] (and its subcommand), advancing *i past them.
 * A command with subcommands and one without ("audit", "audit prune") share a name:
 * the subcommand wins when the next word names it. Returns NULL after a misuse
 * message; *status is then the exit status.
 */
static const struct command *find_command(int argc, char **argv, int *i, int *status)
{
    const char *cmd = argv[(*i)++], *sub = *i < argc ? argv[*i] : NULL;
    const struct command *plain = NULL;
    int known = 0;

    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
        const struct command *c = &commands[k];

        if (strcmp(c->cmd, cmd) != 0)
            continue;
        known = 1;
        if (c->sub == NULL)
            plain = c;
        else if (sub != NULL && strcmp(c->sub, sub) == 0) {
            (*i)++;
            return c;
        }
    }
    if (plain != NULL)
        return plain;
    if (known && sub == NULL)
        *status = misuse("%s: missing subcommand", cmd);
    else if (known)
        *status = misuse("%s: unknown subcommand \"%s\"", cmd, sub);
    else
        *status = misuse("unknown command \"%s\"", cmd);
    return NULL;
}

/* The parsed values of the time options, "YYYY-MM-DDTHH:MM:SSZ". */
struct times {
    char since[32], until[32], before[32];
};

static int check_when(const struct cmdline *cl, int opt, char *out, size_t outlen)
{
    const char *v = cl->val[opt];

    if (v == NULL || parse_when(v, out, outlen) == 0)
        return 0;
    return misuse("%s: --%s \"%s\": expected a number with s, m, h, d or w, or an ISO-8601 "
                  "time", cl->cmd, opt_defs[opt].name, v);
}

/* Checks the values of the arguments before the database is opened (or created). */
static int check_args(const struct command *c, const struct cmdline *cl, struct times *t)
{
    const char *d = cl->val[OPT_DECISION];
    int rc;

    if ((rc = check_when(cl, OPT_SINCE, t->since, sizeof(t->since))) != 0 ||
        (rc = check_when(cl, OPT_UNTIL, t->until, sizeof(t->until))) != 0 ||
        (rc = check_when(cl, OPT_BEFORE, t->before, sizeof(t->before))) != 0)
        return rc;
    if (d != NULL && strcmp(d, "accept") != 0 && strcmp(d, "reject") != 0 &&
        strcmp(d, "tempfail") != 0)
        return misuse("%s: --decision \"%s\": expected accept, reject or tempfail", cl->cmd, d);
    if ((cl->seen & BIT(OPT_JSON)) && (cl->seen & BIT(OPT_CSV)))
        return misuse("%s: --json and --csv exclude each other", cl->cmd);
    if (c->act == ACT_AUDIT_PRUNE && cl->val[OPT_BEFORE] == NULL)
        return misuse("%s: --before WHEN is required", cl->cmd);
    if (c->act == ACT_AUDIT && cl->val[OPT_USER] != NULL &&
        (rc = check_user_name(cl, cl->val[OPT_USER])) != 0)
        return rc;
    for (int i = 0; c->args[i] != '\0'; i++) {
        rc = c->args[i] == 'u' ? check_user_name(cl, cl->pos[i]) : check_address(cl, cl->pos[i]);
        if (rc != 0)
            return rc;
    }
    for (int i = 0; i < cl->nsenders; i++)
        if ((rc = check_address(cl, cl->senders[i])) != 0)
            return rc;
    return 0;
}

/* A time that check_when() wrote, in seconds; DB_TIME_NONE when the option is absent. */
static int64_t when_seconds(const struct cmdline *cl, int opt, const char *iso)
{
    long long t = DB_TIME_NONE;

    if (cl->val[opt] == NULL || iso_time_parse(iso, &t) != 0)
        return DB_TIME_NONE;
    return (int64_t)t;
}

static int audit(struct db *db, const struct cmdline *cl, const struct times *t)
{
    struct db_audit_filter f = {
        .user = cl->val[OPT_USER],
        .since = when_seconds(cl, OPT_SINCE, t->since),
        .until = when_seconds(cl, OPT_UNTIL, t->until),
        .decision = cl->val[OPT_DECISION],
        .event = cl->val[OPT_EVENT],
        .client_ip = cl->val[OPT_IP],
        .queue_id = cl->val[OPT_QUEUE_ID],
    };
    enum admin_audit_format fmt = (cl->seen & BIT(OPT_JSON))  ? AUDIT_JSON
                                  : (cl->seen & BIT(OPT_CSV)) ? AUDIT_CSV
                                                              : AUDIT_TEXT;

    return admin_audit_show(db, &f, fmt);
}

static int run(struct db *db, const struct command *c, const struct cmdline *cl,
               const struct times *t)
{
    int json = (cl->seen & BIT(OPT_JSON)) != 0;

    switch (c->act) {
    case ACT_USER_ADD:
        return user_add(db, cl);
    case ACT_USER_DEL:
        return user_del(db, cl->pos[0]);
    case ACT_USER_DISABLE:
        return user_set_enabled(db, cl->pos[0], 0);
    case ACT_USER_ENABLE:
        return user_set_enabled(db, cl->pos[0], 1);
    case ACT_USER_LIST:
        return user_list(db, json);
    case ACT_USER_SHOW:
        return admin_user_show(db, cl->pos[0], json);
    case ACT_SENDER_ADD:
        return sender_add(db, cl);
    case ACT_SENDER_DEL:
        return sender_del(db, cl->pos[0], cl->pos[1]);
    case ACT_SENDER_WHO:
        return admin_sender_who(db, cl->pos[0], json);
    case ACT_AUDIT:
        return audit(db, cl, t);
    case ACT_AUDIT_PRUNE:
        return admin_audit_prune(db, t->before);
    case ACT_LOG:
        return admin_log_show(db, cl->val[OPT_SINCE] != NULL ? t->since : NULL,
                              cl->val[OPT_USER], json);
    }
    return EXIT_FAIL;
}

static int finish(int status)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        errorf("standard output: write error");
        return EXIT_FAIL;
    }
    return status;
}

/* --help and --version, anywhere before the command. */
static int global_option(const char *a)
{
    if (strcmp(a, "--help") == 0) {
        fputs(usage_text, stdout);
        return finish(EXIT_OK);
    }
    if (strcmp(a, "--version") == 0) {
        printf(PROG " %s\n", SUBMITD_VERSION);
        return finish(EXIT_OK);
    }
    return misuse("unknown option \"%s\"", a);
}

int main(int argc, char **argv)
{
    const char *config_path = CONFIG_DEFAULT_PATH;
    const struct command *c;
    struct cmdline cl;
    struct times t;
    char label[48];
    struct db *db;
    int opt, status = EXIT_USAGE;

    /* --help and --version stand before the command, as -c does. */
    for (int i = 1; i < argc && argv[i][0] == '-'; i++) {
        if (strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0')
            return global_option(argv[i]);
        if (strcmp(argv[i], "-c") == 0)
            i++;
    }
    opterr = 0;
    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        switch (opt) {
        case 'c':
            config_path = optarg;
            break;
        case 'h':
            fputs(usage_text, stdout);
            return finish(EXIT_OK);
        default:
            if (optopt == 'c')
                return misuse("option -c needs a file name");
            return misuse("unknown option -%c", optopt);
        }
    }
    if (optind >= argc)
        return misuse("missing command");
    if (strcmp(argv[optind], "map") == 0)
        return finish(admin_map(config_path, argc - optind - 1, argv + optind + 1));
    if (strcmp(argv[optind], "queue") == 0)
        return finish(admin_queue(config_path, argc - optind - 1, argv + optind + 1));
    if (strcmp(argv[optind], "stats") == 0)
        return finish(admin_stats(config_path, argc - optind - 1, argv + optind + 1));
    c = find_command(argc, argv, &optind, &status);
    if (c == NULL)
        return status;

    memset(&cl, 0, sizeof(cl));
    memset(&t, 0, sizeof(t));
    if (c->sub != NULL)
        (void)str_fmt(label, sizeof(label), "%s %s", c->cmd, c->sub);
    else
        str_lcpy(label, c->cmd, sizeof(label));
    cl.cmd = label;
    status = parse_args(&cl, argc - optind, argv + optind, (int)strlen(c->args), c->allowed);
    if (status == 0)
        status = check_args(c, &cl, &t);
    if (status != 0)
        return status;

    db = open_db(config_path);
    if (db == NULL)
        return EXIT_FAIL;
    status = run(db, c, &cl, &t);
    db_close(db);
    return finish(status);
}
