#ifndef SUBMITD_DB_H
#define SUBMITD_DB_H

#include <stddef.h>
#include <stdint.h>

/*
 * Every SQL statement of the project lives behind this interface (DESIGN §7, §10):
 * authz, submit-admin and submit-ca never see a backend's types. db/sqlite/ and
 * db/postgres/ implement it, db_backend.c hands each call to the backend that opened
 * the handle, and both pass tests/unit/test_db_conformance.c. Rules that hold for any backend (names,
 * addresses, when a certificate is in force, the rate window) live in db/db_rules.c.
 *
 * Times are int64_t seconds since the epoch (UTC). The backend converts them to and
 * from what it stores. DB_TIME_NONE (0, the epoch itself, which no row of ours can
 * carry) stands for "no time": no filter, not revoked. A zeroed struct has none.
 *
 * Return convention for every function that returns int:
 *   DB_OK (0)         success / found / owned
 *   DB_NOTFOUND (1)   no such row (or: not owned)
 *   DB_EXISTS (2)     insert refused because the row already exists
 *   DB_ERROR (-1)     database error (locked, I/O, corrupt...); db_errmsg() says which.
 * Callers treat DB_ERROR as TEMPFAIL, never as a positive answer.
 */

enum { DB_OK = 0, DB_NOTFOUND = 1, DB_EXISTS = 2, DB_ERROR = -1 };

#define DB_TIME_NONE 0

/*
 * An instant written by the database itself (audit and admin log rows): seconds
 * since the epoch and the milliseconds within that second.
 */
struct db_stamp {
    int64_t sec;
    int msec;
};
/*
 * The text the tools print for times, which is also the text SQLite stores:
 * "YYYY-MM-DDTHH:MM:SSZ" for t ("" for DB_TIME_NONE), "YYYY-MM-DDTHH:MM:SS.mmmZ"
 * for a stamp. Both return out.
 */
#define DB_TIME_TEXT_LEN 32
const char *db_time_text(int64_t t, char *out, size_t outlen);
const char *db_stamp_text(const struct db_stamp *s, char *out, size_t outlen);

struct db;

/*
 * Opens the database that dsn names, creating and migrating it as needed (pending
 * migrations inside one transaction). A "postgresql://" URI names a PostgreSQL
 * database; anything else is the path of an SQLite file (":memory:" works for tests).
 * Returns NULL with a message naming the database in err.
 */
struct db *db_open(const char *dsn, char *err, size_t errlen);
void db_close(struct db *db);
const char *db_errmsg(struct db *db);
/* Schema version after migration: the number of migrations applied. */
int db_schema_version(struct db *db);
/*
 * How long a statement waits for another writer's lock before DB_ERROR. The CLIs
 * keep the default (five seconds); the authz process, which answers every session,
 * waits less.
 */
int db_set_lock_timeout(struct db *db, int ms);

/*
 * Groups several calls into one transaction (BEGIN IMMEDIATE ... COMMIT), e.g. a
 * user and its senders. Functions that need a transaction of their own join the
 * caller's when one is open. db_rollback() is harmless when none is open.
 *
 * Reads inside the transaction see its own writes. After a failed call the
 * transaction may be unusable (SQLite undoes only that call; PostgreSQL aborts the
 * whole transaction, and later calls fail until db_rollback): a caller that sees a
 * call or db_commit fail treats every write of the transaction as lost and calls
 * db_rollback. db_commit of a transaction that a failed call made unusable returns
 * DB_ERROR, never DB_OK. The authz process uses this for group commit: the audit rows and
 * rate records of one turn of its event loop are one transaction, and the turn's
 * answers wait for its commit.
 *
 * db_commit, and every single call outside a transaction, is durable when it
 * returns: it survives a crash of the process and a power loss (SQLite: WAL, synced
 * at the commit; PostgreSQL: synchronous_commit on, its default). The audit row of an
 * accepted message is committed so before the 250, like the spool file.
 *
 * db_commit_lazy ends the transaction like db_commit, with the same results and the
 * same failures, and its writes are visible to every reader (another connection,
 * another process) when it returns and survive a crash of the process; but they may
 * wait to reach the disk until the next db_commit or db_sync of this connection,
 * whichever comes first, and a power loss before then may lose them (never part of
 * one: a transaction is there whole or not at all). SQLite: the log is written
 * without a sync; PostgreSQL: the transaction commits with synchronous_commit off,
 * and the server itself flushes it within three wal_writer_delay.
 *
 * db_sync makes every earlier commit of this connection durable: DB_OK when they
 * are, DB_ERROR when the sync failed (their rows stay visible, but a power loss may
 * take them). Called outside a transaction; without a lazy commit since the last
 * durable one it has nothing to do. The authz process commits the rows of a turn
 * lazily unless one of them is the accept row of a queued message, and syncs what
 * is left within a second.
 */
int db_begin(struct db *db);
int db_commit(struct db *db);
int db_commit_lazy(struct db *db);
int db_sync(struct db *db);
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
    int64_t created_at;
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
 * DB_OK with the first (by name) other user owning exactly address in owner, when user
 * does not own it already; else DB_NOTFOUND.
 */
int db_sender_other_owner(struct db *db, const char *user, const char *address, char *owner,
                          size_t ownerlen);
/*
 * Who may send as address ("a@b" or "@domain"): every user owning it exactly, then
 * every owner of its @domain (for "a@b"), by user name. domain_owner says which.
 */
typedef int (*db_owner_cb)(void *arg, const char *user, const char *address, int domain_owner);
int db_sender_owners(struct db *db, const char *address, db_owner_cb cb, void *arg);

/* ---- certificates ------------------------------------------------------ */
enum cert_status {
    CERT_VALID = 0,
    CERT_REVOKED = 1,
};
/* "valid" or "revoked": the word the tools print (and the table stores). */
const char *db_cert_status_name(enum cert_status status);

struct db_cert {
    char serial[80];          /* upper-case hex, no separators */
    char user[128];
    char sha256[65];          /* lower-case hex of the DER certificate */
    char subject[512];        /* RFC 2253 */
    char issuer[512];
    int64_t not_before;
    int64_t not_after;
    enum cert_status status;
    int64_t revoked_at;       /* DB_TIME_NONE when valid */
    char revoke_reason[64];
};
/*
 * Whether c may be used at time now: valid (not revoked) and not expired. The one
 * definition, for every program that asks.
 */
int db_cert_in_force(const struct db_cert *c, int64_t now);
/*
 * DB_EXISTS on same serial (or SHA-256); DB_NOTFOUND when c->user does not exist.
 * serial is stored upper-case and sha256 lower-case. A certificate inserted as
 * revoked with revoked_at DB_TIME_NONE is revoked now.
 */
int db_cert_insert(struct db *db, const struct db_cert *c);   /* DB_EXISTS on same serial */
int db_cert_by_sha256(struct db *db, const char *sha256, struct db_cert *out);
int db_cert_by_serial(struct db *db, const char *serial, struct db_cert *out);
/*
 * Ordered by not_after, then serial. user NULL and not_after_before DB_TIME_NONE
 * mean no filter; otherwise only certificates whose not_after is before it.
 */
typedef int (*db_cert_cb)(void *arg, const struct db_cert *c);
int db_cert_list(struct db *db, const char *user, int64_t not_after_before,
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
    struct db_stamp ts;
    char session[64], event[32], decision[16], reason[256], client_ip[64], user[128];
    char cert_sha256[65], cert_subject[512], mail_from[320], rcpt[2048], queue_id[64];
    long long size;          /* -1 when NULL */
    char tls[128];
};
/*
 * Filters may be NULL (since: DB_TIME_NONE); rows at or after since. Rows in id
 * order. String fields that are NULL in the table are "".
 */
typedef int (*db_audit_cb)(void *arg, const struct db_audit_row *r);
int db_audit_query(struct db *db, const char *user, int64_t since, const char *decision,
                   db_audit_cb cb, void *arg);

/*
 * Every string filter may be NULL, and since and until DB_TIME_NONE: rows at or
 * after since (the whole second), and before until. The others match a column
 * exactly. Rows in id order, or newest first with newest_first; at most limit rows
 * when limit > 0. A zeroed filter (or db_audit_filter_init()) has every filter off.
 */
struct db_audit_filter {
    const char *user, *decision, *event, *client_ip, *queue_id;
    int64_t since, until;
    int newest_first;
    long long limit;
};
void db_audit_filter_init(struct db_audit_filter *f);
int db_audit_search(struct db *db, const struct db_audit_filter *f, db_audit_cb cb, void *arg);

/*
 * The one way rows leave the audit table: deletes every row older than before and
 * records the prune in admin_log, in one transaction (the backend makes sure that no
 * row leaves without that record). who names the program and the person
 * (db_actor_fill); command, target and details are set here. *count is the number of
 * rows removed; oldest and newest (may be NULL) the first and last ts of them, with
 * sec DB_TIME_NONE when none.
 */
struct db_admin_log;
int db_audit_prune(struct db *db, int64_t before, const struct db_admin_log *who,
                   long long *count, struct db_stamp *oldest, struct db_stamp *newest);

/* ---- figures for submit-admin stats ------------------------------------- */
/* Rows with each decision at or after since. */
struct db_decision_counts {
    long long accept, reject, tempfail;
};
int db_audit_decisions(struct db *db, int64_t since, struct db_decision_counts *out);
/*
 * The reasons of refusals (decision reject or tempfail) at or after since, with the
 * number of sessions refused for each, most first; at most limit of them.
 */
typedef int (*db_refusal_cb)(void *arg, const char *decision, const char *reason,
                             long long sessions);                  /* non-zero stops */
int db_audit_refusals(struct db *db, int64_t since, int limit, db_refusal_cb cb, void *arg);

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
    struct db_stamp ts;
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
    struct db_stamp ts;
    long long uid;
    char login[64], program[32], command[32], target[1024], details[1024];
    char user[128], serial[80];
};
/*
 * Rows in id order; since (rows at or after it) filters unless DB_TIME_NONE, and user
 * (the mail user concerned, or the login that made the change) unless NULL.
 */
typedef int (*db_admin_log_cb)(void *arg, const struct db_admin_log_row *r); /* non-zero stops */
int db_admin_log_list(struct db *db, int64_t since, const char *user, db_admin_log_cb cb,
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

/* ---- rule maps: certificates of an enterprise CA mapped by a field (issue 14) ---- */
/*
 * One rule per issuing CA (its subject in dn.h canonical form): the field of the CA's
 * certificates that names the user. The order is that of enum cert_field
 * (authz/authzd/cert_field.h); the stored words are db_rule_field_name()'s.
 */
enum db_rule_field {
    DB_RULE_EMAIL = 0,
    DB_RULE_SAN_EMAIL = 1,
    DB_RULE_UPN = 2,
    DB_RULE_CN = 3,
};
/* "email", "san-email", "upn", "cn"; "?" out of range. */
const char *db_rule_field_name(enum db_rule_field f);

struct db_map_rule {
    char issuer[1024];          /* canonical */
    char issuer_text[1024];     /* as the admin wrote it */
    enum db_rule_field field;
    char strip_domain[256];     /* "" when not given */
    char require_domain[256];
    int64_t created_at;         /* set by the database; ignored by db_map_rule_add */
};
/* DB_EXISTS when the issuer has a rule already (one rule per issuer). */
int db_map_rule_add(struct db *db, const struct db_map_rule *r);
/* NOTFOUND when the issuer has no rule. */
int db_map_rule_del(struct db *db, const char *issuer);
/* The rule of issuer (canonical); NOTFOUND when it has none. */
int db_map_rule_get(struct db *db, const char *issuer, struct db_map_rule *out);
/* Every rule, ordered by issuer_text. */
typedef int (*db_map_rule_cb)(void *arg, const struct db_map_rule *r); /* non-zero stops */
int db_map_rule_list(struct db *db, db_map_rule_cb cb, void *arg);

/* ---- blocked certificates: refused before their CA's CRL says so ------------ */
/*
 * A block names a certificate by its SHA-256 (lower-case hex), or by its issuer
 * (canonical) and serial (hex, stored upper-case without leading zeros whatever
 * form is given, and compared so), or both. Either form may be "" but not both.
 * Devices store their serial the same way.
 */
struct db_cert_block {
    char sha256[65];
    char issuer[1024];
    char issuer_text[1024];
    char serial[80];
    char reason[256];
    int64_t blocked_at;         /* set by the database */
    char blocked_by[64];        /* the login that blocked it */
};
/* DB_EXISTS when a block has the same sha256, or the same issuer and serial. */
int db_cert_block_add(struct db *db, const struct db_cert_block *b);
/*
 * Removes the block of sha256 (when not NULL or ""), else the one of issuer and
 * serial. NOTFOUND when there is none.
 */
int db_cert_block_del(struct db *db, const char *sha256, const char *issuer, const char *serial);
/*
 * DB_OK with out (may be NULL) when a block names the certificate: its sha256, or
 * its issuer and serial. Any argument may be "" or NULL (never matches).
 */
int db_cert_block_find(struct db *db, const char *sha256, const char *issuer, const char *serial,
                       struct db_cert_block *out);
/* Every block, the newest first. */
typedef int (*db_cert_block_cb)(void *arg, const struct db_cert_block *b); /* non-zero stops */
int db_cert_block_list(struct db *db, db_cert_block_cb cb, void *arg);

/* ---- devices: the certificates each user was seen with ------------------------ */
struct db_device {
    char sha256[65];
    char user[128];
    char issuer[512];           /* RFC 2253, for display */
    char serial[80];
    int64_t not_after;
    int64_t first_seen, last_seen;   /* set by db_device_seen */
};
/*
 * Records that d->user used certificate d->sha256 at now. A new certificate is
 * inserted; a known one gets its user and last_seen updated only when its user
 * changes or its last_seen is an hour or more before now (authz calls this for
 * every accepted session: at most one write an hour per device). DB_NOTFOUND when
 * the user does not exist.
 */
int db_device_seen(struct db *db, const struct db_device *d, int64_t now);
/* The devices of user, the most recently seen first. */
typedef int (*db_device_cb)(void *arg, const struct db_device *d); /* non-zero stops */
int db_device_list(struct db *db, const char *user, db_device_cb cb, void *arg);

/* ---- rate limits ----------------------------------------------------------- */
/* Counts an accepted submission with its recipients at time now. */
int db_rate_record(struct db *db, const char *user, int64_t now, long long recipients);
/*
 * Accepted submissions and recipients of user in the hour before now, counted by
 * minute (db_rules.h says which minutes).
 */
int db_rate_usage(struct db *db, const char *user, int64_t now, long long *messages,
                  long long *recipients);

#endif
