"""An older CRL copied over a newer one is refused (DESIGN §3.4): the CRL in use for an
issuer is replaced only by one with a higher crlNumber (or, without numbers, a later
lastUpdate). The refusal is logged naming the file, the issuer and both versions, and
a certificate revoked only in the newer CRL stays refused."""

import datetime
import shutil
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from conftest import assert_served, build_stack, mail_reply, poll
from test_ca_daemon import REJECTED_REVOKED, ca_in_second_database, serial_hex, wait_for_log


@pytest.fixture(scope="module")
def stack(request):
    failed_before = request.session.testsfailed
    s = build_stack("crl-rollback", crl="ca/crl.pem")
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def crl_number(path):
    crl = x509.load_pem_x509_crl(path.read_bytes())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def refused_soon(stack, identity):
    return poll(lambda: (lambda r: r if r.startswith("535") else None)(
        mail_reply(stack, identity, identity.email)), 10, 0.3)


def test_older_numbered_crl_is_refused_and_the_newer_stays_in_use(stack):
    env = stack.env
    crl_path = env.dir / "ca" / "crl.pem"
    rex = env.issue("rex", "rex@example.com")
    assert mail_reply(stack, rex, rex.email).startswith("250")

    # CRL n, without rex; kept aside.
    offset = stack.daemon.log_size()
    env.ca("crl")
    wait_for_log(stack, r"crl .*crl\.pem reloaded", offset)
    older = env.dir / "crl-older.pem"
    shutil.copy2(crl_path, older)
    n = crl_number(older)

    # A newer CRL revokes rex, through a second database: the daemon learns it from the
    # CRL only.
    other = ca_in_second_database(stack, "rollback-ca")
    env.run("submit-ca", "revoke", serial_hex(rex), "--reason", "keyCompromise", conf=other)
    # submit-ca numbers CRLs by the time of issue (one more when in the same second).
    newer = crl_number(crl_path)
    assert newer > n, (newer, n)
    assert refused_soon(stack, rex) == REJECTED_REVOKED

    # The older file copied back over the newer one.
    offset = stack.daemon.log_size()
    shutil.copy(older, crl_path)
    lines = wait_for_log(stack, r"crl .*crl\.pem: the CRL of .* older than .* refused", offset)
    line = lines[0]
    assert str(crl_path) in line, line
    assert f"crlNumber {n}," in line and f"crlNumber {newer} in use" in line, line
    assert "CN=" in line, f"issuer not named: {line}"
    assert "newer CRL stays in use" in line, line
    wait_for_log(stack, r"crl .*crl\.pem reloaded: .*newer CRL kept", offset)

    assert mail_reply(stack, rex, rex.email) == REJECTED_REVOKED
    assert_served(env, stack.alice)

    # A newer CRL after the refused one is taken as usual (n+2 still lists rex).
    offset = stack.daemon.log_size()
    env.ca("crl", conf=other)
    lines = wait_for_log(stack, r"crl .*crl\.pem reloaded", offset)
    assert "kept" not in lines[-1], lines
    assert "older than" not in stack.daemon.tail(offset=offset)
    assert mail_reply(stack, rex, rex.email) == REJECTED_REVOKED


def _write_unnumbered_crl(stack, last_update, revoked=()):
    env = stack.env
    ca_cert, ca_key = env.ca_cert_and_key()
    crl_path = env.dir / "ca" / "crl.pem"
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(last_update)
               .next_update(last_update + datetime.timedelta(days=30)))
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(last_update).build())
    tmp = crl_path.with_name("crl.pem.tmp")
    tmp.write_bytes(builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    tmp.chmod(0o644)
    tmp.replace(crl_path)


def test_without_crl_numbers_the_older_last_update_is_refused(fresh_stack_factory):
    s = fresh_stack_factory("crl-rollback-dates", crl="ca/crl.pem")
    sam = s.env.issue("sam", "sam@example.com")
    # Later than the CRL "submit-ca init" wrote (compared by date: this one has no
    # number), and not in the future.
    time.sleep(1.1)
    now = datetime.datetime.utcnow().replace(microsecond=0)

    offset = s.daemon.log_size()
    _write_unnumbered_crl(s, now, revoked=[sam.cert().serial_number])
    wait_for_log(s, r"crl .*crl\.pem reloaded", offset)
    assert refused_soon(s, sam) == REJECTED_REVOKED

    offset = s.daemon.log_size()
    _write_unnumbered_crl(s, now - datetime.timedelta(hours=1))
    line = wait_for_log(s, r"crl .*crl\.pem: the CRL of .* older than", offset)[0]
    assert "lastUpdate" in line and "crlNumber" not in line, line
    assert mail_reply(s, sam, sam.email) == REJECTED_REVOKED
    assert_served(s.env, s.alice)
