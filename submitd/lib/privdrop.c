/* Dropping root privileges in the canonical order (DESIGN §2). */
#include "privdrop.h"

#include "log.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

int privdrop_lookup(const char *user, uid_t *uid, gid_t *gid)
{
    struct passwd *pw = getpwnam(user);

    if (pw == NULL)
        return -1;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

void privdrop(const char *user)
{
    uid_t uid;
    gid_t gid;

    if (geteuid() != 0) {
        log_debug("not running as root: keeping uid %d", (int)geteuid());
        return;
    }
    if (privdrop_lookup(user, &uid, &gid) != 0)
        fatal("user: unprivileged user \"%s\" does not exist", user);
    if (uid == 0)
        fatal("user: \"%s\" is root; an unprivileged user is required", user);
    if (chdir("/") != 0)
        fatal("chdir /: %s", strerror(errno));
    if (setgroups(1, &gid) != 0)
        fatal("setgroups: %s", strerror(errno));
    if (setresgid(gid, gid, gid) != 0)
        fatal("setresgid %d: %s", (int)gid, strerror(errno));
    if (setresuid(uid, uid, uid) != 0)
        fatal("setresuid %d: %s", (int)uid, strerror(errno));
    if (setuid(0) == 0)
        fatal("privilege drop to %s failed: root could be regained", user);
}
