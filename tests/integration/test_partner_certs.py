"""Certificates of a trusted partner CA that must still be refused (DESIGN §3.4):
no extendedKeyUsage at all, a NUL byte in the CN, an RSA-1024 key. The authz
process verifies every chain itself, so a resumed TLS session (1.2 and 1.3) is
judged exactly like a full handshake, and the session of a refused certificate is not
kept for resumption; a good partner certificate is the control."""

import datetime
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import (ALICE, ALICE_ADDR, Audit, Identity, assert_served, build_stack, make_ca,
                      make_leaf, write_cert_and_key)

REJECTED = "535 5.7.8 Client certificate rejected: "


def partner_name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Partner"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def rsa_leaf(ca, ca_key, subject, bits):
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


@pytest.fixture(scope="module")
def partner(request):
    s = build_stack("partner-certs", start_daemon=False, smtp_workers=1)
    ca, ca_key = make_ca("Partner Organisation CA")
    out = s.env.dir / "partner"
    idents = {}

    def add(name, cert, key, cn):
        idents[name] = Identity(name, *write_cert_and_key(out, name, cert, key), email=ALICE_ADDR)
        s.env.admin("map", "add", "--subject", partner_name(cn).rfc4514_string(),
                    "--issuer", ca.subject.rfc4514_string(), ALICE)

    add("good", *make_leaf(ca, ca_key, partner_name("good")), "good")
    add("noeku", *make_leaf(ca, ca_key, partner_name("noeku"), eku=()), "noeku")
    # A NUL in the CN: with names cut at the NUL it would match the map of "erin".
    add("nul", *make_leaf(ca, ca_key, partner_name("erin\x00-not-erin")), "erin")
    add("rsa1024", *rsa_leaf(ca, ca_key, partner_name("rsa1024"), 1024), "rsa1024")
    bundle = s.env.dir / "client-cas.pem"
    bundle.write_bytes(s.env.ca_cert_path.read_bytes() + ca.public_bytes(serialization.Encoding.PEM))
    s.env.settings["client_ca"] = "client-cas.pem"
    s.env.settings["crl"] = ""
    s.env.write_config()
    s.daemon.start()
    yield s, idents
    s.close(keep=request.session.testsfailed > 0)


def context(env, identity, version):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(env.ca_cert_path))
    ctx.minimum_version = version
    ctx.maximum_version = version
    # The client side must be willing to present a weak key: the server is under test.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.load_cert_chain(str(identity.crt), str(identity.key))
    return ctx


def mail_from(env, ctx, session=None):
    """STARTTLS, EHLO, MAIL FROM; returns (reply, the TLS session, reused?)."""
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=15)
    f = sock.makefile("rb")

    def reply(fh):
        while True:
            line = fh.readline().decode()
            assert line, "connection closed"
            if line[3:4] != "-":
                return line.rstrip("\r\n")

    assert reply(f).startswith("220")
    sock.sendall(b"EHLO client.test\r\n")
    reply(f)
    sock.sendall(b"STARTTLS\r\n")
    assert reply(f).startswith("220")
    tls = ctx.wrap_socket(sock, session=session)
    tf = tls.makefile("rb")
    tls.sendall(b"EHLO client.test\r\n")
    reply(tf)
    tls.sendall(f"MAIL FROM:<{ALICE_ADDR}>\r\n".encode())
    got = reply(tf)
    tls.sendall(b"QUIT\r\n")
    reply(tf)
    result = (got, tls.session, tls.session_reused)
    tls.close()
    return result


VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]
CASES = [("noeku", "wrong purpose"), ("nul", "control character in a name"),
         ("rsa1024", "weak key or signature")]


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_good_partner_certificate_full_and_resumed(partner, version):
    s, idents = partner
    ctx = context(s.env, idents["good"], version)
    got, session, _ = mail_from(s.env, ctx)
    assert got.startswith("250"), got
    got, _, reused = mail_from(s.env, ctx, session)
    assert reused, "the session was not resumed: the resumed cases below would prove nothing"
    assert got.startswith("250"), got


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
@pytest.mark.parametrize("name,reason", CASES, ids=[c[0] for c in CASES])
def test_refused_partner_certificate_full_and_resumed(partner, version, name, reason):
    s, idents = partner
    audit = Audit(s.env)
    ctx = context(s.env, idents[name], version)
    mark = audit.mark()
    got, session, _ = mail_from(s.env, ctx)
    assert got == REJECTED + reason, got
    row = audit.wait(lambda r: r["event"] == "identity", mark)
    assert row["decision"] == "reject" and row["user"] is None, row
    # A refused session is dropped from the server's resumption cache: the attempt to
    # resume it makes a full handshake, and is refused the same.
    got, _, reused = mail_from(s.env, ctx, session)
    assert not reused, "the session of a refused certificate was resumed"
    assert got == REJECTED + reason, f"second session: {got}"
    assert_served(s.env, s.alice)


def test_oversized_certificate_chain_is_refused_in_the_handshake(partner):
    """Whatever a client sends as its certificate is held in memory before authz can
    judge it: a Certificate message over 32 KiB ends the handshake, and the next
    honest client is served."""
    s, idents = partner
    ca, ca_key = make_ca("Partner Organisation CA")
    names = [f"host-{i:05d}.padding.example" for i in range(1500)]   # about 45 KiB
    cert, key = make_leaf(ca, ca_key, partner_name("huge"), dns=names)
    assert len(cert.public_bytes(serialization.Encoding.DER)) > 40 * 1024
    huge = Identity("huge", *write_cert_and_key(s.env.dir / "partner", "huge", cert, key),
                    email=ALICE_ADDR)
    ctx = context(s.env, huge, ssl.TLSVersion.TLSv1_3)
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        mail_from(s.env, ctx)
    assert_served(s.env, idents["good"])
