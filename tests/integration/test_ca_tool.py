"""submit-ca without a running daemon (DESIGN §5): what it issues, the PKCS#12 formats
devices accept, signing requests, renewal, listing, revocation by serial and by name,
the encrypted CA key, the record of CA operations, and a clear error with the right
exit status for every way a command can go wrong."""

import datetime
import json
import os
import sqlite3
import stat
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import ALICE, ALICE_ADDR, Env, binary

PASSPHRASE = "a long CA passphrase"


@pytest.fixture(scope="module")
def env(request):
    failed_before = request.session.testsfailed
    e = Env("ca-tool")
    e.init_pki()
    e.issue(ALICE, ALICE_ADDR)
    yield e
    e.cleanup(keep=request.session.testsfailed > failed_before)


@pytest.fixture
def private_env(request):
    """Environments of their own, for tests that need a different CA."""
    made = []
    failed_before = request.session.testsfailed

    def factory(name):
        e = Env(name)
        made.append(e)
        return e

    yield factory
    for e in made:
        e.cleanup(keep=request.session.testsfailed > failed_before)


def load_cert(path):
    return x509.load_pem_x509_certificate(path.read_bytes())


def spki(obj):
    return obj.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def error_line(proc):
    """The single line a failing command prints on stderr (usage text aside)."""
    lines = [l for l in proc.stderr.splitlines() if l.startswith("submit-ca: ")]
    assert len(lines) == 1, f"expected one submit-ca error line, got: {proc.stderr!r}"
    return lines[0]


def fails(env, *args, status=1, match=(), **kw):
    proc = env.ca(*args, check=False, **kw)
    assert proc.returncode == status, (f"submit-ca {' '.join(map(str, args))}: exit {proc.returncode}, "
                                       f"expected {status}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    line = error_line(proc)
    for word in match:
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    return line


def fields(stdout):
    """The "key: value" lines that submit-ca prints."""
    out = {}
    for line in stdout.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            out.setdefault(k, v)
    return out


def openssl(*args, check=True):
    proc = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))}: exit {proc.returncode}\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def ca_log(env, **where):
    sql = "SELECT * FROM ca_log"
    if where:
        sql += " WHERE " + " AND ".join(f"{k} = ?" for k in where)
    return env.query(sql + " ORDER BY id", tuple(where.values()))


def make_csr(path, key, cn="someone-else", extensions=True):
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Requested Org")]))
    if extensions:
        builder = (builder
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil.example"),
                                                               x509.RFC822Name("boss@example.com")]),
                                  critical=False))
    csr = builder.sign(key, hashes.SHA256())
    path.write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return csr


# ---- what issue produces --------------------------------------------------------------------

def test_issued_certificate_verifies_as_ssl_client(env):
    proc = openssl("verify", "-CAfile", env.ca_cert_path, "-purpose", "sslclient",
                   env.identities[ALICE].crt)
    assert proc.stdout.strip().endswith(": OK"), proc.stdout


def test_issued_certificate_carries_the_extensions(env):
    alice = env.identities[ALICE]
    cert = alice.cert()
    ca = load_cert(env.ca_cert_path)
    ext = cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.EMAIL_PROTECTION}
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [ALICE_ADDR]
    assert san.get_values_for_type(x509.DNSName) == []
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ALICE
    assert cert.version == x509.Version.v3
    # A positive 128-bit random serial (top bit clear, next bit set: 127 bits long).
    assert cert.serial_number.bit_length() == 127
    days = (cert.not_valid_after - datetime.datetime.utcnow()).days
    assert 363 <= days <= 365, days


def test_issue_prints_serial_fingerprint_expiry_and_files(env):
    out = fields(env.identities[ALICE].issue_stdout)
    cert = env.identities[ALICE].cert()
    assert int(out["serial"], 16) == cert.serial_number
    assert out["sha256"] == env.identities[ALICE].sha256
    assert out["not_after"] == cert.not_valid_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    for key in ("certificate", "key", "pkcs12", "give_user"):
        assert key in out, env.identities[ALICE].issue_stdout
    assert "p12_password" not in out, "a password given in a file must not be printed"


def p12_info(path, password_file):
    """What `openssl pkcs12 -info -nokeys` says about the structure (no -legacy: the
    default provider must be able to read it), without the PEM blocks."""
    proc = openssl("pkcs12", "-info", "-nokeys", "-in", path, "-passin", f"file:{password_file}")
    lines, in_pem = [], False
    for line in (proc.stderr + proc.stdout).splitlines():
        if line.startswith("-----BEGIN"):
            in_pem = True
        elif line.startswith("-----END"):
            in_pem = False
        elif not in_pem:
            lines.append(line)
    return "\n".join(lines)


def test_default_p12_is_3des_with_a_sha1_mac(env):
    """Older Android, iOS and macOS accept only this; openssl reads it without -legacy."""
    text = p12_info(env.identities[ALICE].p12, env.p12_password_file)
    assert "MAC: sha1" in text, text
    assert "salt length: 8" in text, text
    assert text.count("pbeWithSHA1And3-KeyTripleDES-CBC") == 2, text
    assert "RC2" not in text and "AES" not in text, text
    assert "friendlyName: alice <alice@example.com>" in text, text


def test_modern_p12_is_aes256(env):
    proc = env.ca("issue", "mona", "--email", "mona@example.com", "--out", env.clients,
                  "--p12-password-file", env.p12_password_file, "--p12", "modern")
    assert fields(proc.stdout)["pkcs12_format"].startswith("AES-256")
    text = p12_info(env.clients / "mona.p12", env.p12_password_file)
    assert "MAC: sha256" in text, text
    assert text.count("AES-256-CBC") == 2, text
    assert "TripleDES" not in text, text


def test_generated_p12_password_is_printed_once_and_opens_the_bundle(env):
    proc = env.ca("issue", "gina", "--email", "gina@example.com", "--out", env.clients)
    password = fields(proc.stdout)["p12_password"]
    assert len(password) >= 16
    key, cert, extra = pkcs12.load_key_and_certificates((env.clients / "gina.p12").read_bytes(),
                                                        password.encode())
    assert spki(cert) == spki(key)
    assert [c.subject for c in extra] == [load_cert(env.ca_cert_path).subject]
    assert oct(stat.S_IMODE((env.clients / "gina.key").stat().st_mode)) == "0o600"
    assert oct(stat.S_IMODE((env.clients / "gina.p12").stat().st_mode)) == "0o600"


# ---- signing a user's own request ------------------------------------------------------

def test_csr_is_signed_with_our_subject_and_extensions_only(env):
    key = ec.generate_private_key(ec.SECP256R1())
    csr_path = env.dir / "hugo.csr"
    make_csr(csr_path, key)
    proc = env.ca("issue", "hugo", "--email", "hugo@example.com", "--out", env.clients,
                  "--csr", csr_path)
    cert = load_cert(env.clients / "hugo.crt")
    assert spki(cert) == spki(key)
    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hugo")])
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["hugo@example.com"]
    assert san.get_values_for_type(x509.DNSName) == []
    assert not (env.clients / "hugo.key").exists() and not (env.clients / "hugo.p12").exists()
    assert "p12_password" not in proc.stdout
    openssl("verify", "-CAfile", env.ca_cert_path, "-purpose", "sslclient", env.clients / "hugo.crt")
    row = env.query("SELECT status FROM certs WHERE serial = ?", (format(cert.serial_number, "X"),))
    assert row and row[0]["status"] == "valid"
    logged = ca_log(env, command="issue", user="hugo")
    assert logged and "csr=" in logged[0]["detail"]


def test_csr_in_der_form_is_accepted(env):
    key = ec.generate_private_key(ec.SECP384R1())
    pem = env.dir / "ida.pem.csr"
    csr = make_csr(pem, key, extensions=False)
    der = env.dir / "ida.der.csr"
    der.write_bytes(csr.public_bytes(serialization.Encoding.DER))
    env.ca("issue", "ida", "--email", "ida@example.com", "--out", env.clients, "--csr", der)
    assert spki(load_cert(env.clients / "ida.crt")) == spki(key)


def test_csr_with_a_broken_signature_is_refused(env):
    key = ec.generate_private_key(ec.SECP256R1())
    good = env.dir / "jack.csr"
    csr = make_csr(good, key)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    # Change one byte of the subject (inside the signed part): the signature breaks.
    i = der.index(b"someone-else")
    der[i] ^= 0x01
    bad = env.dir / "jack-bad.csr"
    bad.write_bytes(bytes(der))
    fails(env, "issue", "jack", "--email", "jack@example.com", "--out", env.clients, "--csr", bad,
          match=["signature does not verify", str(bad)])
    assert not (env.clients / "jack.crt").exists()
    assert env.query("SELECT * FROM users WHERE name = 'jack'") == []


def test_csr_with_a_weak_key_is_refused(env):
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    path = env.dir / "kim.csr"
    make_csr(path, key)
    fails(env, "issue", "kim", "--email", "kim@example.com", "--out", env.clients, "--csr", path,
          match=["1024", "too weak"])


def test_csr_that_is_not_a_request_is_refused(env):
    fails(env, "issue", "lea", "--email", "lea@example.com", "--out", env.clients,
          "--csr", env.ca_cert_path, match=["not a certificate signing request"])
    fails(env, "issue", "lea", "--email", "lea@example.com", "--out", env.clients,
          "--csr", env.dir / "no-such.csr", match=["no-such.csr"])


def test_csr_and_p12_options_together_are_misuse(env):
    fails(env, "issue", "lea", "--email", "lea@example.com", "--csr", "x.csr", "--p12", "modern",
          status=2, match=["--csr"])


# ---- renew ---------------------------------------------------------------------------------

def test_renew_keeps_the_old_certificate_valid(env):
    env.ca("issue", "nina", "--email", "nina@example.com", "--out", env.clients / "nina1",
           "--p12-password-file", env.p12_password_file)
    old = load_cert(env.clients / "nina1" / "nina.crt")
    proc = env.ca("renew", "nina", "--out", env.clients / "nina2",
                  "--p12-password-file", env.p12_password_file)
    new = load_cert(env.clients / "nina2" / "nina.crt")
    assert new.serial_number != old.serial_number and spki(new) != spki(old)
    san = new.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["nina@example.com"]
    rows = {int(r["serial"], 16): r["status"] for r in env.query(
        "SELECT serial, status FROM certs WHERE user = 'nina'")}
    assert rows == {old.serial_number: "valid", new.serial_number: "valid"}
    assert format(old.serial_number, "X") in proc.stdout
    assert ca_log(env, command="renew", user="nina")


def test_renew_with_revoke_old_supersedes_and_rewrites_the_crl(env):
    env.ca("issue", "olga", "--email", "olga@example.com", "--out", env.clients / "olga1",
           "--p12-password-file", env.p12_password_file)
    old = load_cert(env.clients / "olga1" / "olga.crt")
    env.ca("renew", "olga", "--revoke-old", "--out", env.clients / "olga2",
           "--p12-password-file", env.p12_password_file)
    new = load_cert(env.clients / "olga2" / "olga.crt")
    rows = {int(r["serial"], 16): (r["status"], r["revoke_reason"]) for r in env.query(
        "SELECT serial, status, revoke_reason FROM certs WHERE user = 'olga'")}
    assert rows == {old.serial_number: ("revoked", "superseded"), new.serial_number: ("valid", None)}
    crl = x509.load_pem_x509_crl((env.dir / "ca" / "crl.pem").read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(old.serial_number)
    assert entry is not None
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.superseded
    assert crl.get_revoked_certificate_by_serial_number(new.serial_number) is None


def test_renew_with_a_csr(env):
    env.ca("issue", "paul", "--email", "paul@example.com", "--out", env.clients / "paul1",
           "--p12-password-file", env.p12_password_file)
    key = ec.generate_private_key(ec.SECP256R1())
    make_csr(env.dir / "paul.csr", key)
    env.ca("renew", "paul", "--csr", env.dir / "paul.csr", "--out", env.clients / "paul2")
    assert spki(load_cert(env.clients / "paul2" / "paul.crt")) == spki(key)


def test_renew_of_an_unknown_user_or_one_without_certificate(env):
    fails(env, "renew", "nosuchuser", "--out", env.clients, match=["no user nosuchuser"])
    env.admin("user", "add", "quinn", "--sender", "quinn@example.com")
    fails(env, "renew", "quinn", "--out", env.clients, match=["quinn", "no certificate"])


# ---- list ------------------------------------------------------------------------------------

def test_list_filters_and_json(env):
    env.ca("issue", "rosa", "--email", "rosa@example.com", "--out", env.clients, "--days", "5",
           "--p12-password-file", env.p12_password_file)
    rosa = load_cert(env.clients / "rosa.crt")
    data = json.loads(env.ca("list", "--json").stdout)
    assert isinstance(data, list) and len(data) >= 3
    for row in data:
        assert {"serial", "user", "subject", "not_after", "status", "revoke_reason"} <= set(row), row
    users = {r["user"] for r in data}
    assert {ALICE, "rosa"} <= users

    only = json.loads(env.ca("list", "--user", "rosa", "--json").stdout)
    assert [int(r["serial"], 16) for r in only] == [rosa.serial_number]
    assert only[0]["status"] == "valid" and only[0]["revoke_reason"] is None
    assert only[0]["subject"] == "CN=rosa"

    soon = json.loads(env.ca("list", "--expiring", "10", "--json").stdout)
    assert "rosa" in {r["user"] for r in soon}
    assert ALICE not in {r["user"] for r in soon}, "a 365-day certificate is not expiring in 10 days"

    text = env.ca("list", "--user", "rosa").stdout
    assert format(rosa.serial_number, "X") in text and "valid" in text
    assert json.loads(env.ca("list", "--user", "nobody-here", "--json").stdout) == []


# ---- revoke ------------------------------------------------------------------------------------

def test_revoke_by_name_never_hits_another_user(env):
    made = {}
    for user in ("sam", "samuel", "Sam", "sam.x"):
        # "Sam" shares sam's address on purpose: --shared says so.
        env.ca("issue", user, "--email", f"{user.lower()}@example.com", "--out", env.clients / user,
               "--p12-password-file", env.p12_password_file, "--shared")
        made[user] = load_cert(env.clients / user / f"{user}.crt").serial_number
    env.ca("issue", "sam", "--email", "sam@example.com", "--out", env.clients / "sam2",
           "--p12-password-file", env.p12_password_file, "--add")
    second = load_cert(env.clients / "sam2" / "sam.crt").serial_number

    proc = env.ca("revoke", "--user", "sam", "--reason", "affiliationChanged")
    status = {r["user"]: r["status"] for r in env.query(
        "SELECT user, status FROM certs WHERE user IN ('samuel', 'Sam', 'sam.x')")}
    assert status == {"samuel": "valid", "Sam": "valid", "sam.x": "valid"}, status
    sams = env.query("SELECT serial, status FROM certs WHERE user = 'sam'")
    assert {int(r["serial"], 16) for r in sams} == {made["sam"], second}
    assert all(r["status"] == "revoked" for r in sams)
    assert proc.stdout.count("revoked: ") == 2
    assert len(ca_log(env, command="revoke", user="sam")) == 2


def test_revoke_by_serial_with_reason_is_in_the_crl(env):
    env.ca("issue", "tina", "--email", "tina@example.com", "--out", env.clients,
           "--p12-password-file", env.p12_password_file)
    tina = load_cert(env.clients / "tina.crt")
    # A person may type the serial in lower case with colons.
    typed = ":".join(f"{b:02x}" for b in tina.serial_number.to_bytes(16, "big"))
    env.ca("revoke", typed, "--reason", "keyCompromise")
    crl_path = env.dir / "ca" / "crl.pem"
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert crl.is_signature_valid(load_cert(env.ca_cert_path).public_key())
    entry = crl.get_revoked_certificate_by_serial_number(tina.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.key_compromise
    text = openssl("crl", "-in", crl_path, "-noout", "-text").stdout
    assert format(tina.serial_number, "X") in text.replace(":", "")
    assert "Key Compromise" in text
    openssl("crl", "-in", crl_path, "-noout", "-CAfile", env.ca_cert_path)
    # Revoking again keeps the first reason and succeeds.
    env.ca("revoke", format(tina.serial_number, "X"), "--reason", "superseded")
    assert env.query("SELECT revoke_reason FROM certs WHERE user = 'tina'")[0]["revoke_reason"] == \
        "keyCompromise"


def test_revoke_unknown_serial_and_unknown_user(env):
    fails(env, "revoke", "0123456789ABCDEF", match=["no certificate with serial", "0123456789ABCDEF"])
    fails(env, "revoke", "--user", "nosuchuser", match=["no user nosuchuser"])
    env.admin("user", "add", "ulla", "--sender", "ulla@example.com")
    fails(env, "revoke", "--user", "ulla", match=["ulla", "no certificates"])
    fails(env, "revoke", "not-hex", status=2, match=["not a serial number"])
    fails(env, "revoke", "--reason", "because", "--user", "ulla", status=2, match=["unknown reason"])


def test_crl_next_update_is_configurable(env):
    proc = env.ca("crl", "--days", "3")
    crl = x509.load_pem_x509_crl((env.dir / "ca" / "crl.pem").read_bytes())
    hours = (crl.next_update - crl.last_update).total_seconds() / 3600
    assert hours == 72, hours
    assert fields(proc.stdout)["next_update"] == crl.next_update.strftime("%Y-%m-%dT%H:%M:%SZ")
    env.ca("crl")
    crl = x509.load_pem_x509_crl((env.dir / "ca" / "crl.pem").read_bytes())
    assert (crl.next_update - crl.last_update).days == 7


# ---- refusals ------------------------------------------------------------------------------------

def test_refuses_to_overwrite(env):
    alice = env.identities[ALICE]
    before = {p: p.read_bytes() for p in (alice.crt, alice.key, alice.p12)}
    # --add: a second certificate is wanted, but not over the first one's files.
    fails(env, "issue", ALICE, "--email", ALICE_ADDR, "--out", env.clients,
          "--p12-password-file", env.p12_password_file, "--add",
          match=["already exists", "refusing to overwrite", str(alice.crt)])
    assert {p: p.read_bytes() for p in before} == before
    key_before = (env.dir / "ca" / "ca.key").read_bytes()
    fails(env, "init", match=["already exists", "refusing to overwrite"])
    assert (env.dir / "ca" / "ca.key").read_bytes() == key_before


def test_missing_ca(private_env):
    e = private_env("ca-none")
    hint = ["no such file", "submit-ca init"]
    fails(e, "issue", "vera", "--email", "vera@example.com", "--out", e.clients, match=hint)
    fails(e, "server-cert", "localhost", match=hint)
    fails(e, "crl", match=hint)
    fails(e, "revoke", "--user", "vera", match=hint)
    assert not (e.clients / "vera.crt").exists()


def test_misuse_exits_2(env):
    fails(env, "issue", "wendy", status=2, match=["--email"])
    fails(env, "issue", "bad/name", "--email", "x@example.com", status=2, match=["invalid user name"])
    fails(env, "init", "--key", "dsa", status=2, match=["--key"])
    fails(env, "list", "--reason", "keyCompromise", status=2, match=["not an option of list"])
    fails(env, "frobnicate", status=2, match=["unknown command"])


# ---- the CA key ------------------------------------------------------------------------------------

def test_ca_files_and_modes(env):
    ca_dir = env.dir / "ca"
    # Others may pass through (submitd reads the CRL as its unprivileged user), not list.
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o711
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((ca_dir / "ca.crt").stat().st_mode) == 0o644
    assert stat.S_IMODE((ca_dir / "crl.pem").stat().st_mode) == 0o644
    ca = load_cert(env.ca_cert_path)
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"


def test_a_private_ca_dir_is_opened_for_crl_reloads(env):
    ca_dir = env.dir / "ca"
    os.chmod(ca_dir, 0o700)
    proc = env.ca("crl")
    assert stat.S_IMODE(ca_dir.stat().st_mode) == 0o711
    assert "ca_dir:" in proc.stdout


def test_rsa_ca(private_env):
    e = private_env("ca-rsa")
    e.ca("init", "--key", "rsa", "--cn", "RSA Mail CA")
    ca = load_cert(e.ca_cert_path)
    assert isinstance(ca.public_key(), rsa.RSAPublicKey) and ca.public_key().key_size == 3072
    ident = e.issue("xena", "xena@example.com")
    openssl("verify", "-CAfile", e.ca_cert_path, "-purpose", "sslclient", ident.crt)
    crl = x509.load_pem_x509_crl((e.dir / "ca" / "crl.pem").read_bytes())
    assert crl.is_signature_valid(ca.public_key())


def test_encrypted_ca_key(private_env):
    e = private_env("ca-pass")
    good = e.dir / "ca-pass"
    good.write_text(PASSPHRASE + "\n")
    bad = e.dir / "ca-wrong"
    bad.write_text("not the passphrase\n")
    short = e.dir / "ca-short"
    short.write_text("short\n")

    fails(e, "init", "--passphrase-file", short, match=["at least 8"])
    assert not (e.dir / "ca" / "ca.key").exists()
    e.ca("init", "--passphrase-file", good)
    pem = (e.dir / "ca" / "ca.key").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert "aes-256-cbc" in openssl("asn1parse", "-in", e.dir / "ca" / "ca.key").stdout
    key = serialization.load_pem_private_key(pem, PASSPHRASE.encode())
    assert spki(key) == spki(load_cert(e.ca_cert_path))
    with pytest.raises((TypeError, ValueError)):
        serialization.load_pem_private_key(pem, None)

    issue = ("issue", "yara", "--email", "yara@example.com", "--out", e.clients,
             "--p12-password-file", e.p12_password_file)
    fails(e, *issue, match=["encrypted", "--passphrase-file"])
    fails(e, *issue, "--passphrase-file", bad, match=["wrong passphrase", str(bad)])
    assert not (e.clients / "yara.crt").exists()
    e.ca(*issue, "--passphrase-file", good)
    openssl("verify", "-CAfile", e.ca_cert_path, "-purpose", "sslclient", e.clients / "yara.crt")
    for args in (("server-cert", "localhost"), ("crl",), ("revoke", "--user", "yara"),
                 ("renew", "yara", "--out", e.clients / "again",
                  "--p12-password-file", e.p12_password_file)):
        fails(e, *args, match=["--passphrase-file"])
        e.ca(*args, "--passphrase-file", good)
    assert ca_log(e, command="init")[0]["detail"].endswith("encrypted=yes")


# ---- the record of CA operations -------------------------------------------------------------

def test_every_operation_is_recorded(private_env):
    e = private_env("ca-log")
    e.init_pki()
    zoe = e.issue("zoe", "zoe@example.com")
    serial = format(zoe.cert().serial_number, "X")
    e.run("submit-ca", "revoke", serial, "--reason", "cessationOfOperation")
    e.ca("crl")
    rows = ca_log(e)
    assert [r["command"] for r in rows] == ["init", "server-cert", "issue", "revoke", "crl", "crl"], rows
    for r in rows:
        assert r["uid"] == os.getuid() and r["unix_user"] == "root", r
        assert r["ts"].endswith("Z") and r["ts"][:4].isdigit()
    issue = rows[2]
    assert issue["serial"] == serial and issue["user"] == "zoe"
    assert zoe.sha256 in issue["detail"] and "email=zoe@example.com" in issue["detail"]
    assert rows[3]["serial"] == serial and "reason=cessationOfOperation" in rows[3]["detail"]
    assert "host=localhost ip=127.0.0.1" in rows[1]["detail"]
    assert "entries=1" in rows[4]["detail"]


def test_sudo_user_is_recorded(private_env):
    e = private_env("ca-sudo")
    e.init_pki()
    env = dict(os.environ, SUDO_USER="admin7")
    subprocess.run([str(binary("submit-ca")), "-c", str(e.conf), "crl"], check=True,
                   capture_output=True, env=env, cwd=e.dir)
    assert ca_log(e)[-1]["sudo_user"] == "admin7"
    assert ca_log(e)[0]["sudo_user"] is None


def test_ca_log_is_append_only(env):
    con = sqlite3.connect(str(env.db_path))
    try:
        for sql in ("UPDATE ca_log SET command = 'x'", "DELETE FROM ca_log"):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                con.execute(sql)
    finally:
        con.close()
    assert ca_log(env)


def test_log_command_text_and_json(env):
    data = json.loads(env.ca("log", "--json").stdout)
    assert data and {"id", "ts", "uid", "unix_user", "sudo_user", "command", "serial", "user",
                     "detail"} <= set(data[0])
    assert data[0]["command"] == "init"
    alice = json.loads(env.ca("log", "--user", ALICE, "--json").stdout)
    assert [r["command"] for r in alice] == ["issue"]
    serial = format(env.identities[ALICE].cert().serial_number, "x")
    by_serial = json.loads(env.ca("log", "--serial", serial, "--json").stdout)
    assert [r["user"] for r in by_serial] == [ALICE]
    text = env.ca("log", "--user", ALICE).stdout.splitlines()
    assert text[0].split()[:3] == ["TIME", "RUN_BY", "COMMAND"]
    assert "issue" in text[1] and ALICE in text[1]


def test_json_output_is_valid_utf8_whatever_the_logged_bytes(env):
    """A logged value that is not UTF-8 (here the name of a --csr file, which the admin
    log records as given) is printed by log --json of both tools as U+FFFD escapes, so
    the output is valid UTF-8 and valid JSON (it used to pass the bytes through)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr_path = env.dir / "csr-latin1"
    make_csr(csr_path, key)
    odd = os.path.join(os.fsencode(env.dir), b"caf\xe9-\x1b.csr")
    os.rename(csr_path, odd)
    ca = binary("submit-ca")
    subprocess.run([str(ca), "-c", str(env.conf), "issue", "utf8test", "--email",
                    "utf8test@example.com", "--out", str(env.clients), "--csr", odd],
                   check=True, capture_output=True, cwd=env.dir)
    for prog, args, field in (("submit-ca", ["log", "--user", "utf8test", "--json"], "detail"),
                              ("submit-admin", ["log", "--user", "utf8test", "--json"],
                               "details")):
        out = subprocess.run([str(binary(prog)), "-c", str(env.conf), *args], check=True,
                             capture_output=True, cwd=env.dir).stdout
        assert b"\xe9" not in out and b"\x1b" not in out
        text = out.decode("utf-8")          # strict: fails on any invalid byte
        assert "\\ufffd" in text and "\\u001b" in text
        rows = json.loads(text)
        assert rows and "caf\ufffd-\x1b.csr" in rows[0][field]
