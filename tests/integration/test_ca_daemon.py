"""Certificates from submit-ca against a running submitd with CRL checking (DESIGN §3.4,
§5, §6): issued and CSR-signed certificates authenticate; revocation refuses new
sessions at once while other users keep working; a CRL changed on disk is used for new
handshakes (and resumed sessions) without a restart; a CRL close to or past its next
update is loud in the log, and submitd -t reports it."""

import datetime
import re
import socket
import sqlite3
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import (assert_served, build_stack, client_context, Identity, mail_reply, poll,
                      smtp_starttls)

REJECTED_REVOKED = "535 5.7.8 Client certificate rejected: revoked"
TEMPFAIL = "454 4.7.0"


@pytest.fixture(scope="module")
def stack(request):
    failed_before = request.session.testsfailed
    s = build_stack("ca-daemon", crl="ca/crl.pem")
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def smtp_pids(stack):
    """Pids of the running smtp worker process(es) of the daemon."""
    stack.daemon._snapshot()
    pids = []
    for pid in stack.daemon.alive_family():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"submitd-smtp" in f.read():
                    pids.append(pid)
        except OSError:
            pass
    return sorted(pids)


def wait_for_log(stack, pattern, offset, timeout=10):
    rx = re.compile(pattern)

    def found():
        text = stack.daemon.log.read_bytes()[offset:].decode("utf-8", "replace")
        return [l for l in text.splitlines() if rx.search(l)]

    lines = poll(found, timeout, 0.2)
    assert lines, f"no log line matching {pattern!r} within {timeout}s\n{stack.daemon.tail(offset=offset)}"
    return lines


def serial_hex(identity):
    return format(identity.cert().serial_number, "X")


def ca_in_second_database(stack, name):
    """A configuration that shares the CA directory and the CRL with the daemon but has
    a copy of the database of its own: revocations made through it reach the daemon
    only through the CRL file."""
    env = stack.env
    copy = env.dir / f"{name}.db"
    src = sqlite3.connect(str(env.db_path))
    dst = sqlite3.connect(str(copy))
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    conf = env.dir / f"{name}.conf"
    text = env.conf.read_text()
    conf.write_text(re.sub(r"(?m)^database = .*$", f"database = {copy.name}", text))
    return conf


def write_crl(stack, last_update, next_update, revoked=()):
    """Replaces the CRL file with one signed by the CA, built here (e.g. an expired one)."""
    env = stack.env
    ca_cert, ca_key = env.ca_cert_and_key()
    crl_path = env.dir / "ca" / "crl.pem"
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(last_update)
               .next_update(next_update)
               .add_extension(x509.CRLNumber(int(datetime.datetime.utcnow().timestamp()) + 10**6),
                              critical=False))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(last_update).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    tmp = crl_path.with_name("crl.pem.tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.chmod(0o644)
    tmp.replace(crl_path)


# ---- issued certificates in use --------------------------------------------------------------

def test_issued_certificate_authenticates(stack):
    assert mail_reply(stack, stack.alice, stack.alice.email).startswith("250")
    started = wait_for_log(stack, r"submitd/authz.*crl .*crl\.pem loaded", 0)
    assert started


def test_csr_signed_certificate_authenticates(stack):
    env = stack.env
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
           .sign(key, hashes.SHA256()))
    (env.dir / "cora.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    env.ca("issue", "cora", "--email", "cora@example.com", "--out", env.clients,
           "--csr", env.dir / "cora.csr")
    keyfile = env.clients / "cora.key"
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    cora = Identity("cora", env.clients / "cora.crt", keyfile, email="cora@example.com")
    assert mail_reply(stack, cora, cora.email).startswith("250")


# ---- revocation --------------------------------------------------------------------------------

def test_revoke_refuses_new_sessions_with_an_audit_row(stack):
    env = stack.env
    rita = env.issue("rita", "rita@example.com")
    assert mail_reply(stack, rita, rita.email).startswith("250")
    open_session = smtp_starttls(env, rita)
    try:
        env.ca("revoke", serial_hex(rita), "--reason", "keyCompromise")
        mark = stack.audit.mark()
        reply = mail_reply(stack, rita, rita.email)
        assert reply == REJECTED_REVOKED, reply
        row = stack.audit.wait(lambda r: r["event"] == "identity" and r["cert_sha256"] == rita.sha256,
                               mark, what="identity row for the revoked certificate")
        assert row["decision"] == "reject" and "revoked" in row["reason"], row
        assert_served(env, stack.alice)
    finally:
        open_session.close()

    crl_path = env.dir / "ca" / "crl.pem"
    text = subprocess.run(["openssl", "crl", "-in", str(crl_path), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert serial_hex(rita) in text.replace(":", "").upper()
    assert "Key Compromise" in text


def test_revoked_by_the_crl_alone_is_refused_without_restart(stack):
    """The daemon's database still says valid; only the rewritten CRL file says revoked."""
    env = stack.env
    sven = env.issue("sven", "sven@example.com")
    assert mail_reply(stack, sven, sven.email).startswith("250")
    pids = smtp_pids(stack)
    starts = stack.daemon.starts
    offset = stack.daemon.log_size()

    other = ca_in_second_database(stack, "other")
    env.run("submit-ca", "revoke", serial_hex(sven), "--reason", "privilegeWithdrawn", conf=other)
    assert env.query("SELECT status FROM certs WHERE sha256 = ?", (sven.sha256,))[0]["status"] == "valid"

    reply = poll(lambda: (lambda r: r if r.startswith("535") else None)(mail_reply(stack, sven, sven.email)), 10, 0.3)
    assert reply == REJECTED_REVOKED, f"still {mail_reply(stack, sven, sven.email)!r} 10 s after the CRL changed"
    wait_for_log(stack, r"crl .*crl\.pem reloaded: 1 CRL, \d+ revoked", offset)
    assert smtp_pids(stack) == pids and stack.daemon.starts == starts, "the daemon was restarted"
    assert_served(env, stack.alice)


def _session_after_starttls(env, ctx, session=None):
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=15)
    f = sock.makefile("rb")

    def reply():
        lines = []
        while True:
            line = f.readline().decode()
            assert line, "connection closed"
            lines.append(line.rstrip("\r\n"))
            if line[3:4] != "-":
                return lines[-1]

    assert reply().startswith("220")
    sock.sendall(b"EHLO client.test\r\n")
    reply()
    sock.sendall(b"STARTTLS\r\n")
    assert reply().startswith("220")
    tls = ctx.wrap_socket(sock, session=session)
    tf = tls.makefile("rb")

    def tls_cmd(line):
        tls.sendall(line.encode() + b"\r\n")
        lines = []
        while True:
            got = tf.readline().decode()
            assert got, "connection closed"
            lines.append(got.rstrip("\r\n"))
            if got[3:4] != "-":
                return lines[-1]

    return tls, tls_cmd


def test_resumed_session_is_checked_against_the_new_crl(stack):
    env = stack.env
    tess = env.issue("tess", "tess@example.com")
    ctx = client_context(env, tess)
    tls, cmd = _session_after_starttls(env, ctx)
    assert cmd("EHLO client.test").startswith("250")
    assert cmd("MAIL FROM:<tess@example.com>").startswith("250")
    cmd("QUIT")
    session = tls.session
    tls.close()
    assert session is not None

    # Resumption works while nothing changed.
    tls, cmd = _session_after_starttls(env, ctx, session)
    resumed = tls.session_reused
    cmd("EHLO client.test")
    first = cmd("MAIL FROM:<tess@example.com>")
    tls.close()
    # The server issues TLS 1.3 tickets: a session it cannot resume is a regression.
    assert resumed, "the server did not resume the TLS session"
    assert first.startswith("250"), first

    other = ca_in_second_database(stack, "other-tess")
    offset = stack.daemon.log_size()
    env.run("submit-ca", "revoke", serial_hex(tess), conf=other)
    wait_for_log(stack, r"crl .*crl\.pem reloaded", offset)
    tls, cmd = _session_after_starttls(env, ctx, session)
    resumed = tls.session_reused
    cmd("EHLO client.test")
    reply = cmd("MAIL FROM:<tess@example.com>")
    tls.close()
    assert resumed, "the session was not resumed the second time"
    assert reply == REJECTED_REVOKED, reply


# ---- the CRL's dates ------------------------------------------------------------------------------

def test_crl_close_to_its_next_update_is_warned_about(stack):
    offset = stack.daemon.log_size()
    stack.env.ca("crl", "--days", "1")
    lines = wait_for_log(stack, r"warn.*crl .*crl\.pem expires at .*submit-ca crl", offset)
    assert "in 24 hours" in lines[0] or "in 23 hours" in lines[0], lines
    assert_served(stack.env, stack.alice)
    # A warning, not an error: -t runs before every start (ExecStartPre).
    proc = stack.env.run("submitd", "-t", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "warning: crl:" in proc.stderr and "crl.pem expires within a day" in proc.stderr, \
        proc.stderr
    stack.env.ca("crl")


def test_expired_crl_is_a_loud_temporary_failure(stack):
    env = stack.env
    now = datetime.datetime.utcnow().replace(microsecond=0)
    offset = stack.daemon.log_size()
    write_crl(stack, now - datetime.timedelta(days=8), now - datetime.timedelta(days=1))
    try:
        wait_for_log(stack, r"error: crl .*crl\.pem EXPIRED at .*certificates of its CA are refused",
                     offset)
        mark = stack.audit.mark()
        reply = mail_reply(stack, stack.alice, stack.alice.email)
        assert reply.startswith(TEMPFAIL), reply
        row = stack.audit.wait(lambda r: r["event"] == "identity", mark)
        assert row["decision"] == "tempfail" and "crl expired" in row["reason"], row
        wait_for_log(stack, r"authz.*CRL PROBLEM \(crl expired\)", offset)

        proc = env.run("submitd", "-t", check=False)
        assert proc.returncode == 1, proc.stderr
        expired = (now - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = [l for l in proc.stderr.splitlines() if "crl" in l]
        assert line and str(env.dir / "ca" / "crl.pem") in line[0] and expired in line[0] \
            and "expired" in line[0], proc.stderr
    finally:
        env.ca("crl")
    reply = poll(lambda: (lambda r: r if r.startswith("250") else None)(mail_reply(stack, stack.alice, stack.alice.email)),
                 10, 0.3)
    assert reply, "a fresh CRL did not end the outage"


def test_unreadable_new_crl_keeps_the_previous_one(stack):
    env = stack.env
    crl_path = env.dir / "ca" / "crl.pem"
    # A certificate that only the current CRL revokes: it shows the CRL in use.
    vic = env.issue("vic", "vic@example.com")
    env.run("submit-ca", "revoke", serial_hex(vic), conf=ca_in_second_database(stack, "other-vic"))
    reply = poll(lambda: (lambda r: r if r.startswith("535") else None)(
        mail_reply(stack, vic, vic.email)), 10, 0.3)
    assert reply == REJECTED_REVOKED, reply
    saved = crl_path.read_bytes()
    offset = stack.daemon.log_size()
    tmp = crl_path.with_name("crl.pem.tmp")
    tmp.write_text("this is not a CRL\n")
    tmp.chmod(0o644)
    tmp.replace(crl_path)
    try:
        # The log line is what tells the operator; the outcome is that the previous
        # CRL still refuses vic, and everybody else is still served.
        wait_for_log(stack, r"error: crl .*crl\.pem changed but cannot be loaded.*previous CRL stays",
                     offset)
        assert mail_reply(stack, vic, vic.email) == REJECTED_REVOKED, "the previous CRL was dropped"
        assert_served(env, stack.alice)
    finally:
        tmp.write_bytes(saved)
        tmp.chmod(0o644)
        tmp.replace(crl_path)
    wait_for_log(stack, r"crl .*crl\.pem reloaded", offset)


def test_check_reports_a_good_crl_as_ok(stack):
    proc = stack.env.run("submitd", "-t", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "not readable by user" not in proc.stderr


def test_crl_in_a_private_ca_directory_is_still_picked_up(stack):
    """The CRL is read by the authz process, which runs as root: a CA directory that
    the unprivileged users cannot search (mode 0700) does not keep a new CRL from
    being loaded, and submitd -t has nothing to warn about."""
    env = stack.env
    ca_dir = env.dir / "ca"
    uma = env.issue("uma", "uma@example.com")
    assert mail_reply(stack, uma, uma.email).startswith("250")
    offset = stack.daemon.log_size()
    ca_dir.chmod(0o700)
    try:
        proc = env.run("submitd", "-t", check=False)
        assert proc.returncode == 0 and "not readable" not in proc.stderr, proc.stderr
        other = ca_in_second_database(stack, "other-uma")
        env.run("submit-ca", "revoke", serial_hex(uma), conf=other)
        ca_dir.chmod(0o700)    # submit-ca opened it again; keep it private
        reply = poll(lambda: (lambda r: r if r.startswith("535") else None)(
            mail_reply(stack, uma, uma.email)), 10, 0.3)
        assert reply == REJECTED_REVOKED, reply
        wait_for_log(stack, r"authz.*crl .*crl\.pem reloaded", offset)
    finally:
        ca_dir.chmod(0o711)
