#ifndef SUBMITD_DB_SQLITE_NAMES_H
#define SUBMITD_DB_SQLITE_NAMES_H
/*
 * The files of the SQLite backend define the functions of db.h under their db.h
 * names; this header, included before db.h, gives them the names of this backend,
 * which db_sqlite_backend (db_sqlite_open.c) lists and db_backend.c calls. One name
 * per function of DB_BACKEND_FUNCS (db_backend.h), plus the three written out there.
 */
#define db_open db_sqlite_open
#define db_close db_sqlite_close
#define db_rollback db_sqlite_rollback
#define db_errmsg db_sqlite_errmsg
#define db_schema_version db_sqlite_schema_version
#define db_set_lock_timeout db_sqlite_set_lock_timeout
#define db_begin db_sqlite_begin
#define db_commit db_sqlite_commit
#define db_commit_lazy db_sqlite_commit_lazy
#define db_sync db_sqlite_sync
#define db_user_add db_sqlite_user_add
#define db_user_del db_sqlite_user_del
#define db_user_set_enabled db_sqlite_user_set_enabled
#define db_user_get db_sqlite_user_get
#define db_user_list db_sqlite_user_list
#define db_sender_add db_sqlite_sender_add
#define db_sender_del db_sqlite_sender_del
#define db_sender_owned db_sqlite_sender_owned
#define db_sender_list db_sqlite_sender_list
#define db_sender_other_owner db_sqlite_sender_other_owner
#define db_sender_owners db_sqlite_sender_owners
#define db_cert_insert db_sqlite_cert_insert
#define db_cert_by_sha256 db_sqlite_cert_by_sha256
#define db_cert_by_serial db_sqlite_cert_by_serial
#define db_cert_list db_sqlite_cert_list
#define db_cert_revoke db_sqlite_cert_revoke
#define db_audit_insert db_sqlite_audit_insert
#define db_audit_search db_sqlite_audit_search
#define db_audit_prune db_sqlite_audit_prune
#define db_audit_decisions db_sqlite_audit_decisions
#define db_audit_refusals db_sqlite_audit_refusals
#define db_admin_log_insert db_sqlite_admin_log_insert
#define db_admin_log_list db_sqlite_admin_log_list
#define db_ca_log_list db_sqlite_ca_log_list
#define db_map_add_text db_sqlite_map_add_text
#define db_map_del db_sqlite_map_del
#define db_map_lookup db_sqlite_map_lookup
#define db_map_list db_sqlite_map_list
#define db_map_rule_add db_sqlite_map_rule_add
#define db_map_rule_del db_sqlite_map_rule_del
#define db_map_rule_get db_sqlite_map_rule_get
#define db_map_rule_list db_sqlite_map_rule_list
#define db_cert_block_add db_sqlite_cert_block_add
#define db_cert_block_del db_sqlite_cert_block_del
#define db_cert_block_find db_sqlite_cert_block_find
#define db_cert_block_list db_sqlite_cert_block_list
#define db_device_seen db_sqlite_device_seen
#define db_device_list db_sqlite_device_list
#define db_rate_record db_sqlite_rate_record
#define db_rate_usage db_sqlite_rate_usage
#define db_test_tamper db_sqlite_test_tamper
#define db_test_forget_prepared db_sqlite_test_forget_prepared
#define db_test_audit_insert_at db_sqlite_test_audit_insert_at

#endif
