/* submit-admin stats (admin_stats.h). */
#include "admin_stats.h"

#include "admin.h"
#include "admin_queue.h"
#include "cli_db.h"
#include "cli_out.h"
#include "config.h"
#include "db.h"
#include "dn.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROG "submit-admin"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* The refusal reasons shown: the most frequent ones, a bounded set of labels. */
#define TOP_REASONS 10
/* CRLs read from the crl file; a file holds one per client CA. */
#define MAX_CRLS 32
/* "Expiring soon", for client certificates. */
#define EXPIRY_WINDOW_DAYS 30

enum format { FMT_TEXT, FMT_JSON, FMT_PROMETHEUS };

struct refusal {
    char decision[16];
    char reason[256];
    long long sessions;
};

struct crl_entry {
    char issuer[512];
    long long last_update, next_update;   /* 0: absent */
};

struct cert_file {
    char path[PATH_MAX];
    char subject[512];
    long long not_after;                  /* 0: not read */
};

struct expiring {
    long long count;
    int shown;                            /* in the text and JSON lists */
    struct db_cert certs[64];
};

struct stats {
    long long now;
    int queue_ok, db_ok, crl_ok;
    struct admin_queue_summary queue;
    struct db_decision_counts decisions;
    struct refusal refusals[TOP_REASONS];
    int nrefusals;
    char crl_path[PATH_MAX];              /* "" when no CRL is configured */
    struct crl_entry crls[MAX_CRLS];
    int ncrls;
    struct cert_file server, ca;
    struct expiring expiring;
    int failed;
};

static void failf(struct stats *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One line on stderr naming the part that could not be read; the exit status becomes 1. */
static void failf(struct stats *s, const char *fmt, ...)
{
    va_list ap;

    fputs(PROG ": stats: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    s->failed = 1;
}

/* ---- gathering ---------------------------------------------------------- */

static long long asn1_epoch(const ASN1_TIME *t)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (long long)timegm(&tm);
}

static const char *openssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    return r != NULL ? r : "no certificate in the file";
}

/* The first certificate of a PEM file: its subject and notAfter. */
static void read_cert(struct stats *s, struct cert_file *c, const char *what)
{
    FILE *f = fopen(c->path, "re");
    X509 *x;

    if (f == NULL) {
        failf(s, "%s %s: %s", what, c->path, strerror(errno));
        return;
    }
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        failf(s, "%s %s: %s", what, c->path, openssl_reason());
        ERR_clear_error();
        return;
    }
    dn_text(X509_get_subject_name(x), c->subject, sizeof(c->subject));
    c->not_after = asn1_epoch(X509_get0_notAfter(x));
    X509_free(x);
    if (c->not_after == 0)
        failf(s, "%s %s: unreadable notAfter", what, c->path);
}

/*
 * One entry per issuer: a file that holds two CRLs of one CA (an old one left in
 * place) is shown with the newer, by lastUpdate, as authz would use it.
 */
static void crl_keep(struct stats *s, const struct crl_entry *e)
{
    for (int i = 0; i < s->ncrls; i++) {
        if (strcmp(s->crls[i].issuer, e->issuer) == 0) {
            if (e->last_update > s->crls[i].last_update)
                s->crls[i] = *e;
            return;
        }
    }
    s->crls[s->ncrls++] = *e;
}

/* Every CRL in the crl file (PEM, one per client CA). */
static void read_crls(struct stats *s)
{
    FILE *f;
    X509_CRL *crl;

    if (s->crl_path[0] == '\0')
        return;
    if ((f = fopen(s->crl_path, "re")) == NULL) {
        failf(s, "crl %s: %s", s->crl_path, strerror(errno));
        return;
    }
    while (s->ncrls < MAX_CRLS && (crl = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
        struct crl_entry e;

        dn_text(X509_CRL_get_issuer(crl), e.issuer, sizeof(e.issuer));
        e.last_update = asn1_epoch(X509_CRL_get0_lastUpdate(crl));
        e.next_update = asn1_epoch(X509_CRL_get0_nextUpdate(crl));
        X509_CRL_free(crl);
        crl_keep(s, &e);
    }
    /* The loop ends with "no start line" at the end of the file. */
    ERR_clear_error();
    if (ferror(f))
        failf(s, "crl %s: %s", s->crl_path, strerror(errno));
    else if (s->ncrls == 0)
        failf(s, "crl %s: no CRL in the file", s->crl_path);
    else
        s->crl_ok = 1;
    fclose(f);
}

static int keep_refusal(void *arg, const char *decision, const char *reason, long long n)
{
    struct stats *s = arg;
    struct refusal *r;

    if (s->nrefusals >= TOP_REASONS)
        return 1;
    r = &s->refusals[s->nrefusals++];
    str_lcpy(r->decision, decision, sizeof(r->decision));
    str_lcpy(r->reason, reason, sizeof(r->reason));
    r->sessions = n;
    return 0;
}

/* Valid certificates that expire within the window (the list is ordered by expiry). */
static int keep_expiring(void *arg, const struct db_cert *c)
{
    struct stats *s = arg;

    if (!db_cert_in_force(c, s->now))
        return 0;
    if (s->expiring.shown < (int)(sizeof(s->expiring.certs) / sizeof(s->expiring.certs[0])))
        s->expiring.certs[s->expiring.shown++] = *c;
    s->expiring.count++;
    return 0;
}

static void read_db(struct stats *s, const struct config *cfg)
{
    struct db *db = cli_db_open(&admin_prog, cfg, "stats");
    int64_t hour_ago = s->now - 3600, window_end = s->now + EXPIRY_WINDOW_DAYS * 86400LL;

    if (db == NULL) {
        s->failed = 1;
        return;
    }
    if (db_audit_decisions(db, hour_ago, &s->decisions) != DB_OK ||
        db_audit_refusals(db, hour_ago, TOP_REASONS, keep_refusal, s) != DB_OK ||
        db_cert_list(db, NULL, window_end, keep_expiring, s) != DB_OK)
        failf(s, "database %s: %s", config_database_shown(cfg), db_errmsg(db));
    else
        s->db_ok = 1;
    db_close(db);
}

static void gather(struct stats *s, const struct config *cfg)
{
    char why[PATH_MAX + 256];

    s->now = (long long)time(NULL);
    if (admin_queue_summary(cfg, &s->queue, why, sizeof(why)) != 0)
        failf(s, "queue: %s", why);
    else
        s->queue_ok = 1;
    read_db(s, cfg);
    str_lcpy(s->crl_path, cfg->crl, sizeof(s->crl_path));
    read_crls(s);
    str_lcpy(s->server.path, cfg->tls_cert, sizeof(s->server.path));
    read_cert(s, &s->server, "server certificate");
    (void)str_fmt(s->ca.path, sizeof(s->ca.path), "%s/ca.crt", cfg->ca_dir);
    read_cert(s, &s->ca, "CA certificate");
}

/* ---- text --------------------------------------------------------------- */

/* "3d 4h", "2h 5m", "40s": how far t is from now, for people. */
static void span(char *out, size_t outlen, long long secs)
{
    long long a = secs < 0 ? -secs : secs;

    if (a >= 86400)
        str_fmt(out, outlen, "%lldd %lldh", a / 86400, a % 86400 / 3600);
    else if (a >= 3600)
        str_fmt(out, outlen, "%lldh %lldm", a / 3600, a % 3600 / 60);
    else if (a >= 60)
        str_fmt(out, outlen, "%lldm %llds", a / 60, a % 60);
    else
        str_fmt(out, outlen, "%llds", a);
}

/* "2025-01-01T00:00:00Z (in 3d 4h)" or "(... ago)". */
static void put_when(long long now, long long t)
{
    char iso[32], d[32];

    iso_time_utc(iso, sizeof(iso), t);
    span(d, sizeof(d), t - now);
    printf("%s (%s%s%s)", iso, t >= now ? "in " : "", d, t >= now ? "" : " ago");
}

static void text_cert(const struct stats *s, const char *label, const struct cert_file *c)
{
    if (c->not_after == 0)
        return;
    printf("%s:\t", label);
    cli_plain_field(stdout, c->subject);
    fputs(" expires ", stdout);
    put_when(s->now, c->not_after);
    putchar('\n');
}

static void print_text(const struct stats *s)
{
    char d[32];

    if (s->queue_ok) {
        printf("queue:\t%lld message%s, %lld deferred", s->queue.messages,
               s->queue.messages == 1 ? "" : "s", s->queue.deferred);
        if (s->queue.oldest != 0) {
            span(d, sizeof(d), s->now - s->queue.oldest);
            printf(", oldest %s", d);
        }
        if (s->queue.unreadable > 0)
            printf(", %lld unreadable file%s", s->queue.unreadable,
                   s->queue.unreadable == 1 ? "" : "s");
        putchar('\n');
    }
    if (s->db_ok) {
        printf("decisions last hour:\taccept %lld, reject %lld, tempfail %lld\n",
               s->decisions.accept, s->decisions.reject, s->decisions.tempfail);
        printf("refused last hour:\t%s\n", s->nrefusals ? "SESSIONS\tDECISION\tREASON" : "none");
        for (int i = 0; i < s->nrefusals; i++) {
            printf("\t%lld\t%s\t", s->refusals[i].sessions, s->refusals[i].decision);
            cli_plain_field(stdout, s->refusals[i].reason);
            putchar('\n');
        }
    }
    if (s->crl_path[0] == '\0')
        fputs("crl:\tnone configured (no revocation check)\n", stdout);
    for (int i = 0; i < s->ncrls; i++) {
        fputs("crl:\t", stdout);
        cli_plain_field(stdout, s->crls[i].issuer);
        fputs(" next update ", stdout);
        if (s->crls[i].next_update != 0)
            put_when(s->now, s->crls[i].next_update);
        else
            fputs("none", stdout);
        putchar('\n');
    }
    text_cert(s, "server certificate", &s->server);
    text_cert(s, "CA certificate", &s->ca);
    if (s->db_ok) {
        printf("client certificates expiring within %d days:\t%lld\n", EXPIRY_WINDOW_DAYS,
               s->expiring.count);
        for (int i = 0; i < s->expiring.shown; i++) {
            const struct db_cert *c = &s->expiring.certs[i];
            char not_after[DB_TIME_TEXT_LEN];

            putchar('\t');
            cli_plain_field(stdout, c->user);
            putchar('\t');
            cli_plain_field(stdout, c->serial);
            putchar('\t');
            cli_plain_field(stdout, db_time_text(c->not_after, not_after, sizeof(not_after)));
            putchar('\n');
        }
    }
}

/* ---- JSON --------------------------------------------------------------- */

static void json_time(const char *name, long long t)
{
    char iso[32];

    if (t == 0) {
        printf(",\"%s\":null", name);
        return;
    }
    iso_time_utc(iso, sizeof(iso), t);
    printf(",\"%s\":\"%s\"", name, iso);
}

static void json_cert(const char *name, const struct cert_file *c)
{
    printf(",\"%s\":", name);
    if (c->not_after == 0) {
        fputs("null", stdout);
        return;
    }
    putchar('{');
    cli_json_member(stdout, "file", c->path, 1);
    cli_json_member(stdout, "subject", c->subject, 0);
    json_time("not_after", c->not_after);
    putchar('}');
}

static void print_json(const struct stats *s)
{
    char iso[32];

    iso_time_utc(iso, sizeof(iso), s->now);
    printf("{\"time\":\"%s\",\"queue\":", iso);
    if (s->queue_ok) {
        printf("{\"messages\":%lld,\"deferred\":%lld,\"oldest_seconds\":%lld", s->queue.messages,
               s->queue.deferred, s->queue.oldest ? s->now - s->queue.oldest : 0);
        json_time("oldest_arrival", s->queue.oldest);
        printf(",\"unreadable\":%lld}", s->queue.unreadable);
    } else {
        fputs("null", stdout);
    }
    if (s->db_ok) {
        printf(",\"decisions_last_hour\":{\"accept\":%lld,\"reject\":%lld,\"tempfail\":%lld}",
               s->decisions.accept, s->decisions.reject, s->decisions.tempfail);
        fputs(",\"refused_last_hour\":[", stdout);
        for (int i = 0; i < s->nrefusals; i++) {
            fputs(i ? ",{" : "{", stdout);
            cli_json_member(stdout, "decision", s->refusals[i].decision, 1);
            cli_json_member(stdout, "reason", s->refusals[i].reason, 0);
            printf(",\"sessions\":%lld}", s->refusals[i].sessions);
        }
        printf("],\"client_certs_expiring_%dd\":%lld,\"expiring\":[", EXPIRY_WINDOW_DAYS,
               s->expiring.count);
        for (int i = 0; i < s->expiring.shown; i++) {
            char not_after[DB_TIME_TEXT_LEN];

            db_time_text(s->expiring.certs[i].not_after, not_after, sizeof(not_after));
            fputs(i ? ",{" : "{", stdout);
            cli_json_member(stdout, "user", s->expiring.certs[i].user, 1);
            cli_json_member(stdout, "serial", s->expiring.certs[i].serial, 0);
            cli_json_member(stdout, "not_after", not_after, 0);
            putchar('}');
        }
        putchar(']');
    } else {
        fputs(",\"decisions_last_hour\":null,\"refused_last_hour\":null", stdout);
    }
    fputs(",\"crl\":[", stdout);
    for (int i = 0; i < s->ncrls; i++) {
        fputs(i ? ",{" : "{", stdout);
        cli_json_member(stdout, "file", s->crl_path, 1);
        cli_json_member(stdout, "issuer", s->crls[i].issuer, 0);
        json_time("last_update", s->crls[i].last_update);
        json_time("next_update", s->crls[i].next_update);
        putchar('}');
    }
    putchar(']');
    json_cert("server_certificate", &s->server);
    json_cert("ca_certificate", &s->ca);
    fputs("}\n", stdout);
}

/* ---- Prometheus text exposition format ---------------------------------- */

static void prom_family(const char *name, const char *help)
{
    printf("# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

#define PROM_LABEL_MAX 200

/*
 * A label value as printed: anything but printable ASCII becomes '?', so that
 * client-chosen bytes in a reason can neither break the line nor make it invalid
 * UTF-8; cut at PROM_LABEL_MAX bytes.
 */
static void prom_clean(const char *v, char out[PROM_LABEL_MAX + 1])
{
    int n = 0;

    for (; *v && n < PROM_LABEL_MAX; v++) {
        unsigned char c = (unsigned char)*v;

        out[n++] = c < 0x20 || c >= 0x7f ? '?' : (char)c;
    }
    out[n] = '\0';
}

/* A label value, quoted, with backslash and double quote escaped as the format asks. */
static void prom_label(const char *v)
{
    char clean[PROM_LABEL_MAX + 1];

    prom_clean(v, clean);
    putchar('"');
    for (const char *p = clean; *p; p++) {
        if (*p == '\\' || *p == '"')
            putchar('\\');
        putchar(*p);
    }
    putchar('"');
}

/*
 * The refusals as labelled samples. Two reasons that differ only in what prom_clean
 * replaces or cuts would be one series twice, which the format forbids: they are
 * added up into the first.
 */
static void prom_refusals(const struct stats *s)
{
    char clean[TOP_REASONS][PROM_LABEL_MAX + 1];
    long long n[TOP_REASONS];

    for (int i = 0; i < s->nrefusals; i++) {
        int same = -1;

        prom_clean(s->refusals[i].reason, clean[i]);
        n[i] = s->refusals[i].sessions;
        for (int j = 0; j < i && same < 0; j++)
            if (n[j] >= 0 && strcmp(clean[j], clean[i]) == 0 &&
                strcmp(s->refusals[j].decision, s->refusals[i].decision) == 0)
                same = j;
        if (same >= 0) {
            n[same] += n[i];
            n[i] = -1;
        }
    }
    for (int i = 0; i < s->nrefusals; i++) {
        if (n[i] < 0)
            continue;
        fputs("submitd_refused_sessions_last_hour{decision=", stdout);
        prom_label(s->refusals[i].decision);
        fputs(",reason=", stdout);
        prom_label(s->refusals[i].reason);
        printf("} %lld\n", n[i]);
    }
}

static void print_prometheus(const struct stats *s)
{
    if (s->queue_ok) {
        prom_family("submitd_queue_messages", "Messages in the queue.");
        printf("submitd_queue_messages %lld\n", s->queue.messages);
        prom_family("submitd_queue_deferred_messages",
                    "Queued messages tried at least once (deferred).");
        printf("submitd_queue_deferred_messages %lld\n", s->queue.deferred);
        prom_family("submitd_queue_oldest_seconds",
                    "Age of the oldest queued message in seconds; 0 when the queue is empty.");
        printf("submitd_queue_oldest_seconds %lld\n",
               s->queue.oldest ? s->now - s->queue.oldest : 0);
        prom_family("submitd_queue_unreadable_files",
                    "Files in the queue directory that are not valid messages.");
        printf("submitd_queue_unreadable_files %lld\n", s->queue.unreadable);
    }
    if (s->db_ok) {
        prom_family("submitd_decisions_last_hour", "Audited decisions in the last hour.");
        printf("submitd_decisions_last_hour{decision=\"accept\"} %lld\n", s->decisions.accept);
        printf("submitd_decisions_last_hour{decision=\"reject\"} %lld\n", s->decisions.reject);
        printf("submitd_decisions_last_hour{decision=\"tempfail\"} %lld\n",
               s->decisions.tempfail);
        prom_family("submitd_refused_sessions_last_hour",
                    "Sessions refused in the last hour, by decision and reason (most frequent "
                    "reasons only).");
        prom_refusals(s);
        prom_family("submitd_client_certs_expiring_30d",
                    "Valid client certificates that expire within 30 days.");
        printf("submitd_client_certs_expiring_30d %lld\n", s->expiring.count);
    }
    if (s->ncrls > 0) {
        prom_family("submitd_crl_next_update_timestamp_seconds",
                    "nextUpdate of each CRL in the crl file, as a Unix time.");
        for (int i = 0; i < s->ncrls; i++) {
            if (s->crls[i].next_update == 0)
                continue;
            fputs("submitd_crl_next_update_timestamp_seconds{issuer=", stdout);
            prom_label(s->crls[i].issuer);
            printf("} %lld\n", s->crls[i].next_update);
        }
    }
    if (s->server.not_after != 0 || s->ca.not_after != 0) {
        prom_family("submitd_certificate_expiry_timestamp_seconds",
                    "notAfter of the server certificate and of the CA certificate, as a Unix "
                    "time.");
        if (s->server.not_after != 0)
            printf("submitd_certificate_expiry_timestamp_seconds{which=\"server\"} %lld\n",
                   s->server.not_after);
        if (s->ca.not_after != 0)
            printf("submitd_certificate_expiry_timestamp_seconds{which=\"ca\"} %lld\n",
                   s->ca.not_after);
    }
    prom_family("submitd_stats_complete",
                "1 when every part of the statistics could be read, else 0 (see stderr).");
    printf("submitd_stats_complete %d\n", s->failed ? 0 : 1);
}

/* ---- command ------------------------------------------------------------ */

const char admin_stats_usage[] = "usage: " PROG " [-c FILE] stats [--json|--prometheus]\n";

static int misuse(const char *detail, const char *word)
{
    return cli_misuse(&admin_prog, admin_stats_usage, "stats: %s \"%s\"", detail, word);
}

int admin_stats(const char *config_path, const char *sub, int argc, char **argv)
{
    (void)sub;
    static struct config cfg;
    static struct stats s;        /* large: kept off the stack */
    enum format fmt = FMT_TEXT;

    for (int i = 0; i < argc; i++) {
        enum format f;

        if (strcmp(argv[i], "--json") == 0)
            f = FMT_JSON;
        else if (strcmp(argv[i], "--prometheus") == 0)
            f = FMT_PROMETHEUS;
        else
            return misuse("unexpected argument", argv[i]);
        if (fmt != FMT_TEXT && fmt != f)
            return misuse("--json and --prometheus exclude each other; got", argv[i]);
        fmt = f;
    }
    if (cli_config_load(&admin_prog, &cfg, config_path) != 0)
        return EXIT_FAIL;
    memset(&s, 0, sizeof(s));
    gather(&s, &cfg);
    if (fmt == FMT_JSON)
        print_json(&s);
    else if (fmt == FMT_PROMETHEUS)
        print_prometheus(&s);
    else
        print_text(&s);
    return s.failed ? EXIT_FAIL : EXIT_OK;
}
