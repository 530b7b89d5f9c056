/*
 * Unit tests of submitd/lib/safedir.c: links, files, directories of the wrong owner
 * or mode, in a temporary directory. The ownership cases chown to nobody and need
 * root; run as another user they are skipped (SKIP), and say why.
 */
#include "unit.h"

#include "safedir.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define OTHER_UID 4242

static char tmpdir[PATH_MAX];
static struct safedir_owner nobody;
static char err[PATH_MAX + 256];

static const char *at(const char *name)
{
    static char bufs[4][PATH_MAX];
    static int next;
    char *b = bufs[next++ % 4];

    (void)str_fmt(b, PATH_MAX, "%s/%s", tmpdir, name);
    return b;
}

/* A root-owned file of mode 0600 that must come out of every test unchanged. */
static void make_victim(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd >= 0) {
        (void)write_all(fd, "secret\n", 7);
        close(fd);
    }
    (void)chmod(path, 0600);
}

/* path itself (not what a link points to) has this owner and mode. */
static int owner_mode(const char *path, uid_t uid, mode_t mode)
{
    struct stat st;

    return lstat(path, &st) == 0 && st.st_uid == uid && (st.st_mode & 07777) == mode;
}

static int has(const char *needle)
{
    return strstr(err, needle) != NULL;
}

/* ---- trusted directories -------------------------------------------------------- */

TEST(trusted_plain_path_opens)
{
    int fd = safedir_open_trusted(tmpdir, 0, err, sizeof(err));

    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
}

TEST(trusted_creates_missing_levels)
{
    int fd = safedir_open_trusted(at("made/a/b"), SAFEDIR_CREATE, err, sizeof(err));
    struct stat st;

    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK(stat(at("made/a/b"), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(safedir_open_trusted(at("absent"), 0, err, sizeof(err)) < 0);
    CHECK(has("absent") && has("No such file"));
}

TEST(trusted_refuses_relative_and_files)
{
    CHECK(safedir_open_trusted("relative/path", 0, err, sizeof(err)) < 0);
    CHECK(has("not an absolute path"));
    make_victim(at("afile"));
    CHECK(safedir_open_trusted(at("afile/below"), 0, err, sizeof(err)) < 0);
    CHECK(has(at("afile")) && has("is not a directory"));
}

TEST(trusted_follows_only_roots_links)
{
    int fd;

    CHECK(mkdir(at("real"), 0755) == 0);
    CHECK(symlink(at("real"), at("rootlink")) == 0);
    CHECK(symlink("real", at("rellink")) == 0);
    fd = safedir_open_trusted(at("rootlink"), 0, err, sizeof(err));
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    fd = safedir_open_trusted(at("rellink/../real/."), 0, err, sizeof(err));
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    if (geteuid() != 0)
        SKIP("needs root to chown to nobody");
    CHECK(symlink(at("real"), at("userlink")) == 0);
    CHECK(lchown(at("userlink"), nobody.uid, nobody.gid) == 0);
    CHECK(safedir_open_trusted(at("userlink/x"), SAFEDIR_CREATE, err, sizeof(err)) < 0);
    CHECK(has(at("userlink")) && has("symbolic link owned by uid"));
    CHECK(access(at("real/x"), F_OK) != 0);
}

TEST(trusted_refuses_link_loops)
{
    CHECK(symlink(at("loop2"), at("loop1")) == 0);
    CHECK(symlink(at("loop1"), at("loop2")) == 0);
    CHECK(safedir_open_trusted(at("loop1"), 0, err, sizeof(err)) < 0);
    CHECK(has("too many levels"));
}

TEST(trusted_refuses_other_owner_and_writable)
{
    char want[64];
    int fd;

    if (geteuid() != 0)
        SKIP("needs root to chown to nobody");
    CHECK(mkdir(at("userdir"), 0755) == 0);
    CHECK(chown(at("userdir"), nobody.uid, nobody.gid) == 0);
    CHECK(safedir_open_trusted(at("userdir"), 0, err, sizeof(err)) < 0);
    (void)str_fmt(want, sizeof(want), "is owned by uid %u, expected root", (unsigned)nobody.uid);
    CHECK(has(at("userdir")) && has(want));
    CHECK(mkdir(at("open"), 0755) == 0 && chmod(at("open"), 0777) == 0);
    CHECK(safedir_open_trusted(at("open"), 0, err, sizeof(err)) < 0);
    CHECK(has(at("open")) && has("mode allows group/other write"));
    /* Sticky, like /tmp: others cannot rename what is not theirs. */
    CHECK(chmod(at("open"), 01777) == 0);
    fd = safedir_open_trusted(at("open"), 0, err, sizeof(err));
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
}

TEST(parent_splits_the_last_name)
{
    char base[NAME_MAX + 1];
    int fd;

    fd = safedir_open_parent(at("spoolname///"), base, sizeof(base), 0, err, sizeof(err));
    CHECK(fd >= 0);
    CHECK_STR(base, "spoolname");
    if (fd >= 0)
        close(fd);
    CHECK(safedir_open_parent("/", base, sizeof(base), 0, err, sizeof(err)) < 0);
    CHECK(safedir_open_parent(at("x/.."), base, sizeof(base), 0, err, sizeof(err)) < 0);
    CHECK(has("does not end in the name of a directory"));
}

/* ---- owned directories ----------------------------------------------------------- */

TEST(owned_is_created_and_adopted)
{
    const int flags = SAFEDIR_CREATE | SAFEDIR_ADOPT;
    int fd, sub;

    if (geteuid() != 0)
        SKIP("needs root to chown to nobody");
    fd = safedir_open_owned_path(at("parent/spool"), &nobody, flags, err, sizeof(err));
    CHECK(fd >= 0);
    CHECK(owner_mode(at("parent"), 0, 0755));
    CHECK(owner_mode(at("parent/spool"), nobody.uid, 0700));
    sub = fd >= 0 ? safedir_open_owned(fd, "queue", "q", &nobody, flags, err, sizeof(err)) : -1;
    CHECK(sub >= 0);
    CHECK(owner_mode(at("parent/spool/queue"), nobody.uid, 0700));
    if (sub >= 0)
        close(sub);
    if (fd >= 0)
        close(fd);
    /* A directory root made (an admin's mkdir) is taken over too. */
    CHECK(mkdir(at("parent/byroot"), 0755) == 0);
    fd = safedir_open_owned_path(at("parent/byroot"), &nobody, flags, err, sizeof(err));
    CHECK(fd >= 0);
    CHECK(owner_mode(at("parent/byroot"), nobody.uid, 0700));
    if (fd >= 0)
        close(fd);
}

TEST(owned_refuses_links_to_files_and_directories)
{
    const int flags = SAFEDIR_CREATE | SAFEDIR_ADOPT;

    if (geteuid() != 0)
        SKIP("needs root to chown to nobody");
    make_victim(at("shadow"));
    CHECK(mkdir(at("victim.d"), 0700) == 0);
    CHECK(mkdir(at("sp"), 0755) == 0);
    CHECK(symlink(at("shadow"), at("sp/corrupt")) == 0);
    CHECK(lchown(at("sp/corrupt"), nobody.uid, nobody.gid) == 0);
    CHECK(symlink(at("victim.d"), at("sp/queue")) == 0);
    CHECK(safedir_open_owned_path(at("sp/corrupt"), &nobody, flags, err, sizeof(err)) < 0);
    CHECK(has(at("sp/corrupt")) && has("is a symbolic link"));
    CHECK(safedir_open_owned_path(at("sp/queue"), &nobody, flags, err, sizeof(err)) < 0);
    CHECK(has(at("sp/queue")) && has("is a symbolic link"));
    CHECK(owner_mode(at("shadow"), 0, 0600));
    CHECK(owner_mode(at("victim.d"), 0, 0700));
}

TEST(owned_refuses_files_other_owners_and_open_modes)
{
    const int flags = SAFEDIR_CREATE | SAFEDIR_ADOPT;

    if (geteuid() != 0)
        SKIP("needs root to chown to nobody");
    CHECK(mkdir(at("sq"), 0755) == 0);
    make_victim(at("sq/file"));
    CHECK(safedir_open_owned_path(at("sq/file"), &nobody, flags, err, sizeof(err)) < 0);
    CHECK(has(at("sq/file")) && has("is not a directory"));
    CHECK(owner_mode(at("sq/file"), 0, 0600));
    CHECK(mkdir(at("sq/other"), 0700) == 0 && chown(at("sq/other"), OTHER_UID, OTHER_UID) == 0);
    CHECK(safedir_open_owned_path(at("sq/other"), &nobody, flags, err, sizeof(err)) < 0);
    CHECK(has(at("sq/other")) && has("is owned by uid 4242, expected nobody"));
    CHECK(owner_mode(at("sq/other"), OTHER_UID, 0700));
    CHECK(mkdir(at("sq/open"), 0700) == 0 && chmod(at("sq/open"), 0770) == 0);
    CHECK(safedir_open_owned_path(at("sq/open"), &nobody, flags, err, sizeof(err)) < 0);
    CHECK(has(at("sq/open")) && has("mode allows group/other write (0770)"));
    CHECK(owner_mode(at("sq/open"), 0, 0770));
}

TEST(owned_parent_must_be_trusted)
{
    if (geteuid() != 0)
        SKIP("needs root to chown to nobody");
    /* The user owns the parent: it could rename any directory of root's into place. */
    CHECK(mkdir(at("uhome"), 0755) == 0 && chown(at("uhome"), nobody.uid, nobody.gid) == 0);
    CHECK(mkdir(at("uhome/spool"), 0700) == 0);
    CHECK(safedir_open_owned_path(at("uhome/spool"), &nobody, SAFEDIR_CREATE | SAFEDIR_ADOPT,
                                  err, sizeof(err)) < 0);
    CHECK(has(at("uhome")) && has("expected root"));
    CHECK(owner_mode(at("uhome/spool"), 0, 0700));
}

TEST(owned_check_only_changes_nothing)
{
    int fd;

    if (geteuid() != 0)
        SKIP("needs root to chown to nobody");
    CHECK(safedir_open_owned_path(at("ro"), &nobody, 0, err, sizeof(err)) < 0);
    CHECK(access(at("ro"), F_OK) != 0);
    CHECK(mkdir(at("ro"), 0750) == 0);
    fd = safedir_open_owned_path(at("ro"), &nobody, 0, err, sizeof(err));
    CHECK(fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK(owner_mode(at("ro"), 0, 0750));
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    return remove(path) == 0 ? 0 : -1;
}

static void remove_tree(void)
{
    if (nftw(tmpdir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        printf("  could not remove %s: %s\n", tmpdir, strerror(errno));
}

int main(void)
{
    struct passwd *pw = getpwnam("nobody");
    const char *base = getenv("TMPDIR");

    if (pw == NULL) {
        printf("no user nobody\n");
        return 1;
    }
    nobody.uid = pw->pw_uid;
    nobody.gid = pw->pw_gid;
    nobody.name = "nobody";
    umask(022);
    if (str_fmt(tmpdir, sizeof(tmpdir), "%s/test_safedir.XXXXXX",
                base != NULL && *base != '\0' ? base : "/tmp") != 0 ||
        mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    RUN(trusted_plain_path_opens);
    RUN(trusted_creates_missing_levels);
    RUN(trusted_refuses_relative_and_files);
    RUN(trusted_follows_only_roots_links);
    RUN(trusted_refuses_link_loops);
    RUN(trusted_refuses_other_owner_and_writable);
    RUN(parent_splits_the_last_name);
    RUN(owned_is_created_and_adopted);
    RUN(owned_refuses_links_to_files_and_directories);
    RUN(owned_refuses_files_other_owners_and_open_modes);
    RUN(owned_parent_must_be_trusted);
    RUN(owned_check_only_changes_nothing);
    remove_tree();
    return UNIT_DONE();
}
