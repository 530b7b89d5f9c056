#ifndef SUBMITD_DB_BACKEND_H
#define SUBMITD_DB_BACKEND_H
/*
 * How db.h reaches the backend that db_open chose (db_backend.c): each backend fills
 * one struct db_backend with its functions, and its struct db starts with a struct
 * db_head that points at that table. For db/ only; callers use db.h.
 *
 * DB_BACKEND_FUNCS lists the functions of db.h (and db_test.h) that each backend
 * implements, as X(return type, name, parameters, arguments), so that the table, the
 * forwarding functions and each backend's names come from one list and cannot drift.
 * db_open, db_close and db_rollback are written out: they have no struct db yet, may
 * be given NULL, or return nothing.
 */
#include "db.h"
#include "db_test.h"

#define DB_BACKEND_FUNCS(X)                                                                     \
    X(const char *, errmsg, (struct db * db), (db))                                             \
    X(int, schema_version, (struct db * db), (db))                                              \
    X(int, set_lock_timeout, (struct db * db, int ms), (db, ms))                                \
    X(int, begin, (struct db * db), (db))                                                       \
    X(int, commit, (struct db * db), (db))                                                      \
    X(int, commit_lazy, (struct db * db), (db))                                                 \
    X(int, sync, (struct db * db), (db))                                                        \
    X(int, user_add, (struct db * db, const char *name), (db, name))                            \
    X(int, user_del, (struct db * db, const char *name), (db, name))                            \
    X(int, user_set_enabled, (struct db * db, const char *name, int enabled),                   \
      (db, name, enabled))                                                                      \
    X(int, user_get, (struct db * db, const char *name, int *enabled), (db, name, enabled))     \
    X(int, user_list, (struct db * db, db_user_cb cb, void *arg), (db, cb, arg))                \
    X(int, sender_add, (struct db * db, const char *user, const char *address),                 \
      (db, user, address))                                                                      \
    X(int, sender_del, (struct db * db, const char *user, const char *address),                 \
      (db, user, address))                                                                      \
    X(int, sender_owned, (struct db * db, const char *user, const char *address),               \
      (db, user, address))                                                                      \
    X(int, sender_list, (struct db * db, const char *user, db_sender_cb cb, void *arg),         \
      (db, user, cb, arg))                                                                      \
    X(int, sender_other_owner,                                                                  \
      (struct db * db, const char *user, const char *address, char *owner, size_t ownerlen),    \
      (db, user, address, owner, ownerlen))                                                     \
    X(int, sender_owners, (struct db * db, const char *address, db_owner_cb cb, void *arg),     \
      (db, address, cb, arg))                                                                   \
    X(int, cert_insert, (struct db * db, const struct db_cert *c), (db, c))                     \
    X(int, cert_by_sha256, (struct db * db, const char *sha256, struct db_cert *out),           \
      (db, sha256, out))                                                                        \
    X(int, cert_by_serial, (struct db * db, const char *serial, struct db_cert *out),           \
      (db, serial, out))                                                                        \
    X(int, cert_list,                                                                           \
      (struct db * db, const char *user, int64_t not_after_before, db_cert_cb cb, void *arg),   \
      (db, user, not_after_before, cb, arg))                                                    \
    X(int, cert_revoke, (struct db * db, const char *serial, const char *reason),               \
      (db, serial, reason))                                                                     \
    X(int, audit_insert, (struct db * db, const struct db_audit *a), (db, a))                   \
    X(int, audit_search,                                                                        \
      (struct db * db, const struct db_audit_filter *f, db_audit_cb cb, void *arg),             \
      (db, f, cb, arg))                                                                         \
    X(int, audit_prune,                                                                         \
      (struct db * db, int64_t before, const struct db_admin_log *who, long long *count,         \
       struct db_stamp *oldest, struct db_stamp *newest),                                       \
      (db, before, who, count, oldest, newest))                                                 \
    X(int, audit_decisions, (struct db * db, int64_t since, struct db_decision_counts *out),    \
      (db, since, out))                                                                         \
    X(int, audit_refusals,                                                                      \
      (struct db * db, int64_t since, int limit, db_refusal_cb cb, void *arg),                  \
      (db, since, limit, cb, arg))                                                              \
    X(int, admin_log_insert, (struct db * db, const struct db_admin_log *e), (db, e))           \
    X(int, admin_log_list,                                                                      \
      (struct db * db, int64_t since, const char *user, db_admin_log_cb cb, void *arg),         \
      (db, since, user, cb, arg))                                                               \
    X(int, ca_log_list,                                                                         \
      (struct db * db, const char *user, const char *serial, db_ca_log_cb cb, void *arg),       \
      (db, user, serial, cb, arg))                                                              \
    X(int, map_add_text,                                                                        \
      (struct db * db, const char *subject, const char *issuer, const char *user,               \
       const char *subject_text, const char *issuer_text),                                      \
      (db, subject, issuer, user, subject_text, issuer_text))                                   \
    X(int, map_del, (struct db * db, const char *subject, const char *issuer),                  \
      (db, subject, issuer))                                                                    \
    X(int, map_lookup,                                                                          \
      (struct db * db, const char *subject, const char *issuer, char *user, size_t userlen),    \
      (db, subject, issuer, user, userlen))                                                     \
    X(int, map_list, (struct db * db, db_map_cb cb, void *arg), (db, cb, arg))                  \
    X(int, map_rule_add, (struct db * db, const struct db_map_rule *r), (db, r))               \
    X(int, map_rule_del, (struct db * db, const char *issuer), (db, issuer))                    \
    X(int, map_rule_get, (struct db * db, const char *issuer, struct db_map_rule *out),         \
      (db, issuer, out))                                                                        \
    X(int, map_rule_list, (struct db * db, db_map_rule_cb cb, void *arg), (db, cb, arg))        \
    X(int, cert_block_add, (struct db * db, const struct db_cert_block *b), (db, b))            \
    X(int, cert_block_del,                                                                      \
      (struct db * db, const char *sha256, const char *issuer, const char *serial),             \
      (db, sha256, issuer, serial))                                                             \
    X(int, cert_block_find,                                                                     \
      (struct db * db, const char *sha256, const char *issuer, const char *serial,              \
       struct db_cert_block *out),                                                              \
      (db, sha256, issuer, serial, out))                                                        \
    X(int, cert_block_list, (struct db * db, db_cert_block_cb cb, void *arg), (db, cb, arg))    \
    X(int, device_seen, (struct db * db, const struct db_device *d, int64_t now), (db, d, now)) \
    X(int, device_list, (struct db * db, const char *user, db_device_cb cb, void *arg),         \
      (db, user, cb, arg))                                                                      \
    X(int, rate_record, (struct db * db, const char *user, int64_t now, long long recipients),  \
      (db, user, now, recipients))                                                              \
    X(int, rate_usage,                                                                          \
      (struct db * db, const char *user, int64_t now, long long *messages,                      \
       long long *recipients),                                                                  \
      (db, user, now, messages, recipients))                                                    \
    X(int, test_tamper, (struct db * db, enum db_tamper what), (db, what))                      \
    X(int, test_forget_prepared, (struct db * db), (db))                                        \
    X(int, test_audit_insert_at,                                                                \
      (struct db * db, const struct db_audit *a, const struct db_stamp *at), (db, a, at))

struct db_backend {
    const char *name;
    struct db *(*open)(const char *dsn, char *err, size_t errlen);
    void (*close)(struct db *db);
    void (*rollback)(struct db *db);
#define DB_BACKEND_MEMBER(ret, fn, params, args) ret(*fn) params;
    DB_BACKEND_FUNCS(DB_BACKEND_MEMBER)
#undef DB_BACKEND_MEMBER
};

/* The first member of every backend's struct db. */
struct db_head {
    const struct db_backend *backend;
};

extern const struct db_backend db_sqlite_backend;
extern const struct db_backend db_pg_backend;

/* Whether dsn is a PostgreSQL connection URI (postgresql:// or postgres://). */
int db_dsn_is_postgresql(const char *dsn);

#endif
