#ifndef SUBMITD_CONFIG_H
#define SUBMITD_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

/*
 * The configuration file of DESIGN §6: "key = value" lines, '#' comments. Every
 * program reads the same file with config_load(); unknown keys and bad values are
 * errors naming the file, the line and the key. Relative paths are resolved against
 * the directory of the configuration file, so a whole installation can live in one
 * directory.
 */

#define CONFIG_DEFAULT_PATH "/etc/submitd/submitd.conf"

/* Room for every key of the table in config.c (checked there at compile time). */
#define CONFIG_MAX_KEYS 64

enum upstream_tls_mode { UPSTREAM_TLS_VERIFY = 0, UPSTREAM_TLS_ENCRYPT, UPSTREAM_TLS_NONE };
enum proxy_protocol_mode { PROXY_PROTOCOL_NO = 0, PROXY_PROTOCOL_V2 };
enum auth_password_mode { AUTH_PASSWORD_NO = 0, AUTH_PASSWORD_FALLBACK, AUTH_PASSWORD_SECOND_FACTOR };

struct config {
    char path[PATH_MAX];          /* the file that was loaded */
    char dir[PATH_MAX];           /* its directory, for relative paths */

    char hostname[256];
    char listen[1024];            /* comma-separated host:port, STARTTLS */
    char listen_tls[1024];        /* comma-separated host:port, implicit TLS */
    char tls_cert[PATH_MAX];
    char tls_key[PATH_MAX];
    char ca_dir[PATH_MAX];
    char client_ca[PATH_MAX];
    char crl[PATH_MAX];           /* empty: no CRL check */
    char database[PATH_MAX];
    char spool[PATH_MAX];
    char upstream[1024];          /* comma-separated host:port, in failover order */
    int upstream_tls;             /* enum upstream_tls_mode */
    char upstream_ca[PATH_MAX];   /* empty: the system store */
    char upstream_cert[PATH_MAX];
    char upstream_key[PATH_MAX];
    char user[64];
    char pam_service[64];
    char pam_confdir[PATH_MAX];   /* empty: the system PAM directory */
    int pam_account_check;
    int pam_timeout;              /* seconds for one PAM call; then TEMPFAIL */
    int pam_cache;                /* seconds an account check result is reused; 0: never */
    int auth_password;            /* enum auth_password_mode */
    long long max_message_size;
    long long max_header_size;    /* bytes of header section; beyond: 552 (DESIGN §8) */
    int max_recipients;
    int max_sessions;
    int max_sessions_per_ip;
    int rate_messages_per_hour;
    int rate_recipients_per_hour;
    int timeout;                  /* seconds of client silence */
    int tls_handshake_timeout;    /* seconds for the TLS handshake and the first command */
    int check_header_from;
    int hide_client;
    int retry_min;
    int retry_max;
    int queue_lifetime;
    int log_level;                /* enum log_level */
    int smtp_workers;             /* 0: one per core */
    char smtp_user[64];           /* uid of the smtp process; "" in the file: same as user */
    int audit_retention;          /* days of audit kept by authz's daily prune; 0: all */
    int log_mode;                 /* enum log_dest of log.h */
    char syslog_facility[16];     /* mail, daemon, local0..local7, ... */
    int proxy_protocol;           /* enum proxy_protocol_mode */
    char proxy_trusted[1024];     /* comma-separated CIDRs allowed to send a PROXY header */

    unsigned char set[CONFIG_MAX_KEYS]; /* key number i was set in the file */
};

void config_defaults(struct config *cfg);
/* Returns 0, or -1 with a one-line message "FILE:LINE: key: problem" in err. */
int config_load(struct config *cfg, const char *path, char *err, size_t errlen);
/*
 * config_load() of a file the caller opened: path is its canonical name (for
 * relative paths and messages), fd is not closed. For a worker that gets the
 * descriptor from the master at a reload, as it may not be allowed to open it.
 */
int config_load_fd(struct config *cfg, const char *path, int fd, char *err, size_t errlen);
/*
 * Every problem of the file, not only the first: calls problem() once per bad line
 * (same messages as config_load()). Returns the number of problems; cfg holds what
 * could be parsed.
 */
int config_load_all(struct config *cfg, const char *path,
                    void (*problem)(const char *msg, void *arg), void *arg);
/*
 * The keys that only a restart can change (listeners, users, the spool, the
 * database, table sizes, what the queue process owns): for each that differs
 * between old and new, calls changed(key) and puts the old value back into new.
 * Returns how many differed.
 */
int config_keep_restart_keys(struct config *newcfg, const struct config *old,
                             void (*changed)(const char *key, void *arg), void *arg);
/*
 * Prints "key = value" lines: with all 0 the keys set in the file (postconf -n),
 * with all 1 every key, those left at their default marked "# default" (postconf).
 * Secrets in a database URI are masked.
 */
void config_print(const struct config *cfg, FILE *out, int all);
/* Copies a database value with the password of a postgresql:// URI (user:pass@ or
 * password=...) replaced by "****". */
void config_mask_secret(const char *in, char *out, size_t outlen);
/*
 * The database as messages and logs name it: cfg->database masked as above. The
 * buffer is the calling thread's, overwritten by its next call.
 */
const char *config_database_shown(const struct config *cfg);
/* Requires the keys that have no default (upstream). Same error convention. */
int config_check_required(const struct config *cfg, char *err, size_t errlen);

/*
 * Splits "host:port" or "[v6]:port" into its parts. Returns 0 or -1 when malformed.
 */
int config_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen);


#endif
