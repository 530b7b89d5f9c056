/*
 * submit-admin: the administrator's tool for users, their sender addresses and the
 * audit trail (DESIGN §5). It opens the daemon's SQLite file directly, through db.h;
 * WAL and the busy timeout let it do so while submitd runs.
 *
 * Exit status: 0 success, 1 failure (named on stderr), 2 misuse (with a usage).
 * Everything from the database is printed through the sanitizers below: the audit
 * trail holds bytes that SMTP clients chose.
 */
#include "admin_map.h"
#include "admin_queue.h"
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
    "  user add USER [--sender ADDR]...\n"
    "  user del|disable|enable USER\n"
    "  user list [--json]\n"
    "  sender add|del USER ADDR          ADDR: local@domain or @domain\n"
    "  audit [--user USER] [--since 30m|1h|2d|ISO-8601]\n"
    "        [--decision accept|reject|tempfail] [--json]\n"
    "  map add --subject DN [--issuer DN] USER      certificates of another CA\n"
    "  map del --subject DN [--issuer DN] | map list [--json]\n"
    "  queue list [--json] | queue flush | queue delete ID\n"
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

/* ---- output sanitizing -------------------------------------------------- */

/*
 * Length of the valid UTF-8 sequence at p (1-4) with its code point in *cp, or 0
 * when the bytes there are not valid UTF-8 (overlong forms and surrogates included).
 */
static size_t utf8_seq(const unsigned char *p, unsigned long *cp)
{
    unsigned long c, min;
    size_t n;

    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    if ((p[0] & 0xe0) == 0xc0) {
        n = 2, c = p[0] & 0x1f, min = 0x80;
    } else if ((p[0] & 0xf0) == 0xe0) {
        n = 3, c = p[0] & 0x0f, min = 0x800;
    } else if ((p[0] & 0xf8) == 0xf0) {
        n = 4, c = p[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;    /* also stops at the terminating NUL */
        c = (c << 6) | (p[i] & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return n;
}

static int is_control(unsigned long cp)
{
    return cp < 0x20 || (cp >= 0x7f && cp < 0xa0);
}

/*
 * Plain output: one row per line with tab-separated columns, so control characters
 * (tabs and newlines included) and invalid UTF-8 become '?'. Empty is "-".
 */
static void put_field(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    if (*p == '\0') {
        fputc('-', stdout);
        return;
    }
    while (*p != '\0') {
        unsigned long cp;
        size_t n = utf8_seq(p, &cp);

        if (n == 0 || is_control(cp)) {
            fputc('?', stdout);
            p += n == 0 ? 1 : n;
        } else {
            fwrite(p, 1, n, stdout);
            p += n;
        }
    }
}

/* A JSON string; invalid UTF-8 becomes U+FFFD. */
static void json_string(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    fputc('"', stdout);
    while (*p != '\0') {
        unsigned long cp;
        size_t n = utf8_seq(p, &cp);

        if (n == 0) {
            fputs("\\ufffd", stdout);
            p++;
            continue;
        }
        if (cp == '"' || cp == '\\')
            printf("\\%c", (int)cp);
        else if (cp == '\n')
            fputs("\\n", stdout);
        else if (cp == '\t')
            fputs("\\t", stdout);
        else if (cp == '\r')
            fputs("\\r", stdout);
        else if (is_control(cp))
            printf("\\u%04lx", cp);
        else
            fwrite(p, 1, n, stdout);
        p += n;
    }
    fputc('"', stdout);
}

/* A JSON member whose value is a string, or null when the string is empty. */
static void json_member(const char *name, const char *value, int first)
{
    printf("%s\"%s\":", first ? "" : ",", name);
    if (value[0] == '\0')
        fputs("null", stdout);
    else
        json_string(value);
}

/* ---- command line ------------------------------------------------------- */

enum {
    OPT_SENDER = 1 << 0,
    OPT_JSON = 1 << 1,
    OPT_USER = 1 << 2,
    OPT_SINCE = 1 << 3,
    OPT_DECISION = 1 << 4,
};

struct cmdline {
    const char *cmd;                 /* "user add", for messages */
    const char *pos[4];
    int npos;
    const char *senders[MAX_SENDER_OPTS];
    int nsenders;
    int json;
    const char *user, *since, *decision;
};

/*
 * Matches "--name VALUE" or "--name=VALUE" at argv[*i]. Returns 1 and sets *value on
 * a match, 0 when argv[*i] is another option, -1 when the value is missing.
 */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i] + 2;
    size_t n = strlen(name);

    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

/*
 * Parses the arguments of one command: positionals (exactly npos of them) and the
 * options in allowed. Returns 0, or the misuse exit status after saying why.
 */
static int parse_args(struct cmdline *cl, int argc, char **argv, int npos, unsigned allowed)
{
    static const struct {
        unsigned flag;
        const char *name;
    } valued[] = {
        { OPT_SENDER, "sender" },
        { OPT_USER, "user" },
        { OPT_SINCE, "since" },
        { OPT_DECISION, "decision" },
    };
    int only_positional = 0;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int matched = 0;

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
        if (strncmp(a, "--", 2) != 0)
            return misuse("%s: unknown option %s", cl->cmd, a);
        if ((allowed & OPT_JSON) && strcmp(a, "--json") == 0) {
            cl->json = 1;
            continue;
        }
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]) && !matched; k++) {
            const char *v = NULL;
            int r;

            if (!(allowed & valued[k].flag))
                continue;
            r = opt_value(argc, argv, &i, valued[k].name, &v);
            if (r < 0)
                return misuse("%s: option --%s needs a value", cl->cmd, valued[k].name);
            if (r == 0)
                continue;
            matched = 1;
            switch (valued[k].flag) {
            case OPT_SENDER:
                if (cl->nsenders >= MAX_SENDER_OPTS)
                    return misuse("%s: at most %d --sender options", cl->cmd, MAX_SENDER_OPTS);
                cl->senders[cl->nsenders++] = v;
                break;
            case OPT_USER:
                cl->user = v;
                break;
            case OPT_SINCE:
                cl->since = v;
                break;
            default:
                cl->decision = v;
                break;
            }
        }
        if (!matched)
            return misuse("%s: unknown option %s", cl->cmd, a);
    }
    if (cl->npos < npos)
        return misuse("%s: missing argument", cl->cmd);
    return 0;
}

/* ---- --since ------------------------------------------------------------ */

/* Reads exactly n digits. */
/* "30m", "1h", "2d", "1w", "90s" before now, or an ISO-8601 time; into "...Z" form. */
static int parse_since(const char *s, char *out, size_t outlen)
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

static int check_user_name(const char *name)
{
    if (db_user_name_valid(name))
        return 0;
    errorf("invalid user name \"%s\": use 1-64 of A-Z a-z 0-9 . _ -, not starting with . or -",
           name);
    return -1;
}

static int check_address(const char *address)
{
    if (db_sender_address_valid(address))
        return 0;
    errorf("invalid sender address \"%s\": expected local@domain or @domain", address);
    return -1;
}

static void lowered(const char *in, char *out, size_t outlen)
{
    str_lcpy(out, in, outlen);
    str_lower(out);
}

/* ---- user --------------------------------------------------------------- */

static int user_add(struct db *db, const struct cmdline *cl)
{
    const char *name = cl->pos[0];
    int rc;

    if (db_begin(db) != DB_OK)
        return db_failed(db);
    rc = db_user_add(db, name);
    if (rc == DB_EXISTS) {
        db_rollback(db);
        errorf("user %s already exists", name);
        return EXIT_FAIL;
    }
    if (rc != DB_OK)
        goto dberr;
    for (int i = 0; i < cl->nsenders; i++) {
        rc = db_sender_add(db, name, cl->senders[i]);
        if (rc != DB_OK && rc != DB_EXISTS)    /* the same --sender twice is fine */
            goto dberr;
    }
    if (db_commit(db) != DB_OK)
        goto dberr;

    printf("user %s added", name);
    for (int i = 0, shown = 0; i < cl->nsenders; i++) {
        char addr[400];
        int dup = 0;

        for (int j = 0; j < i && !dup; j++)
            dup = strcasecmp(cl->senders[i], cl->senders[j]) == 0;
        if (dup)
            continue;
        lowered(cl->senders[i], addr, sizeof(addr));
        printf("%s%s", shown++ == 0 ? " with sender(s) " : ", ", addr);
    }
    putchar('\n');
    return EXIT_OK;

dberr:
    rc = db_failed(db);
    db_rollback(db);
    return rc;
}

static int count_valid_cert(void *arg, const struct db_cert *c)
{
    if (strcmp(c->status, "valid") == 0)
        ++*(int *)arg;
    return 0;
}

static int user_del(struct db *db, const char *name)
{
    int valid = 0, rc;

    if (db_begin(db) != DB_OK)
        return db_failed(db);
    if (db_cert_list(db, name, NULL, count_valid_cert, &valid) != DB_OK)
        goto dberr;
    rc = db_user_del(db, name);
    if (rc == DB_NOTFOUND) {
        db_rollback(db);
        errorf("user %s does not exist", name);
        return EXIT_FAIL;
    }
    if (rc != DB_OK || db_commit(db) != DB_OK)
        goto dberr;
    if (valid > 0)
        printf("user %s deleted; %d certificate%s revoked (run submit-ca crl to publish the CRL)\n",
               name, valid, valid == 1 ? "" : "s");
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
    int rc = db_user_set_enabled(db, name, enabled);

    if (rc == DB_NOTFOUND) {
        errorf("user %s does not exist", name);
        return EXIT_FAIL;
    }
    if (rc != DB_OK)
        return db_failed(db);
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

    if (ls->json) {
        fputs(ls->n ? "," : "", stdout);
        json_string(address);
    } else {
        fputs(ls->n ? "," : "", stdout);
        put_field(address);
    }
    ls->n++;
    return 0;
}

static int print_user(void *arg, const struct db_user *u)
{
    struct list_state *ls = arg;

    ls->n = 0;
    if (ls->json) {
        fputs(ls->rows ? ",\n" : "\n", stdout);
        fputs("{", stdout);
        json_member("name", u->name, 1);
        printf(",\"enabled\":%s", u->enabled ? "true" : "false");
        json_member("created_at", u->created_at, 0);
        fputs(",\"senders\":[", stdout);
    } else {
        put_field(u->name);
        printf("\t%s\t", u->enabled ? "enabled" : "disabled");
        put_field(u->created_at);
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

static int sender_add(struct db *db, const char *user, const char *address)
{
    char addr[400];
    int rc = db_sender_add(db, user, address);

    lowered(address, addr, sizeof(addr));
    if (rc == DB_NOTFOUND) {
        errorf("user %s does not exist", user);
        return EXIT_FAIL;
    }
    if (rc == DB_EXISTS) {
        errorf("user %s already owns sender %s", user, addr);
        return EXIT_FAIL;
    }
    if (rc != DB_OK)
        return db_failed(db);
    printf("sender %s added to user %s\n", addr, user);
    return EXIT_OK;
}

static int sender_del(struct db *db, const char *user, const char *address)
{
    char addr[400];
    int rc = db_sender_del(db, user, address);

    lowered(address, addr, sizeof(addr));
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
    printf("sender %s removed from user %s\n", addr, user);
    return EXIT_OK;
}

/* ---- audit -------------------------------------------------------------- */

static int print_audit_plain(void *arg, const struct db_audit_row *r)
{
    const char *cols[] = { r->ts,   r->event, r->decision, r->user,
                           r->mail_from, r->rcpt, r->queue_id, r->reason };

    (void)arg;
    for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
        if (i > 0)
            putchar('\t');
        put_field(cols[i]);
    }
    putchar('\n');
    return 0;
}

static int print_audit_json(void *arg, const struct db_audit_row *r)
{
    int *rows = arg;

    fputs(*rows ? ",\n" : "\n", stdout);
    printf("{\"id\":%lld", r->id);
    json_member("ts", r->ts, 0);
    json_member("session", r->session, 0);
    json_member("event", r->event, 0);
    json_member("decision", r->decision, 0);
    json_member("reason", r->reason, 0);
    json_member("client_ip", r->client_ip, 0);
    json_member("user", r->user, 0);
    json_member("cert_sha256", r->cert_sha256, 0);
    json_member("cert_subject", r->cert_subject, 0);
    json_member("mail_from", r->mail_from, 0);
    json_member("rcpt", r->rcpt, 0);
    json_member("queue_id", r->queue_id, 0);
    if (r->size < 0)
        fputs(",\"size\":null", stdout);
    else
        printf(",\"size\":%lld", r->size);
    json_member("tls", r->tls, 0);
    fputs("}", stdout);
    ++*rows;
    return 0;
}

static int audit(struct db *db, const struct cmdline *cl, const char *since)
{
    int rows = 0, rc;

    if (cl->json) {
        fputs("[", stdout);
        rc = db_audit_query(db, cl->user, since, cl->decision, print_audit_json, &rows);
        fputs(rows ? "\n]\n" : "]\n", stdout);
    } else {
        rc = db_audit_query(db, cl->user, since, cl->decision, print_audit_plain, &rows);
    }
    return rc == DB_OK ? EXIT_OK : db_failed(db);
}

/* ---- main --------------------------------------------------------------- */

enum action {
    ACT_USER_ADD,
    ACT_USER_DEL,
    ACT_USER_DISABLE,
    ACT_USER_ENABLE,
    ACT_USER_LIST,
    ACT_SENDER_ADD,
    ACT_SENDER_DEL,
    ACT_AUDIT,
};

static const struct command {
    const char *cmd, *sub;       /* sub is NULL for commands without one */
    enum action act;
    int npos;                    /* positional arguments */
    unsigned allowed;            /* OPT_* */
} commands[] = {
    { "user", "add", ACT_USER_ADD, 1, OPT_SENDER },
    { "user", "del", ACT_USER_DEL, 1, 0 },
    { "user", "disable", ACT_USER_DISABLE, 1, 0 },
    { "user", "enable", ACT_USER_ENABLE, 1, 0 },
    { "user", "list", ACT_USER_LIST, 0, OPT_JSON },
    { "sender", "add", ACT_SENDER_ADD, 2, 0 },
    { "sender", "del", ACT_SENDER_DEL, 2, 0 },
    { "audit", NULL, ACT_AUDIT, 0, OPT_USER | OPT_SINCE | OPT_DECISION | OPT_JSON },
};

/*
 * Finds the command named by argv[*i] (and its subcommand), advancing *i past them.
 * Returns NULL after a misuse message; *status is then the exit status.
 */
static const struct command *find_command(int argc, char **argv, int *i, int *status)
{
    const char *cmd = argv[(*i)++], *sub = NULL;
    int known = 0;

    for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++) {
        const struct command *c = &commands[k];

        if (strcmp(c->cmd, cmd) != 0)
            continue;
        known = 1;
        if (c->sub == NULL)
            return c;
        if (sub == NULL) {
            if (*i >= argc) {
                *status = misuse("%s: missing subcommand", cmd);
                return NULL;
            }
            sub = argv[*i];
        }
        if (strcmp(c->sub, sub) == 0) {
            (*i)++;
            return c;
        }
    }
    if (known)
        *status = misuse("%s: unknown subcommand \"%s\"", cmd, sub);
    else
        *status = misuse("unknown command \"%s\"", cmd);
    return NULL;
}

/* Checks the values of the arguments before the database is opened (or created). */
static int check_args(const struct command *c, const struct cmdline *cl, char *since,
                      size_t sincelen)
{
    if (cl->since != NULL && parse_since(cl->since, since, sincelen) != 0)
        return misuse("audit: --since \"%s\": expected a number with s, m, h, d or w, or "
                      "an ISO-8601 time",
                      cl->since);
    if (cl->decision != NULL && strcmp(cl->decision, "accept") != 0 &&
        strcmp(cl->decision, "reject") != 0 && strcmp(cl->decision, "tempfail") != 0)
        return misuse("audit: --decision \"%s\": expected accept, reject or tempfail",
                      cl->decision);
    if (c->npos > 0 && check_user_name(cl->pos[0]) != 0)
        return EXIT_FAIL;
    if (c->act == ACT_SENDER_ADD && check_address(cl->pos[1]) != 0)
        return EXIT_FAIL;
    for (int i = 0; i < cl->nsenders; i++)
        if (check_address(cl->senders[i]) != 0)
            return EXIT_FAIL;
    return 0;
}

static int run(struct db *db, const struct command *c, const struct cmdline *cl,
               const char *since)
{
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
        return user_list(db, cl->json);
    case ACT_SENDER_ADD:
        return sender_add(db, cl->pos[0], cl->pos[1]);
    case ACT_SENDER_DEL:
        return sender_del(db, cl->pos[0], cl->pos[1]);
    case ACT_AUDIT:
        return audit(db, cl, since);
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

int main(int argc, char **argv)
{
    const char *config_path = CONFIG_DEFAULT_PATH;
    const struct command *c;
    struct cmdline cl;
    char since[32] = "", label[48];
    struct db *db;
    int opt, status = EXIT_USAGE;

    if (argc > 1 && strcmp(argv[1], "--help") == 0) {
        fputs(usage_text, stdout);
        return finish(EXIT_OK);
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
    c = find_command(argc, argv, &optind, &status);
    if (c == NULL)
        return status;

    memset(&cl, 0, sizeof(cl));
    if (c->sub != NULL)
        (void)str_fmt(label, sizeof(label), "%s %s", c->cmd, c->sub);
    else
        str_lcpy(label, c->cmd, sizeof(label));
    cl.cmd = label;
    status = parse_args(&cl, argc - optind, argv + optind, c->npos, c->allowed);
    if (status == 0)
        status = check_args(c, &cl, since, sizeof(since));
    if (status != 0)
        return status;

    db = open_db(config_path);
    if (db == NULL)
        return EXIT_FAIL;
    status = run(db, c, &cl, cl.since != NULL ? since : NULL);
    db_close(db);
    return finish(status);
}
