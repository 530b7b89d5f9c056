"""The daemon (authz), submit-admin and submit-ca on a shared PostgreSQL store
(`database = postgresql://...`, issue 13): a private cluster from
scripts/pg-test-cluster.sh, listening only on a Unix socket in a temporary directory.
A message is accepted and its audit row is in PostgreSQL; a certificate revoked with
submit-ca is refused on the next session; a server restart is a temporary failure,
never a pass, and the next session is served; the URI's password is never shown."""

import subprocess
import time
from pathlib import Path

import pytest

from conftest import (ALICE, ALICE_ADDR, binary, build_dir, build_stack, mail_reply,
                      make_message, poll, send_ok)

REPO = Path(__file__).resolve().parents[2]
CLUSTER = ["sh", str(REPO / "scripts" / "pg-test-cluster.sh")]
PASSWORD = "it-pg-s3cret"
REJECTED = "535 5.7.8 Client certificate rejected: "


class Cluster:
    def __init__(self, directory):
        self.dir = directory
        # Trust authentication ignores the password: it is there to be hidden.
        self.dsn = f"postgresql://submitd:{PASSWORD}@/submitd_test?host={directory}"

    def psql(self, sql, *params):
        """Rows of one query, each a list of text columns; values as psql variables."""
        cmd = ["psql", "-X", "-q", "-At", "-F", "\t", "-h", self.dir, "-U", "submitd",
               "-d", "submitd_test", "-v", "ON_ERROR_STOP=1"]
        for i, p in enumerate(params, 1):
            cmd += ["-v", f"p{i}={p}"]
        proc = subprocess.run(cmd, input=sql, capture_output=True, text=True, timeout=30,
                              check=True)
        return [line.split("\t") for line in proc.stdout.splitlines() if line]

    def restart(self):
        subprocess.run(CLUSTER + ["restart", self.dir], check=True, timeout=120)

    def stop(self):
        subprocess.run(CLUSTER + ["stop", self.dir], timeout=120)


@pytest.fixture(scope="module")
def cluster():
    proc = subprocess.run(CLUSTER + ["start"], capture_output=True, text=True, timeout=180)
    if proc.returncode == 3:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, f"the private PostgreSQL did not start:\n{proc.stderr}"
    c = Cluster(proc.stdout.splitlines()[0])
    yield c
    c.stop()


@pytest.fixture(scope="module")
def pg_stack(request, cluster):
    failed_before = request.session.testsfailed
    s = build_stack("pg", database=cluster.dsn)
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def test_message_accepted_and_audited_in_postgresql(pg_stack, cluster):
    msg = make_message(subject="through postgresql")
    qid = send_ok(pg_stack.env, pg_stack.alice, msg)
    pg_stack.upstream.wait_for(msg.marker)
    rows = poll(lambda: cluster.psql(
        "SELECT \"user\", decision, client_ip FROM audit WHERE queue_id = :'p1'"
        " AND event = 'submission'", qid), 10)
    assert rows == [[ALICE, "accept", "127.0.0.1"]], rows
    # The admin tools read the same rows.
    out = pg_stack.env.admin("audit", "--queue-id", qid).stdout
    assert qid in out and ALICE in out, out


def test_users_and_certificates_live_in_postgresql(pg_stack, cluster):
    # The same schema versions as SQLite: one migration of each backend per version.
    versions = len(list((REPO / "db" / "sqlite" / "migrations").glob("[0-9]*.sql")))
    assert len(list((REPO / "db" / "postgres" / "migrations").glob("[0-9]*.sql"))) == versions
    assert cluster.psql("SELECT max(version) FROM schema_version")[0][0] == str(versions)
    assert [ALICE] in cluster.psql("SELECT name FROM users")
    logged = cluster.psql("SELECT program, command FROM admin_log ORDER BY id")
    assert ["submit-ca", "issue"] in logged and ["submit-admin", "sender add"] in logged, logged


def test_revoke_with_submit_ca_refused_on_next_session(pg_stack, cluster):
    carol = pg_stack.env.issue("carol", "carol@example.com")
    assert mail_reply(pg_stack, carol, carol.email).startswith("250")
    pg_stack.env.ca("revoke", "--user", "carol", "--reason", "keyCompromise")
    assert cluster.psql("SELECT status FROM certs WHERE \"user\" = 'carol'") == [["revoked"]]
    reply = mail_reply(pg_stack, carol, carol.email)
    assert reply.startswith(REJECTED) and "revoked" in reply.lower(), reply
    assert mail_reply(pg_stack, pg_stack.alice, ALICE_ADDR).startswith("250")


def test_append_only_in_postgresql(pg_stack, cluster):
    for sql in ("UPDATE audit SET reason = 'x'", "DELETE FROM audit", "TRUNCATE audit",
                "DELETE FROM admin_log", "UPDATE ca_log SET command = 'x'"):
        with pytest.raises(subprocess.CalledProcessError) as e:
            cluster.psql(sql)
        assert "append-only" in e.value.stderr, (sql, e.value.stderr)


def test_restart_is_tempfail_then_served(pg_stack, cluster):
    cluster.restart()
    replies = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        reply = mail_reply(pg_stack, pg_stack.alice, ALICE_ADDR)
        replies.append(reply)
        # A lost connection may refuse for the moment, never pass a session unchecked.
        assert reply.startswith("250") or reply.startswith("4"), replies
        if reply.startswith("250"):
            break
        time.sleep(0.5)
    assert replies[-1].startswith("250"), replies
    # A revoked certificate stays refused after the reconnect.
    carol = pg_stack.env.identities["carol"]
    assert mail_reply(pg_stack, carol, carol.email).startswith(REJECTED)


def test_password_never_shown(pg_stack, cluster):
    env = pg_stack.env
    proc = subprocess.run([str(binary("submitd")), "-c", str(env.conf), "-p"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "database = postgresql://submitd:****@" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr
    # An error names the database with the password masked.
    env.settings["database"] = cluster.dsn.replace("submitd_test", "no_such_db")
    env.write_config()
    try:
        bad = env.admin("user", "list", check=False)
    finally:
        env.settings["database"] = cluster.dsn
        env.write_config()
    assert bad.returncode == 1 and "no_such_db" in bad.stderr, bad.stderr
    assert PASSWORD not in bad.stdout + bad.stderr
    assert PASSWORD not in pg_stack.daemon.tail(max_chars=10_000_000)


def _needed(path):
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


def test_only_the_database_programs_link_libpq():
    """The master and the smtp process, which parses untrusted bytes, cannot reach a
    database of either kind; authz and the tools link both backends."""
    libexec = build_dir() / "libexec" / "submitd"
    for path in (binary("submitd"), libexec / "submitd-smtp", libexec / "submitd-queue"):
        needed = _needed(path)
        assert not [n for n in needed if n.startswith(("libpq", "libsqlite3"))], (path, needed)
    for path in (libexec / "submitd-authz", binary("submit-admin"), binary("submit-ca")):
        needed = _needed(path)
        assert [n for n in needed if n.startswith("libpq")], (path, needed)
