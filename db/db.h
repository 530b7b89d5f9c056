#ifndef SUBMITD_DB_H
#define SUBMITD_DB_H

#include <stddef.h>

/*
 * Every SQL statement of the project lives behind this interface (DESIGN §7, §10):
 * authz, submit-admin and submit-ca never see SQLite types. A PostgreSQL backend
 * would be a second implementation of this header.
 *
 * Return convention for every function that returns int:
 *   DB_OK (0)         success / found / owned
 *   DB_NOTFOUND (1)   no such row (or: not owned)
 *   DB_EXISTS (2)     insert refused because the row already exists
 *   DB_ERROR (-1)     database error (locked, I/O, corrupt...); db_errmsg() says which.
 * Callers treat DB_ERROR as TEMPFAIL, never as a positive answer.
 */

enum { DB_OK = 0, DB_NOTFOUND = 1, DB_EXISTS = 2, DB_ERROR = -1 };

struct db;

/*
 * Opens (creating when absent) the SQLite file, sets WAL, foreign_keys=ON and
 * busy_timeout, and applies pending migrations (db/NNNN_*.sql, embedded at build
 * time) inside a transaction. ":memory:" works for tests.
 * Returns NULL with a message naming the file in err.
 */
struct db *db_open(const char *path, char *err, size_t errlen);
void db_close(struct db *db);
const char *db_errmsg(struct db *db);
/* Schema version after migration (PRAGMA user_version). */
int db_schema_version(struct db *db);

/*
 * Groups several calls into one transaction (BEGIN IMMEDIATE ... COMMIT), e.g. a
 * user and its senders. Functions that need a transaction of their own join the
 * caller's when one is open. db_rollback() is harmless when none is open.
 */
int db_begin(struct db *db);
int db_commit(struct db *db);
void db_rollback(struct db *db);

/*
 * The rules the database enforces, for callers that want to say what is wrong before
 * they try: a user name is 1-64 of [A-Za-z0-9._-] and does not start with '.' or '-';
 * a sender is "local@domain" or "@domain" in printable ASCII, with one '@' and a
 * non-empty domain of non-empty labels. Return 1 when valid, 0 otherwise.
 */
int db_user_name_valid(const char *name);
int db_sender_address_valid(const char *address);

/* ---- users ------------------------------------------------------------ */
int db_user_add(struct db *db, const char *name);             /* DB_EXISTS if present */
/*
 * Also deletes its senders and subject maps, and revokes its still valid certificates
 * (reason cessationOfOperation), which stay in the table with no user for the CRL.
 */
int db_user_del(struct db *db, const char *name);             /* also its senders */
int db_user_set_enabled(struct db *db, const char *name, int enabled);
int db_user_get(struct db *db, const char *name, int *enabled);

struct db_user {
    char name[128];
    int enabled;
    char created_at[32];
    char senders[1024];  /* comma-separated, possibly truncated with "..." */
};
typedef int (*db_user_cb)(void *arg, const struct db_user *u); /* non-zero stops */
int db_user_list(struct db *db, db_user_cb cb, void *arg);

/* ---- senders: "a@b" or "@domain", stored lower-case ---------------------- */
int db_sender_add(struct db *db, const char *user, const char *address); /* NOTFOUND: no user */
int db_sender_del(struct db *db, const char *user, const char *address);
/* DB_OK when the user owns address (exact, case-insensitive, or its @domain). */
int db_sender_owned(struct db *db, const char *user, const char *address);
/* Every address of user, in sorted order; DB_NOTFOUND when the user does not exist. */
typedef int (*db_sender_cb)(void *arg, const char *address);    /* non-zero stops */
int db_sender_list(struct db *db, const char *user, db_sender_cb cb, void *arg);
/*
 * Who may send as address ("a@b" or "@domain"): every user owning it exactly, then
 * every owner of its @domain (for "a@b"), by user name. domain_owner says which.
 */
/*
 * DB_OK with the first (by name) other user owning exactly address in owner, when user
 * does not own it already; else DB_NOTFOUND.
 */
int db_sender_other_owner(struct db *db, const char *user, const char *address, char *owner,
                          size_t ownerlen);
typedef int (*db_owner_cb)(void *arg, const char *user, const char *address, int domain_owner);
int db_sender_owners(struct db *db, const char *address, db_owner_cb cb, void *arg);

/* ---- certificates ------------------------------------------------------ */
struct db_cert {
    char serial[80];          /* upper-case hex, no separators */
    char user[128];
    char sha256[65];          /* lower-case hex of the DER certificate */
    char subject[512];        /* RFC 2253 */
    char issuer[512];
    char not_before[32];      /* ISO-8601 UTC */
    char not_after[32];
    char status[16];          /* "valid" or "revoked" */
    char revoked_at[32];      /* empty when valid */
    char revoke_reason[64];
};
/*
 * DB_EXISTS on same serial (or SHA-256); DB_NOTFOUND when c->user does not exist.
 * serial is stored upper-case and sha256 lower-case; an empty status means "valid".
 */
int db_cert_insert(struct db *db, const struct db_cert *c);   /* DB_EXISTS on same serial */
int db_cert_by_sha256(struct db *db, const char *sha256, struct db_cert *out);
int db_cert_by_serial(struct db *db, const char *serial, struct db_cert *out);
/* user and not_after_before may be NULL (no filter). */
typedef int (*db_cert_cb)(void *arg, const struct db_cert *c);
int db_cert_list(struct db *db, const char *user, const char *not_after_before,
                 db_cert_cb cb, void *arg);
/*
 * Marks one certificate revoked now; DB_NOTFOUND if the serial is unknown. A
 * certificate that is already revoked keeps its first date and reason (DB_OK).
 * reason NULL means "unspecified".
 */
int db_cert_revoke(struct db *db, const char *serial, const char *reason);

/* ---- audit (append-only) ----------------------------------------------- */
struct db_audit {
    /* Any field may be NULL (stored as NULL). ts is filled in by the database. */
    const char *session;
    const char *event;       /* connect, identity, mail, rcpt, data, relayed, deferred, bounced... */
    const char *decision;    /* accept, reject, tempfail (or NULL for pure events) */
    const char *reason;
    const char *client_ip;
    const char *user;
    const char *cert_sha256;
    const char *cert_subject;
    const char *mail_from;
    const char *rcpt;        /* comma-separated */
    const char *queue_id;
    long long size;          /* -1: NULL */
    const char *tls;         /* e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384" */
    long long nrcpt;         /* recipients of a submission; 0: NULL */
};
int db_audit_insert(struct db *db, const struct db_audit *a);

struct db_audit_row {
    long long id;
    char ts[32];
    char session[64], event[32], decision[16], reason[256], client_ip[64], user[128];
    char cert_sha256[65], cert_subject[512], mail_from[320], rcpt[2048], queue_id[64];
    long long size;          /* -1 when NULL */
    char tls[128];
};
/*
 * Filters may be NULL. since is an ISO-8601 UTC timestamp ("YYYY-MM-DDTHH:MM:SSZ";
 * rows at or after it). Rows in id order. ts of a row has milliseconds
 * ("YYYY-MM-DDTHH:MM:SS.mmmZ"). String fields that are NULL in the table are "".
 */
typedef int (*db_audit_cb)(void *arg, const struct db_audit_row *r);
int db_audit_query(struct db *db, const char *user, const char *since, const char *decision,
                   db_audit_cb cb, void *arg);

/*
 * Every filter may be NULL. since and until are ISO-8601 UTC ("YYYY-MM-DDTHH:MM:SSZ"):
 * rows at or after since, and before until. The others match a column exactly.
 * Rows in id order, or newest first with newest_first; at most limit rows when
 * limit > 0.
 */
struct db_audit_filter {
    const char *user, *since, *until, *decision, *event, *client_ip, *queue_id;
    int newest_first;
    long long limit;
};
int db_audit_search(struct db *db, const struct db_audit_filter *f, db_audit_cb cb, void *arg);

/*
 * The one way rows leave the audit table: deletes every row older than before
 * (ISO-8601 UTC, "YYYY-MM-DDTHH:MM:SSZ") and records the prune in admin_log, in one
 * transaction (migration 5 explains the permit its triggers ask for). who names the
 * program and the person (db_actor_fill); command, target and details are set here.
 * *count is the number of rows removed; oldest and newest (may be NULL) the first
 * and last ts of them, "" when none.
 */
struct db_admin_log;
int db_audit_prune(struct db *db, const char *before, const struct db_admin_log *who,
                   long long *count, char oldest[32], char newest[32]);

/* ---- figures for submit-admin stats ------------------------------------- */
/* Rows with each decision at or after since (ISO-8601 UTC, "YYYY-MM-DDTHH:MM:SSZ"). */
struct db_decision_counts {
    long long accept, reject, tempfail;
};
int db_audit_decisions(struct db *db, const char *since, struct db_decision_counts *out);
/*
 * The reasons of refusals (decision reject or tempfail) at or after since, with the
 * number of sessions refused for each, most first; at most limit of them.
 */
typedef int (*db_refusal_cb)(void *arg, const char *decision, const char *reason,
                             long long sessions);                  /* non-zero stops */
int db_audit_refusals(struct db *db, const char *since, int limit, db_refusal_cb cb, void *arg);

/* ---- tests ------------------------------------------------------------- */
/* Runs SQL text as is (no parameters): for unit tests only. DB_OK or DB_ERROR. */
int db_exec_for_test(struct db *db, const char *sql);

/* ---- CA operations (append-only), written by submit-ca -------------------- */
struct db_ca_log {
    /* Any string may be NULL (stored as NULL); ts is filled in by the database. */
    long long uid;           /* real user id that ran the command */
    const char *unix_user;   /* its name */
    const char *sudo_user;   /* SUDO_USER, when set */
    const char *command;     /* init, server-cert, issue, renew, revoke, crl */
    const char *serial;
    const char *user;
    const char *detail;      /* "key=value ..." */
};
int db_ca_log_insert(struct db *db, const struct db_ca_log *e);

struct db_ca_log_row {
    long long id;
    char ts[32];
    long long uid;
    char unix_user[64], sudo_user[64], command[32], serial[80], user[128];
    char detail[1024];
};
/* Rows in id order; user and serial filter when not NULL. Strings NULL in the table are "". */
typedef int (*db_ca_log_cb)(void *arg, const struct db_ca_log_row *r); /* non-zero stops */
int db_ca_log_list(struct db *db, const char *user, const char *serial, db_ca_log_cb cb,
                   void *arg);

/* ---- admin log: every change by submit-admin and submit-ca (append-only) ---- */
struct db_admin_log {
    /* unix_user, program and command are required; the others may be NULL. */
    long long uid;           /* real user id that ran the program */
    const char *unix_user;   /* its name */
    const char *sudo_user;   /* SUDO_USER; login is this when set, else unix_user */
    const char *program;     /* submit-admin, submit-ca */
    const char *command;     /* "user add", "sender del", "issue", "revoke", ... */
    const char *target;      /* what was changed: a user, "user address", a serial */
    const char *details;     /* the rest, as "key=value" words */
    const char *user;        /* the mail user concerned (filters --user) */
    const char *serial;      /* the certificate concerned */
};
int db_admin_log_insert(struct db *db, const struct db_admin_log *e);

/* Who runs this process, for db_admin_log (db_actor.c): no SQL, no database. */
struct db_actor {
    long long uid;
    char unix_user[64];      /* the name of the real uid, or its number */
    char sudo_user[64];      /* SUDO_USER when short and printable, else "" */
};
void db_actor_get(struct db_actor *a);
/* Points e's uid, unix_user and sudo_user at a; sets program. */
void db_actor_fill(struct db_admin_log *e, const struct db_actor *a, const char *program);

struct db_admin_log_row {
    long long id;
    char ts[32];
    long long uid;
    char login[64], program[32], command[32], target[1024], details[1024];
    char user[128], serial[80];
};
/*
 * Rows in id order; since (ISO-8601 UTC, rows at or after it) and user (the mail user
 * concerned, or the login that made the change) filter when not NULL.
 */
typedef int (*db_admin_log_cb)(void *arg, const struct db_admin_log_row *r); /* non-zero stops */
int db_admin_log_list(struct db *db, const char *since, const char *user, db_admin_log_cb cb,
                      void *arg);

/* ---- subject maps: certificates of other CAs (names in dn.h canonical form) -- */
/* issuer "" maps the subject from any CA but our own. NOTFOUND: no such user. */
int db_map_add(struct db *db, const char *subject, const char *issuer, const char *user);
/* The same, keeping the names as the admin wrote them (either may be NULL) for display. */
int db_map_add_text(struct db *db, const char *subject, const char *issuer, const char *user,
                    const char *subject_text, const char *issuer_text);
/* issuer NULL deletes the subject's maps for every issuer. NOTFOUND: none matched. */
int db_map_del(struct db *db, const char *subject, const char *issuer);
/* The user mapped to subject by this exact issuer, else by "" (any issuer). */
int db_map_lookup(struct db *db, const char *subject, const char *issuer, char *user,
                  size_t userlen);
/* db_map_list gives the names as written at map add when they were kept, else canonical. */
typedef int (*db_map_cb)(void *arg, const char *subject, const char *issuer, const char *user);
int db_map_list(struct db *db, db_map_cb cb, void *arg);

/* ---- rate limits ----------------------------------------------------------- */
/* Counts an accepted submission with its recipients at Unix time now. */
int db_rate_record(struct db *db, const char *user, long long now, long long recipients);
/* Accepted submissions and recipients of user in the hour before now (by minute). */
int db_rate_usage(struct db *db, const char *user, long long now, long long *messages,
                  long long *recipients);

/* ---- tuning ------------------------------------------------------------------ */
/* How long a statement waits for another writer's lock before DB_ERROR. The CLIs
 * keep the default; the authz process, which answers every session, waits less. */
int db_set_busy_timeout(struct db *db, int ms);

#endif
