"""Files that root touches in places the daemon user can write (DESIGN §2).

The master runs as root and prepares the spool, which belongs to the unprivileged
user (`user = nobody` in the test configurations). The user must not be able to turn
that into root: each case below is set up by user nobody itself where the file system
lets it, then the daemon is started as root and must refuse, naming the path and the
problem, with the victim file untouched (still root's, still 0600). After every case
the spool is put back and the next start serves an honest client.

The same holds for the root-side tools: submit-admin must not open a database in a
directory the daemon user can write (SQLite, as root, would open and chown planted
-wal/-shm links), nor signal a process that the daemon user named in spool/queue.pid;
submit-ca must not keep a CA in a directory another user can write."""

import os
import pwd
import shutil
import signal
import sqlite3
import stat
import subprocess

import pytest

from conftest import (assert_served, binary, contains, mail_reply, make_message, poll,
                      send_ok)

NOBODY = pwd.getpwnam("nobody")
OTHER_UID = 4242          # a uid with no user behind it: neither root nor nobody
VICTIM_TEXT = b"root:secret-hash:19000:0:99999:7:::\n"
TEMPFAIL = "454 4.7.0 Temporary authentication failure"


@pytest.fixture(autouse=True)
def needs_root():
    if os.geteuid() != 0:
        pytest.skip("these cases chown to nobody and start the daemon as root")


def as_nobody(*argv):
    """Runs a command as user nobody (no supplementary groups); asserts it succeeded."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30,
                          user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[])
    assert proc.returncode == 0, f"as nobody: {argv} -> {proc.returncode}: {proc.stderr}"


def make_victims(env):
    """A root-owned file (mode 0600) and directory (mode 0700) that nobody must never
    get: stand-ins for /etc/shadow and /etc/cron.d."""
    victim = env.dir / "victim"
    victim.write_bytes(VICTIM_TEXT)
    os.chown(victim, 0, 0)
    os.chmod(victim, 0o600)
    vdir = env.dir / "victim.d"
    vdir.mkdir()
    os.chmod(vdir, 0o700)
    return victim, vdir


def assert_untouched(victim, vdir):
    st = victim.lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o600), \
        f"{victim} changed: uid {st.st_uid} gid {st.st_gid} mode {stat.S_IMODE(st.st_mode):o}"
    assert victim.read_bytes() == VICTIM_TEXT, f"{victim} was written"
    st = vdir.lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o700), \
        f"{vdir} changed: uid {st.st_uid} gid {st.st_gid} mode {stat.S_IMODE(st.st_mode):o}"
    assert list(vdir.iterdir()) == [], f"{vdir} got entries: {list(vdir.iterdir())}"


def refused_start(env):
    """Runs `submitd -f` and returns (exit status, output); fails the test when the
    daemon starts serving instead of refusing."""
    proc = subprocess.Popen([str(binary("submitd")), "-c", str(env.conf), "-f"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=env.dir,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"submitd started instead of refusing:\n{out[-3000:]}", pytrace=False)
    return proc.returncode, out


def assert_refused(env, path, problem):
    assert_refused_with(*refused_start(env), path, problem)


def assert_refused_with(status, out, path, problem):
    assert status == 1, f"submitd -f exited {status}, expected 1:\n{out[-3000:]}"
    assert str(path) in out and problem in out, \
        f"expected a message naming {path} and {problem!r}:\n{out[-3000:]}"


def served_again(s):
    """The next start works and an honest client gets a message through."""
    s.daemon.start()
    assert_served(s.env, s.alice)
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)


def public_spool_stack(factory, name):
    """A stack whose spool lies in a root-owned sticky world-writable directory (like
    /tmp): nobody may create entries there and rename its own, so it can replace the
    spool itself, not only what is inside it."""
    s = factory(name, start_daemon=False, spool="public/spool")
    public = s.env.dir / "public"
    public.mkdir()
    os.chmod(public, 0o1777)
    s.daemon.start()
    return s


# ---- a symbolic link in place of the spool or one of its directories --------------------

@pytest.mark.parametrize("level", ["spool", "incoming", "queue", "corrupt"])
def test_a_link_in_the_spool_is_refused_and_followed_nowhere(fresh_stack_factory, level):
    s = public_spool_stack(fresh_stack_factory, f"rootfs-link-{level}")
    spool = s.env.dir / "public" / "spool"
    path = spool if level == "spool" else spool / level
    victim, vdir = make_victims(s.env)
    moved = path.with_name(path.name + ".real")
    for target in (victim, vdir):
        s.daemon.stop()
        as_nobody("mv", path, moved)
        as_nobody("ln", "-s", target, path)
        status, out = refused_start(s.env)
        assert_untouched(victim, vdir)
        assert_refused_with(status, out, path, "is a symbolic link")
        as_nobody("rm", path)
        as_nobody("mv", moved, path)
        served_again(s)
    assert_untouched(victim, vdir)


# ---- other things that are not the user's directory -----------------------------------

def test_a_spool_directory_that_is_a_file_is_refused(fresh_stack_factory):
    s = fresh_stack_factory("rootfs-file")
    path = s.env.dir / "spool" / "queue"
    moved = path.with_name("queue.real")
    s.daemon.stop()
    as_nobody("mv", path, moved)
    as_nobody("touch", path)
    assert_refused(s.env, path, "is not a directory")
    as_nobody("rm", path)
    as_nobody("mv", moved, path)
    served_again(s)


def test_a_spool_directory_of_another_user_is_refused(fresh_stack_factory):
    s = fresh_stack_factory("rootfs-owner")
    path = s.env.dir / "spool" / "incoming"
    s.daemon.stop()
    os.chown(path, OTHER_UID, OTHER_UID)
    assert_refused(s.env, path, f"is owned by uid {OTHER_UID}, expected nobody")
    assert path.stat().st_uid == OTHER_UID, "the refused directory was changed anyway"
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    served_again(s)


def test_a_spool_directory_others_can_write_is_refused(fresh_stack_factory):
    s = fresh_stack_factory("rootfs-mode")
    path = s.env.dir / "spool" / "corrupt"
    s.daemon.stop()
    as_nobody("chmod", "0777", path)
    assert_refused(s.env, path, "mode allows group/other write")
    as_nobody("chmod", "0700", path)
    served_again(s)


def test_a_spool_whose_parent_the_user_owns_is_refused(fresh_stack_factory):
    """The user who owns the spool's parent could rename any directory of it into the
    spool's place (here a root-owned one, as a CA directory next to the spool would
    be): the master refuses such a parent instead of handing that directory over."""
    s = fresh_stack_factory("rootfs-parent", start_daemon=False, spool="home/spool")
    home = s.env.dir / "home"
    home.mkdir()
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    keys = home / "keys"
    keys.mkdir()
    os.chmod(keys, 0o700)
    as_nobody("mv", keys, home / "spool")
    assert_refused(s.env, home, f"is owned by uid {NOBODY.pw_uid}, expected root")
    st = (home / "spool").stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o700), "root's directory was handed over"
    # An admin gives the parent back to root; the next start works.
    os.chown(home, 0, 0)
    shutil.rmtree(home / "spool")
    served_again(s)


# ---- the database: root's SQLite must not use what the user put there ------------------

def test_a_database_in_a_directory_the_user_can_write_is_refused(fresh_stack_factory):
    """The owner of the database's directory can put its own database (or -wal, or
    -shm) there and so edit the users, senders and certificates that authz and the
    admin tools believe: a database whose directory the daemon user can write (the
    spool, a directory it owns) is refused."""
    s = fresh_stack_factory("rootfs-db", start_daemon=False)
    home = s.env.dir / "home"
    home.mkdir()
    db = home / "submitd.db"
    shutil.copy(s.env.db_path, db)
    evil = home / "evil.db"
    shutil.copy(s.env.db_path, evil)
    with sqlite3.connect(evil) as c:
        c.execute("INSERT INTO users(name, enabled, created_at) VALUES('mallory', 1, "
                  "'2024-01-01T00:00:00Z')")
    c.close()
    os.chown(evil, NOBODY.pw_uid, NOBODY.pw_gid)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    as_nobody("mv", evil, db)
    conf = s.env.dir / "db-in-home.conf"
    conf.write_text(s.env.conf.read_text().replace("database = submitd.db",
                                                   f"database = {db}"))
    proc = s.env.run("submit-admin", "user", "list", check=False, conf=conf)
    assert "mallory" not in proc.stdout, "root's tool used the database the user planted"
    assert proc.returncode == 1, f"exit {proc.returncode}: {proc.stdout} {proc.stderr}"
    assert str(home) in proc.stderr and f"is owned by uid {NOBODY.pw_uid}" in proc.stderr, \
        proc.stderr
    # The configured database (in a root-only directory) still works.
    assert "alice" in s.env.admin("user", "list").stdout
    served_again(s)


def test_a_database_that_is_a_link_is_refused(fresh_stack_factory):
    s = fresh_stack_factory("rootfs-dblink", start_daemon=False)
    link = s.env.dir / "linked.db"
    os.symlink(s.env.db_path, link)
    conf = s.env.dir / "db-link.conf"
    conf.write_text(s.env.conf.read_text().replace("database = submitd.db",
                                                   f"database = {link}"))
    proc = s.env.run("submit-admin", "user", "list", check=False, conf=conf)
    assert proc.returncode == 1, f"exit {proc.returncode}: {proc.stdout} {proc.stderr}"
    assert str(link) in proc.stderr and "symbolic link" in proc.stderr, proc.stderr
    served_again(s)


# ---- queue flush: the pid file is the user's, the signal must not be ------------------

def test_queue_flush_signals_only_the_queue_process_of_the_user(fresh_stack_factory):
    s = fresh_stack_factory("rootfs-pid")
    pidfile = s.env.dir / "spool" / "queue.pid"
    assert poll(pidfile.exists, 10), "the queue process wrote no pid file"
    real = pidfile.read_text()
    # A root process with the queue's name, as any local user could start one.
    fake = s.env.dir / "submitd-queue"
    shutil.copy("/bin/sleep", fake)
    decoy = subprocess.Popen([str(fake), "120"])
    try:
        as_nobody("sh", "-c", 'echo "$2" > "$1.new" && mv "$1.new" "$1"', "sh", pidfile,
                  decoy.pid)
        proc = s.env.admin("queue", "flush", check=False)
        assert proc.returncode == 1, f"flush exited {proc.returncode}: {proc.stdout}"
        assert f"process {decoy.pid}" in proc.stderr and "uid 0" in proc.stderr, proc.stderr
        died = poll(lambda: decoy.poll() is not None, 1)
        assert not died, "the decoy root process got the signal"
    finally:
        decoy.kill()
        decoy.wait()
    as_nobody("sh", "-c", 'printf %s "$2" > "$1.new" && mv "$1.new" "$1"', "sh", pidfile, real)
    proc = s.env.admin("queue", "flush")
    assert "queue flush" in proc.stdout
    assert s.daemon.running()
    assert_served(s.env, s.alice)


def test_queue_delete_and_list_do_not_follow_a_link_in_the_spool(fresh_stack_factory):
    """spool/queue replaced by a link to a directory of root's: `queue delete ID` must
    not remove root's file of that name, nor `queue list` read root's files."""
    s = fresh_stack_factory("rootfs-qdel")
    victim, vdir = make_victims(s.env)
    qid = "0123456789ABCDEFGHIJ"
    keep = vdir / qid
    keep.write_bytes(VICTIM_TEXT)
    os.chmod(keep, 0o600)
    queue = s.env.dir / "spool" / "queue"
    moved = queue.with_name("queue.real")
    s.daemon.stop()
    as_nobody("mv", queue, moved)
    as_nobody("ln", "-s", vdir, queue)
    for args in (("queue", "delete", qid), ("queue", "list")):
        proc = s.env.admin(*args, check=False)
        assert keep.exists(), f"`submit-admin {' '.join(args)}` removed root's {keep}"
        assert proc.returncode == 1, f"{args}: exit {proc.returncode}: {proc.stdout}"
        assert str(queue) in proc.stderr and "is a symbolic link" in proc.stderr, proc.stderr
    keep.unlink()
    assert_untouched(victim, vdir)
    as_nobody("rm", queue)
    as_nobody("mv", moved, queue)
    served_again(s)
    assert s.env.admin("queue", "list").returncode == 0


# ---- trust anchors: client_ca and crl decide identities and are read as root -----------

@pytest.mark.parametrize("key", ["client_ca", "crl"])
def test_trust_anchors_the_user_can_change_are_refused(fresh_stack_factory, key):
    """The daemon user must not be able to add a CA of its own or drop a revocation:
    client_ca or crl in a directory it owns, or a file of its own, stop the start."""
    s = fresh_stack_factory(f"rootfs-{key}", start_daemon=False)
    home = s.env.dir / "home"
    home.mkdir()
    src = s.env.dir / "ca" / ("ca.crt" if key == "client_ca" else "crl.pem")
    placed = home / src.name
    shutil.copy(src, placed)
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    s.env.settings[key] = str(placed)
    s.env.write_config()
    assert_refused(s.env, home, f"is owned by uid {NOBODY.pw_uid}, expected root")
    os.chown(home, 0, 0)
    os.chown(placed, NOBODY.pw_uid, NOBODY.pw_gid)
    assert_refused(s.env, placed, "must be a regular file of root's")
    os.chown(placed, 0, 0)
    served_again(s)


# ---- PAM: root loads the modules that pam_confdir names ---------------------------------

def test_a_pam_confdir_the_user_can_change_is_a_temporary_failure(fresh_stack_factory):
    """Whoever can write pam_confdir can name any module, which authz loads as root:
    such a directory gives every client 454 with the reason audited, never a PAM run."""
    s = fresh_stack_factory("rootfs-pam")
    pam = s.env.dir / "pam.d"
    s.daemon.stop()
    os.chown(pam, NOBODY.pw_uid, NOBODY.pw_gid)
    s.daemon.start()
    mark = s.audit.mark()
    assert mail_reply(s.env, s.alice) == TEMPFAIL
    row = s.audit.wait(lambda r: r["event"] == "identity" and r["decision"] == "tempfail",
                       mark, what="identity tempfail row")
    assert contains(row["reason"], "pam_confdir", str(pam)), row
    # The service file of another user, in a root-owned directory: the same.
    s.daemon.stop()
    os.chown(pam, 0, 0)
    os.chown(pam / "submitd", NOBODY.pw_uid, NOBODY.pw_gid)
    s.daemon.start()
    assert mail_reply(s.env, s.alice) == TEMPFAIL
    s.daemon.stop()
    os.chown(pam / "submitd", 0, 0)
    served_again(s)


# ---- submit-ca: the CA directory must be root's ---------------------------------------

def test_a_ca_directory_another_user_can_change_is_refused(fresh_stack_factory):
    s = fresh_stack_factory("rootfs-ca", start_daemon=False)
    home = s.env.dir / "home"
    home.mkdir()
    shutil.copytree(s.env.dir / "ca", home / "ca")
    os.chown(home, NOBODY.pw_uid, NOBODY.pw_gid)
    conf = s.env.dir / "ca-in-home.conf"
    conf.write_text(s.env.conf.read_text().replace("ca_dir = ca", f"ca_dir = {home}/ca"))
    proc = s.env.run("submit-ca", "crl", check=False, conf=conf)
    assert proc.returncode == 1, f"exit {proc.returncode}: {proc.stdout} {proc.stderr}"
    assert str(home) in proc.stderr and f"is owned by uid {NOBODY.pw_uid}" in proc.stderr, \
        proc.stderr
    # Nor is a new CA made there.
    conf.write_text(s.env.conf.read_text().replace("ca_dir = ca", f"ca_dir = {home}/newca"))
    proc = s.env.run("submit-ca", "init", check=False, conf=conf)
    assert proc.returncode == 1 and f"is owned by uid {NOBODY.pw_uid}" in proc.stderr, \
        f"exit {proc.returncode}: {proc.stdout} {proc.stderr}"
    assert not (home / "newca").exists()
    # The CA where it belongs is unaffected.
    s.env.ca("crl")
    served_again(s)
