/* submitd -t: every problem of the configuration and its files (see master_check.h). */
#include "master_check.h"

#include "master.h"
#include "master_files.h"
#include "master_listen.h"
#include "master_supervise.h"

#include "crl_check.h"
#include "dn.h"
#include "fdlimit.h"
#include "privdrop.h"
#include "safedir.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pwd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int check_file(const char *key, const char *path, int *problems)
{
    if (path[0] == '\0')
        return 0;
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "submitd: %s: %s: %s\n", key, path, strerror(errno));
        (*problems)++;
        return -1;
    }
    return 0;
}

/* "YYYY-MM-DDTHH:MM:SSZ" of an ASN1_TIME, "?" when it cannot be read. */
static void asn1_iso(const ASN1_TIME *t, char *out, size_t outlen)
{
    struct tm tm;

    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
        strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        str_lcpy(out, "?", outlen);
}

static int check_warnings;

/* A CA of client_ca without a CRL in crl: its users get 454 (the daemon cannot know
 * whether their certificates were revoked), while other CAs' users are served. */
static void warn_cas_without_crl(const STACK_OF(X509) *cas, const struct crl_bundle *b)
{
    for (int i = 0; i < b->ncas; i++) {
        char name[512];

        if (b->ca_named[i])
            continue;
        dn_text(X509_get_subject_name(sk_X509_value(cas, i)), name, sizeof(name));
        fprintf(stderr, "submitd: warning: client_ca: CA %s has no CRL in crl %s: its "
                "users get 454 until its CRL is added to that file\n", name, cfg.crl);
        check_warnings++;
    }
}

/*
 * The CRL must hold for a while yet: past its nextUpdate every client certificate
 * is refused, so one that expires within a day is an error too. It must come from
 * a client CA and carry its signature. The authz process reads it as root, at
 * start and whenever it changes, with the same crl_check module.
 */
static void check_crl(int *problems)
{
    STACK_OF(X509) *cas;
    struct crl_bundle b;
    time_t now = time(NULL);
    char when[32], err[PATH_MAX + 64];
    int why;

    if (cfg.crl[0] == '\0' || access(cfg.crl, R_OK) != 0)
        return;
    cas = crl_cas_load(cfg.client_ca, &why);    /* NULL: check_file names client_ca */
    ERR_clear_error();
    if (crl_bundle_read(cfg.crl, cas, &b, err, sizeof(err)) != 0) {
        sk_X509_pop_free(cas, X509_free);
        return;
    }
    for (int i = 0; i < b.n; i++) {
        const struct crl_entry *e = &b.crls[i];
        int flags = crl_time_flags(e->last_update, e->next_update, now, 86400);

        if (flags & CRL_EXPIRED) {
            iso_time_utc(when, sizeof(when), e->next_update);
            fprintf(stderr, "submitd: crl: %s expired on %s: every client certificate of its "
                    "CA is refused; publish a new CRL with \"submit-ca crl\"\n", cfg.crl, when);
            (*problems)++;
        } else if (flags & CRL_EXPIRES_SOON) {
            /* A warning: the daily CRL timer renews it, and a restart must not fail
             * on it (-t runs before every start). */
            iso_time_utc(when, sizeof(when), e->next_update);
            fprintf(stderr, "submitd: warning: crl: %s expires within a day, on %s: every "
                    "client certificate of its CA is refused then; publish a new CRL with "
                    "\"submit-ca crl\"\n", cfg.crl, when);
            check_warnings++;
        }
        if (flags & CRL_NOT_YET_VALID) {
            iso_time_utc(when, sizeof(when), e->last_update);
            fprintf(stderr, "submitd: crl: %s is not valid before %s (is the clock right?)\n",
                    cfg.crl, when);
            (*problems)++;
        }
        if (e->state == CRL_FOREIGN) {
            fprintf(stderr, "submitd: crl: %s holds a CRL whose issuer is not in client_ca %s\n",
                    cfg.crl, cfg.client_ca);
            (*problems)++;
        } else if (e->state == CRL_BAD_SIGNATURE) {
            fprintf(stderr, "submitd: crl: %s: signature does not verify with client_ca %s\n",
                    cfg.crl, cfg.client_ca);
            (*problems)++;
        }
    }
    if (cas != NULL)
        warn_cas_without_crl(cas, &b);
    if (b.n == 0) {
        fprintf(stderr, "submitd: crl: %s holds no PEM CRL\n", cfg.crl);
        (*problems)++;
    }
    crl_bundle_free(&b);
    sk_X509_pop_free(cas, X509_free);
}


static int list_count(const char *list)
{
    char item[512];
    int n = 0;

    while (str_list_item(list, n, item, sizeof(item)) == 1)
        n++;
    return n;
}

/* The warning the smtp process logs at start when the hard descriptor limit it
 * inherits cannot hold max_sessions (it then lowers max_sessions): said here too,
 * before the service starts. Not an error: the service runs, with fewer sessions. */
static void check_fd_limit(void)
{
    struct rlimit rl;
    struct fd_budget b;
    char msg[512];

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (fd_budget(cfg.max_sessions, nworkers(), list_count(cfg.listen) + list_count(cfg.listen_tls),
                  rl.rlim_max == RLIM_INFINITY ? ULLONG_MAX : (unsigned long long)rl.rlim_max,
                  &b)) {
        fd_budget_warning(&b, cfg.max_sessions, msg, sizeof(msg));
        fprintf(stderr, "submitd: warning: %s\n", msg);
    }
}

/* The addresses check_listen has seen, across listen and listen_tls: two that
 * overlap (listen_addrs_overlap) would stop the daemon at start. */
static struct {
    struct sockaddr_storage addr;
    const char *key;
    char item[256];
} seen_listen[2 * MAX_LISTENERS];
static int nseen_listen;

static void check_listen_twice(const char *key, const char *item, const struct addrinfo *res,
                               int *problems)
{
    int v6_takes_v4 = listen_v6_takes_v4();

    for (int i = 0; i < nseen_listen; i++) {
        if (listen_addrs_overlap((const struct sockaddr *)&seen_listen[i].addr, res->ai_addr,
                                 v6_takes_v4)) {
            fprintf(stderr, "submitd: %s %s: it overlaps %s in %s: the same port, on the "
                    "same address or a wildcard that covers it\n", key, item, seen_listen[i].item,
                    seen_listen[i].key);
            (*problems)++;
            return;
        }
    }
    if (nseen_listen < 2 * MAX_LISTENERS && res->ai_addrlen <= sizeof(seen_listen[0].addr)) {
        memcpy(&seen_listen[nseen_listen].addr, res->ai_addr, res->ai_addrlen);
        seen_listen[nseen_listen].key = key;
        str_lcpy(seen_listen[nseen_listen].item, item, sizeof(seen_listen[nseen_listen].item));
        nseen_listen++;
    }
}

/* Every listener must be host:port with a port from 1 to 65535 and resolve. */
static void check_listen(const char *key, const char *list, int *problems)
{
    char item[512], host[256], port[16];
    int rc;

    for (int i = 0; (rc = str_list_item(list, i, item, sizeof(item))) == 1; i++) {
        struct addrinfo hints, *res;
        int gai;

        if (config_split_hostport(item, host, sizeof(host), port, sizeof(port)) != 0) {
            fprintf(stderr, "submitd: %s: \"%s\" is not host:port with a port from 1 to "
                    "65535\n", key, item);
            (*problems)++;
            continue;
        }
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        gai = getaddrinfo(host, port, &hints, &res);
        if (gai != 0) {
            fprintf(stderr, "submitd: %s: %s: %s\n", key, item, gai_strerror(gai));
            (*problems)++;
            continue;
        }
        check_listen_twice(key, item, res, problems);
        freeaddrinfo(res);
    }
    if (rc < 0) {
        fprintf(stderr, "submitd: %s: malformed list \"%s\"\n", key, list);
        (*problems)++;
    }
}

/* The server certificate's dates and names. */
static void check_server_cert(int *problems)
{
    FILE *f = fopen(cfg.tls_cert, "re");
    X509 *x = f != NULL ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    char when[32];

    if (f != NULL)
        fclose(f);
    if (x == NULL) {
        ERR_clear_error();
        return;     /* the pair check names it */
    }
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        asn1_iso(X509_get0_notAfter(x), when, sizeof(when));
        fprintf(stderr, "submitd: tls_cert: %s expired on %s; clients refuse it "
                "(submit-ca server-cert, then systemctl reload submitd)\n", cfg.tls_cert, when);
        (*problems)++;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        asn1_iso(X509_get0_notBefore(x), when, sizeof(when));
        fprintf(stderr, "submitd: tls_cert: %s is not valid before %s (is the clock right?)\n",
                cfg.tls_cert, when);
        (*problems)++;
    }
    if (X509_check_host(x, cfg.hostname, 0, 0, NULL) != 1) {
        fprintf(stderr, "submitd: warning: tls_cert: %s does not name hostname %s; clients "
                "that check names refuse it\n", cfg.tls_cert, cfg.hostname);
        check_warnings++;
    }
    X509_free(x);
}

/* A private key (or the configuration) that others may read or change. */
static void check_private(const char *key, const char *path, mode_t forbidden, const char *what,
                          int *problems)
{
    struct stat st;

    if (path[0] == '\0' || stat(path, &st) != 0)
        return;
    if ((st.st_mode & forbidden) != 0) {
        fprintf(stderr, "submitd: %s: %s is %s by group or others (mode %04o)\n", key, path,
                what, (unsigned)(st.st_mode & 07777));
        (*problems)++;
    }
}

/* The PAM service file that pam_start() will look for. */
static void check_pam(int *problems)
{
    char path[PATH_MAX], vendor[PATH_MAX];

    if (!cfg.pam_account_check && cfg.auth_password == AUTH_PASSWORD_NO)
        return;
    if (cfg.pam_confdir[0] != '\0') {
        str_fmt(path, sizeof(path), "%s/%s", cfg.pam_confdir, cfg.pam_service);
        if (access(path, R_OK) != 0) {
            fprintf(stderr, "submitd: pam_service: %s: %s\n", path, strerror(errno));
            (*problems)++;
            return;
        }
        /* libpam reads "other" next to the service at every pam_start and, when it is
         * missing, sends "no default config other" to syslog: one error line per
         * account check, that is per session. */
        str_fmt(path, sizeof(path), "%s/other", cfg.pam_confdir);
        if (access(path, R_OK) != 0 && errno == ENOENT) {
            fprintf(stderr, "submitd: warning: pam_confdir: %s does not exist: libpam logs "
                    "\"no default config other\" to syslog at every account check (one "
                    "line per session); a file with \"account required pam_deny.so\" "
                    "silences it\n", path);
            check_warnings++;
        }
        return;
    }
    str_fmt(path, sizeof(path), "/etc/pam.d/%s", cfg.pam_service);
    str_fmt(vendor, sizeof(vendor), "/usr/lib/pam.d/%s", cfg.pam_service);
    if (access(path, R_OK) != 0 && access(vendor, R_OK) != 0) {
        fprintf(stderr, "submitd: pam_service: neither %s nor %s exists (conf/pam.d/submitd is "
                "an example)\n", path, vendor);
        (*problems)++;
    }
}

/* What the start checks about the spool and the trusted files, creating nothing. */
static void check_start_files(int *problems)
{
    struct safedir_owner owner;
    char err[PATH_MAX + 512];
    int fd;

    if (check_trust_file("client_ca", cfg.client_ca, err, sizeof(err)) != 0 ||
        check_trust_file("crl", cfg.crl, err, sizeof(err)) != 0) {
        fprintf(stderr, "submitd: %s\n", err);
        (*problems)++;
    }
    if (spool_owner(&owner, err, sizeof(err)) != 0) {
        fprintf(stderr, "submitd: %s\n", err);
        (*problems)++;
        return;
    }
    fd = safedir_open_owned_path(cfg.spool, &owner, 0, err, sizeof(err));
    if (fd < 0 && errno != ENOENT) {
        fprintf(stderr, "submitd: spool: %s\n", err);
        (*problems)++;
    }
    if (fd >= 0)
        close(fd);
}

static void print_problem(const char *msg, void *arg)
{
    (*(int *)arg)++;
    fprintf(stderr, "submitd: %s\n", msg);
}

/* An upstream that does not resolve now may at run time (a VPN not up yet): a
 * warning. */
static void check_upstream(void)
{
    char item[512], host[256], port[16];

    for (int i = 0; str_list_item(cfg.upstream, i, item, sizeof(item)) == 1; i++) {
        struct addrinfo hints, *res = NULL;
        int rc;

        if (config_split_hostport(item, host, sizeof(host), port, sizeof(port)) != 0)
            continue;   /* config_check_required names a malformed entry */
        memset(&hints, 0, sizeof(hints));
        hints.ai_socktype = SOCK_STREAM;
        rc = getaddrinfo(host, port, &hints, &res);
        if (rc != 0) {
            fprintf(stderr, "submitd: warning: upstream: %s does not resolve now: %s\n", host,
                    gai_strerror(rc));
            check_warnings++;
        }
        if (res != NULL)
            freeaddrinfo(res);
    }
}

/* The user that submitd-authz, which writes the database, runs as: the master's
 * own (root under the service; it starts authz without changing users). */
static void authz_user_name(char *out, size_t outlen)
{
    struct passwd pw, *found = NULL;
    char buf[4096];

    if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &found) == 0 && found != NULL)
        str_lcpy(out, found->pw_name, outlen);
    else
        str_fmt(out, outlen, "uid %u", (unsigned)geteuid());
}

/*
 * SQLite writes next to the database: its journal, or in WAL mode the -wal and
 * -shm files, which it creates on first use. A directory that the writer cannot
 * write (a database left in /etc, which the service sees read-only) lets authz
 * open the file and then fail on the first write: the service crash-loops. So the
 * directory must be writable by the user authz runs as, and so must the file, when
 * it exists. faccessat(AT_EACCESS) sees a read-only mount as well as the modes.
 */
static void check_database(int *problems)
{
    char dir[PATH_MAX], who[64];
    const char *slash = strrchr(cfg.database, '/');

    if (cfg.database[0] != '/' || slash == NULL)
        return;     /* not a file (a URI of another backend) */
    if (slash == cfg.database)
        str_lcpy(dir, "/", sizeof(dir));
    else
        str_fmt(dir, sizeof(dir), "%.*s", (int)(slash - cfg.database), cfg.database);
    authz_user_name(who, sizeof(who));
    if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0) {
        fprintf(stderr, "submitd: database: directory %s must be writable by %s, the user "
                "submitd-authz runs as (SQLite creates %s-wal and %s-journal there): %s\n",
                dir, who, slash + 1, slash + 1, strerror(errno));
        (*problems)++;
    } else if (faccessat(AT_FDCWD, cfg.database, W_OK, AT_EACCESS) != 0 && errno != ENOENT) {
        fprintf(stderr, "submitd: database: %s must be writable by %s, the user submitd-authz "
                "runs as: %s\n", cfg.database, who, strerror(errno));
        (*problems)++;
    }
}

/* -t: every problem it can find, one line each; warnings do not fail it. */
int check_config(const char *conf_path)
{
    int problems = 0;
    char err[1024], key[PATH_MAX];
    SSL_CTX *ctx;

    if (config_load_all(&cfg, conf_path, print_problem, &problems) > 0 &&
        cfg.path[0] == '\0')
        return 1;
    if (config_check_required(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "submitd: %s\n", err);
        problems++;
    }
    check_listen("listen", cfg.listen, &problems);
    check_listen("listen_tls", cfg.listen_tls, &problems);
    check_private("tls_key", cfg.tls_key, 077, "readable or writable", &problems);
    check_private("upstream_key", cfg.upstream_key, 077, "readable or writable", &problems);
    str_fmt(key, sizeof(key), "%s/ca.key", cfg.ca_dir);
    check_private("ca_dir", key, 077, "readable or writable", &problems);
    check_private("configuration", cfg.path, 022, "writable", &problems);
    check_server_cert(&problems);
    check_pam(&problems);
    check_start_files(&problems);
    check_database(&problems);
    check_file("tls_cert", cfg.tls_cert, &problems);
    check_file("tls_key", cfg.tls_key, &problems);
    check_file("client_ca", cfg.client_ca, &problems);
    check_file("crl", cfg.crl, &problems);
    check_crl(&problems);
    check_file("upstream_ca", cfg.upstream_ca, &problems);
    check_file("upstream_cert", cfg.upstream_cert, &problems);
    check_file("upstream_key", cfg.upstream_key, &problems);
    check_fd_limit();
    check_upstream();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx != NULL && access(cfg.tls_cert, R_OK) == 0 && access(cfg.tls_key, R_OK) == 0) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg.tls_cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, cfg.tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            fprintf(stderr, "submitd: tls_cert/tls_key: %s and %s are not a usable pair\n",
                    cfg.tls_cert, cfg.tls_key);
            problems++;
        }
    }
    SSL_CTX_free(ctx);
    if (geteuid() == 0) {
        uid_t u;
        gid_t g;
        if (privdrop_lookup(cfg.user, &u, &g) != 0) {
            fprintf(stderr, "submitd: user: \"%s\" does not exist\n", cfg.user);
            problems++;
        }
        if (privdrop_lookup(cfg.smtp_user, &u, &g) != 0) {
            fprintf(stderr, "submitd: smtp_user: \"%s\" does not exist\n", cfg.smtp_user);
            problems++;
        }
    }
    for (int i = 0; i < NPROC; i++) {
        char path[PATH_MAX];
        str_fmt(path, sizeof(path), "%s/%s", libexec, proc_names[i]);
        if (access(path, X_OK) != 0) {
            fprintf(stderr, "submitd: helper program %s: %s\n", path, strerror(errno));
            problems++;
        }
    }
    if (problems == 0)
        printf("submitd: configuration %s OK%s\n", cfg.path,
               check_warnings > 0 ? " (with warnings)" : "");
    else
        fprintf(stderr, "submitd: %d problem%s in %s\n", problems, problems == 1 ? "" : "s",
                cfg.path);
    return problems == 0 ? 0 : 1;
}
