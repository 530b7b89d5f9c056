/*
 * Who runs this program, for the admin log: the real user id and its name, and
 * SUDO_USER when the command came through sudo. No SQL here; it lives in db/ because
 * every program that writes admin_log links the db objects.
 */
#include "db.h"
#include "util.h"

#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * SUDO_USER is whatever the environment says; it is kept as a hint next to the real
 * user id, which is what counts. Only a short, printable value is kept.
 */
static void sudo_user(char *out, size_t outlen)
{
    const char *s = getenv("SUDO_USER");

    out[0] = '\0';
    if (s == NULL || s[0] == '\0' || strlen(s) > 32)
        return;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return;
    str_lcpy(out, s, outlen);
}

void db_actor_get(struct db_actor *a)
{
    uid_t uid = getuid();
    struct passwd *pw = getpwuid(uid);

    memset(a, 0, sizeof(*a));
    a->uid = (long long)uid;
    if (pw == NULL || str_lcpy(a->unix_user, pw->pw_name, sizeof(a->unix_user)) >=
                          sizeof(a->unix_user))
        (void)str_fmt(a->unix_user, sizeof(a->unix_user), "%lu", (unsigned long)uid);
    sudo_user(a->sudo_user, sizeof(a->sudo_user));
}

void db_actor_fill(struct db_admin_log *e, const struct db_actor *a, const char *program)
{
    e->uid = a->uid;
    e->unix_user = a->unix_user;
    e->sudo_user = a->sudo_user[0] != '\0' ? a->sudo_user : NULL;
    e->program = program;
}
