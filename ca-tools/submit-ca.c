/*
 * submit-ca: the certificate authority of submitd (DESIGN §5).
 *
 * Owns: the CA in ca_dir (ca.key, ca.crt, crl.pem), the CRL at `crl`, the server's
 * tls_cert and tls_key, the client certificates it writes (USER.crt, .key, .p12),
 * and the certificate rows of the database.
 * May not touch: the spool, the configuration file, the daemon's processes (a new
 * server certificate or CRL is picked up by submitd itself, on reload or when the
 * file changes); users and senders only as issue and renew create them.
 * Talks to: the database (through db.h, while submitd runs) and nothing else.
 *
 * This file is the command line: it parses options (before or after the positional
 * arguments), finds the command in the one command table (cli.h), validates every
 * value, loads the configuration and runs the command, which lives in a file of its
 * own (ca_cmd.h) over the shared x509, store and p12 modules.
 * Misuse exits 2 with a short usage; a failing command exits 1.
 */
#include "ca_cmd.h"
#include "ca_msg.h"
#include "cli.h"
#include "cli_db.h"
#include "db.h"
#include "util.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum opt_id {
    OPT_CONFIG, OPT_HELP, OPT_CN, OPT_DAYS, OPT_KEY, OPT_IP, OPT_EMAIL, OPT_OUT,
    OPT_P12_PASSWORD_FILE, OPT_P12, OPT_USER, OPT_EXPIRING, OPT_JSON, OPT_REASON,
    OPT_PASSPHRASE_FILE, OPT_CSR, OPT_REVOKE_OLD, OPT_SERIAL, OPT_ADD, OPT_SHARED, OPT_BLOCKED, OPT_VERSION,
    OPT_COUNT
};

#define BIT(o) (1u << (o))

static const struct opt_def {
    const char *name;
    enum opt_id id;
    int has_arg;
} opt_defs[] = {
    { "-c", OPT_CONFIG, 1 },
    { "--config", OPT_CONFIG, 1 },
    { "-h", OPT_HELP, 0 },
    { "--help", OPT_HELP, 0 },
    { "--cn", OPT_CN, 1 },
    { "--days", OPT_DAYS, 1 },
    { "--key", OPT_KEY, 1 },
    { "--ip", OPT_IP, 1 },
    { "--email", OPT_EMAIL, 1 },
    { "--out", OPT_OUT, 1 },
    { "--p12-password-file", OPT_P12_PASSWORD_FILE, 1 },
    { "--p12", OPT_P12, 1 },
    { "--user", OPT_USER, 1 },
    { "--expiring", OPT_EXPIRING, 1 },
    { "--json", OPT_JSON, 0 },
    { "--reason", OPT_REASON, 1 },
    { "--passphrase-file", OPT_PASSPHRASE_FILE, 1 },
    { "--csr", OPT_CSR, 1 },
    { "--revoke-old", OPT_REVOKE_OLD, 0 },
    { "--serial", OPT_SERIAL, 1 },
    { "--add", OPT_ADD, 0 },
    { "--shared", OPT_SHARED, 0 },
    { "--blocked", OPT_BLOCKED, 0 },
    { "--version", OPT_VERSION, 0 },
};

typedef int (*cmd_fn)(const struct config *cfg, const struct ca_opts *o);

/* What submit-ca knows of each row of its command table (cli_command.spec). */
struct cmd_def {
    const char *name;
    unsigned allowed;     /* options besides -c and --help */
    int nargs_min, nargs_max;
    cmd_fn run;
};

#define CMD(name, allowed, min, max, fn) \
    { name, NULL, NULL, &(const struct cmd_def){ name, allowed, min, max, fn } }

/* Every command of submit-ca. */
static const struct cli_command commands[] = {
    CMD("init", BIT(OPT_CN) | BIT(OPT_DAYS) | BIT(OPT_KEY) | BIT(OPT_PASSPHRASE_FILE), 0, 0,
        ca_cmd_init),
    CMD("server-cert", BIT(OPT_IP) | BIT(OPT_DAYS) | BIT(OPT_KEY) | BIT(OPT_PASSPHRASE_FILE), 1,
        1, ca_cmd_server_cert),
    CMD("issue",
        BIT(OPT_EMAIL) | BIT(OPT_DAYS) | BIT(OPT_OUT) | BIT(OPT_P12_PASSWORD_FILE) | BIT(OPT_P12) |
            BIT(OPT_CSR) | BIT(OPT_PASSPHRASE_FILE) | BIT(OPT_ADD) | BIT(OPT_SHARED),
        1, 1, ca_cmd_issue),
    CMD("renew",
        BIT(OPT_EMAIL) | BIT(OPT_DAYS) | BIT(OPT_OUT) | BIT(OPT_P12_PASSWORD_FILE) | BIT(OPT_P12) |
            BIT(OPT_CSR) | BIT(OPT_PASSPHRASE_FILE) | BIT(OPT_REVOKE_OLD) | BIT(OPT_SHARED),
        1, 1, ca_cmd_renew),
    CMD("revoke", BIT(OPT_USER) | BIT(OPT_REASON) | BIT(OPT_PASSPHRASE_FILE), 0, 1,
        ca_cmd_revoke),
    CMD("crl", BIT(OPT_DAYS) | BIT(OPT_PASSPHRASE_FILE), 0, 0, ca_cmd_crl),
    CMD("list", BIT(OPT_USER) | BIT(OPT_EXPIRING) | BIT(OPT_JSON) | BIT(OPT_BLOCKED), 0, 0,
        ca_cmd_list),
    CMD("log", BIT(OPT_USER) | BIT(OPT_SERIAL) | BIT(OPT_JSON), 0, 0, ca_cmd_log),
};

static const char usage_text[] =
    "usage: submit-ca [-c FILE] init [--cn NAME] [--days N] [--key ec|rsa]\n"
    "                 [--passphrase-file FILE]\n"
    "       submit-ca [-c FILE] server-cert HOSTNAME [--ip ADDR]... [--days N] [--key ec|rsa]\n"
    "       submit-ca [-c FILE] issue USER --email ADDR [--days N] [--out DIR]\n"
    "                 [--p12-password-file FILE] [--p12 legacy|modern] | [--csr FILE]\n"
    "                 [--add] [--shared]\n"
    "       submit-ca [-c FILE] renew USER [--days N] [--email ADDR] [--out DIR]\n"
    "                 [--p12-password-file FILE] [--p12 legacy|modern] | [--csr FILE]\n"
    "                 [--revoke-old] [--shared]\n"
    "       submit-ca [-c FILE] revoke SERIAL | --user USER [--reason REASON]\n"
    "       submit-ca [-c FILE] crl [--days N]\n"
    "       submit-ca [-c FILE] list [--user USER] [--expiring DAYS] [--json]\n"
    "       submit-ca [-c FILE] list --blocked [--json]\n"
    "       submit-ca [-c FILE] log [--user USER] [--serial SERIAL] [--json]\n"
    "       submit-ca --help | --version\n"
    "Commands that use the CA key take --passphrase-file FILE when it is encrypted.\n"
    "issue refuses a user who has a valid certificate unless --add (or use renew), and an\n"
    "address another user owns unless --shared.\n";

/* Everything the command line said, before validation. */
struct cmdline {
    const char *val[OPT_COUNT];
    unsigned seen;
    const char *ips[CA_MAX_IPS];
    int nips;
    const char *pos[4];    /* pos[0] is the command */
    int npos;
};

const struct cli_program ca_prog = { "submit-ca", usage_text, "no command given", 1 };

#define misuse(...) cli_misuse(&ca_prog, NULL, __VA_ARGS__)

static const struct opt_def *find_opt(const char *arg, size_t len)
{
    for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++)
        if (strlen(opt_defs[i].name) == len && strncmp(opt_defs[i].name, arg, len) == 0)
            return &opt_defs[i];
    return NULL;
}

/* Accepts "--opt value", "--opt=value" and "-c FILE"; "--" ends the options. */
static int parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
    int only_pos = 0;

    memset(cl, 0, sizeof(*cl));
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *eq, *value = NULL;
        const struct opt_def *od;
        size_t namelen;

        if (only_pos || arg[0] != '-' || arg[1] == '\0') {
            if (cl->npos == (int)(sizeof(cl->pos) / sizeof(cl->pos[0])))
                return misuse("unexpected argument \"%s\"", arg);
            cl->pos[cl->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_pos = 1;
            continue;
        }
        eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        namelen = eq != NULL ? (size_t)(eq - arg) : strlen(arg);
        if ((od = find_opt(arg, namelen)) == NULL)
            return misuse("unknown option \"%s\"", arg);
        if (od->has_arg) {
            if (eq != NULL)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return misuse("%s needs a value", od->name);
        } else if (eq != NULL) {
            return misuse("%s takes no value", od->name);
        }
        if (od->id == OPT_IP) {
            if (cl->nips == CA_MAX_IPS)
                return misuse("at most 16 --ip options");
            cl->ips[cl->nips++] = value;
        } else if ((cl->seen & BIT(od->id)) != 0 && od->id != OPT_HELP &&
                   od->id != OPT_VERSION) {
            return misuse("%s given more than once", od->name);
        }
        cl->seen |= BIT(od->id);
        cl->val[od->id] = value;
    }
    return 0;
}

static const char *opt_name(enum opt_id id)
{
    for (size_t i = 0; i < sizeof(opt_defs) / sizeof(opt_defs[0]); i++)
        if (opt_defs[i].id == id && strncmp(opt_defs[i].name, "--", 2) == 0)
            return opt_defs[i].name;
    return "?";
}

static int parse_days(const char *s, const char *what, long long min, long long *out)
{
    if (str_to_ll(s, min, 36500, out) != 0)
        return misuse("%s: expected a number of days from %lld to 36500, got \"%s\"", what, min,
                      s);
    return 0;
}

static int valid_ip(const char *s)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Turns the command line into validated options; returns 0 or the exit status 2. */
static int validate(const struct cmd_def *cmd, const struct cmdline *cl, struct ca_opts *o)
{
    const char *v;
    int r;

    memset(o, 0, sizeof(*o));
    o->expiring = -1;
    o->reason = CA_REASON_UNSPECIFIED;
    o->config_path = cl->val[OPT_CONFIG] != NULL ? cl->val[OPT_CONFIG] : CONFIG_DEFAULT_PATH;
    for (int id = OPT_CN; id < OPT_COUNT; id++)
        if ((cl->seen & BIT(id)) != 0 && (cmd->allowed & BIT(id)) == 0)
            return misuse("%s is not an option of %s", opt_name((enum opt_id)id), cmd->name);
    if (cl->npos - 1 < cmd->nargs_min)
        return misuse("%s: missing argument", cmd->name);
    if (cl->npos - 1 > cmd->nargs_max)
        return misuse("%s: unexpected argument \"%s\"", cmd->name, cl->pos[cmd->nargs_max + 1]);
    o->name = cl->npos > 1 ? cl->pos[1] : NULL;

    if ((v = cl->val[OPT_DAYS]) != NULL && parse_days(v, "--days", 1, &o->days) != 0)
        return 2;
    if ((v = cl->val[OPT_EXPIRING]) != NULL && parse_days(v, "--expiring", 0, &o->expiring) != 0)
        return 2;
    if ((v = cl->val[OPT_KEY]) != NULL) {
        if (strcmp(v, "ec") == 0)
            o->key_type = CA_KEY_EC;
        else if (strcmp(v, "rsa") == 0)
            o->key_type = CA_KEY_RSA;
        else
            return misuse("--key: expected ec or rsa, got \"%s\"", v);
    }
    if ((v = cl->val[OPT_CN]) != NULL && (v[0] == '\0' || strlen(v) > CA_CN_MAX))
        return misuse("--cn: expected 1 to 64 bytes, got \"%s\"", v);
    o->cn = cl->val[OPT_CN];
    if ((v = cl->val[OPT_P12]) != NULL) {
        if ((r = ca_p12_format_parse(v)) < 0)
            return misuse("--p12: expected legacy or modern, got \"%s\"", v);
        o->p12_format = (enum ca_p12_format)r;
    }
    if ((v = cl->val[OPT_REASON]) != NULL) {
        o->reason = ca_reason_parse(v);
        if (o->reason == CA_REASON_NONE)
            return misuse("--reason: unknown reason \"%s\" (RFC 5280 names such as "
                          "keyCompromise, superseded, cessationOfOperation)", v);
        if (o->reason == CA_REASON_REMOVE_FROM_CRL)
            return misuse("--reason: %s only has a meaning in delta CRLs", v);
    }
    for (int i = 0; i < cl->nips; i++) {
        if (!valid_ip(cl->ips[i]))
            return misuse("--ip: \"%s\" is not an IPv4 or IPv6 address", cl->ips[i]);
        o->ips[i] = cl->ips[i];
    }
    o->nips = cl->nips;
    o->email = cl->val[OPT_EMAIL];
    o->out_dir = cl->val[OPT_OUT];
    o->p12_password_file = cl->val[OPT_P12_PASSWORD_FILE];
    o->user = cl->val[OPT_USER];
    o->json = (cl->seen & BIT(OPT_JSON)) != 0;
    o->passphrase_file = cl->val[OPT_PASSPHRASE_FILE];
    o->csr = cl->val[OPT_CSR];
    o->revoke_old = (cl->seen & BIT(OPT_REVOKE_OLD)) != 0;
    o->add = (cl->seen & BIT(OPT_ADD)) != 0;
    o->shared = (cl->seen & BIT(OPT_SHARED)) != 0;
    o->blocked = (cl->seen & BIT(OPT_BLOCKED)) != 0;
    if (o->blocked && (o->user != NULL || o->expiring >= 0))
        return misuse("list --blocked takes no --user or --expiring");
    if (o->passphrase_file != NULL && o->passphrase_file[0] == '\0')
        return misuse("--passphrase-file: empty file name");
    if (o->csr != NULL && o->csr[0] == '\0')
        return misuse("--csr: empty file name");
    if (o->csr != NULL && (o->p12_password_file != NULL || cl->val[OPT_P12] != NULL))
        return misuse("--csr: the key stays with its owner, so there is no PKCS#12 bundle "
                      "(--p12, --p12-password-file)");
    if ((v = cl->val[OPT_SERIAL]) != NULL &&
        ca_serial_normalize(v, o->serial, sizeof(o->serial)) != 0)
        return misuse("--serial: \"%s\" is not a serial number (hexadecimal)", v);
    if (o->out_dir != NULL && o->out_dir[0] == '\0')
        return misuse("--out: empty directory name");
    if (o->p12_password_file != NULL && o->p12_password_file[0] == '\0')
        return misuse("--p12-password-file: empty file name");
    if (o->user != NULL && !db_user_name_valid(o->user))
        return misuse("--user: invalid user name \"%s\"", o->user);

    if (strcmp(cmd->name, "server-cert") == 0 && !ca_valid_hostname(o->name))
        return misuse("server-cert: invalid host name \"%s\"", o->name);
    if (strcmp(cmd->name, "issue") == 0 || strcmp(cmd->name, "renew") == 0) {
        if (!db_user_name_valid(o->name))
            return misuse("%s: invalid user name \"%s\" (1 to 64 of A-Z a-z 0-9 . _ -, "
                          "not starting with . or -)", cmd->name, o->name);
        if (o->email == NULL && strcmp(cmd->name, "issue") == 0)
            return misuse("issue: --email ADDR is required");
        if (o->email != NULL && (!ca_valid_email(o->email) || !db_sender_address_valid(o->email)))
            return misuse("--email: invalid address \"%s\"", o->email);
    }
    if (strcmp(cmd->name, "revoke") == 0) {
        if ((o->name == NULL) == (o->user == NULL))
            return misuse("revoke: give either a SERIAL or --user USER");
        if (o->name != NULL && ca_serial_normalize(o->name, o->serial, sizeof(o->serial)) != 0)
            return misuse("revoke: \"%s\" is not a serial number (hexadecimal)", o->name);
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct cmdline cl;
    struct ca_opts o;
    struct config cfg;
    const struct cli_command *found;
    const struct cmd_def *cmd;
    int rc, i = 0;

    if ((rc = parse_cmdline(argc, argv, &cl)) != 0)
        return rc;
    if (cl.seen & BIT(OPT_HELP)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (cl.seen & BIT(OPT_VERSION)) {
        printf("submit-ca %s\n", SUBMITD_VERSION);
        return 0;
    }
    found = cli_command_find(&ca_prog, commands, sizeof(commands) / sizeof(commands[0]),
                             cl.npos, cl.pos, &i, &rc);
    if (found == NULL)
        return rc;
    cmd = found->spec;
    if ((rc = validate(cmd, &cl, &o)) != 0)
        return rc;
    if (cli_config_load(&ca_prog, &cfg, o.config_path) != 0)
        return 1;
    rc = cmd->run(&cfg, &o);
    /* The output may carry the only copy of a password: a lost write is a failure. */
    return cli_finish(&ca_prog, rc, "cannot write to standard output");
}
