/* submit-admin map: certificates of other CAs mapped to users by name (DESIGN §5). */
#include "admin_map.h"

#include "admin.h"
#include "admin_log.h"
#include "cli_db.h"
#include "cli_out.h"
#include "config.h"
#include "db.h"
#include "dn.h"
#include "util.h"

#include <openssl/objects.h>
#include <stdio.h>
#include <string.h>

#define PROG "submit-admin"
#define DN_MAX 1024

const char admin_map_usage[] =
    "usage: " PROG " map add --subject DN [--issuer DN] USER\n"
    "       " PROG " map del --subject DN [--issuer DN]\n"
    "       " PROG " map list [--json]\n"
    "DN in RFC 4514 form, as openssl x509 -noout -subject -nameopt RFC2253 prints it\n";

/* "submit-admin: map: <msg> "<word>"" and the usage; the misuse exit status. */
static int misuse(const char *msg, const char *word)
{
    if (word != NULL)
        return cli_misuse(&admin_prog, admin_map_usage, "map: %s \"%s\"", msg, word);
    return cli_misuse(&admin_prog, admin_map_usage, "map: %s", msg);
}

/*
 * A name for people in RFC 4514 form: attribute types written as dotted OIDs (the
 * canonical form of maps made before names were kept as written) become their short
 * names, "2.5.4.3=x" -> "CN=x". Values are copied as they are, escapes included.
 */
static void dn_display(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    int at_type = 1;

    for (const char *p = in; *p != '\0' && o + 1 < outlen;) {
        if (at_type) {
            size_t n = strcspn(p, "=");
            char type[64];
            const char *sn = NULL;
            int nid;

            at_type = 0;
            if (n < sizeof(type) && p[n] == '=' && strspn(p, "0123456789.") == n) {
                memcpy(type, p, n);
                type[n] = '\0';
                nid = OBJ_txt2nid(type);
                sn = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
            }
            if (sn != NULL && o + strlen(sn) + 1 < outlen) {
                memcpy(out + o, sn, strlen(sn));
                o += strlen(sn);
                p += n;
                continue;
            }
        }
        if (*p == '\\' && p[1] != '\0' && o + 2 < outlen) {
            out[o++] = *p++;
            out[o++] = *p++;
            continue;
        }
        if (*p == ',' || *p == '+')
            at_type = 1;
        out[o++] = *p++;
    }
    out[o] = '\0';
}

struct list_state {
    int json;
    int n;
};

static int print_map(void *arg, const char *subject, const char *issuer, const char *user)
{
    struct list_state *ls = arg;
    char subj[DN_MAX * 2], iss[DN_MAX * 2];

    dn_display(subject, subj, sizeof(subj));
    dn_display(issuer, iss, sizeof(iss));
    if (ls->json) {
        printf("%s\n  {", ls->n ? "," : "");
        cli_json_member(stdout, "user", user, 1);
        cli_json_member(stdout, "subject", subj, 0);
        cli_json_member(stdout, "issuer", iss, 0);
        printf("}");
    } else {
        cli_plain_field(stdout, user);
        putchar('\t');
        cli_plain_field(stdout, subj);
        putchar('\t');
        cli_plain_field(stdout, iss[0] ? iss : "(any issuer)");
        putchar('\n');
    }
    ls->n++;
    return 0;
}

struct map_args {
    const char *sub, *subject, *issuer, *user;
    int json;
    char subj_c[DN_MAX], iss_c[DN_MAX];
};

/* Parses and checks the words after "map SUB"; 0, or the exit status. */
static int parse(struct map_args *a, const char *sub, int argc, char **argv)
{
    char err[256];

    a->sub = sub;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--subject") == 0 && i + 1 < argc)
            a->subject = argv[++i];
        else if (strcmp(argv[i], "--issuer") == 0 && i + 1 < argc)
            a->issuer = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            a->json = 1;
        else if (argv[i][0] == '-')
            return misuse("unknown option or missing value", argv[i]);
        else if (a->user == NULL)
            a->user = argv[i];
        else
            return misuse("unexpected argument", argv[i]);
    }
    if (strcmp(a->sub, "list") == 0) {
        if (a->subject || a->issuer || a->user)
            return misuse("list takes no arguments but --json", NULL);
        return 0;
    }
    if (a->subject == NULL)
        return misuse("--subject DN is required", NULL);
    if (strcmp(a->sub, "add") == 0 && a->user == NULL)
        return misuse("add needs a USER", NULL);
    if (strcmp(a->sub, "del") == 0 && a->user != NULL)
        return misuse("del takes no USER, got", a->user);
    if (a->json)
        return misuse("--json is only for list", NULL);
    if (a->user != NULL && !db_user_name_valid(a->user))
        return misuse("invalid user name", a->user);
    if (dn_canon_string(a->subject, a->subj_c, sizeof(a->subj_c), err, sizeof(err)) != 0) {
        fprintf(stderr, PROG ": map: --subject \"%s\": %s\n", a->subject, err);
        return 2;
    }
    if (a->issuer != NULL &&
        dn_canon_string(a->issuer, a->iss_c, sizeof(a->iss_c), err, sizeof(err)) != 0) {
        fprintf(stderr, PROG ": map: --issuer \"%s\": %s\n", a->issuer, err);
        return 2;
    }
    return 0;
}

static int map_list(struct db *db, int json)
{
    struct list_state ls = { json, 0 };
    int rc;

    if (json)
        printf("[");
    rc = db_map_list(db, print_map, &ls);
    if (json)
        printf("%s]\n", ls.n ? "\n" : "");
    if (rc != DB_OK) {
        fprintf(stderr, PROG ": map list: %s\n", db_errmsg(db));
        return 1;
    }
    return 0;
}

/* The map row and its admin_log row; 0 or the exit status. */
static int map_add_rows(struct db *db, const struct map_args *a)
{
    const char *by = a->issuer ? " issued by " : "", *iss = a->issuer ? a->iss_c : "";
    int rc = db_map_add_text(db, a->subj_c, a->issuer ? a->iss_c : "", a->user, a->subject,
                             a->issuer);

    if (rc == DB_NOTFOUND)
        fprintf(stderr, PROG ": map add: no such user \"%s\"\n", a->user);
    else if (rc == DB_EXISTS)
        fprintf(stderr, PROG ": map add: %s%s%s is already mapped (map del first)\n",
                a->subject, by, a->issuer ? a->issuer : "");
    else if (rc != DB_OK)
        fprintf(stderr, PROG ": map add: %s\n", db_errmsg(db));
    if (rc != DB_OK)
        return 1;
    return admin_log_record(db, "map add", a->subject, a->user, NULL,
                            "issuer=\"%s\" canonical=\"%s%s%s\"", a->issuer ? a->issuer : "",
                            a->subj_c, by, iss) != 0;
}

static int map_del_rows(struct db *db, const struct map_args *a)
{
    int rc = db_map_del(db, a->subj_c, a->issuer ? a->iss_c : NULL);

    if (rc == DB_NOTFOUND)
        fprintf(stderr, PROG ": map del: no map for %s%s%s\n", a->subject,
                a->issuer ? " issued by " : "", a->issuer ? a->issuer : "");
    else if (rc != DB_OK)
        fprintf(stderr, PROG ": map del: %s\n", db_errmsg(db));
    if (rc != DB_OK)
        return 1;
    return admin_log_record(db, "map del", a->subject, NULL, NULL, "issuer=\"%s\"",
                            a->issuer ? a->issuer : "") != 0;
}

/* add or del with its admin_log row, in one transaction. */
static int map_change(struct db *db, const struct map_args *a)
{
    int add = strcmp(a->sub, "add") == 0, status;

    if (db_begin(db) != DB_OK) {
        fprintf(stderr, PROG ": map %s: %s\n", a->sub, db_errmsg(db));
        return 1;
    }
    status = add ? map_add_rows(db, a) : map_del_rows(db, a);
    if (status == 0 && db_commit(db) != DB_OK) {
        fprintf(stderr, PROG ": map %s: %s\n", a->sub, db_errmsg(db));
        status = 1;
    }
    if (status != 0) {
        db_rollback(db);
        return status;
    }
    if (add)
        printf("map added: %s%s%s -> %s\n", a->subject, a->issuer ? " issued by " : "",
               a->issuer ? a->issuer : "", a->user);
    else
        printf("map deleted: %s\n", a->subject);
    return 0;
}

int admin_map(const char *config_path, const char *sub, int argc, char **argv)
{
    static struct map_args a;
    static struct config cfg;
    struct db *db;
    int status;

    memset(&a, 0, sizeof(a));
    if ((status = parse(&a, sub, argc, argv)) != 0)
        return status;
    if (cli_config_load(&admin_prog, &cfg, config_path) != 0 ||
        (db = cli_db_open(&admin_prog, &cfg, NULL)) == NULL)
        return 1;
    status = strcmp(a.sub, "list") == 0 ? map_list(db, a.json) : map_change(db, &a);
    db_close(db);
    return status;
}
