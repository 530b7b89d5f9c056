/*
 * submitd: the master process (DESIGN §2).
 *
 * Owns: the configuration, the listening sockets (it runs as root and binds 587 and
 * 465), the spool's directories and lock (made the daemon user's), and the three
 * workers, which it starts with the socketpairs between them, supervises and
 * restarts together, and reloads on SIGHUP:
 *   submitd-authz  (root)        certificates, the database and PAM
 *   submitd-queue  (user)        the spool and the relay
 *   submitd-smtp   (smtp_user)   TLS and SMTP sessions
 * Never: parses a byte a client sent, opens the database, calls PAM or reads a
 * message. It does not link SQLite or PAM, and keeps no channel between workers
 * open, so a dead worker's peers see end-of-file.
 * Talks to: each worker over its control channel (master_ctl.c: ready, reload) and
 * systemd (sd_notify). `-t` (master_check.c) checks what the start would use.
 *
 * master.c       options, the start, daemonizing
 * master_check   -t                    master_files   spool, lock, trusted files
 * master_listen  listening sockets     master_supervise   workers, signals
 * master_ctl     control channel, readiness, reload
 */
#include "master.h"
#include "master_check.h"
#include "master_files.h"
#include "master_listen.h"
#include "master_supervise.h"

#include "config.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *const proc_names[NPROC] = { "submitd-authz", "submitd-queue", "submitd-smtp" };
struct config cfg;
int foreground;
char libexec[PATH_MAX];

static const char *conf_path = CONFIG_DEFAULT_PATH;

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

/* The workers are installed in ../libexec/submitd next to the master's directory
 * (build/bin and build/libexec, or PREFIX/sbin and PREFIX/libexec). */
static void locate_libexec(void)
{
    if (exe_dir(libexec, sizeof(libexec)) != 0 ||
        str_fmt(libexec + strlen(libexec), sizeof(libexec) - strlen(libexec),
                "/../libexec/submitd") != 0)
        fatal("cannot locate the helper programs");
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
        locate_libexec();
        return check_config(conf_path);
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
    locate_libexec();
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
    if (listen_bind_list(cfg.listen, 0, err, sizeof(err)) != 0 ||
        listen_bind_list(cfg.listen_tls, 1, err, sizeof(err)) != 0) {
        fprintf(stderr, "submitd: %s\n", err);
        return 1;
    }
    if (listen_count() == 0) {
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
    supervise_signals();
    log_info("submitd starting: configuration %s", cfg.path);
    supervise();
    return 0;
}
