/*
 * The one entry of db.h into the backends (db_backend.h): db_open picks the backend
 * by the form of the name, and every other function goes to the backend that opened
 * the handle. No SQL here.
 */
#include "db_backend.h"

#include "util.h"

#include <string.h>

int db_dsn_is_postgresql(const char *dsn)
{
    return strncmp(dsn, "postgresql://", 13) == 0 || strncmp(dsn, "postgres://", 11) == 0;
}

static const struct db_backend *backend_of(struct db *db)
{
    return ((const struct db_head *)(const void *)db)->backend;
}

struct db *db_open(const char *dsn, char *err, size_t errlen)
{
    if (dsn == NULL || dsn[0] == '\0') {
        (void)str_fmt(err, errlen, "no database named");
        return NULL;
    }
    if (db_dsn_is_postgresql(dsn))
        return db_pg_backend.open(dsn, err, errlen);
    return db_sqlite_backend.open(dsn, err, errlen);
}

void db_close(struct db *db)
{
    if (db != NULL)
        backend_of(db)->close(db);
}

void db_rollback(struct db *db)
{
    backend_of(db)->rollback(db);
}

#define DB_FORWARD(ret, fn, params, args)                                                   \
    ret db_##fn params                                                                      \
    {                                                                                       \
        return backend_of(db)->fn args;                                                     \
    }
DB_BACKEND_FUNCS(DB_FORWARD)
#undef DB_FORWARD
