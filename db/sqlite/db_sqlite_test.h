#ifndef SUBMITD_DB_SQLITE_TEST_H
#define SUBMITD_DB_SQLITE_TEST_H
/*
 * For the unit tests of the SQLite backend only (tests/unit/test_db.c and others
 * that check the schema itself): no program calls this.
 */
#include "db.h"

/* Runs SQL text as is (no parameters). DB_OK or DB_ERROR. */
int db_sqlite_exec_for_test(struct db *db, const char *sql);

#endif
