/*
 * submit-admin: the administrator's tool for users, their sender addresses, the
 * certificate maps of other CAs, the audit trail, the admin log, the queue and the
 * service's statistics (DESIGN §5).
 *
 * Owns: nothing of its own. It changes the daemon's database directly, through db.h
 * (WAL and the busy timeout let it do so while submitd runs), and the spool's queue
 * directory for queue delete, as root.
 * May not touch: certificates and the CA (submit-ca's), the CRL, the configuration;
 * it never writes a spool file, only removes one, and never creates or chowns the
 * spool (the master's job).
 * Talks to: the database; the queue process, only by a signal (queue flush).
 *
 * This file is the command line: one command table (cli.h) for every command and
 * subcommand, the checks of every argument before the database is opened, and the
 * dispatch. Exit status: 0 success, 1 failure (named on stderr), 2 misuse (with a
 * usage). Everything from the database is printed through cli_out.h: the audit trail
 * holds bytes that SMTP clients chose. Every change is recorded in admin_log
 * (admin_log.h) in the transaction that makes it.
 */
#include "admin.h"
#include "admin_audit.h"
#include "admin_log.h"
#include "admin_map.h"
#include "admin_rule.h"
#include "admin_queue.h"
#include "admin_show.h"
#include "admin_stats.h"
#include "admin_user.h"
#include "cli.h"
#include "cli_db.h"
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
#define MAX_SENDER_OPTS ADMIN_MAX_SENDERS

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
    "  map rule add --issuer DN --field email|san-email|upn|cn [--strip-domain D]\n"
    "           [--require-domain D]           certificates of an enterprise CA\n"
    "  map rule del --issuer DN | map rule list [--json]\n"
    "  cert block SHA256 | cert block --issuer DN --serial HEX [--reason TEXT]\n"
    "  cert unblock SHA256|--issuer DN --serial HEX | cert list [--json]\n"
    "  queue list [--json] | queue flush | queue delete ID\n"
    "  stats [--json|--prometheus]         queue, decisions, CRL and certificate expiry\n"
    "  --help | --version\n"
    "FILE defaults to " CONFIG_DEFAULT_PATH ".\n";

const struct cli_program admin_prog = { PROG, usage_text, "missing command", 0 };

#define errorf(...) cli_error(&admin_prog, __VA_ARGS__)
#define misuse(...) cli_misuse(&admin_prog, NULL, __VA_ARGS__)

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

/* Misuse: the command cannot mean anything with this word. */
static int check_user_name(const struct cmdline *cl, const char *name)
{
    if (db_user_name_valid(name))
        return 0;
    errorf("%s: invalid user name \"%s\": use 1-64 of A-Z a-z 0-9 . _ -, not starting "
           "with . or -", cl->cmd, name);
    return CLI_EXIT_USAGE;
}

static int check_address(const struct cmdline *cl, const char *address)
{
    if (db_sender_address_valid(address))
        return 0;
    errorf("%s: invalid sender address \"%s\": expected local@domain or @domain", cl->cmd,
           address);
    return CLI_EXIT_USAGE;
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
    ACT_OWN,        /* map, queue, stats: the command parses its own words */
};

#define AUDIT_OPTS                                                                          \
    (BIT(OPT_USER) | BIT(OPT_SINCE) | BIT(OPT_UNTIL) | BIT(OPT_DECISION) | BIT(OPT_EVENT) | \
     BIT(OPT_IP) | BIT(OPT_QUEUE_ID) | BIT(OPT_JSON) | BIT(OPT_CSV))

/* What submit-admin knows of each row of its command table (cli_command.spec). */
struct admin_spec {
    enum action act;
    const char *args;            /* one letter per positional: u user, a address */
    unsigned allowed;            /* BIT(OPT_*) */
    /* ACT_OWN: run with the words after the (sub)command. */
    int (*own)(const char *config_path, const char *sub, int argc, char **argv);
};

#define CMD(name, sub, act, args, allowed) \
    { name, sub, NULL, &(const struct admin_spec){ act, args, allowed, NULL } }
#define OWN(name, sub, usage, fn) \
    { name, sub, usage, &(const struct admin_spec){ ACT_OWN, "", 0, fn } }

/* Every command and subcommand of submit-admin. */
static const struct cli_command commands[] = {
    CMD("user", "add", ACT_USER_ADD, "u", BIT(OPT_SENDER) | BIT(OPT_SHARED)),
    CMD("user", "del", ACT_USER_DEL, "u", 0),
    CMD("user", "disable", ACT_USER_DISABLE, "u", 0),
    CMD("user", "enable", ACT_USER_ENABLE, "u", 0),
    CMD("user", "list", ACT_USER_LIST, "", BIT(OPT_JSON)),
    CMD("user", "show", ACT_USER_SHOW, "u", BIT(OPT_JSON)),
    CMD("sender", "add", ACT_SENDER_ADD, "ua", BIT(OPT_SHARED)),
    CMD("sender", "del", ACT_SENDER_DEL, "ua", 0),
    CMD("sender", "who", ACT_SENDER_WHO, "a", BIT(OPT_JSON)),
    CMD("audit", "prune", ACT_AUDIT_PRUNE, "", BIT(OPT_BEFORE)),
    CMD("audit", NULL, ACT_AUDIT, "", AUDIT_OPTS),
    CMD("log", NULL, ACT_LOG, "", BIT(OPT_SINCE) | BIT(OPT_USER) | BIT(OPT_JSON)),
    OWN("map", "add", admin_map_usage, admin_map),
    OWN("map", "del", admin_map_usage, admin_map),
    OWN("map", "list", admin_map_usage, admin_map),
    OWN("map", "rule", admin_rule_usage, admin_rule),
    OWN("cert", NULL, admin_cert_usage, admin_cert),
    OWN("queue", "list", admin_queue_usage, admin_queue),
    OWN("queue", "flush", admin_queue_usage, admin_queue),
    OWN("queue", "delete", admin_queue_usage, admin_queue),
    OWN("stats", NULL, admin_stats_usage, admin_stats),
};

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
static int check_args(const struct admin_spec *c, const struct cmdline *cl, struct times *t)
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

static int run(struct db *db, const struct admin_spec *c, const struct cmdline *cl,
               const struct times *t)
{
    int json = (cl->seen & BIT(OPT_JSON)) != 0;
    struct admin_user_args ua = {
        .cmd = cl->cmd,
        .user = cl->pos[0],
        .address = cl->pos[1],
        .senders = cl->senders,
        .nsenders = cl->nsenders,
        .shared = (cl->seen & BIT(OPT_SHARED)) != 0,
    };

    switch (c->act) {
    case ACT_USER_ADD:
        return admin_user_add(db, &ua);
    case ACT_USER_DEL:
        return admin_user_del(db, cl->pos[0]);
    case ACT_USER_DISABLE:
        return admin_user_set_enabled(db, cl->pos[0], 0);
    case ACT_USER_ENABLE:
        return admin_user_set_enabled(db, cl->pos[0], 1);
    case ACT_USER_LIST:
        return admin_user_list(db, json);
    case ACT_USER_SHOW:
        return admin_user_show(db, cl->pos[0], json);
    case ACT_SENDER_ADD:
        return admin_sender_add(db, &ua);
    case ACT_SENDER_DEL:
        return admin_sender_del(db, cl->pos[0], cl->pos[1]);
    case ACT_SENDER_WHO:
        return admin_sender_who(db, cl->pos[0], json);
    case ACT_AUDIT:
        return audit(db, cl, t);
    case ACT_AUDIT_PRUNE:
        return admin_audit_prune(db, t->before);
    case ACT_LOG:
        return admin_log_show(db, cl->val[OPT_SINCE] != NULL ? t->since : NULL,
                              cl->val[OPT_USER], json);
    case ACT_OWN:
        break;
    }
    return CLI_EXIT_FAIL;
}

static int finish(int status)
{
    return cli_finish(&admin_prog, status, "standard output: write error");
}

/* --help and --version, anywhere before the command. */
static int global_option(const char *a)
{
    if (strcmp(a, "--help") == 0) {
        fputs(usage_text, stdout);
        return finish(CLI_EXIT_OK);
    }
    if (strcmp(a, "--version") == 0) {
        printf(PROG " %s\n", SUBMITD_VERSION);
        return finish(CLI_EXIT_OK);
    }
    return misuse("unknown option \"%s\"", a);
}

int main(int argc, char **argv)
{
    static struct config cfg;
    const char *config_path = CONFIG_DEFAULT_PATH;
    const struct cli_command *c;
    const struct admin_spec *spec;
    struct cmdline cl;
    struct times t;
    char label[48];
    struct db *db;
    int opt, status = CLI_EXIT_USAGE;

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
            return finish(CLI_EXIT_OK);
        default:
            if (optopt == 'c')
                return misuse("option -c needs a file name");
            return misuse("unknown option -%c", optopt);
        }
    }
    c = cli_command_find(&admin_prog, commands, sizeof(commands) / sizeof(commands[0]), argc,
                         (const char *const *)argv, &optind, &status);
    if (c == NULL)
        return status;
    spec = c->spec;
    if (spec->act == ACT_OWN)
        return finish(spec->own(config_path, c->sub, argc - optind, argv + optind));

    memset(&cl, 0, sizeof(cl));
    memset(&t, 0, sizeof(t));
    if (c->sub != NULL)
        (void)str_fmt(label, sizeof(label), "%s %s", c->name, c->sub);
    else
        str_lcpy(label, c->name, sizeof(label));
    cl.cmd = label;
    status = parse_args(&cl, argc - optind, argv + optind, (int)strlen(spec->args),
                        spec->allowed);
    if (status == 0)
        status = check_args(spec, &cl, &t);
    if (status != 0)
        return status;

    if (cli_config_load(&admin_prog, &cfg, config_path) != 0 ||
        (db = cli_db_open(&admin_prog, &cfg, NULL)) == NULL)
        return CLI_EXIT_FAIL;
    status = run(db, spec, &cl, &t);
    db_close(db);
    return finish(status);
}
