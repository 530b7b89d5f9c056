#ifndef SUBMITD_SYNC_COUNT_H
#define SUBMITD_SYNC_COUNT_H
/*
 * For the unit tests that check when the SQLite backend syncs: an SQLite VFS that
 * passes every call to the default one and counts the syncs of each kind of file
 * (the write-ahead log, the database). sync_count_install() makes it the default
 * VFS, so that every db_open after it goes through it; sync_count_reset() zeroes
 * the counts. sync_count.fail makes the next syncs fail (an I/O error, as a full
 * or broken disk gives), sync_count.hook, when set, runs before each sync of the log.
 */
#include <sqlite3.h>
#include <stddef.h>
#include <string.h>

static struct {
    int log;                   /* syncs of a -wal file */
    int database;              /* syncs of a database file */
    int other;
    int fail;                  /* non-zero: syncs fail with SQLITE_IOERR_FSYNC */
    void (*hook)(void);        /* called before each sync of a -wal file */
} sync_count;

struct sync_count_file {
    sqlite3_file base;
    sqlite3_file *real;
    int flags;                 /* SQLITE_OPEN_* of the file */
};

static sqlite3_vfs *sync_count_real;
static sqlite3_vfs sync_count_vfs;

#define SC_REAL(f) (((struct sync_count_file *)(void *)(f))->real)
/* Where the real file starts: after ours, 16-byte aligned. */
#define SC_HEAD ((sizeof(struct sync_count_file) + 15) / 16 * 16)

static int sc_close(sqlite3_file *f)
{
    return SC_REAL(f)->pMethods->xClose(SC_REAL(f));
}
static int sc_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return SC_REAL(f)->pMethods->xRead(SC_REAL(f), buf, n, off);
}
static int sc_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    return SC_REAL(f)->pMethods->xWrite(SC_REAL(f), buf, n, off);
}
static int sc_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return SC_REAL(f)->pMethods->xTruncate(SC_REAL(f), size);
}
static int sc_sync(sqlite3_file *f, int flags)
{
    int kind = ((struct sync_count_file *)(void *)f)->flags;

    if (kind & SQLITE_OPEN_WAL) {
        if (sync_count.hook != NULL)
            sync_count.hook();
        sync_count.log++;
    } else if (kind & SQLITE_OPEN_MAIN_DB) {
        sync_count.database++;
    } else {
        sync_count.other++;
    }
    if (sync_count.fail)
        return SQLITE_IOERR_FSYNC;
    return SC_REAL(f)->pMethods->xSync(SC_REAL(f), flags);
}
static int sc_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return SC_REAL(f)->pMethods->xFileSize(SC_REAL(f), size);
}
static int sc_lock(sqlite3_file *f, int level)
{
    return SC_REAL(f)->pMethods->xLock(SC_REAL(f), level);
}
static int sc_unlock(sqlite3_file *f, int level)
{
    return SC_REAL(f)->pMethods->xUnlock(SC_REAL(f), level);
}
static int sc_check_reserved(sqlite3_file *f, int *out)
{
    return SC_REAL(f)->pMethods->xCheckReservedLock(SC_REAL(f), out);
}
static int sc_file_control(sqlite3_file *f, int op, void *arg)
{
    return SC_REAL(f)->pMethods->xFileControl(SC_REAL(f), op, arg);
}
static int sc_sector_size(sqlite3_file *f)
{
    return SC_REAL(f)->pMethods->xSectorSize(SC_REAL(f));
}
static int sc_device(sqlite3_file *f)
{
    return SC_REAL(f)->pMethods->xDeviceCharacteristics(SC_REAL(f));
}
static int sc_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
    return SC_REAL(f)->pMethods->xShmMap(SC_REAL(f), page, size, extend, out);
}
static int sc_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return SC_REAL(f)->pMethods->xShmLock(SC_REAL(f), offset, n, flags);
}
static void sc_shm_barrier(sqlite3_file *f)
{
    SC_REAL(f)->pMethods->xShmBarrier(SC_REAL(f));
}
static int sc_shm_unmap(sqlite3_file *f, int del)
{
    return SC_REAL(f)->pMethods->xShmUnmap(SC_REAL(f), del);
}
static int sc_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out)
{
    return SC_REAL(f)->pMethods->xFetch(SC_REAL(f), off, n, out);
}
static int sc_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return SC_REAL(f)->pMethods->xUnfetch(SC_REAL(f), off, p);
}

static const sqlite3_io_methods sync_count_methods = {
    3,           sc_close,       sc_read,      sc_write,          sc_truncate,
    sc_sync,     sc_file_size,   sc_lock,      sc_unlock,         sc_check_reserved,
    sc_file_control, sc_sector_size, sc_device, sc_shm_map,      sc_shm_lock,
    sc_shm_barrier, sc_shm_unmap, sc_fetch,    sc_unfetch,
};

static int sc_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
    struct sync_count_file *p = (struct sync_count_file *)(void *)f;
    int rc;

    (void)vfs;
    memset(p, 0, sizeof(*p));
    p->real = (sqlite3_file *)(void *)((char *)f + SC_HEAD);
    p->flags = flags;
    rc = sync_count_real->xOpen(sync_count_real, name, p->real, flags, out);
    /* The unix VFS's files have methods of version 3: all of the above exist. */
    p->base.pMethods = p->real->pMethods != NULL ? &sync_count_methods : NULL;
    return rc;
}

/* Makes the counting VFS the default one. 0, or -1. */
static int sync_count_install(void)
{
    sync_count_real = sqlite3_vfs_find(NULL);
    if (sync_count_real == NULL)
        return -1;
    sync_count_vfs = *sync_count_real;
    sync_count_vfs.zName = "sync-count";
    sync_count_vfs.pNext = NULL;
    sync_count_vfs.szOsFile = (int)SC_HEAD + sync_count_real->szOsFile;
    sync_count_vfs.xOpen = sc_open;
    return sqlite3_vfs_register(&sync_count_vfs, 1) == SQLITE_OK ? 0 : -1;
}

static void sync_count_reset(void)
{
    sync_count.log = sync_count.database = sync_count.other = 0;
}

#endif
