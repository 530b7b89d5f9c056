/* The record of CA operations: who ran submit-ca, as which Unix user, and what it did. */
#include "ca_log.h"

#include "ca_msg.h"
#include "db.h"
#include "util.h"

#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * SUDO_USER is whatever the environment says; it is kept as a hint next to the real
 * user id, which is what counts. Only a short, printable value is kept.
 */
static const char *sudo_user(void)
{
    const char *s = getenv("SUDO_USER");

    if (s == NULL || s[0] == '\0' || strlen(s) > 32)
        return NULL;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return NULL;
    return s;
}

int ca_log_record(struct db *db, const char *command, const char *serial, const char *user,
                  const char *fmt, ...)
{
    struct db_ca_log e;
    struct passwd *pw;
    char name[64], detail[1024];
    uid_t uid = getuid();
    va_list ap;

    pw = getpwuid(uid);
    if (pw == NULL || str_lcpy(name, pw->pw_name, sizeof(name)) >= sizeof(name))
        str_fmt(name, sizeof(name), "%lu", (unsigned long)uid);
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);

    memset(&e, 0, sizeof(e));
    e.uid = (long long)uid;
    e.unix_user = name;
    e.sudo_user = sudo_user();
    e.command = command;
    e.serial = serial;
    e.user = user;
    e.detail = detail;
    if (db_ca_log_insert(db, &e) != DB_OK) {
        ca_err("cannot record \"%s\" in ca_log: %s", command, db_errmsg(db));
        return -1;
    }
    return 0;
}
