"""Admins and auditors (DESIGN §5, §7): every change made by submit-admin and
submit-ca is in the append-only admin_log; the audit trail answers filtered questions
as text, CSV and JSON, and loses rows only through `audit prune`, which is recorded;
no address gets a second owner and no user a second certificate by accident; the
tools agree on --help, --version and misuse."""

import csv
import datetime
import io
import json
import os
import re
import sqlite3
import subprocess

import pytest

from conftest import ROOT, Env, binary

NOW = datetime.datetime.now(datetime.timezone.utc)


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@pytest.fixture
def env(request):
    failed_before = request.session.testsfailed
    e = Env("admin-log")
    e.init_pki()
    yield e
    e.cleanup(keep=request.session.testsfailed > failed_before)


def log_rows(env, *args):
    return json.loads(env.admin("log", "--json", *args).stdout)


def last_log(env):
    return log_rows(env)[-1]


def insert_audit(env, rows):
    con = sqlite3.connect(env.db_path)
    con.executemany("INSERT INTO audit(ts, session, event, decision, reason, client_ip, user,"
                    " cert_sha256, cert_subject, mail_from, rcpt, queue_id)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.commit()
    con.close()


def audit_count(env):
    return env.query("SELECT count(*) AS n FROM audit")[0]["n"]


# ---- the admin log ------------------------------------------------------------------

def test_every_admin_change_is_logged_with_program_command_and_target(env):
    steps = [
        (("user", "add", "bob", "--sender", "bob@example.com"), "user add", "bob"),
        (("user", "disable", "bob"), "user disable", "bob"),
        (("user", "enable", "bob"), "user enable", "bob"),
        (("sender", "add", "bob", "@bob.example"), "sender add", "@bob.example"),
        (("sender", "del", "bob", "@bob.example"), "sender del", "@bob.example"),
        (("map", "add", "--subject", "CN=ext-bob,O=Partner", "bob"), "map add",
         "CN=ext-bob,O=Partner"),
        (("map", "del", "--subject", "CN=ext-bob,O=Partner"), "map del", "CN=ext-bob,O=Partner"),
        (("user", "del", "bob"), "user del", "bob"),
    ]
    for args, command, target in steps:
        before = len(log_rows(env))
        env.admin(*args)
        rows = log_rows(env)[before:]
        assert [r["command"] for r in rows] == [command], (args, rows)
        assert rows[0]["program"] == "submit-admin" and rows[0]["target"] == target, rows
        assert rows[0]["uid"] == os.getuid() and rows[0]["login"], rows
    text = env.admin("log").stdout.splitlines()
    assert text[0].split("\t")[:4] == ["TIME", "LOGIN", "PROGRAM", "COMMAND"]
    assert any("\tsender add\t@bob.example\t" in line for line in text), text


def test_a_failed_change_leaves_no_row(env):
    env.admin("user", "add", "bob")
    before = log_rows(env)
    assert env.admin("user", "add", "bob", check=False).returncode == 1
    assert env.admin("user", "disable", "nobody", check=False).returncode == 1
    assert env.admin("sender", "del", "bob", "x@example.com", check=False).returncode == 1
    assert log_rows(env) == before


def test_user_del_revocation_appears_in_submit_ca_log(env):
    carol = env.issue("carol", "carol@example.com")
    serial = format(carol.cert().serial_number, "X")
    out = env.admin("user", "del", "carol").stdout
    assert "1 certificate revoked" in out
    ca_rows = json.loads(env.ca("log", "--user", "carol", "--json").stdout)
    assert [r["command"] for r in ca_rows] == ["issue", "revoke"], ca_rows
    assert ca_rows[1]["serial"].lstrip("0") == serial.lstrip("0")
    assert "cessationOfOperation" in ca_rows[1]["detail"]
    admin_rows = log_rows(env, "--user", "carol")
    assert [(r["program"], r["command"]) for r in admin_rows] == [
        ("submit-ca", "issue"), ("submit-admin", "revoke"), ("submit-admin", "user del")]


def test_ca_operations_are_admin_log_rows(env):
    env.issue("dave", "dave@example.com")
    env.ca("crl")
    rows = log_rows(env)
    assert [r["command"] for r in rows] == ["init", "server-cert", "issue", "crl"]
    assert {r["program"] for r in rows} == {"submit-ca"}
    issue = rows[2]
    assert issue["user"] == "dave" and issue["target"] == issue["serial"]


def test_sudo_user_is_the_login(env):
    e = dict(os.environ, SUDO_USER="ops7")
    subprocess.run([str(binary("submit-admin")), "-c", str(env.conf), "user", "add", "erin"],
                   check=True, capture_output=True, env=e, cwd=env.dir)
    row = last_log(env)
    assert row["login"] == "ops7" and row["command"] == "user add"
    assert log_rows(env, "--user", "ops7") == [row]


def test_log_since_filters(env):
    env.admin("user", "add", "frank")
    assert log_rows(env, "--since", "1h")
    future = (NOW + datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert log_rows(env, "--since", future) == []


def test_admin_log_is_append_only(env):
    env.admin("user", "add", "gina")
    con = sqlite3.connect(str(env.db_path))
    try:
        for sql in ("UPDATE admin_log SET login = 'x'", "DELETE FROM admin_log",
                    "UPDATE ca_log SET command = 'x'", "DELETE FROM ca_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)
    finally:
        con.close()
    assert log_rows(env)


# ---- no silent surprises ------------------------------------------------------------

def test_issue_for_a_user_with_a_valid_certificate_is_refused_unless_add(env):
    hana = env.issue("hana", "hana@example.com")
    serial = format(hana.cert().serial_number, "X")
    p = env.ca("issue", "hana", "--email", "hana@example.com", "--out", env.clients,
               "--p12-password-file", env.p12_password_file, check=False)
    assert p.returncode == 1, p
    assert serial.lstrip("0") in p.stderr.upper() and "renew" in p.stderr and "--add" in p.stderr
    assert hana.cert().not_valid_after.strftime("%Y-%m-%d") in p.stderr
    assert len(env.query("SELECT * FROM certs WHERE user = 'hana'")) == 1
    env.ca("issue", "hana", "--email", "hana@example.com", "--out", env.dir / "second",
           "--p12-password-file", env.p12_password_file, "--add")
    assert len(env.query("SELECT * FROM certs WHERE user = 'hana' AND status = 'valid'")) == 2


def test_issue_email_of_another_user_is_refused_unless_shared(env):
    env.issue("ivan", "ivan@example.com")
    p = env.ca("issue", "judy", "--email", "ivan@example.com", "--out", env.clients,
               "--p12-password-file", env.p12_password_file, check=False)
    assert p.returncode == 1 and "ivan@example.com" in p.stderr and "user ivan" in p.stderr
    assert "--shared" in p.stderr
    assert env.query("SELECT * FROM users WHERE name = 'judy'") == []
    env.ca("issue", "judy", "--email", "ivan@example.com", "--out", env.clients,
           "--p12-password-file", env.p12_password_file, "--shared")
    owners = env.admin("sender", "who", "ivan@example.com").stdout
    assert "ivan\t" in owners and "judy\t" in owners


def test_sender_add_of_an_owned_address_is_refused_unless_shared(env):
    env.admin("user", "add", "kim", "--sender", "kim@example.com")
    env.admin("user", "add", "lee")
    before = log_rows(env)
    p = env.admin("sender", "add", "lee", "KIM@example.com", check=False)
    assert p.returncode == 1 and "kim@example.com is owned by user kim" in p.stderr
    assert "--shared" in p.stderr
    p = env.admin("user", "add", "max", "--sender", "kim@example.com", check=False)
    assert p.returncode == 1 and "user kim" in p.stderr
    assert env.query("SELECT * FROM users WHERE name = 'max'") == []
    assert log_rows(env) == before
    env.admin("sender", "add", "lee", "kim@example.com", "--shared")
    assert "shared=yes" in last_log(env)["details"]


# ---- the audit trail ----------------------------------------------------------------

def audit_fixture_rows():
    return [
        (iso(NOW - datetime.timedelta(hours=5)), "s1", "identity", "accept", None, "192.0.2.1",
         "alice", "aa" * 32, "CN=alice,O=Example", None, None, None),
        (iso(NOW - datetime.timedelta(hours=3)), "s2", "submission", "accept", None,
         "192.0.2.1", "alice", "aa" * 32, "CN=alice,O=Example", "alice@example.com",
         "x@example.net", "Q1"),
        (iso(NOW - datetime.timedelta(hours=2)), "s3", "identity", "reject", "certificate revoked",
         "198.51.100.7", "bob", "bb" * 32, 'CN="Smith, Bob",O=Example', None, None, None),
        (iso(NOW - datetime.timedelta(minutes=30)), "s4", "relayed", None, "250 ok",
         "192.0.2.1", "alice", None, None, "alice@example.com", "x@example.net", "Q1"),
    ]


def test_audit_filters_until_event_ip_queue_id(env):
    env.admin("user", "list")
    insert_audit(env, audit_fixture_rows())

    def ids(*args):
        return [r["session"] for r in json.loads(env.admin("audit", "--json", *args).stdout)]

    assert ids("--until", "4h") == ["s1"]
    assert ids("--since", "4h", "--until", "1h") == ["s2", "s3"]
    assert ids("--event", "identity") == ["s1", "s3"]
    assert ids("--ip", "198.51.100.7") == ["s3"]
    assert ids("--queue-id", "Q1") == ["s2", "s4"]
    assert ids("--user", "alice", "--event", "identity", "--decision", "accept") == ["s1"]


def test_audit_text_has_a_header_and_the_address_and_fingerprint(env):
    env.admin("user", "list")
    insert_audit(env, audit_fixture_rows())
    lines = env.admin("audit", "--ip", "198.51.100.7").stdout.splitlines()
    header = lines[0].split("\t")
    assert header[:3] == ["id", "ts", "session"] and "client_ip" in header
    assert "cert_sha256" in header
    row = dict(zip(header, lines[1].split("\t")))
    assert row["client_ip"] == "198.51.100.7" and row["cert_sha256"] == "bb" * 32
    assert row["reason"] == "certificate revoked"


def test_audit_csv_has_a_header_and_rfc4180_quoting(env):
    env.admin("user", "list")
    insert_audit(env, audit_fixture_rows())
    raw = subprocess.run([str(binary("submit-admin")), "-c", str(env.conf), "audit", "--csv",
                          "--user", "bob"], capture_output=True, check=True).stdout
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == 2
    out = raw.decode()
    rows = list(csv.reader(io.StringIO(out, newline="")))
    assert rows[0][:3] == ["id", "ts", "session"]
    rec = dict(zip(rows[0], rows[1]))
    assert rec["cert_subject"] == 'CN="Smith, Bob",O=Example'
    assert '"CN=""Smith, Bob"",O=Example"' in out
    assert len(rows) == 2
    p = env.admin("audit", "--csv", "--json", check=False)
    assert p.returncode == 2


def test_audit_prune_removes_old_rows_and_is_recorded(env):
    env.admin("user", "list")
    insert_audit(env, audit_fixture_rows())
    total = audit_count(env)
    before = (NOW - datetime.timedelta(hours=2, minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = env.admin("audit", "prune", "--before", before).stdout
    assert "2 rows" in out, out
    assert audit_count(env) == total - 2
    assert [r["session"] for r in json.loads(env.admin("audit", "--json").stdout)] == ["s3", "s4"]
    row = last_log(env)
    assert row["command"] == "audit prune" and row["program"] == "submit-admin"
    assert row["target"].startswith(before[:19]) and "rows=2" in row["details"]
    assert "oldest=" + audit_fixture_rows()[0][0] in row["details"]
    # A prune by duration, with nothing left to remove, is recorded as well.
    out = env.admin("audit", "prune", "--before", "30d").stdout
    assert "no rows" in out and "rows=0" in last_log(env)["details"]
    assert audit_count(env) == total - 2


def test_audit_stays_append_only_outside_prune(env):
    env.admin("user", "list")
    insert_audit(env, audit_fixture_rows())
    env.admin("audit", "prune", "--before", "2000-01-01")
    con = sqlite3.connect(str(env.db_path))
    try:
        for sql in ("DELETE FROM audit", "UPDATE audit SET user = 'x'",
                    "DELETE FROM audit WHERE ts < '2100-01-01'"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)
        # A permit can only be taken for the newest admin_log row, and only for a prune.
        with pytest.raises(sqlite3.DatabaseError, match="permit"):
            con.execute("INSERT INTO audit_prune_permit(log_id) VALUES (1)")
    finally:
        con.close()
    assert audit_count(env) == len(audit_fixture_rows())
    assert env.query("SELECT * FROM audit_prune_permit") == []


def test_audit_prune_needs_before(env):
    p = env.admin("audit", "prune", check=False)
    assert p.returncode == 2 and "--before" in p.stderr
    p = env.admin("audit", "prune", "--before", "soon", check=False)
    assert p.returncode == 2 and "soon" in p.stderr


# ---- user show, sender who ------------------------------------------------------------

def test_user_show(env):
    nina = env.issue("nina", "nina@example.com")
    env.admin("sender", "add", "nina", "@nina.example")
    insert_audit(env, [
        (iso(NOW - datetime.timedelta(hours=1)), "s1", "submission", "accept", None, "192.0.2.9",
         "nina", nina.sha256, None, "nina@example.com", "x@example.net", "Q9"),
        (iso(NOW - datetime.timedelta(minutes=5)), "s2", "mail", "reject", "sender not owned",
         "192.0.2.10", "nina", nina.sha256, None, "ceo@example.com", None, None),
    ])
    data = json.loads(env.admin("user", "show", "nina", "--json").stdout)
    assert data["enabled"] is True
    assert data["senders"] == ["@nina.example", "nina@example.com"]
    assert [c["sha256"] for c in data["certificates"]] == [nina.sha256]
    assert data["accepted"]["client_ip"] == "192.0.2.9"
    assert data["refused"]["reason"] == "sender not owned"
    text = env.admin("user", "show", "nina").stdout
    assert "enabled:\tyes" in text and nina.cert().not_valid_after.strftime("%Y-%m-%d") in text
    assert "sender not owned" in text
    p = env.admin("user", "show", "nobody", check=False)
    assert p.returncode == 1 and "nobody" in p.stderr


def test_sender_who_includes_domain_owners(env):
    env.admin("user", "add", "olga", "--sender", "olga@corp.example")
    env.admin("user", "add", "pat", "--sender", "@corp.example")
    env.admin("user", "disable", "pat")
    data = json.loads(env.admin("sender", "who", "Olga@corp.example", "--json").stdout)
    assert [(d["user"], d["via"], d["enabled"]) for d in data] == [
        ("olga", "address", True), ("pat", "domain", False)]
    p = env.admin("sender", "who", "nobody@else.example", check=False)
    assert p.returncode == 1 and "nobody@else.example" in p.stderr


# ---- one command line -------------------------------------------------------------------

@pytest.mark.parametrize("prog", ["submitd", "submit-admin", "submit-ca"])
def test_version_is_one_and_the_same(prog):
    want = (ROOT / "VERSION").read_text().strip()
    p = subprocess.run([str(binary(prog)), "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == f"{prog} {want}", p


@pytest.mark.parametrize("prog", ["submitd", "submit-admin", "submit-ca"])
def test_help_exits_0(prog):
    p = subprocess.run([str(binary(prog)), "--help"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith("usage:")


@pytest.mark.parametrize("args, word", [
    (("user", "add", "bad/name"), "bad/name"),
    (("user", "del", "-x"), "-x"),
    (("sender", "add", "alice", "not-an-address"), "not-an-address"),
    (("sender", "who", "a@@b"), "a@@b"),
    (("user", "list", "--bogus"), "--bogus"),
    (("audit", "--until", "later"), "later"),
    (("queue", "bogus"), "bogus"),
    (("map", "bogus"), "bogus"),
    (("user", "bogus"), "bogus"),
    (("bogus",), "bogus"),
])
def test_admin_misuse_exits_2_naming_the_word(env, args, word):
    p = env.admin(*args, check=False)
    assert p.returncode == 2, p
    assert word in p.stderr.splitlines()[0], p.stderr


@pytest.mark.parametrize("args, word", [
    (("issue", "bad/name", "--email", "a@example.com"), "bad/name"),
    (("issue", "quinn", "--email", "not-an-address"), "not-an-address"),
    (("list", "--bogus"), "--bogus"),
    (("bogus",), "bogus"),
])
def test_ca_misuse_exits_2_naming_the_word(env, args, word):
    p = env.ca(*args, check=False)
    assert p.returncode == 2, p
    assert word in p.stderr.splitlines()[0], p.stderr


def test_map_list_prints_rfc4514_names(env):
    env.admin("user", "add", "dave")
    env.admin("map", "add", "--subject", "CN=ext-dave,O=Partner", "--issuer",
              "CN=Partner CA,O=Partner", "dave")
    line = env.admin("map", "list").stdout.splitlines()[0]
    assert line == "dave\tCN=ext-dave,O=Partner\tCN=Partner CA,O=Partner"
    assert not re.search(r"\b2\.5\.4\.", line)
    data = json.loads(env.admin("map", "list", "--json").stdout)
    assert data == [{"user": "dave", "subject": "CN=ext-dave,O=Partner",
                     "issuer": "CN=Partner CA,O=Partner"}]


# ---- a revoked certificate's refusals belong to its user ---------------------------------

def test_audit_user_shows_the_refused_sessions_of_a_revoked_certificate(fresh_stack_factory):
    """bob's certificate revoked (the CRL check off: the database refuses it): the
    refused session's audit row carries bob, so `audit --user bob` shows it."""
    from conftest import mail_reply
    s = fresh_stack_factory("revoked-user")
    env = s.env
    bob = env.issue("bob", "bob@example.com")
    assert mail_reply(s, bob, bob.email).startswith("250")
    env.ca("revoke", "--user", "bob", "--reason", "keyCompromise")
    mark = s.audit.mark()
    reply = mail_reply(s, bob, bob.email)
    assert reply.startswith("535"), reply
    row = s.audit.wait(lambda r: r["decision"] == "reject", mark, what="bob's refusal")
    assert row["user"] == "bob" and row["cert_sha256"] == bob.sha256, row
    got = json.loads(env.admin("audit", "--user", "bob", "--decision", "reject",
                               "--json").stdout)
    assert [r["id"] for r in got] == [row["id"]], got
    assert "revoked" in got[0]["reason"], got
    assert json.loads(env.admin("user", "show", "bob", "--json").stdout)["refused"]["ts"] == \
        got[0]["ts"]


def test_audit_user_shows_a_refusal_by_the_crl(fresh_stack_factory):
    from conftest import mail_reply, poll
    s = fresh_stack_factory("revoked-user-crl", crl="ca/crl.pem")
    env = s.env
    bob = env.issue("bob", "bob@example.com")
    assert mail_reply(s, bob, bob.email).startswith("250")
    env.ca("revoke", "--user", "bob", "--reason", "keyCompromise")
    # Refused by the reloaded CRL (its reason names OpenSSL's verdict), not the database.
    mark = s.audit.mark()
    row = poll(lambda: (mail_reply(s, bob, bob.email), [
        r for r in s.audit.rows(mark)
        if r["decision"] == "reject" and r["reason"].startswith("certificate revoked")])[1], 10, 0.5)
    assert row, s.audit.rows(mark)
    assert row[-1]["cert_sha256"] == bob.sha256
    assert row[-1]["user"] == "bob", row[-1]
