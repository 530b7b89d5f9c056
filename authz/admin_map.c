/* submit-admin map: certificates of other CAs mapped to users by name (DESIGN §5). */
#include "admin_map.h"

#include "config.h"
#include "db.h"
#include "dn.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

#define PROG "submit-admin"

static int misuse(const char *msg)
{
    fprintf(stderr, PROG ": map: %s\n"
                    "usage: " PROG " map add --subject DN [--issuer DN] USER\n"
                    "       " PROG " map del --subject DN [--issuer DN]\n"
                    "       " PROG " map list [--json]\n"
                    "DN in RFC 4514 form, as openssl x509 -noout -subject -nameopt RFC2253 "
                    "prints it\n",
            msg);
    return 2;
}

static struct db *open_database(const char *config_path)
{
    struct config cfg;
    char err[1024];
    struct db *db;

    if (config_load(&cfg, config_path, err, sizeof(err)) != 0) {
        fprintf(stderr, PROG ": %s\n", err);
        return NULL;
    }
    db = db_open(cfg.database, err, sizeof(err));
    if (db == NULL)
        fprintf(stderr, PROG ": %s\n", err);
    return db;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

struct list_state {
    int json;
    int n;
};

static int print_map(void *arg, const char *subject, const char *issuer, const char *user)
{
    struct list_state *ls = arg;

    if (ls->json) {
        printf("%s\n  {\"user\": ", ls->n ? "," : "");
        json_string(user);
        printf(", \"subject\": ");
        json_string(subject);
        printf(", \"issuer\": ");
        json_string(issuer);
        printf("}");
    } else {
        printf("%s\t%s\t%s\n", user, subject, issuer[0] ? issuer : "(any issuer)");
    }
    ls->n++;
    return 0;
}

int admin_map(const char *config_path, int argc, char **argv)
{
    const char *sub, *subject = NULL, *issuer = NULL, *user = NULL;
    char subj_c[1024], iss_c[1024], err[256];
    int json = 0, rc, status;
    struct db *db;

    if (argc < 1)
        return misuse("missing subcommand");
    sub = argv[0];
    if (strcmp(sub, "add") != 0 && strcmp(sub, "del") != 0 && strcmp(sub, "list") != 0)
        return misuse("unknown subcommand");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--subject") == 0 && i + 1 < argc)
            subject = argv[++i];
        else if (strcmp(argv[i], "--issuer") == 0 && i + 1 < argc)
            issuer = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (argv[i][0] == '-')
            return misuse("unknown option or missing value");
        else if (user == NULL)
            user = argv[i];
        else
            return misuse("too many arguments");
    }
    if (strcmp(sub, "list") == 0) {
        if (subject || issuer || user)
            return misuse("list takes no arguments but --json");
    } else {
        if (subject == NULL)
            return misuse("--subject DN is required");
        if (strcmp(sub, "add") == 0 && user == NULL)
            return misuse("add needs a USER");
        if (strcmp(sub, "del") == 0 && user != NULL)
            return misuse("del takes no USER");
        if (json)
            return misuse("--json is only for list");
        if (dn_canon_string(subject, subj_c, sizeof(subj_c), err, sizeof(err)) != 0) {
            fprintf(stderr, PROG ": map: --subject \"%s\": %s\n", subject, err);
            return 1;
        }
        if (issuer != NULL &&
            dn_canon_string(issuer, iss_c, sizeof(iss_c), err, sizeof(err)) != 0) {
            fprintf(stderr, PROG ": map: --issuer \"%s\": %s\n", issuer, err);
            return 1;
        }
    }
    db = open_database(config_path);
    if (db == NULL)
        return 1;
    if (strcmp(sub, "list") == 0) {
        struct list_state ls = { json, 0 };
        if (json)
            printf("[");
        rc = db_map_list(db, print_map, &ls);
        if (json)
            printf("%s]\n", ls.n ? "\n" : "");
        status = rc == DB_OK ? 0 : 1;
        if (rc != DB_OK)
            fprintf(stderr, PROG ": map list: %s\n", db_errmsg(db));
    } else if (strcmp(sub, "add") == 0) {
        rc = db_map_add(db, subj_c, issuer ? iss_c : "", user);
        status = rc == DB_OK ? 0 : 1;
        if (rc == DB_OK)
            printf("map added: %s%s%s -> %s\n", subj_c, issuer ? " issued by " : "",
                   issuer ? iss_c : "", user);
        else if (rc == DB_NOTFOUND)
            fprintf(stderr, PROG ": map add: no such user \"%s\"\n", user);
        else if (rc == DB_EXISTS)
            fprintf(stderr, PROG ": map add: %s%s%s is already mapped (map del first)\n",
                    subj_c, issuer ? " issued by " : "", issuer ? iss_c : "");
        else
            fprintf(stderr, PROG ": map add: %s\n", db_errmsg(db));
    } else {
        rc = db_map_del(db, subj_c, issuer ? iss_c : NULL);
        status = rc == DB_OK ? 0 : 1;
        if (rc == DB_OK)
            printf("map deleted: %s\n", subj_c);
        else if (rc == DB_NOTFOUND)
            fprintf(stderr, PROG ": map del: no map for %s%s%s\n", subj_c,
                    issuer ? " issued by " : "", issuer ? iss_c : "");
        else
            fprintf(stderr, PROG ": map del: %s\n", db_errmsg(db));
    }
    db_close(db);
    return status;
}
