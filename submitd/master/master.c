/*
 * submitd: the master process (DESIGN §2). It parses the configuration, binds the
 * listeners, prepares the spool, and starts and supervises the three workers:
 *   submitd-authz  (root)   database and PAM
 *   submitd-queue  (user)   spool and relay
 *   submitd-smtp   (user)   TLS and SMTP sessions
 * Each is a separate executable, so the process that parses untrusted bytes does
 * not even have SQLite or PAM mapped. They talk over socketpairs created here.
 * If one of them dies, all three are restarted together: a half-dead set could
 * leave requests unanswered or frames half-read.
 */
#include "config.h"
#include "dn.h"
#include "ipc_codec.h"
#include "fdlimit.h"
#include "ipc.h"
#include "log.h"
#include "privdrop.h"
#include "safedir.h"
#include "util.h"

#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENERS 16
#define MAX_WORKERS 64

enum { P_AUTHZ = 0, P_QUEUE, P_SMTP, NPROC };
static const char *const proc_names[NPROC] = { "submitd-authz", "submitd-queue", "submitd-smtp" };

static struct config cfg;
static const char *conf_path = CONFIG_DEFAULT_PATH;
static int foreground;
static int listen_fds[MAX_LISTENERS], listen_tls[MAX_LISTENERS], nlisten;
static pid_t pids[NPROC];
static char libexec[PATH_MAX];
static volatile sig_atomic_t got_term, got_chld, got_hup;

/* The control channel with each worker (ipc_codec.h): readiness and reloads. */
static int ctl_fds[NPROC] = { -1, -1, -1 };
static int ready[NPROC];
static int reload_pending;        /* workers whose answer to a reload is awaited */
static time_t reload_deadline;
#define RELOAD_TIMEOUT 30

/* The usage text: on stdout with status 0 when asked for (--help, -h), on stderr
 * with status 2 after a misuse. */
static void usage_to(FILE *out, int status)
{
    fprintf(out, "usage: submitd [-c FILE] [-f] [-t | -n | -p] | --help | --version\n"
                    "  -c FILE  configuration file (default %s)\n"
                    "  -f       stay in the foreground and log to stderr\n"
                    "  -t       check the configuration and files, then exit\n"
                    "  -n       print the settings made in the file\n"
                    "  -p       print every effective setting, defaults marked\n",
            CONFIG_DEFAULT_PATH);
    exit(status);
}

static void usage(void)
{
    usage_to(stderr, 2);
}

/* ---- listeners and spool ------------------------------------------------------ */

static int bind_one(const char *item, char *err, size_t errlen)
{
    char host[256], port[16];
    struct addrinfo hints, *res;
    int fd, one = 1, rc;

    if (config_split_hostport(item, host, sizeof(host), port, sizeof(port)) != 0) {
        str_fmt(err, errlen, "%s: listen: \"%s\" is not host:port", cfg.path, item);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        str_fmt(err, errlen, "listen %s: %s", item, gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        str_fmt(err, errlen, "listen %s: %s", item, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int bind_list(const char *list, int implicit, char *err, size_t errlen)
{
    char item[512];
    int rc;

    for (int i = 0; (rc = config_list_item(list, i, item, sizeof(item))) == 1; i++) {
        int fd;
        if (nlisten == MAX_LISTENERS) {
            str_fmt(err, errlen, "too many listeners (at most %d)", MAX_LISTENERS);
            return -1;
        }
        fd = bind_one(item, err, errlen);
        if (fd < 0)
            return -1;
        listen_fds[nlisten] = fd;
        listen_tls[nlisten] = implicit;
        nlisten++;
        log_info("listening on %s (%s)", item, implicit ? "implicit TLS" : "STARTTLS");
    }
    if (rc < 0) {
        str_fmt(err, errlen, "%s: %s: malformed list \"%s\"", cfg.path,
                implicit ? "listen_tls" : "listen", list);
        return -1;
    }
    return 0;
}

/*
 * Who owns the spool: the configured user when we are root, else ourselves (a test
 * run or an admin trying a configuration; nothing is chowned then).
 */
static int spool_owner(struct safedir_owner *o, char *err, size_t errlen)
{
    static char name[64];

    if (geteuid() == 0) {
        if (privdrop_lookup(cfg.user, &o->uid, &o->gid) != 0) {
            str_fmt(err, errlen, "%s: user: unprivileged user \"%s\" does not exist",
                    cfg.path, cfg.user);
            return -1;
        }
        o->name = cfg.user;
        return 0;
    }
    o->uid = geteuid();
    o->gid = getegid();
    str_fmt(name, sizeof(name), "uid %u", (unsigned)o->uid);
    o->name = name;
    return 0;
}

/*
 * The spool belongs to the unprivileged user, who can put anything in it: a link
 * where spool/corrupt was, say, to /etc/shadow. So the master, as root, never looks
 * a spool name up by path: it opens the spool's parent (a directory only root can
 * change, see safedir.h), then each level with openat(O_NOFOLLOW), refuses what is
 * not a directory of the user's (or root's), and chowns and chmods the descriptor
 * it opened. Nothing that the check looked at can be swapped before the chown.
 *
 * Above the spool, every directory must be root's and writable by root alone (a
 * sticky directory such as /tmp aside), or the start is refused. A user who can
 * write there, the daemon user included, can rename another directory of root's
 * (a CA directory next to the spool; /var/spool, after a swap higher up) into the
 * spool's place, and root would hand it over. A warning would not do: it would be
 * repeated at every start in a log nobody reads, while the directory changes hands.
 */
#define SPOOL_LOCK "submitd.lock"

static int lock_fd = -1;

/* The pid written in the lock file of the spool (by the instance holding it), or
 * "unknown" while that instance has not written it yet. */
static void lock_holder(int fd, char *out, size_t outlen)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    long long pid;

    if (n > 0) {
        buf[n] = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        if (str_to_ll(buf, 1, INT32_MAX, &pid) == 0) {
            str_fmt(out, outlen, "%lld", pid);
            return;
        }
    }
    str_lcpy(out, "unknown", outlen);
}

/*
 * One instance per spool (DESIGN §4): two would recover each other's incoming
 * files and relay the same messages. The lock is flock() on SPOOL_LOCK inside the
 * spool, opened through the spool's descriptor without following links. The spool
 * belongs to the unprivileged user, so a lock file that root did not make (a link,
 * a FIFO, a hard link to a file elsewhere) is replaced, never opened for writing.
 * flock() survives the fork of daemonize(); the descriptor is close-on-exec, so
 * the workers never hold it.
 */
static int lock_spool(int spool, char *err, size_t errlen)
{
    const int flags = O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
    struct stat st;
    char pid[32];
    int fd;

    /* Anything but a regular file of ours with one link goes, before we open it. */
    if (fstatat(spool, SPOOL_LOCK, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        (!S_ISREG(st.st_mode) || st.st_nlink != 1 || st.st_uid != geteuid()))
        (void)unlinkat(spool, SPOOL_LOCK, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0);
    fd = openat(spool, SPOOL_LOCK, flags | O_CREAT, 0644);
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
                    st.st_uid != geteuid())) {
        close(fd);
        fd = -1;
        errno = EPERM;
    }
    if (fd < 0) {
        str_fmt(err, errlen, "spool %s: cannot open the lock file %s: %s", cfg.spool, SPOOL_LOCK,
                strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;

        lock_holder(fd, pid, sizeof(pid));
        close(fd);
        if (e == EWOULDBLOCK)
            str_fmt(err, errlen, "spool %s is in use by another submitd (pid %s, lock file "
                    "%s/%s)", cfg.spool, pid, cfg.spool, SPOOL_LOCK);
        else
            str_fmt(err, errlen, "spool %s: cannot lock %s: %s", cfg.spool, SPOOL_LOCK,
                    strerror(e));
        return -1;
    }
    lock_fd = fd;
    return 0;
}

/* Writes our pid into the lock file, once the master has its final pid. */
static void lock_write_pid(void)
{
    char num[32];

    str_fmt(num, sizeof(num), "%ld\n", (long)getpid());
    if (ftruncate(lock_fd, 0) != 0 || pwrite(lock_fd, num, strlen(num), 0) != (ssize_t)strlen(num))
        log_warn("spool %s: cannot write the pid into %s: %s", cfg.spool, SPOOL_LOCK,
                 strerror(errno));
}

static int prepare_spool(char *err, size_t errlen)
{
    static const char *const subdirs[] = { "incoming", "queue", "corrupt" };
    const int flags = SAFEDIR_CREATE | SAFEDIR_ADOPT;
    struct safedir_owner owner;
    char why[PATH_MAX + 256];
    int spool, fd;

    if (spool_owner(&owner, err, errlen) != 0)
        return -1;
    spool = safedir_open_owned_path(cfg.spool, &owner, flags, why, sizeof(why));
    if (spool >= 0 && lock_spool(spool, err, errlen) != 0) {
        close(spool);
        return -1;
    }
    fd = spool;
    for (size_t i = 0; fd >= 0 && i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        char path[PATH_MAX];

        str_fmt(path, sizeof(path), "%s/%s", cfg.spool, subdirs[i]);
        fd = safedir_open_owned(spool, subdirs[i], path, &owner, flags, why, sizeof(why));
        if (fd >= 0)
            close(fd);
    }
    if (spool >= 0)
        close(spool);
    if (fd < 0) {
        str_fmt(err, errlen, "spool: %s", why);
        return -1;
    }
    return 0;
}

/*
 * client_ca and crl decide who is who, and are read as root (a FIFO there would
 * also hang the reader). A user who can change them, or the directory they are in,
 * could trust a CA of their own or drop a revocation: the daemon user, who owns the
 * spool, must not be able to mint identities. So each must be a file that only root
 * can change, in a directory that only root can change (safedir.h).
 */
static int check_trust_file(const char *key, const char *path, char *err, size_t errlen)
{
    char base[NAME_MAX + 1], why[PATH_MAX + 128];
    struct stat st;
    int dir, rc;

    if (path[0] == '\0')
        return 0;
    dir = safedir_open_parent(path, base, sizeof(base), 0, why, sizeof(why));
    if (dir < 0) {
        str_fmt(err, errlen, "%s: %s", key, why);
        return -1;
    }
    rc = fstatat(dir, base, &st, 0);
    close(dir);
    if (rc != 0) {
        str_fmt(err, errlen, "%s: %s: %s", key, path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) ||
        (st.st_mode & 022) != 0) {
        str_fmt(err, errlen, "%s: %s must be a regular file of root's that only root can "
                "write (it is uid %u, mode %04o)", key, path, (unsigned)st.st_uid,
                (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* ---- -t: check the configuration and the files it names ----------------------- */

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

/* A CRL issued by one of the certificates in client_ca, or NULL. */
static X509 *crl_issuer_in(STACK_OF(X509_INFO) *cas, X509_CRL *c)
{
    for (int i = 0; i < sk_X509_INFO_num(cas); i++) {
        X509 *x = sk_X509_INFO_value(cas, i)->x509;
        if (x != NULL && X509_NAME_cmp(X509_get_subject_name(x), X509_CRL_get_issuer(c)) == 0)
            return x;
    }
    return NULL;
}

/*
 * The CRL must hold for a while yet: past its nextUpdate every client certificate
 * is refused, so one that expires within a day is an error too. It must come from
 * a client CA and carry its signature. The authz process reads it as root, at
 * start and whenever it changes.
 */
#define CHECK_CAS_MAX 64

static void crl_seen_for(STACK_OF(X509_INFO) *cas, const X509 *issuer, char *seen)
{
    for (int i = 0; i < sk_X509_INFO_num(cas) && i < CHECK_CAS_MAX; i++)
        if (sk_X509_INFO_value(cas, i)->x509 == issuer)
            seen[i] = 1;
}

/* A CA of client_ca without a CRL in crl: its users get 454 (the daemon cannot know
 * whether their certificates were revoked), while other CAs' users are served. */
static void warn_cas_without_crl(STACK_OF(X509_INFO) *cas, const char *seen)
{
    for (int i = 0; cas != NULL && i < sk_X509_INFO_num(cas) && i < CHECK_CAS_MAX; i++) {
        X509 *x = sk_X509_INFO_value(cas, i)->x509;
        char name[512];

        if (x == NULL || seen[i])
            continue;
        dn_text(X509_get_subject_name(x), name, sizeof(name));
        fprintf(stderr, "submitd: warning: client_ca: CA %s has no CRL in crl %s: its "
                "users get 454 until its CRL is added to that file\n", name, cfg.crl);
        check_warnings++;
    }
}

static void check_crl(int *problems)
{
    char seen[CHECK_CAS_MAX] = { 0 };
    STACK_OF(X509_INFO) *cas = NULL;
    BIO *in;
    X509_CRL *c;
    FILE *f;
    time_t now = time(NULL), soon = now + 86400;
    char when[32];
    int n = 0;

    if (cfg.crl[0] == '\0' || access(cfg.crl, R_OK) != 0)
        return;
    if ((in = BIO_new_file(cfg.client_ca, "r")) != NULL)
        cas = PEM_X509_INFO_read_bio(in, NULL, NULL, NULL);
    BIO_free(in);
    if ((f = fopen(cfg.crl, "re")) == NULL)
        return;
    while ((c = PEM_read_X509_CRL(f, NULL, NULL, NULL)) != NULL) {
        const ASN1_TIME *next = X509_CRL_get0_nextUpdate(c);
        const ASN1_TIME *last = X509_CRL_get0_lastUpdate(c);
        X509 *issuer = cas != NULL ? crl_issuer_in(cas, c) : NULL;

        n++;
        if (next != NULL && X509_cmp_time(next, &now) < 0) {
            asn1_iso(next, when, sizeof(when));
            fprintf(stderr, "submitd: crl: %s expired on %s: every client certificate of its "
                    "CA is refused; publish a new CRL with \"submit-ca crl\"\n", cfg.crl, when);
            (*problems)++;
        } else if (next != NULL && X509_cmp_time(next, &soon) < 0) {
            /* A warning: the daily CRL timer renews it, and a restart must not fail
             * on it (-t runs before every start). */
            asn1_iso(next, when, sizeof(when));
            fprintf(stderr, "submitd: warning: crl: %s expires within a day, on %s: every "
                    "client certificate of its CA is refused then; publish a new CRL with "
                    "\"submit-ca crl\"\n", cfg.crl, when);
            check_warnings++;
        }
        if (last != NULL && X509_cmp_time(last, &now) > 0) {
            asn1_iso(last, when, sizeof(when));
            fprintf(stderr, "submitd: crl: %s is not valid before %s (is the clock right?)\n",
                    cfg.crl, when);
            (*problems)++;
        }
        if (issuer == NULL) {
            fprintf(stderr, "submitd: crl: %s holds a CRL whose issuer is not in client_ca %s\n",
                    cfg.crl, cfg.client_ca);
            (*problems)++;
        } else if (X509_CRL_verify(c, X509_get0_pubkey(issuer)) != 1) {
            fprintf(stderr, "submitd: crl: %s: signature does not verify with client_ca %s\n",
                    cfg.crl, cfg.client_ca);
            (*problems)++;
        }
        if (issuer != NULL)
            crl_seen_for(cas, issuer, seen);
        X509_CRL_free(c);
    }
    fclose(f);
    ERR_clear_error();
    warn_cas_without_crl(cas, seen);
    sk_X509_INFO_pop_free(cas, X509_INFO_free);
    if (n == 0) {
        fprintf(stderr, "submitd: crl: %s holds no PEM CRL\n", cfg.crl);
        (*problems)++;
    }
}

static int nworkers(void);

static int list_count(const char *list)
{
    char item[512];
    int n = 0;

    while (config_list_item(list, n, item, sizeof(item)) == 1)
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

/* Every listener must be host:port with a port from 1 to 65535 and resolve. */
static void check_listen(const char *key, const char *list, int *problems)
{
    char item[512], host[256], port[16];
    int rc;

    for (int i = 0; (rc = config_list_item(list, i, item, sizeof(item))) == 1; i++) {
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
        if (access(path, R_OK) == 0)
            return;
        fprintf(stderr, "submitd: pam_service: %s: %s\n", path, strerror(errno));
        (*problems)++;
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

/*
 * -t: every problem it can find, one line each; warnings do not fail it. Returns the
 * exit status: 1 with problems, else 0.
 */
/* An upstream that does not resolve now may at run time (a VPN not up yet): a
 * warning. */
static void check_upstream(void)
{
    char item[512], host[256], port[16];

    for (int i = 0; config_list_item(cfg.upstream, i, item, sizeof(item)) == 1; i++) {
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

static int check_config(void)
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

/* ---- children -------------------------------------------------------------------- */

struct argv_buf {
    char *argv[4 * MAX_WORKERS + 4 * MAX_LISTENERS + 16];
    char store[4 * MAX_WORKERS + 4 * MAX_LISTENERS + 16][16];
    int argc;
    int pass[2 * MAX_WORKERS + MAX_LISTENERS + 4];
    int npass;
};

static void arg_add(struct argv_buf *a, const char *s)
{
    a->argv[a->argc++] = (char *)(uintptr_t)s;
    a->argv[a->argc] = NULL;
}

static void arg_fd(struct argv_buf *a, const char *flag, int fd)
{
    arg_add(a, flag);
    str_fmt(a->store[a->argc], sizeof(a->store[0]), "%d", fd);
    arg_add(a, a->store[a->argc]);
    a->pass[a->npass++] = fd;
}

static pid_t spawn(int which, struct argv_buf *a)
{
    char path[PATH_MAX];
    pid_t pid;

    str_fmt(path, sizeof(path), "%s/%s", libexec, proc_names[which]);
    pid = fork();
    if (pid < 0)
        fatal("fork: %s", strerror(errno));
    if (pid > 0)
        return pid;
    /* Child: die with the master, keep exactly the descriptors named in argv. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        _exit(1);
    for (int i = 0; i < a->npass; i++)
        if (fcntl(a->pass[i], F_SETFD, 0) != 0)
            _exit(1);
    {
        sigset_t none;
        struct sigaction ign;

        /* Until the worker sets its own handlers, a signal sent to the whole
         * service (systemctl kill) must not stop it: ignored dispositions survive
         * execv, the master's handlers would not. */
        memset(&ign, 0, sizeof(ign));
        ign.sa_handler = SIG_IGN;
        sigaction(SIGHUP, &ign, NULL);
        sigaction(SIGUSR1, &ign, NULL);
        sigaction(SIGUSR2, &ign, NULL);
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
    }
    execv(path, a->argv);
    fprintf(stderr, "submitd: cannot run %s: %s\n", path, strerror(errno));
    _exit(127);
}

static int nworkers(void)
{
    long n = cfg.smtp_workers > 0 ? cfg.smtp_workers : sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

static void start_all(void)
{
    int nw = nworkers();
    int smtp_authz[MAX_WORKERS][2], smtp_queue[MAX_WORKERS][2], queue_authz[2], ctl[NPROC][2];
    static struct argv_buf a_authz, a_queue, a_smtp;
    struct argv_buf *bufs[NPROC] = { &a_authz, &a_queue, &a_smtp };

    for (int i = 0; i < nw; i++)
        if (ipc_socketpair(smtp_authz[i]) != 0 || ipc_socketpair(smtp_queue[i]) != 0)
            fatal("socketpair: %s", strerror(errno));
    if (ipc_socketpair(queue_authz) != 0)
        fatal("socketpair: %s", strerror(errno));
    for (int p = 0; p < NPROC; p++)
        if (ipc_socketpair(ctl[p]) != 0 ||
            fcntl(ctl[p][0], F_SETFL, fcntl(ctl[p][0], F_GETFL) | O_NONBLOCK) != 0)
            fatal("socketpair: %s", strerror(errno));

    for (int p = 0; p < NPROC; p++) {
        memset(bufs[p], 0, sizeof(*bufs[p]));
        arg_add(bufs[p], proc_names[p]);
        arg_add(bufs[p], "-c");
        arg_add(bufs[p], cfg.path);
        if (foreground)
            arg_add(bufs[p], "-f");
        arg_fd(bufs[p], "-m", ctl[p][1]);
    }
    for (int i = 0; i < nw; i++) {
        arg_fd(&a_authz, "-s", smtp_authz[i][1]);
        arg_fd(&a_queue, "-s", smtp_queue[i][1]);
        arg_fd(&a_smtp, "-a", smtp_authz[i][0]);
        arg_fd(&a_smtp, "-q", smtp_queue[i][0]);
    }
    arg_fd(&a_authz, "-q", queue_authz[1]);
    arg_fd(&a_queue, "-a", queue_authz[0]);
    for (int i = 0; i < nlisten; i++)
        arg_fd(&a_smtp, listen_tls[i] ? "-L" : "-l", listen_fds[i]);

    for (int p = 0; p < NPROC; p++) {
        pids[p] = spawn(p, bufs[p]);
        log_info("started %s (pid %d)", proc_names[p], (int)pids[p]);
    }
    /* The master keeps no channel open: a child's peer sees end-of-file when the
     * child dies, which is how the others notice and exit. */
    for (int i = 0; i < nw; i++) {
        close(smtp_authz[i][0]);
        close(smtp_authz[i][1]);
        close(smtp_queue[i][0]);
        close(smtp_queue[i][1]);
    }
    close(queue_authz[0]);
    close(queue_authz[1]);
    for (int p = 0; p < NPROC; p++) {
        close(ctl[p][1]);
        ctl_fds[p] = ctl[p][0];
        ready[p] = 0;
    }
    reload_pending = 0;
}

static int which_child(pid_t pid)
{
    for (int p = 0; p < NPROC; p++)
        if (pids[p] == pid)
            return p;
    return -1;
}

/* Sends SIGTERM to the living children and waits up to `grace` seconds. */
static void stop_all(int grace)
{
    time_t until = time(NULL) + grace;

    for (int p = 0; p < NPROC; p++)
        if (pids[p] > 0)
            kill(pids[p], SIGTERM);
    for (;;) {
        int alive = 0, status;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            int p = which_child(pid);
            if (p >= 0)
                pids[p] = 0;
        }
        for (int p = 0; p < NPROC; p++)
            alive += pids[p] > 0;
        if (alive == 0) {
            for (int p = 0; p < NPROC; p++) {
                if (ctl_fds[p] >= 0)
                    close(ctl_fds[p]);
                ctl_fds[p] = -1;
            }
            return;
        }
        if (time(NULL) >= until) {
            for (int p = 0; p < NPROC; p++)
                if (pids[p] > 0) {
                    log_warn("%s (pid %d) did not stop in %d s: killing it", proc_names[p],
                             (int)pids[p], grace);
                    kill(pids[p], SIGKILL);
                }
            until = time(NULL) + 5;
        }
        usleep(50000);
    }
}

static void on_signal(int sig)
{
    if (sig == SIGCHLD)
        got_chld = 1;
    else if (sig == SIGHUP)
        got_hup = 1;
    else
        got_term = 1;
}

/* ---- readiness and reload ---------------------------------------------------------- */

static unsigned long long monotonic_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

static int all_ready(void)
{
    for (int p = 0; p < NPROC; p++)
        if (!ready[p])
            return 0;
    return 1;
}

/* Tells systemd (Type=notify) that the service serves; nothing without NOTIFY_SOCKET. */
static void notify_ready(const char *status)
{
    sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

/*
 * The server certificate and key must be a pair, and client_ca must give the CA
 * names the smtp process sends in its CertificateRequest: what it will load.
 */
static int check_tls_files(const struct config *c, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    STACK_OF(X509_NAME) *names = NULL;
    int rc = -1;

    if (ctx == NULL)
        str_fmt(err, errlen, "cannot create a TLS context");
    else if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1)
        str_fmt(err, errlen, "tls_cert: %s: cannot load the certificate", c->tls_cert);
    else if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1)
        str_fmt(err, errlen, "tls_key: %s: cannot load the private key", c->tls_key);
    else if (SSL_CTX_check_private_key(ctx) != 1)
        str_fmt(err, errlen, "tls_key: %s does not match tls_cert %s", c->tls_key, c->tls_cert);
    else if ((names = SSL_load_client_CA_file(c->client_ca)) == NULL)
        str_fmt(err, errlen, "client_ca: %s: no CA certificate in it", c->client_ca);
    else
        rc = 0;
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

static void note_restart_key(const char *key, void *arg)
{
    (void)arg;
    log_warn("reload: %s changed in %s: that takes a restart (systemctl restart submitd); "
             "the running value stays until then", key, cfg.path);
}

/* Sends one file, opened here as root, to a worker that may not open it itself. */
static int send_file(struct ipc_msg *m, int p, int kind, const char *path, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK), rc;

    if (fd < 0) {
        str_fmt(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    rc = ipc_enc_ctl_file(m, kind, fd) == 0 ? ipc_send(ctl_fds[p], m) : -1;
    if (rc != 0)
        str_fmt(err, errlen, "%s: cannot be sent: %s", proc_names[p], strerror(errno));
    close(fd);
    return rc;
}

/*
 * SIGHUP. The new file is checked whole before anything changes: a broken one is
 * refused and the running configuration stays. Keys only a restart can change keep
 * their running value (logged). Each worker then reloads what it owns from the
 * descriptors sent here: smtp a new TLS context and limits for new sessions (those in
 * progress finish on the old ones), authz client_ca, the CRL and its limits, queue
 * nothing yet but its log level. The workers keep running: nobody is dropped.
 */
static void reload_begin(void)
{
    static struct config next;
    struct ipc_msg *m;
    char err[1024];

    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading", monotonic_usec());
    log_info("reloading the configuration %s", cfg.path);
    if (config_load(&next, cfg.path, err, sizeof(err)) != 0 ||
        config_check_required(&next, err, sizeof(err)) != 0 ||
        check_trust_file("client_ca", next.client_ca, err, sizeof(err)) != 0 ||
        check_trust_file("crl", next.crl, err, sizeof(err)) != 0 ||
        check_tls_files(&next, err, sizeof(err)) != 0) {
        log_err("reload refused, the running configuration stays: %s", err);
        notify_ready("serving; the last reload was refused, see the log");
        return;
    }
    config_keep_restart_keys(&next, &cfg, note_restart_key, NULL);
    cfg = next;
    log_set_level(cfg.log_level);
    m = malloc(sizeof(*m));
    if (m == NULL)
        fatal("out of memory");
    reload_pending = 0;
    for (int p = 0; p < NPROC; p++) {
        int rc = send_file(m, p, CTL_FILE_CONF, cfg.path, err, sizeof(err));

        if (rc == 0 && p == P_SMTP)
            rc = send_file(m, p, CTL_FILE_CERT, cfg.tls_cert, err, sizeof(err)) ||
                 send_file(m, p, CTL_FILE_KEY, cfg.tls_key, err, sizeof(err)) ||
                 send_file(m, p, CTL_FILE_CLIENT_CA, cfg.client_ca, err, sizeof(err));
        if (rc == 0) {
            ipc_init(m, IPC_CTL_RELOAD, 0);
            rc = ipc_send(ctl_fds[p], m);
            if (rc != 0)
                str_fmt(err, sizeof(err), "%s", strerror(errno));
        }
        if (rc != 0)
            log_err("reload: %s keeps its settings: %s", proc_names[p], err);
        else
            reload_pending++;
    }
    free(m);
    reload_deadline = time(NULL) + RELOAD_TIMEOUT;
    if (reload_pending == 0)
        notify_ready("serving");
}

static void reload_answered(void)
{
    if (--reload_pending > 0)
        return;
    log_info("configuration %s reloaded", cfg.path);
    notify_ready("serving");
}

/* Messages from worker p on its control channel. */
static void read_ctl(int p, struct ipc_msg *m)
{
    for (;;) {
        struct ipc_reloaded r;
        int n = ipc_recv(ctl_fds[p], m);

        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            /* It is gone or broken: SIGCHLD brings the restart. */
            close(ctl_fds[p]);
            ctl_fds[p] = -1;
            return;
        }
        if (m->fd >= 0) {
            close(m->fd);
            m->fd = -1;
            m->type = 0;
        }
        if (m->type == IPC_CTL_READY && ipc_end(m) == 0 && !ready[p]) {
            ready[p] = 1;
            if (all_ready()) {
                log_info("ready: %s, %s and %s serve", proc_names[0], proc_names[1],
                         proc_names[2]);
                notify_ready("serving");
            }
        } else if (m->type == IPC_CTL_RELOADED && ipc_dec_ctl_reloaded(m, &r) == 0 &&
                   reload_pending > 0) {
            if (!r.ok)
                log_err("reload: %s keeps its settings: %s", proc_names[p], r.why);
            reload_answered();
        } else {
            log_err("%s broke the control protocol (message type %u): restarting it",
                    proc_names[p], m->type);
            kill(pids[p], SIGKILL);
            close(ctl_fds[p]);
            ctl_fds[p] = -1;
            return;
        }
    }
}

static void describe_exit(int status, char *out, size_t outlen)
{
    if (WIFEXITED(status))
        str_fmt(out, outlen, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        str_fmt(out, outlen, "killed by signal %d", WTERMSIG(status));
    else
        str_fmt(out, outlen, "stopped");
}

static void supervise(void)
{
    sigset_t block, old;
    int restarts = 0;
    time_t last_start = time(NULL);
    struct ipc_msg *m = malloc(sizeof(*m));

    if (m == NULL)
        fatal("out of memory");
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, &old);
    start_all();
    for (;;) {
        struct pollfd pfd[NPROC];
        struct timespec tick = { 1, 0 };
        int status;
        pid_t pid;

        for (int p = 0; p < NPROC; p++) {
            pfd[p].fd = ctl_fds[p];
            pfd[p].events = POLLIN;
            pfd[p].revents = 0;
        }
        /* Signals are let in only while waiting here, so none is missed. */
        if (!got_term && !got_chld && !got_hup &&
            ppoll(pfd, NPROC, &tick, &old) < 0 && errno != EINTR)
            fatal("ppoll: %s", strerror(errno));
        if (got_term) {
            log_info("stopping");
            sd_notify(0, "STOPPING=1");
            stop_all(10);
            log_info("stopped");
            free(m);
            return;
        }
        for (int p = 0; p < NPROC; p++)
            if (ctl_fds[p] >= 0 && (pfd[p].revents & (POLLIN | POLLHUP | POLLERR)))
                read_ctl(p, m);
        /* A reload waits until the set serves and the last one is answered. */
        if (got_hup && !got_chld && all_ready() && reload_pending == 0) {
            got_hup = 0;
            reload_begin();
        }
        if (reload_pending > 0 && time(NULL) >= reload_deadline) {
            log_warn("reload: not every worker answered within %d s", RELOAD_TIMEOUT);
            reload_pending = 0;
            notify_ready("serving");
        }
        if (!got_chld)
            continue;
        got_chld = 0;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            int p = which_child(pid);
            char how[64];
            int delay;

            if (p < 0)
                continue;
            pids[p] = 0;
            describe_exit(status, how, sizeof(how));
            log_err("%s (pid %d) %s: restarting the worker processes", proc_names[p], (int)pid,
                    how);
            stop_all(10);
            /* Back off when the set keeps dying, so a broken configuration or a
             * full disk does not turn into a fork storm. */
            restarts = time(NULL) - last_start < 10 ? restarts + 1 : 0;
            delay = restarts == 0 ? 1 : restarts > 5 ? 30 : 1 << restarts;
            sigprocmask(SIG_SETMASK, &old, NULL);
            for (int s = 0; s < delay * 10 && !got_term; s++)
                usleep(100000);
            sigprocmask(SIG_BLOCK, &block, NULL);
            if (got_term)
                break;
            last_start = time(NULL);
            got_chld = 0;
            start_all();
        }
    }
}

/* Into the background; stderr stays when the log goes there (log = stderr, or the
 * journal's stream under log = auto). */
static void daemonize(int keep_stderr)
{
    pid_t pid = fork();
    int fd;

    if (pid < 0)
        fatal("fork: %s", strerror(errno));
    if (pid > 0)
        _exit(0);
    setsid();
    fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        if (!keep_stderr)
            dup2(fd, 2);
        if (fd > 2)
            close(fd);
    }
}

int main(int argc, char **argv)
{
    int opt, test = 0, print = -1;
    char err[1024];
    struct sigaction sa;

    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("submitd %s\n", SUBMITD_VERSION);
        return 0;
    }
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0))
        usage_to(stdout, 0);
    while ((opt = getopt(argc, argv, "c:fthnp")) != -1) {
        switch (opt) {
        case 'c':
            conf_path = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 't':
            test = 1;
            break;
        case 'n':
        case 'p':
            print = opt == 'p';
            break;
        default:
            usage();
        }
    }
    if (optind != argc || (print >= 0 && test))
        usage();
    log_init("submitd", foreground || test, LOG_LVL_INFO);
    if (test) {
        if (exe_dir(libexec, sizeof(libexec)) != 0 ||
            str_fmt(libexec + strlen(libexec), sizeof(libexec) - strlen(libexec),
                    "/../libexec/submitd") != 0)
            fatal("cannot locate the helper programs");
        return check_config();
    }
    if (config_load(&cfg, conf_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "submitd: %s\n", err);
        return 1;
    }
    if (print >= 0) {
        config_print(&cfg, stdout, print);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    log_setup(foreground || test, cfg.log_mode, cfg.syslog_facility);
    log_set_level(cfg.log_level);
    if (exe_dir(libexec, sizeof(libexec)) != 0 ||
        str_fmt(libexec + strlen(libexec), sizeof(libexec) - strlen(libexec),
                "/../libexec/submitd") != 0)
        fatal("cannot locate the helper programs");
    if (config_check_required(&cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "submitd: %s\n", err);
        return 1;
    }
    if (check_trust_file("client_ca", cfg.client_ca, err, sizeof(err)) != 0 ||
        check_trust_file("crl", cfg.crl, err, sizeof(err)) != 0 ||
        prepare_spool(err, sizeof(err)) != 0) {
        fprintf(stderr, "submitd: %s\n", err);
        return 1;
    }
    if (bind_list(cfg.listen, 0, err, sizeof(err)) != 0 ||
        bind_list(cfg.listen_tls, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "submitd: %s\n", err);
        return 1;
    }
    if (nlisten == 0) {
        fprintf(stderr, "submitd: %s: listen and listen_tls are both empty\n", cfg.path);
        return 1;
    }
    if (!foreground) {
        daemonize(cfg.log_mode == LOG_DEST_STDERR ||
                  (cfg.log_mode == LOG_DEST_AUTO && log_journal_stream()));
        log_init("submitd", 0, cfg.log_level);
        log_setup(0, cfg.log_mode, cfg.syslog_facility);
    }
    lock_write_pid();
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    /* No signal but SIGTERM and SIGINT stops the service (DESIGN §5). */
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    log_info("submitd starting: configuration %s", cfg.path);
    supervise();
    return 0;
}
