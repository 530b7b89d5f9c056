/* Parser for submitd.conf (DESIGN §6). */
#include "config.h"

#include "log.h"
#include "netaddr.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum key_kind { K_STR, K_PATH, K_INT, K_SIZE, K_DURATION, K_BOOL, K_UPSTREAM_TLS, K_AUTH_PASSWORD,
                K_LOGLEVEL, K_LOGMODE, K_FACILITY, K_PROXY, K_CIDRS };

struct key_def {
    const char *name;
    enum key_kind kind;
    size_t offset;
    size_t size;          /* buffer size for strings */
    long long min, max;   /* for integers */
};

#define STR(f, k) { #f, k, offsetof(struct config, f), sizeof(((struct config *)0)->f), 0, 0 }
#define INT(f, lo, hi) { #f, K_INT, offsetof(struct config, f), 0, lo, hi }
#define BOOL(f) { #f, K_BOOL, offsetof(struct config, f), 0, 0, 1 }
/* Seconds, or with an s, m, h or d suffix (DESIGN §6). */
#define DURATION(f, lo, hi) { #f, K_DURATION, offsetof(struct config, f), 0, lo, hi }

static const struct key_def keys[] = {
    STR(hostname, K_STR),
    STR(listen, K_STR),
    STR(listen_tls, K_STR),
    STR(tls_cert, K_PATH),
    STR(tls_key, K_PATH),
    STR(ca_dir, K_PATH),
    STR(client_ca, K_PATH),
    STR(crl, K_PATH),
    STR(database, K_PATH),
    STR(spool, K_PATH),
    STR(upstream, K_STR),
    { "upstream_tls", K_UPSTREAM_TLS, offsetof(struct config, upstream_tls), 0, 0, 0 },
    STR(upstream_ca, K_PATH),
    STR(upstream_cert, K_PATH),
    STR(upstream_key, K_PATH),
    STR(user, K_STR),
    STR(pam_service, K_STR),
    STR(pam_confdir, K_PATH),
    BOOL(pam_account_check),
    DURATION(pam_timeout, 1, 300),
    DURATION(pam_cache, 0, 86400),
    { "auth_password", K_AUTH_PASSWORD, offsetof(struct config, auth_password), 0, 0, 0 },
    /* At most 8G: the relay reads a message whole, and the spool's reader takes files
     * up to 16 GiB (spool.c), which leaves room for the envelope and the records. */
    { "max_message_size", K_SIZE, offsetof(struct config, max_message_size), 0, 1024,
      (long long)1 << 33 },
    { "max_header_size", K_SIZE, offsetof(struct config, max_header_size), 0, 1024,
      (long long)1 << 30 },
    INT(max_recipients, 1, 100000),
    INT(max_sessions, 1, 1000000),
    INT(max_sessions_per_ip, 1, 1000000),
    INT(rate_messages_per_hour, 0, 100000000),
    INT(rate_recipients_per_hour, 0, 100000000),
    DURATION(timeout, 1, 86400),
    DURATION(tls_handshake_timeout, 1, 86400),
    BOOL(check_header_from),
    BOOL(hide_client),
    DURATION(retry_min, 1, 86400 * 30),
    DURATION(retry_max, 1, 86400 * 30),
    DURATION(queue_lifetime, 1, 86400 * 365),
    { "log_level", K_LOGLEVEL, offsetof(struct config, log_level), 0, 0, 0 },
    INT(smtp_workers, 0, 256),
    STR(smtp_user, K_STR),
    INT(audit_retention, 0, 36500),
    { "log", K_LOGMODE, offsetof(struct config, log_mode), 0, 0, 0 },
    STR(syslog_facility, K_FACILITY),
    { "proxy_protocol", K_PROXY, offsetof(struct config, proxy_protocol), 0, 0, 0 },
    STR(proxy_trusted, K_CIDRS),
};

_Static_assert(sizeof(keys) / sizeof(keys[0]) <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* Only a restart changes these (see config.h): the master binds the listeners (and
 * whether they expect a PROXY header),
 * changes users and locks the spool once; authz opens the database once; tables are
 * sized by max_sessions at start; the queue's relay threads hold the upstream
 * settings. */
static const char *const restart_keys[] = {
    "listen", "listen_tls", "user", "smtp_user", "spool", "database", "smtp_workers",
    "max_sessions", "pam_service", "pam_confdir", "upstream", "upstream_tls", "upstream_ca",
    "upstream_cert", "upstream_key", "retry_min", "retry_max", "queue_lifetime", "log",
    "syslog_facility", "proxy_protocol",
};

static const char *const log_mode_names[] = { "auto", "stderr", "syslog" };
static const char *const upstream_tls_names[] = { "verify", "encrypt", "none" };
static const char *const auth_password_names[] = { "no", "fallback", "second-factor" };
static const char *const proxy_protocol_names[] = { "no", "v2" };
/* The facilities syslog(3) knows by name, as in syslog.conf. */
static const char *const facility_names[] = {
    "mail", "daemon", "user", "auth", "authpriv", "local0", "local1", "local2", "local3",
    "local4", "local5", "local6", "local7",
};

void config_defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    if (gethostname(cfg->hostname, sizeof(cfg->hostname)) != 0 || cfg->hostname[0] == '\0')
        str_lcpy(cfg->hostname, "localhost", sizeof(cfg->hostname));
    cfg->hostname[sizeof(cfg->hostname) - 1] = '\0';
    str_lcpy(cfg->listen, "0.0.0.0:587", sizeof(cfg->listen));
    str_lcpy(cfg->tls_cert, "server.crt", sizeof(cfg->tls_cert));
    str_lcpy(cfg->tls_key, "server.key", sizeof(cfg->tls_key));
    str_lcpy(cfg->ca_dir, "ca", sizeof(cfg->ca_dir));
    str_lcpy(cfg->client_ca, "ca/ca.crt", sizeof(cfg->client_ca));
    str_lcpy(cfg->crl, "ca/crl.pem", sizeof(cfg->crl));
    str_lcpy(cfg->database, "submitd.db", sizeof(cfg->database));
    str_lcpy(cfg->spool, "spool", sizeof(cfg->spool));
    cfg->upstream_tls = UPSTREAM_TLS_VERIFY;
    str_lcpy(cfg->user, "submitd", sizeof(cfg->user));
    str_lcpy(cfg->pam_service, "submitd", sizeof(cfg->pam_service));
    cfg->pam_account_check = 1;
    cfg->pam_timeout = 10;
    cfg->auth_password = AUTH_PASSWORD_NO;
    cfg->max_message_size = 26214400;
    cfg->max_header_size = 1048576;
    cfg->max_recipients = 100;
    cfg->max_sessions = 1000;
    cfg->max_sessions_per_ip = 50;
    cfg->rate_messages_per_hour = 500;
    cfg->rate_recipients_per_hour = 5000;
    cfg->timeout = 300;
    cfg->tls_handshake_timeout = 30;
    cfg->check_header_from = 1;
    cfg->hide_client = 0;
    cfg->retry_min = 60;
    cfg->retry_max = 3600;
    cfg->queue_lifetime = 432000;
    cfg->log_level = LOG_LVL_INFO;
    cfg->smtp_workers = 0;
    cfg->log_mode = LOG_DEST_AUTO;
    str_lcpy(cfg->syslog_facility, "mail", sizeof(cfg->syslog_facility));
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

/* Resolves a relative path against the configuration directory; "" stays "". */
static int resolve_path(const struct config *cfg, const char *value, char *out, size_t outlen)
{
    if (value[0] == '\0' || value[0] == '/')
        return str_lcpy(out, value, outlen) < outlen ? 0 : -1;
    return str_fmt(out, outlen, "%s/%s", cfg->dir, value);
}

static int parse_bool(const char *v, int *out)
{
    if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
        strcmp(v, "on") == 0)
        *out = 1;
    else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0 ||
             strcmp(v, "off") == 0)
        *out = 0;
    else
        return -1;
    return 0;
}

/* Accepts a plain byte count or a K/M/G suffix (powers of 1024). */
static int parse_size(const char *v, long long min, long long max, long long *out)
{
    char num[32];
    size_t n = strlen(v);
    long long mult = 1, x;

    if (n == 0 || n >= sizeof(num))
        return -1;
    str_lcpy(num, v, sizeof(num));
    switch (num[n - 1]) {
    case 'k': case 'K': mult = 1024; break;
    case 'm': case 'M': mult = 1024 * 1024; break;
    case 'g': case 'G': mult = 1024 * 1024 * 1024; break;
    default: break;
    }
    if (mult != 1)
        num[n - 1] = '\0';
    if (str_to_ll(num, 0, max, &x) != 0 || x > max / mult || x * mult < min)
        return -1;
    *out = x * mult;
    return 0;
}

/* Accepts seconds, or a number with an s, m, h or d suffix. */
static int parse_duration(const char *v, long long min, long long max, long long *out)
{
    static const char units[] = "smhd";
    static const long long unit_seconds[] = { 1, 60, 3600, 86400 };
    char num[32];
    size_t n = strlen(v);
    const char *unit;
    long long mult = 1, x;

    if (n == 0 || n >= sizeof(num))
        return -1;
    str_lcpy(num, v, sizeof(num));
    unit = strchr(units, num[n - 1]);
    if (unit != NULL) {
        mult = unit_seconds[unit - units];
        num[n - 1] = '\0';
    }
    if (str_to_ll(num, 0, max, &x) != 0 || x > max / mult || x * mult < min)
        return -1;
    *out = x * mult;
    return 0;
}

static int set_key(struct config *cfg, const struct key_def *k, const char *v, char *why,
                   size_t whylen)
{
    char *field = (char *)cfg + k->offset;
    long long x;
    int b;

    switch (k->kind) {
    case K_STR:
        if (str_lcpy(field, v, k->size) >= k->size) {
            str_fmt(why, whylen, "value longer than %zu bytes", k->size - 1);
            return -1;
        }
        return 0;
    case K_PATH:
        if (strncmp(v, "postgresql://", 13) == 0 || strncmp(v, "postgres://", 11) == 0) {
            if (k->offset != offsetof(struct config, database)) {
                str_fmt(why, whylen, "a path is expected, not a URI");
                return -1;
            }
            if (str_lcpy(field, v, k->size) >= k->size) {
                str_fmt(why, whylen, "value longer than %zu bytes", k->size - 1);
                return -1;
            }
            return 0;
        }
        if (resolve_path(cfg, v, field, k->size) != 0) {
            str_fmt(why, whylen, "path too long");
            return -1;
        }
        return 0;
    case K_INT:
        if (str_to_ll(v, k->min, k->max, &x) != 0) {
            str_fmt(why, whylen, "expected an integer from %lld to %lld, got \"%s\"", k->min,
                    k->max, v);
            return -1;
        }
        *(int *)(void *)field = (int)x;
        return 0;
    case K_SIZE:
        if (parse_size(v, k->min, k->max, &x) != 0) {
            str_fmt(why, whylen, "expected a size in bytes (suffix K, M or G allowed) from %lld "
                    "to %lldG, got \"%s\"", k->min, k->max >> 30, v);
            return -1;
        }
        *(long long *)(void *)field = x;
        return 0;
    case K_DURATION:
        if (parse_duration(v, k->min, k->max, &x) != 0) {
            str_fmt(why, whylen,
                    "expected a duration from %lld to %lld seconds (suffix s, m, h or d allowed), got \"%s\"",
                    k->min, k->max, v);
            return -1;
        }
        *(int *)(void *)field = (int)x;
        return 0;
    case K_BOOL:
        if (parse_bool(v, &b) != 0) {
            str_fmt(why, whylen, "expected yes or no, got \"%s\"", v);
            return -1;
        }
        *(int *)(void *)field = b;
        return 0;
    case K_UPSTREAM_TLS:
        if (strcmp(v, "verify") == 0)
            cfg->upstream_tls = UPSTREAM_TLS_VERIFY;
        else if (strcmp(v, "encrypt") == 0)
            cfg->upstream_tls = UPSTREAM_TLS_ENCRYPT;
        else if (strcmp(v, "none") == 0)
            cfg->upstream_tls = UPSTREAM_TLS_NONE;
        else {
            str_fmt(why, whylen, "expected verify, encrypt or none, got \"%s\"", v);
            return -1;
        }
        return 0;
    case K_AUTH_PASSWORD:
        if (strcmp(v, "no") == 0)
            cfg->auth_password = AUTH_PASSWORD_NO;
        else if (strcmp(v, "fallback") == 0)
            cfg->auth_password = AUTH_PASSWORD_FALLBACK;
        else if (strcmp(v, "second-factor") == 0)
            cfg->auth_password = AUTH_PASSWORD_SECOND_FACTOR;
        else {
            str_fmt(why, whylen, "expected no, fallback or second-factor, got \"%s\"", v);
            return -1;
        }
        return 0;
    case K_PROXY:
        if (strcmp(v, "no") == 0)
            cfg->proxy_protocol = PROXY_PROTOCOL_NO;
        else if (strcmp(v, "v2") == 0)
            cfg->proxy_protocol = PROXY_PROTOCOL_V2;
        else {
            str_fmt(why, whylen, "expected no or v2, got \"%s\"", v);
            return -1;
        }
        return 0;
    case K_CIDRS:
        if (addr_cidr_list_check(v, why, whylen) != 0)
            return -1;
        if (str_lcpy(field, v, k->size) >= k->size) {
            str_fmt(why, whylen, "value longer than %zu bytes", k->size - 1);
            return -1;
        }
        return 0;
    case K_LOGLEVEL:
        if ((b = log_level_parse(v)) < 0) {
            str_fmt(why, whylen, "expected error, warning, info or debug, got \"%s\"", v);
            return -1;
        }
        cfg->log_level = b;
        return 0;
    case K_LOGMODE:
        for (b = 0; b < 3; b++)
            if (strcmp(v, log_mode_names[b]) == 0) {
                cfg->log_mode = b;
                return 0;
            }
        str_fmt(why, whylen, "expected auto, stderr or syslog, got \"%s\"", v);
        return -1;
    case K_FACILITY:
        for (size_t i = 0; i < sizeof(facility_names) / sizeof(facility_names[0]); i++)
            if (strcmp(v, facility_names[i]) == 0) {
                str_lcpy(field, v, k->size);
                return 0;
            }
        str_fmt(why, whylen, "expected mail, daemon, user, auth, authpriv or local0 to local7, "
                "got \"%s\"", v);
        return -1;
    }
    return -1;
}

/* Re-resolves the default relative paths once the configuration directory is known. */
static int resolve_defaults(struct config *cfg)
{
    char tmp[PATH_MAX];
    char *paths[] = { cfg->tls_cert, cfg->tls_key, cfg->ca_dir, cfg->client_ca, cfg->crl,
                      cfg->database, cfg->spool };

    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        if (resolve_path(cfg, paths[i], tmp, sizeof(tmp)) != 0)
            return -1;
        str_lcpy(paths[i], tmp, PATH_MAX);
    }
    return 0;
}

/* Sets cfg->path and cfg->dir from a canonical path, and the default paths. */
static int set_location(struct config *cfg, const char *canonical)
{
    char *slash;

    if (str_lcpy(cfg->path, canonical, sizeof(cfg->path)) >= sizeof(cfg->path))
        return -1;
    str_lcpy(cfg->dir, cfg->path, sizeof(cfg->dir));
    slash = strrchr(cfg->dir, '/');
    if (slash == cfg->dir)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    return resolve_defaults(cfg);
}

struct problems {
    char *err;                 /* the first problem, for config_load() */
    size_t errlen;
    int count;
    void (*cb)(const char *msg, void *arg);
    void *arg;
};

static void problem(struct problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct problems *p, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (p->count++ == 0 && p->err != NULL)
        str_lcpy(p->err, msg, p->errlen);
    if (p->cb != NULL)
        p->cb(msg, p->arg);
}

/*
 * Parses the open file f (shown as path). Stops at the first problem unless a
 * callback wants them all. Returns the number of problems.
 */
static int load_stream(struct config *cfg, const char *path, FILE *f, struct problems *p)
{
    char line[4096];
    int lineno = 0;

    while (fgets(line, sizeof(line), f) != NULL && (p->cb != NULL || p->count == 0)) {
        char *key, *value, *eq, *hash;
        size_t i, n = strlen(line);
        char why[512];

        lineno++;
        if (n == sizeof(line) - 1 && line[n - 1] != '\n') {
            int c;

            problem(p, "%s:%d: line too long", path, lineno);
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            continue;
        }
        /* A '#' starts a comment anywhere: no value of ours contains one. */
        hash = strchr(line, '#');
        if (hash != NULL)
            *hash = '\0';
        key = trim(line);
        if (*key == '\0')
            continue;
        eq = strchr(key, '=');
        if (eq == NULL) {
            problem(p, "%s:%d: expected \"key = value\", got \"%s\"", path, lineno, key);
            continue;
        }
        *eq = '\0';
        value = trim(eq + 1);
        key = trim(key);
        for (i = 0; i < NKEYS; i++)
            if (strcmp(keys[i].name, key) == 0)
                break;
        if (i == NKEYS) {
            problem(p, "%s:%d: %s: unknown key", path, lineno, key);
            continue;
        }
        if (cfg->set[i]) {
            problem(p, "%s:%d: %s: set more than once", path, lineno, key);
            continue;
        }
        if (set_key(cfg, &keys[i], value, why, sizeof(why)) != 0) {
            problem(p, "%s:%d: %s: %s", path, lineno, key, why);
            continue;
        }
        cfg->set[i] = 1;
    }
    if (p->count > 0 && p->cb == NULL)
        return p->count;
    /* smtp_user defaults to user; the package gives smtp its own (DESIGN §6). */
    if (cfg->smtp_user[0] == '\0')
        str_lcpy(cfg->smtp_user, cfg->user, sizeof(cfg->smtp_user));
    if (cfg->retry_max < cfg->retry_min)
        problem(p, "%s: retry_max (%d) is smaller than retry_min (%d)", path, cfg->retry_max,
                cfg->retry_min);
    /* Without a trusted source every connection would be refused. */
    if (cfg->proxy_protocol == PROXY_PROTOCOL_V2 && cfg->proxy_trusted[0] == '\0')
        problem(p, "%s: proxy_trusted: required when proxy_protocol = v2", path);
    return p->count;
}

static int load_path(struct config *cfg, const char *path, struct problems *p)
{
    char canonical[PATH_MAX];
    FILE *f;
    int n;

    config_defaults(cfg);
    if (realpath(path, canonical) == NULL) {
        problem(p, "%s: %s", path, strerror(errno));
        return p->count;
    }
    if (set_location(cfg, canonical) != 0) {
        problem(p, "%s: directory name too long", path);
        return p->count;
    }
    f = fopen(cfg->path, "re");
    if (f == NULL) {
        problem(p, "%s: %s", path, strerror(errno));
        return p->count;
    }
    n = load_stream(cfg, path, f, p);
    fclose(f);
    return n;
}

int config_load(struct config *cfg, const char *path, char *err, size_t errlen)
{
    struct problems p = { err, errlen, 0, NULL, NULL };

    return load_path(cfg, path, &p) == 0 ? 0 : -1;
}

int config_load_all(struct config *cfg, const char *path,
                    void (*cb)(const char *msg, void *arg), void *arg)
{
    struct problems p = { NULL, 0, 0, cb, arg };

    return load_path(cfg, path, &p);
}

int config_load_fd(struct config *cfg, const char *path, int fd, char *err, size_t errlen)
{
    struct problems p = { err, errlen, 0, NULL, NULL };
    FILE *f;
    int dupfd, n;

    config_defaults(cfg);
    if (set_location(cfg, path) != 0) {
        str_fmt(err, errlen, "%s: directory name too long", path);
        return -1;
    }
    dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (dupfd < 0 || lseek(dupfd, 0, SEEK_SET) < 0 || (f = fdopen(dupfd, "r")) == NULL) {
        str_fmt(err, errlen, "%s: %s", path, strerror(errno));
        if (dupfd >= 0)
            close(dupfd);
        return -1;
    }
    n = load_stream(cfg, path, f, &p);
    fclose(f);
    return n == 0 ? 0 : -1;
}

/* ---- comparing and printing ------------------------------------------------------ */

static size_t field_size(const struct key_def *k)
{
    switch (k->kind) {
    case K_STR:
    case K_PATH:
    case K_FACILITY:
    case K_CIDRS:
        return k->size;
    case K_SIZE:
        return sizeof(long long);
    default:
        return sizeof(int);
    }
}

static int field_equal(const struct key_def *k, const struct config *a, const struct config *b)
{
    const char *fa = (const char *)a + k->offset, *fb = (const char *)b + k->offset;

    if (k->size != 0)
        return strcmp(fa, fb) == 0;
    return memcmp(fa, fb, field_size(k)) == 0;
}

int config_keep_restart_keys(struct config *newcfg, const struct config *old,
                             void (*changed)(const char *key, void *arg), void *arg)
{
    int n = 0;

    for (size_t r = 0; r < sizeof(restart_keys) / sizeof(restart_keys[0]); r++)
        for (size_t i = 0; i < NKEYS; i++) {
            const struct key_def *k = &keys[i];

            if (strcmp(k->name, restart_keys[r]) != 0 || field_equal(k, newcfg, old))
                continue;
            if (changed != NULL)
                changed(k->name, arg);
            memcpy((char *)newcfg + k->offset, (const char *)old + k->offset, field_size(k));
            newcfg->set[i] = old->set[i];
            n++;
        }
    return n;
}

const char *config_database_shown(const struct config *cfg)
{
    static _Thread_local char shown[sizeof(cfg->database)];

    config_mask_secret(cfg->database, shown, sizeof(shown));
    return shown;
}

void config_mask_secret(const char *in, char *out, size_t outlen)
{
    const char *scheme_end = strstr(in, "://");
    size_t o = 0;

    if (outlen == 0)
        return;
    out[0] = '\0';
    if (scheme_end == NULL || (strncmp(in, "postgresql://", 13) != 0 &&
                               strncmp(in, "postgres://", 11) != 0)) {
        str_lcpy(out, in, outlen);
        return;
    }
    for (const char *p = in; *p != '\0' && o + 1 < outlen;) {
        /* user:password@ right after the scheme */
        if (p == scheme_end + 3) {
            const char *at = strchr(p, '@'), *slash = strchr(p, '/');
            const char *colon = strchr(p, ':');

            if (at != NULL && (slash == NULL || at < slash) && colon != NULL && colon < at) {
                size_t ulen = (size_t)(colon - p);
                if (o + ulen + 6 >= outlen)
                    break;
                memcpy(out + o, p, ulen);
                o += ulen;
                memcpy(out + o, ":****", 5);
                o += 5;
                p = at;
                continue;
            }
        }
        /* password=... as a query parameter or a conninfo word */
        if (strncmp(p, "password=", 9) == 0 &&
            (p == in || p[-1] == '?' || p[-1] == '&' || p[-1] == ' ')) {
            if (o + 13 >= outlen)
                break;
            memcpy(out + o, "password=****", 13);
            o += 13;
            p += 9;
            while (*p != '\0' && *p != '&' && *p != ' ')
                p++;
            continue;
        }
        out[o++] = *p++;
    }
    out[o] = '\0';
}

static void format_value(const struct config *cfg, const struct key_def *k, char *out,
                         size_t outlen)
{
    const char *field = (const char *)cfg + k->offset;

    switch (k->kind) {
    case K_STR:
    case K_PATH:
    case K_FACILITY:
    case K_CIDRS:
        if (k->offset == offsetof(struct config, database))
            config_mask_secret(field, out, outlen);
        else
            str_lcpy(out, field, outlen);
        return;
    case K_INT:
    case K_DURATION:
        str_fmt(out, outlen, "%d", *(const int *)(const void *)field);
        return;
    case K_SIZE:
        str_fmt(out, outlen, "%lld", *(const long long *)(const void *)field);
        return;
    case K_BOOL:
        str_lcpy(out, *(const int *)(const void *)field ? "yes" : "no", outlen);
        return;
    case K_UPSTREAM_TLS:
        str_lcpy(out, upstream_tls_names[cfg->upstream_tls], outlen);
        return;
    case K_AUTH_PASSWORD:
        str_lcpy(out, auth_password_names[cfg->auth_password], outlen);
        return;
    case K_LOGLEVEL:
        str_lcpy(out, log_level_name(cfg->log_level), outlen);
        return;
    case K_LOGMODE:
        str_lcpy(out, log_mode_names[cfg->log_mode], outlen);
        return;
    case K_PROXY:
        str_lcpy(out, proxy_protocol_names[cfg->proxy_protocol], outlen);
        return;
    }
}

void config_print(const struct config *cfg, FILE *out, int all)
{
    char value[PATH_MAX + 64];

    for (size_t i = 0; i < NKEYS; i++) {
        if (!cfg->set[i] && !all)
            continue;
        format_value(cfg, &keys[i], value, sizeof(value));
        fprintf(out, "%s =%s%s%s\n", keys[i].name, value[0] ? " " : "", value,
                cfg->set[i] ? "" : "  # default");
    }
}

int config_check_required(const struct config *cfg, char *err, size_t errlen)
{
    char item[512], host[256], port[16];
    int i, rc;

    if (cfg->upstream[0] == '\0') {
        str_fmt(err, errlen, "%s: upstream: required key is not set", cfg->path);
        return -1;
    }
    for (i = 0; (rc = str_list_item(cfg->upstream, i, item, sizeof(item))) == 1; i++) {
        if (config_split_hostport(item, host, sizeof(host), port, sizeof(port)) != 0) {
            str_fmt(err, errlen, "%s: upstream: \"%s\" is not host:port", cfg->path, item);
            return -1;
        }
    }
    if (rc < 0) {
        str_fmt(err, errlen, "%s: upstream: entry too long", cfg->path);
        return -1;
    }
    return 0;
}

int config_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon;
    long long p;
    size_t hl;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        hl = (size_t)(close - s - 1);
        if (hl == 0 || hl >= hostlen)
            return -1;
        memcpy(host, s + 1, hl);
        host[hl] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
        if (hl == 0 || hl >= hostlen || memchr(s, ':', hl) != NULL)
            return -1;
        memcpy(host, s, hl);
        host[hl] = '\0';
    }
    if (str_to_ll(colon + 1, 1, 65535, &p) != 0)
        return -1;
    if (str_lcpy(port, colon + 1, portlen) >= portlen)
        return -1;
    return 0;
}
