/*
 * submit-admin map rule and cert: certificates of enterprise CAs (issue 14,
 * docs/enterprise-pki.md). A rule names the field of an issuing CA's certificates
 * that names the user; a block refuses one certificate at once.
 */
#include "admin_rule.h"

#include "admin.h"
#include "admin_log.h"
#include "cli_db.h"
#include "cli_out.h"
#include "config.h"
#include "db.h"
#include "dn.h"
#include "util.h"

#include <openssl/pem.h>
#include <stdio.h>
#include <string.h>

#define PROG "submit-admin"
#define DN_MAX 1024
#define DOMAIN_MAX 253

const char admin_rule_usage[] =
    "usage: " PROG " map rule add --issuer DN --field email|san-email|upn|cn\n"
    "                 [--strip-domain DOMAIN] [--require-domain DOMAIN]\n"
    "       " PROG " map rule del --issuer DN\n"
    "       " PROG " map rule list [--json]\n"
    "DN: the issuing CA's subject in RFC 4514 form, as\n"
    "openssl x509 -noout -subject -nameopt RFC2253 prints it\n";

const char admin_cert_usage[] =
    "usage: " PROG " cert block SHA256 [--reason TEXT]\n"
    "       " PROG " cert block --issuer DN --serial HEX [--reason TEXT]\n"
    "       " PROG " cert unblock SHA256 | cert unblock --issuer DN --serial HEX\n"
    "       " PROG " cert list [--json]\n";

struct args {
    const char *cmd;              /* "map rule add", "cert block", ... */
    const char *verb;             /* add, del, list, block, unblock */
    const char *issuer, *field, *strip, *require, *serial, *reason, *sha256;
    int json;
    char issuer_c[DN_MAX];
    enum db_rule_field f;
};

static int misuse(const struct args *a, const char *usage, const char *msg, const char *word)
{
    if (word != NULL)
        return cli_misuse(&admin_prog, usage, "%s: %s \"%s\"", a->cmd, msg, word);
    return cli_misuse(&admin_prog, usage, "%s: %s", a->cmd, msg);
}

/* A domain of --strip-domain or --require-domain: what a sender's domain may be. */
static int domain_valid(const char *d)
{
    char addr[DOMAIN_MAX + 2];

    return strlen(d) <= DOMAIN_MAX && str_fmt(addr, sizeof(addr), "@%s", d) == 0 &&
           db_sender_address_valid(addr);
}

static int field_parse(const char *name, enum db_rule_field *out)
{
    for (int f = DB_RULE_EMAIL; f <= DB_RULE_CN; f++)
        if (strcmp(name, db_rule_field_name((enum db_rule_field)f)) == 0) {
            *out = (enum db_rule_field)f;
            return 0;
        }
    return -1;
}

static int hex_valid(const char *s, size_t min, size_t max)
{
    size_t n = strspn(s, "0123456789abcdefABCDEF");

    return s[n] == '\0' && n >= min && n <= max;
}

/* The words after "map rule" or "cert": the verb, then options; 0 or the exit status. */
static int parse(struct args *a, const char *usage, int argc, char **argv)
{
    char err[256];

    if (argc < 1)
        return misuse(a, usage, "missing subcommand", NULL);
    a->verb = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int more = i + 1 < argc;

        if (strcmp(o, "--issuer") == 0 && more)
            a->issuer = argv[++i];
        else if (strcmp(o, "--field") == 0 && more)
            a->field = argv[++i];
        else if (strcmp(o, "--strip-domain") == 0 && more)
            a->strip = argv[++i];
        else if (strcmp(o, "--require-domain") == 0 && more)
            a->require = argv[++i];
        else if (strcmp(o, "--serial") == 0 && more)
            a->serial = argv[++i];
        else if (strcmp(o, "--reason") == 0 && more)
            a->reason = argv[++i];
        else if (strcmp(o, "--json") == 0)
            a->json = 1;
        else if (o[0] == '-')
            return misuse(a, usage, "unknown option or missing value", o);
        else if (a->sha256 == NULL)
            a->sha256 = o;
        else
            return misuse(a, usage, "unexpected argument", o);
    }
    if (a->issuer != NULL &&
        dn_canon_string(a->issuer, a->issuer_c, sizeof(a->issuer_c), err, sizeof(err)) != 0)
        return cli_misuse(&admin_prog, usage, "%s: --issuer \"%s\": %s", a->cmd, a->issuer, err);
    return 0;
}

/* ---- map rule ------------------------------------------------------------------ */

static int rule_check(struct args *a)
{
    const char *u = admin_rule_usage;
    int list = strcmp(a->verb, "list") == 0, add = strcmp(a->verb, "add") == 0;

    if (!list && !add && strcmp(a->verb, "del") != 0)
        return misuse(a, u, "unknown subcommand", a->verb);
    if (a->serial || a->reason || a->sha256)
        return misuse(a, u, "unexpected argument",
                      a->serial ? a->serial : a->reason ? a->reason : a->sha256);
    if (list)
        return a->issuer || a->field || a->strip || a->require
                   ? misuse(a, u, "list takes no arguments but --json", NULL) : 0;
    if (a->json)
        return misuse(a, u, "--json is only for list", NULL);
    if (a->issuer == NULL)
        return misuse(a, u, "--issuer DN is required", NULL);
    if (!add)
        return a->field || a->strip || a->require
                   ? misuse(a, u, "del takes only --issuer", NULL) : 0;
    if (a->field == NULL)
        return misuse(a, u, "--field email|san-email|upn|cn is required", NULL);
    if (field_parse(a->field, &a->f) != 0)
        return misuse(a, u, "--field: expected email, san-email, upn or cn, got", a->field);
    if (a->strip && !domain_valid(a->strip))
        return misuse(a, u, "--strip-domain: not a domain", a->strip);
    if (a->require && !domain_valid(a->require))
        return misuse(a, u, "--require-domain: not a domain", a->require);
    return 0;
}

/* Our own CA's subject (ca_dir/ca.crt), canonical; "" when it cannot be read. */
static void own_ca_name(const struct config *cfg, char *out, size_t outlen)
{
    char path[4200];
    FILE *f;
    X509 *ca = NULL;

    out[0] = '\0';
    str_fmt(path, sizeof(path), "%s/ca.crt", cfg->ca_dir);
    if ((f = fopen(path, "re")) != NULL) {
        ca = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    if (ca == NULL || dn_canon_name(X509_get_subject_name(ca), out, outlen) != 0)
        out[0] = '\0';
    X509_free(ca);
}

static int print_rule(void *arg, const struct db_map_rule *r)
{
    int *n = arg;
    char created[DB_TIME_TEXT_LEN];
    const char *field = db_rule_field_name(r->field);

    db_time_text(r->created_at, created, sizeof(created));
    if (n[1]) {
        printf("%s\n  {", n[0] ? "," : "");
        cli_json_member(stdout, "issuer", r->issuer_text, 1);
        cli_json_member(stdout, "field", field, 0);
        cli_json_member(stdout, "strip_domain", r->strip_domain, 0);
        cli_json_member(stdout, "require_domain", r->require_domain, 0);
        cli_json_member(stdout, "created_at", created, 0);
        printf("}");
    } else {
        cli_plain_field(stdout, r->issuer_text);
        printf("\t%s\t", field);
        cli_plain_field(stdout, r->strip_domain);
        putchar('\t');
        cli_plain_field(stdout, r->require_domain);
        printf("\t%s\n", created);
    }
    n[0]++;
    return 0;
}

static int rule_list(struct db *db, int json)
{
    int n[2] = { 0, json }, rc;

    if (json)
        printf("[");
    else
        printf("issuer\tfield\tstrip-domain\trequire-domain\tcreated\n");
    rc = db_map_rule_list(db, print_rule, n);
    if (json)
        printf("%s]\n", n[0] ? "\n" : "");
    return rc == DB_OK ? 0 : admin_db_failed(db);
}

/* The rule row and its admin_log row (the caller's transaction); 0 or 1. */
static int rule_change_rows(struct db *db, const struct args *a, const struct config *cfg)
{
    struct db_map_rule r;
    char own[DN_MAX];
    int rc;

    if (strcmp(a->verb, "del") == 0) {
        rc = db_map_rule_del(db, a->issuer_c);
        if (rc == DB_NOTFOUND)
            cli_error(&admin_prog, "map rule del: no rule for issuer \"%s\"", a->issuer);
        if (rc != DB_OK)
            return rc == DB_NOTFOUND ? 1 : admin_db_failed(db);
        return admin_log_record(db, "map rule del", a->issuer, NULL, NULL,
                                "canonical=\"%s\"", a->issuer_c) != 0;
    }
    own_ca_name(cfg, own, sizeof(own));
    if (own[0] && strcmp(own, a->issuer_c) == 0) {
        cli_error(&admin_prog, "map rule add: \"%s\" is submitd's own CA, whose certificates "
                  "are known by fingerprint only", a->issuer);
        return 1;
    }
    memset(&r, 0, sizeof(r));
    str_lcpy(r.issuer, a->issuer_c, sizeof(r.issuer));
    str_lcpy(r.issuer_text, a->issuer, sizeof(r.issuer_text));
    r.field = a->f;
    str_lcpy(r.strip_domain, a->strip ? a->strip : "", sizeof(r.strip_domain));
    str_lcpy(r.require_domain, a->require ? a->require : "", sizeof(r.require_domain));
    rc = db_map_rule_add(db, &r);
    if (rc == DB_EXISTS)
        cli_error(&admin_prog, "map rule add: issuer \"%s\" has a rule already (map rule del "
                  "first)", a->issuer);
    if (rc != DB_OK)
        return rc == DB_EXISTS ? 1 : admin_db_failed(db);
    return admin_log_record(db, "map rule add", a->issuer, NULL, NULL,
                            "field=%s strip-domain=%s require-domain=%s canonical=\"%s\"",
                            a->field, a->strip ? a->strip : "-", a->require ? a->require : "-",
                            a->issuer_c) != 0;
}

/* ---- cert block ------------------------------------------------------------------- */

static int cert_check(struct args *a)
{
    const char *u = admin_cert_usage;
    int list = strcmp(a->verb, "list") == 0;

    if (!list && strcmp(a->verb, "block") != 0 && strcmp(a->verb, "unblock") != 0)
        return misuse(a, u, "unknown subcommand", a->verb);
    if (a->field || a->strip || a->require)
        return misuse(a, u, "unexpected option", a->field ? "--field" : "--strip-domain");
    if (list)
        return a->issuer || a->serial || a->sha256 || a->reason
                   ? misuse(a, u, "list takes no arguments but --json", NULL) : 0;
    if (a->json)
        return misuse(a, u, "--json is only for list", NULL);
    if (a->reason && strcmp(a->verb, "unblock") == 0)
        return misuse(a, u, "--reason is only for block", NULL);
    if ((a->sha256 != NULL) == (a->issuer != NULL || a->serial != NULL))
        return misuse(a, u, "give SHA256, or --issuer DN and --serial HEX", NULL);
    if (a->sha256 && !hex_valid(a->sha256, 64, 64))
        return misuse(a, u, "SHA256: expected 64 hexadecimal digits, got", a->sha256);
    if (!a->sha256 && (a->issuer == NULL || a->serial == NULL))
        return misuse(a, u, "--issuer DN and --serial HEX go together", NULL);
    if (a->serial && !hex_valid(a->serial, 1, 78))
        return misuse(a, u, "--serial: expected hexadecimal digits, got", a->serial);
    if (a->reason && strlen(a->reason) > 200)
        return misuse(a, u, "--reason: at most 200 bytes", NULL);
    return 0;
}

static int print_block(void *arg, const struct db_cert_block *b)
{
    int *n = arg;
    char at[DB_TIME_TEXT_LEN];

    db_time_text(b->blocked_at, at, sizeof(at));
    if (n[1]) {
        printf("%s\n  {", n[0] ? "," : "");
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
    n[0]++;
    return 0;
}

int admin_cert_block_list(struct db *db, int json)
{
    int n[2] = { 0, json }, rc;

    if (json)
        printf("[");
    else
        printf("sha256\tissuer\tserial\tblocked\tby\treason\n");
    rc = db_cert_block_list(db, print_block, n);
    if (json)
        printf("%s]\n", n[0] ? "\n" : "");
    return rc == DB_OK ? 0 : admin_db_failed(db);
}

static int cert_change_rows(struct db *db, const struct args *a)
{
    const char *target = a->sha256 ? a->sha256 : a->serial;
    struct db_cert_block b;
    struct db_actor who;
    int rc;

    if (strcmp(a->verb, "unblock") == 0) {
        rc = db_cert_block_del(db, a->sha256, a->issuer_c, a->serial);
        if (rc == DB_NOTFOUND)
            cli_error(&admin_prog, "cert unblock: %s is not blocked", target);
        if (rc != DB_OK)
            return rc == DB_NOTFOUND ? 1 : admin_db_failed(db);
        return admin_log_record(db, "cert unblock", target, NULL, a->serial, "issuer=\"%s\"",
                                a->issuer ? a->issuer : "") != 0;
    }
    memset(&b, 0, sizeof(b));
    db_actor_get(&who);
    str_lcpy(b.sha256, a->sha256 ? a->sha256 : "", sizeof(b.sha256));
    str_lcpy(b.issuer, a->sha256 ? "" : a->issuer_c, sizeof(b.issuer));
    str_lcpy(b.issuer_text, a->issuer ? a->issuer : "", sizeof(b.issuer_text));
    str_lcpy(b.serial, a->serial ? a->serial : "", sizeof(b.serial));
    str_lcpy(b.reason, a->reason ? a->reason : "", sizeof(b.reason));
    str_lcpy(b.blocked_by, who.sudo_user[0] ? who.sudo_user : who.unix_user,
             sizeof(b.blocked_by));
    rc = db_cert_block_add(db, &b);
    if (rc == DB_EXISTS)
        cli_error(&admin_prog, "cert block: %s is blocked already", target);
    if (rc != DB_OK)
        return rc == DB_EXISTS ? 1 : admin_db_failed(db);
    return admin_log_record(db, "cert block", target, NULL, a->serial,
                            "issuer=\"%s\" reason=\"%s\"", a->issuer ? a->issuer : "",
                            a->reason ? a->reason : "") != 0;
}

/* ---- both -------------------------------------------------------------------------- */

/* A change and its admin_log row in one transaction. */
static int change(struct db *db, const struct args *a, const struct config *cfg, int rule)
{
    int status;

    if (db_begin(db) != DB_OK)
        return admin_db_failed(db);
    status = rule ? rule_change_rows(db, a, cfg) : cert_change_rows(db, a);
    if (status == 0 && db_commit(db) != DB_OK)
        status = admin_db_failed(db);
    if (status != 0) {
        db_rollback(db);
        return status;
    }
    if (rule && strcmp(a->verb, "add") == 0)
        printf("rule added: certificates of %s mapped by %s\n", a->issuer, a->field);
    else if (rule)
        printf("rule deleted: %s\n", a->issuer);
    else
        printf("certificate %s: %s\n", strcmp(a->verb, "block") == 0 ? "blocked" : "unblocked",
               a->sha256 ? a->sha256 : a->serial);
    return 0;
}

static int run(int rule, const char *config_path, int argc, char **argv)
{
    static struct args a;
    static struct config cfg;
    struct db *db;
    int status;
    static char cmd[32];

    memset(&a, 0, sizeof(a));
    a.cmd = rule ? "map rule" : "cert";
    status = parse(&a, rule ? admin_rule_usage : admin_cert_usage, argc, argv);
    if (status == 0)
        status = rule ? rule_check(&a) : cert_check(&a);
    if (status != 0)
        return status;
    str_fmt(cmd, sizeof(cmd), "%s %s", a.cmd, a.verb);
    a.cmd = cmd;
    if (cli_config_load(&admin_prog, &cfg, config_path) != 0 ||
        (db = cli_db_open(&admin_prog, &cfg, NULL)) == NULL)
        return 1;
    if (strcmp(a.verb, "list") == 0)
        status = rule ? rule_list(db, a.json) : admin_cert_block_list(db, a.json);
    else
        status = change(db, &a, &cfg, rule);
    db_close(db);
    return status;
}

int admin_rule(const char *config_path, const char *sub, int argc, char **argv)
{
    (void)sub;
    return run(1, config_path, argc, argv);
}

int admin_cert(const char *config_path, const char *sub, int argc, char **argv)
{
    (void)sub;
    return run(0, config_path, argc, argv);
}
