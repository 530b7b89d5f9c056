#ifndef SUBMITD_DB_TEST_H
#define SUBMITD_DB_TEST_H
/*
 * Hooks for the conformance suite (tests/unit/test_db_conformance.c), which every
 * backend of db.h implements and no program calls. They do what db.h never offers,
 * so that the suite can check that the database itself refuses it.
 */
#include "db.h"

/* The changes that the append-only guarantees (DESIGN §7) must refuse. */
enum db_tamper {
    DB_TAMPER_AUDIT_UPDATE,       /* change a column of every audit row */
    DB_TAMPER_AUDIT_DELETE,       /* delete every audit row */
    DB_TAMPER_ADMIN_LOG_UPDATE,
    DB_TAMPER_ADMIN_LOG_DELETE,
    DB_TAMPER_CA_LOG_UPDATE,      /* the same through the CA operations */
    DB_TAMPER_CA_LOG_DELETE,
    DB_TAMPER_PRUNE_PERMIT,       /* let audit rows go without a prune of their own */
};
/* DB_ERROR when the database refused (as it must); DB_OK when the change went through. */
int db_test_tamper(struct db *db, enum db_tamper what);

/*
 * Makes the server forget the statements this connection prepared, without the
 * connection noticing, as a connection pooler or an administrator may: the next calls
 * must work all the same. DB_OK; nothing to do for a file database.
 */
int db_test_forget_prepared(struct db *db);

/* Appends an audit row stamped at.sec/at.msec instead of now. */
int db_test_audit_insert_at(struct db *db, const struct db_audit *a, const struct db_stamp *at);

#endif
