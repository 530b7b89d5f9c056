"""A partner CA in client_ca whose CRL is not in the `crl` file (DESIGN §3.4, §8): its
certificates get 454 with the issuer named in the audit reason and in the log, while
our own CA's users are served; once the partner's CRL is added to the file, the mapped
partner certificate is accepted without a restart."""

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from conftest import (ALICE, ALICE_ADDR, Identity, assert_served, build_stack, contains,
                      mail_reply, make_ca, make_leaf, poll, write_cert_and_key)
from test_ca_daemon import wait_for_log

PARTNER_CA = "Partner Crl CA"
TEMPFAIL = "454 4.7.0 Temporary authentication failure"


@pytest.fixture(scope="module")
def partner(request):
    s = build_stack("partner-crl", start_daemon=False, crl="ca/crl.pem")
    ca, ca_key = make_ca(PARTNER_CA)
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Partner"),
                         x509.NameAttribute(NameOID.COMMON_NAME, "ext-pat")])
    crt, key = write_cert_and_key(s.env.dir / "partner", "pat", *make_leaf(ca, ca_key, subject))
    pat = Identity("pat", crt, key, email=ALICE_ADDR)
    s.env.admin("map", "add", "--subject", subject.rfc4514_string(),
                "--issuer", ca.subject.rfc4514_string(), ALICE)
    bundle = s.env.dir / "client-cas.pem"
    bundle.write_bytes(s.env.ca_cert_path.read_bytes() + ca.public_bytes(serialization.Encoding.PEM))
    s.env.settings["client_ca"] = "client-cas.pem"
    s.env.write_config()
    s.daemon.start()
    yield s, pat, ca, ca_key
    s.close(keep=request.session.testsfailed > 0)


def partner_crl_pem(ca, ca_key):
    now = datetime.datetime.utcnow().replace(microsecond=0) - datetime.timedelta(minutes=1)
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(ca.subject)
           .last_update(now)
           .next_update(now + datetime.timedelta(days=7))
           .add_extension(x509.CRLNumber(1), critical=False)
           .sign(ca_key, hashes.SHA256()))
    return crl.public_bytes(serialization.Encoding.PEM)


def test_partner_without_crl_gets_454_naming_the_issuer_while_our_users_are_served(partner):
    s, pat, ca, ca_key = partner
    mark = s.audit.mark()
    offset = s.daemon.log_size()
    assert mail_reply(s, pat, ALICE_ADDR) == TEMPFAIL
    row = s.audit.wait(lambda r: r["decision"] == "tempfail", mark, what="partner tempfail row")
    assert contains(row["reason"], f"CN={PARTNER_CA}"), row
    assert contains(row["reason"], "crl"), row
    lines = wait_for_log(s, r"CRL PROBLEM .*CN=" + PARTNER_CA, offset)
    assert "crl.pem" in lines[0], lines
    # Our own CA has its CRL: alice is served all along.
    assert_served(s.env, s.alice)
    # submitd -t warns about that CA, and only about it; a warning is not a failure.
    proc = s.env.run("submitd", "-t", check=False)
    warned = [l for l in proc.stderr.splitlines() if "has no CRL in crl" in l]
    assert len(warned) == 1 and f"CN={PARTNER_CA}" in warned[0], proc.stderr


def test_partner_accepted_once_its_crl_is_in_the_file(partner):
    s, pat, ca, ca_key = partner
    crl_path = s.env.dir / "ca" / "crl.pem"
    offset = s.daemon.log_size()
    tmp = crl_path.with_name("crl.pem.tmp")
    tmp.write_bytes(crl_path.read_bytes() + partner_crl_pem(ca, ca_key))
    tmp.chmod(0o644)
    tmp.replace(crl_path)
    wait_for_log(s, r"crl .*crl\.pem reloaded: 2 CRLs", offset)
    reply = poll(lambda: (lambda r: r if r.startswith("250") else None)(
        mail_reply(s, pat, ALICE_ADDR)), 10, 0.3)
    assert reply, mail_reply(s, pat, ALICE_ADDR)
    assert_served(s.env, s.alice)
    proc = s.env.run("submitd", "-t", check=False)
    assert "has no CRL" not in proc.stderr, proc.stderr
