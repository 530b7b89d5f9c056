"""The administration tools and the configuration check (DESIGN §5-7), without a
running daemon."""

import datetime
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from conftest import ALICE, ALICE_ADDR, P12_PASSWORD, Env, binary


@pytest.fixture(scope="module")
def env(request):
    failed_before = request.session.testsfailed
    e = Env("cli")
    e.init_pki()
    e.issue(ALICE, ALICE_ADDR)
    yield e
    e.cleanup(keep=request.session.testsfailed > failed_before)


def load_cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def public_der(key_or_cert):
    return key_or_cert.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


def signed_by(cert, ca):
    """cert's issuer is ca's subject and ca's key made its signature."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
    if cert.issuer != ca.subject:
        return False
    pub = ca.public_key()
    try:
        if isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        elif isinstance(pub, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
            pub.verify(cert.signature, cert.tbs_certificate_bytes)
        else:
            raise AssertionError(f"unexpected CA key type {type(pub)}")
    except InvalidSignature:
        return False
    return True


def norm(s):
    return s.replace(":", "").lower()


def one_line_error(proc):
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {proc.stderr!r}"
    return lines[0]


# ---- submit-ca -------------------------------------------------------------------------------

def test_init_writes_a_ca_and_an_empty_crl(env):
    ca = load_cert(env.dir / "ca" / "ca.crt")
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    key = serialization.load_pem_private_key((env.dir / "ca" / "ca.key").read_bytes(), None)
    assert public_der(key) == public_der(ca)
    crl = x509.load_pem_x509_crl((env.dir / "ca" / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())
    assert len(list(crl)) == 0
    assert crl.next_update is None or crl.next_update > datetime.datetime.utcnow()


def test_ca_key_is_private(env):
    mode = (env.dir / "ca" / "ca.key").stat().st_mode
    assert mode & 0o077 == 0, f"ca.key has mode {oct(mode & 0o777)}"


def test_server_cert_matches_host_and_ip(env):
    ca = load_cert(env.ca_cert_path)
    cert = load_cert(env.dir / "server.crt")
    key = serialization.load_pem_private_key((env.dir / "server.key").read_bytes(), None)
    assert public_der(key) == public_der(cert)
    assert signed_by(cert, ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_issue_writes_certificate_key_and_p12(env):
    alice = env.identities[ALICE]
    ca = load_cert(env.ca_cert_path)
    cert = alice.cert()
    assert signed_by(cert, ca)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ALICE_ADDR in san.get_values_for_type(x509.RFC822Name)
    key = serialization.load_pem_private_key(alice.key.read_bytes(), None)
    assert public_der(key) == public_der(cert)

    p12_key, p12_cert, _ = pkcs12.load_key_and_certificates(alice.p12.read_bytes(), P12_PASSWORD.encode())
    assert p12_cert.public_bytes(serialization.Encoding.DER) == cert.public_bytes(serialization.Encoding.DER)
    assert public_der(p12_key) == public_der(cert)
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(alice.p12.read_bytes(), b"not the password")


def test_issue_records_user_sender_and_certificate(env):
    alice = env.identities[ALICE]
    users = env.query("SELECT name, enabled FROM users WHERE name = ?", (ALICE,))
    assert users and users[0]["enabled"] in (1, "1"), users
    senders = [r["address"] for r in env.query("SELECT address FROM senders WHERE user = ?", (ALICE,))]
    assert ALICE_ADDR in senders
    certs = env.query("SELECT * FROM certs WHERE user = ?", (ALICE,))
    assert len(certs) == 1, certs
    row = certs[0]
    assert row["sha256"] == alice.sha256
    assert row["status"] == "valid"
    assert int(row["serial"], 16) == alice.cert().serial_number


def test_issue_prints_serial_and_sha256(env):
    alice = env.identities[ALICE]
    out = norm(alice.issue_stdout)
    assert alice.sha256 in out, alice.issue_stdout
    assert format(alice.cert().serial_number, "x") in out, alice.issue_stdout


def test_ca_list_json(env):
    proc = env.ca("list", "--json")
    data = json.loads(proc.stdout)
    assert env.identities[ALICE].sha256 in json.dumps(data).lower()


def test_revoke_marks_database_and_rewrites_crl(env):
    erin = env.issue("erin", "erin@example.com")
    env.ca("revoke", "--user", "erin", "--reason", "keyCompromise")
    row = env.query("SELECT status, revoke_reason FROM certs WHERE sha256 = ?", (erin.sha256,))[0]
    assert row["status"] == "revoked"
    assert "keycompromise" in norm(row["revoke_reason"] or "").replace(" ", "")
    ca = load_cert(env.ca_cert_path)
    crl = x509.load_pem_x509_crl((env.dir / "ca" / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())
    revoked = crl.get_revoked_certificate_by_serial_number(erin.cert().serial_number)
    assert revoked is not None, "revoked serial missing from the CRL"
    assert crl.get_revoked_certificate_by_serial_number(env.identities[ALICE].cert().serial_number) is None


def test_database_contract(env):
    con = sqlite3.connect(str(env.db_path))
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert con.execute("PRAGMA user_version").fetchone()[0] >= 1
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"users", "senders", "certs", "subject_maps", "audit"} <= tables, tables
        audit_cols = {r[1] for r in con.execute("PRAGMA table_info(audit)")}
        assert {"id", "ts", "session", "event", "decision", "reason", "client_ip", "user", "cert_sha256",
                "cert_subject", "mail_from", "rcpt", "queue_id", "size", "tls"} <= audit_cols
    finally:
        con.close()


# ---- submit-admin ------------------------------------------------------------------------------

def test_user_and_sender_lifecycle(env):
    env.admin("user", "add", "frank", "--sender", "frank@example.com")
    assert env.query("SELECT enabled FROM users WHERE name = 'frank'")[0]["enabled"] in (1, "1")
    env.admin("sender", "add", "frank", "@frank.test")
    senders = {r["address"] for r in env.query("SELECT address FROM senders WHERE user = 'frank'")}
    assert senders == {"frank@example.com", "@frank.test"}

    env.admin("user", "disable", "frank")
    assert env.query("SELECT enabled FROM users WHERE name = 'frank'")[0]["enabled"] in (0, "0")
    env.admin("user", "enable", "frank")
    assert env.query("SELECT enabled FROM users WHERE name = 'frank'")[0]["enabled"] in (1, "1")

    listed = json.loads(env.admin("user", "list", "--json").stdout)
    assert "frank" in json.dumps(listed)

    env.admin("sender", "del", "frank", "@frank.test")
    senders = {r["address"] for r in env.query("SELECT address FROM senders WHERE user = 'frank'")}
    assert senders == {"frank@example.com"}
    env.admin("user", "del", "frank")
    assert not env.query("SELECT * FROM users WHERE name = 'frank'")
    assert not env.query("SELECT * FROM senders WHERE user = 'frank'")


def test_admin_errors_are_one_line_and_exit_1(env):
    env.admin("user", "add", "gina")
    proc = env.admin("user", "add", "gina", check=False)
    assert proc.returncode == 1
    assert "gina" in one_line_error(proc)
    proc = env.admin("sender", "add", "no-such-user", "x@example.com", check=False)
    assert proc.returncode == 1
    assert "no-such-user" in one_line_error(proc)


def test_misuse_exits_2(env):
    assert env.admin("frobnicate", check=False).returncode == 2
    assert env.ca("issue", check=False).returncode == 2


# ---- submitd -t -------------------------------------------------------------------------------

def test_config_check_accepts_the_test_configuration(env):
    proc = subprocess.run([str(binary("submitd")), "-c", str(env.conf), "-t"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"submitd -t: {proc.returncode}\n{proc.stdout}{proc.stderr}"


def test_config_check_names_an_unknown_key_and_its_line(env):
    conf = env.dir / "bad.conf"
    lines = env.conf.read_text().splitlines()
    lines.insert(3, "bogus_setting = 1")
    conf.write_text("\n".join(lines) + "\n")
    proc = subprocess.run([str(binary("submitd")), "-c", str(conf), "-t"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc
    err = proc.stderr
    assert "bogus_setting" in err, err
    assert ":4" in err or "line 4" in err, f"line number 4 not named: {err}"


def _listen_conf(env, name, listen, listen_tls):
    conf = env.dir / name
    lines = [l for l in env.conf.read_text().splitlines()
             if not l.strip().startswith(("listen ", "listen=", "listen_tls"))]
    conf.write_text("\n".join(lines + [f"listen = {listen}", f"listen_tls = {listen_tls}"]) + "\n")
    return conf


def _check(conf):
    return subprocess.run([str(binary("submitd")), "-c", str(conf), "-t"],
                          capture_output=True, text=True, timeout=30)


def test_an_address_in_both_listen_lists_is_named_by_check_and_at_start(env):
    """The same address in listen and listen_tls, or a wildcard and an address it
    covers: submitd -t names both entries and their keys, and a start stops with the
    same words instead of "Address already in use", which would send the admin
    looking for another program on the port."""
    p = env.port
    for listen, tls in ((f"127.0.0.1:{p}", f"127.0.0.1:{p}"),
                        (f"0.0.0.0:{p}", f"127.0.0.1:{p}")):
        conf = _listen_conf(env, "twice.conf", listen, tls)
        words = (f"listen_tls 127.0.0.1:{p}: it overlaps {listen} in listen: the same port, on the "
                 "same address or a wildcard that covers it")
        check = _check(conf)
        assert check.returncode == 1, check
        assert f"submitd: {words}" in check.stderr, check.stderr
        start = subprocess.run([str(binary("submitd")), "-c", str(conf), "-f"],
                               capture_output=True, text=True, timeout=30)
        assert start.returncode == 1, start
        assert f"{conf}: {words}" in start.stderr, start.stderr
        assert "Address already in use" not in start.stderr, start.stderr


def test_listen_addresses_that_do_not_overlap_pass_the_check(env):
    p = env.port
    check = _check(_listen_conf(env, "apart.conf", f"127.0.0.1:{p}", f"127.0.0.2:{p}"))
    assert check.returncode == 0, check.stderr
    assert "overlaps" not in check.stderr, check.stderr
    check = _check(_listen_conf(env, "ports.conf", f"0.0.0.0:{p}", f"0.0.0.0:{env.tls_port}"))
    assert check.returncode == 0, check.stderr


def test_ipv6_wildcard_overlaps_ipv4_while_it_takes_ipv4(env):
    """Linux's [::] takes IPv4 too unless net.ipv6.bindv6only is 1: then "0.0.0.0:P,
    [::]:P" cannot start, and -t says why."""
    flag = Path("/proc/sys/net/ipv6/bindv6only")
    if not flag.exists():
        pytest.skip("no IPv6 on this kernel")
    p = env.port
    check = _check(_listen_conf(env, "dual.conf", f"0.0.0.0:{p}", f"[::]:{p}"))
    if flag.read_text().strip() == "0":
        assert check.returncode == 1, check
        assert f"listen_tls [::]:{p}: it overlaps 0.0.0.0:{p} in listen" in check.stderr, \
            check.stderr
    else:
        assert "overlaps" not in check.stderr, check.stderr


def test_config_check_warns_when_pam_confdir_has_no_other_file(env):
    """libpam logs an error to syslog at every pam_start without "other": one line per
    session. submitd -t says so, and still accepts the configuration."""
    def check(pam_dir):
        conf = env.dir / "pam-other.conf"
        lines = [l for l in env.conf.read_text().splitlines()
                 if not l.strip().startswith("pam_confdir")]
        conf.write_text("\n".join(lines + [f"pam_confdir = {pam_dir}"]) + "\n")
        return subprocess.run([str(binary("submitd")), "-c", str(conf), "-t"],
                              capture_output=True, text=True, timeout=30)

    pam = env.dir / "pam-without-other"
    pam.mkdir(mode=0o755)
    (pam / "submitd").write_text((env.dir / "pam.d" / "submitd").read_text())
    proc = check(pam)
    assert proc.returncode == 0, proc
    assert f"pam_confdir: {pam}/other does not exist" in proc.stderr, proc.stderr
    assert "no default config other" in proc.stderr, proc.stderr

    (pam / "other").write_text("account required pam_deny.so\n")
    proc = check(pam)
    assert proc.returncode == 0, proc
    assert "other does not exist" not in proc.stderr, proc.stderr
