"""Revocation with CRL checking on (crl = ca/crl.pem, the default): the empty CRL from
init lets valid certificates through, revoke rejects at once, and a changed CRL file is
picked up without a restart (DESIGN §3.4, §5, §6; notes/pki-facts.md)."""

import datetime
import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from conftest import (assert_served, build_stack, mail_reply, poll)

REJECTED = "535 5.7.8 Client certificate rejected: "


@pytest.fixture(scope="module")
def crl_stack(request):
    failed_before = request.session.testsfailed
    s = build_stack("crl", crl="ca/crl.pem")
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def test_valid_certificate_passes_crl_check(crl_stack):
    assert mail_reply(crl_stack, crl_stack.alice, crl_stack.alice.email).startswith("250")


def test_revoke_rejects_new_sessions(crl_stack):
    carol = crl_stack.env.issue("carol", "carol@example.com")
    assert mail_reply(crl_stack, carol, carol.email).startswith("250")
    crl_stack.env.ca("revoke", "--user", "carol", "--reason", "superseded")
    reply = mail_reply(crl_stack, carol, carol.email)
    assert reply.startswith(REJECTED) and "revoked" in reply.lower(), reply
    assert_served(crl_stack.env, crl_stack.alice)


def test_changed_crl_file_is_reloaded(crl_stack):
    """A certificate that the database still calls valid but a new CRL lists is
    rejected: the rejection can only come from the reloaded CRL."""
    env = crl_stack.env
    dave = env.issue("dave", "dave@example.com")
    assert mail_reply(crl_stack, dave, dave.email).startswith("250")

    ca_cert, ca_key = env.ca_cert_and_key()
    crl_path = env.dir / "ca" / "crl.pem"
    old = x509.load_pem_x509_crl(crl_path.read_bytes())
    try:
        number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        number = 0
    now = datetime.datetime.utcnow().replace(microsecond=0) - datetime.timedelta(seconds=1)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(max(now, old.last_update + datetime.timedelta(seconds=1)))
               .next_update(now + datetime.timedelta(days=7))
               .add_extension(x509.CRLNumber(number + 1000), critical=False))
    for entry in old:
        builder = builder.add_revoked_certificate(entry)
    builder = builder.add_revoked_certificate(
        x509.RevokedCertificateBuilder().serial_number(dave.cert().serial_number)
        .revocation_date(now).build())
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    except x509.ExtensionNotFound:
        pass
    crl = builder.sign(ca_key, hashes.SHA256())
    tmp = crl_path.with_name("crl.pem.new")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    os.chmod(tmp, crl_path.stat().st_mode & 0o777)
    os.replace(tmp, crl_path)

    assert env.query("SELECT status FROM certs WHERE sha256 = ?", (dave.sha256,))[0]["status"] == "valid"
    reply = poll(lambda: (lambda r: r if r.startswith("535") else None)(mail_reply(crl_stack, dave, dave.email)), 10, 0.5)
    assert reply, f"dave still accepted 10 s after the CRL listing him was written: {mail_reply(crl_stack, dave, dave.email)}"
    assert reply.startswith(REJECTED) and "revoked" in reply.lower(), reply
    assert_served(env, crl_stack.alice)
