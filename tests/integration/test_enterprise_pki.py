"""Certificates of an enterprise CA mapped to users by rule (issue 14).

An independent two-tier CA (enterprise_ca.py, python3-cryptography, not submit-ca)
issues device certificates the way an MDM enrolls them over SCEP. Its chain is in
client_ca next to submitd's own CA, its CRL in the crl file next to ours. Each test
sets the one rule of the issuing CA it needs (`map rule del` + `map rule add`), since a
rule is read at every session.
"""

import json

import pytest

from conftest import (ALICE, ALICE_ADDR, Identity, build_stack, make_leaf, mail_reply, poll,
                      write_cert_and_key)
from cryptography import x509
from cryptography.x509.oid import NameOID
from enterprise_ca import EnterpriseCA, concat_pem

USER = "bob"
DOMAIN = "corp.example"
ADDR = f"{USER}@{DOMAIN}"
NOT_AUTHORIZED = "535 5.7.8 Not authorized: "
OK_SENDER = "250 2.1.0 Ok"


@pytest.fixture(scope="module")
def pki(request):
    s = build_stack("enterprise-pki", start_daemon=False, crl="crls.pem")
    corp = EnterpriseCA(s.env.dir / "corp")
    devices = corp.standard_devices(user=USER, domain=DOMAIN)
    devices["upn-other-domain"] = corp.issue(f"{USER}-upn-other", upn=[f"{USER}@other.example"])
    devices["upn-spare"] = corp.issue(f"{USER}-upn-spare", upn=[ADDR])
    devices["upn-revoked"] = corp.issue(f"{USER}-upn-revoked", upn=[ADDR])
    concat_pem(s.env.dir / "client-cas.pem", s.env.ca_cert_path, corp.chain)
    write_crls(s, corp)
    s.env.settings["client_ca"] = "client-cas.pem"
    s.env.write_config()
    s.env.admin("user", "add", USER, "--sender", ADDR)
    s.daemon.start()
    yield s, corp, devices
    s.close(keep=request.session.testsfailed > 0)


def write_crls(s, corp):
    """The crl file: our CA's CRL and the enterprise CA's, replaced atomically."""
    tmp = s.env.dir / "crls.pem.tmp"
    concat_pem(tmp, s.env.dir / "ca" / "crl.pem", corp.crl)
    tmp.chmod(0o644)
    tmp.replace(s.env.dir / "crls.pem")


def ident(dev, email=ADDR):
    return Identity(dev.name, dev.crt, dev.key, email=email)


def set_rule(s, corp, field, *opts):
    s.env.admin("map", "rule", "del", "--issuer", corp.issuer_dn, check=False)
    s.env.admin("map", "rule", "add", "--issuer", corp.issuer_dn, "--field", field, *opts)


def identity_row(s, mark):
    return s.audit.wait(lambda r: r["event"] == "identity", mark, what="identity row")


def session(s, dev, sender=ADDR):
    """MAIL FROM with dev's certificate: the reply and the identity audit row."""
    mark = s.audit.mark()
    reply = mail_reply(s, ident(dev), sender)
    return reply, identity_row(s, mark)


def rule_text(corp, field, value):
    return f"rule {field} of {corp.issuer_dn}: {value}"


def assert_mapped(s, corp, dev, field, value, user=USER, sender=ADDR):
    reply, row = session(s, dev, sender)
    assert reply.startswith("250"), (reply, row)
    assert row["decision"] == "accept" and row["user"] == user, row
    assert row["reason"] == "certificate mapped by " + rule_text(corp, field, value), row
    assert row["cert_sha256"] == dev.sha256, row


def assert_refused(s, dev, reason, audit_reason=None):
    reply, row = session(s, dev)
    assert reply == NOT_AUTHORIZED + reason, (reply, row)
    assert row["decision"] == "reject", row
    assert row["reason"].startswith(audit_reason or reason), row
    return row


# ---- one rule per field ------------------------------------------------------------

def test_upn_rule_strips_the_domain(pki):
    s, corp, d = pki
    set_rule(s, corp, "upn", "--strip-domain", DOMAIN, "--require-domain", DOMAIN)
    assert_mapped(s, corp, d["upn"], "upn", ADDR)
    row = assert_refused(s, d["none"], "certificate upn missing")
    assert row["reason"].endswith(f"({rule_text(corp, 'upn', '-')})"), row
    assert_refused(s, d["upn-twice"], "certificate upn appears more than once")
    assert_refused(s, d["upn-nul"], "certificate upn has a control character")
    assert_refused(s, d["upn-other-domain"], "certificate upn outside the required domain")
    # A certificate from the same CA with another field is not read by this rule.
    assert_refused(s, d["san-email"], "certificate upn missing")


def test_upn_rule_without_strip_needs_a_user_of_that_name(pki):
    s, corp, d = pki
    set_rule(s, corp, "upn")
    reply, row = session(s, d["upn"])
    assert reply == NOT_AUTHORIZED + "unknown user", (reply, row)
    assert row["reason"] == f"{ADDR} is not a user name ({rule_text(corp, 'upn', ADDR)})", row


def test_san_email_rule_maps_to_the_owner_of_the_address(pki):
    s, corp, d = pki
    set_rule(s, corp, "san-email")
    assert_mapped(s, corp, d["san-email"], "san-email", ADDR)
    assert_refused(s, d["san-email-twice"], "certificate san-email appears more than once")
    assert_refused(s, d["upn"], "certificate san-email missing")
    # A NUL inside the address is refused at verification already.
    reply, row = session(s, d["san-email-nul"])
    assert reply == "535 5.7.8 Client certificate rejected: control character in a name", reply
    # An address that two users own names nobody.
    s.env.admin("user", "add", "carol")
    s.env.admin("sender", "add", "carol", ADDR, "--shared")
    try:
        assert_refused(s, d["san-email"], "address owned by several users",
                             f"{ADDR} is owned by several users")
    finally:
        s.env.admin("user", "del", "carol")
    assert_mapped(s, corp, d["san-email"], "san-email", ADDR)
    # Nobody owns it.
    s.env.admin("sender", "del", USER, ADDR)
    try:
        assert_refused(s, d["san-email"], "unknown user", f"no user owns {ADDR}")
    finally:
        s.env.admin("sender", "add", USER, ADDR)


def test_subject_email_rule(pki):
    s, corp, d = pki
    set_rule(s, corp, "email", "--strip-domain", DOMAIN)
    assert_mapped(s, corp, d["email"], "email", ADDR)
    assert_refused(s, d["email-twice"], "certificate email appears more than once")
    assert_refused(s, d["san-email"], "certificate email missing")


def test_cn_rule(pki):
    s, corp, d = pki
    set_rule(s, corp, "cn")
    assert_mapped(s, corp, d["cn"], "cn", USER)
    assert_refused(s, d["cn-twice"], "certificate cn appears more than once")
    assert_refused(s, d["upn-twice"], "certificate cn missing")
    # --require-domain: a CN without a domain is refused.
    set_rule(s, corp, "cn", "--require-domain", DOMAIN)
    assert_refused(s, d["cn"], "certificate cn outside the required domain")


def test_no_rule_is_an_unknown_certificate(pki):
    s, corp, d = pki
    s.env.admin("map", "rule", "del", "--issuer", corp.issuer_dn, check=False)
    reply, row = session(s, d["upn"])
    assert reply == NOT_AUTHORIZED + "unknown certificate", reply


# ---- the user ------------------------------------------------------------------------

def test_disabled_user_refused(pki):
    s, corp, d = pki
    set_rule(s, corp, "upn", "--strip-domain", DOMAIN)
    s.env.admin("user", "disable", USER)
    try:
        reply, row = session(s, d["upn"])
        assert reply == NOT_AUTHORIZED + "user disabled", reply
        assert row["reason"] == f"user {USER} disabled ({rule_text(corp, 'upn', ADDR)})", row
    finally:
        s.env.admin("user", "enable", USER)
    assert_mapped(s, corp, d["upn"], "upn", ADDR)


def test_sender_is_checked_for_the_mapped_user(pki):
    s, corp, d = pki
    set_rule(s, corp, "upn", "--strip-domain", DOMAIN)
    reply = mail_reply(s, ident(d["upn"]), ALICE_ADDR)
    assert reply == f"553 5.7.1 Sender address not owned by user {USER}", reply


def test_exact_map_wins_over_the_rule(pki):
    s, corp, d = pki
    set_rule(s, corp, "upn", "--strip-domain", DOMAIN)
    dev = d["upn-spare"]
    subject = dev.cert.subject.rfc4514_string()
    s.env.admin("map", "add", "--subject", subject, "--issuer", corp.issuer_dn, ALICE)
    try:
        reply, row = session(s, dev, ALICE_ADDR)
        assert reply.startswith("250"), (reply, row)
        assert row["user"] == ALICE and row["reason"] == "certificate mapped by subject", row
    finally:
        s.env.admin("map", "del", "--subject", subject, "--issuer", corp.issuer_dn)


# ---- our own CA ----------------------------------------------------------------------

def test_rule_never_applies_to_our_own_ca(pki):
    s, corp, d = pki
    ca_dn = s.env.ca_cert_and_key()[0].subject.rfc4514_string()
    proc = s.env.admin("map", "rule", "add", "--issuer", ca_dn, "--field", "cn", check=False)
    assert proc.returncode == 1 and "own CA" in proc.stderr, proc.stderr
    # Even a rule written for our CA's name (here through a configuration whose ca_dir
    # does not hold our CA) maps none of its certificates.
    other = s.env.dir / "other.conf"
    other.write_text(s.env.conf.read_text().replace("ca_dir = ca", "ca_dir = corp"))
    s.env.run("submit-admin", "map", "rule", "add", "--issuer", ca_dn, "--field", "cn",
              conf=other)
    try:
        ca, ca_key = s.env.ca_cert_and_key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, USER)])
        crt, key = write_cert_and_key(s.env.dir / "own", "stray",
                                      *make_leaf(ca, ca_key, subject, emails=[ADDR]))
        mark = s.audit.mark()
        reply = mail_reply(s, Identity("stray", crt, key, email=ADDR), ADDR)
        row = identity_row(s, mark)
        assert reply == NOT_AUTHORIZED + "unknown certificate", (reply, row)
        # Certificates that submit-ca issued keep working.
        assert mail_reply(s, s.alice, ALICE_ADDR) == OK_SENDER
    finally:
        s.env.admin("map", "rule", "del", "--issuer", ca_dn)


# ---- blocks and the CRL --------------------------------------------------------------

def test_block_takes_effect_on_the_next_session(pki):
    s, corp, d = pki
    set_rule(s, corp, "upn", "--strip-domain", DOMAIN)
    dev = d["upn"]
    assert_mapped(s, corp, dev, "upn", ADDR)
    s.env.admin("cert", "block", dev.sha256, "--reason", "lost phone")
    reply, row = session(s, dev)
    assert reply == "535 5.7.8 Client certificate rejected: blocked", (reply, row)
    assert row["reason"].startswith("certificate blocked by ") and \
        row["reason"].endswith(": lost phone"), row
    # The user's other device keeps working.
    assert_mapped(s, corp, d["upn-spare"], "upn", ADDR)
    listed = json.loads(s.env.admin("cert", "list", "--json").stdout)
    assert [b["sha256"] for b in listed] == [dev.sha256], listed
    assert listed[0]["reason"] == "lost phone", listed
    ca_listed = s.env.ca("list", "--blocked").stdout
    assert dev.sha256 in ca_listed, ca_listed
    log = s.env.admin("log", "--json").stdout
    assert "cert block" in log and dev.sha256 in log, log
    s.env.admin("cert", "unblock", dev.sha256)
    assert_mapped(s, corp, dev, "upn", ADDR)
    # By issuer and serial, as an enterprise CA's console shows them.
    s.env.admin("cert", "block", "--issuer", corp.issuer_dn, "--serial", dev.serial.lower())
    reply, row = session(s, dev)
    assert reply == "535 5.7.8 Client certificate rejected: blocked", (reply, row)
    s.env.admin("cert", "unblock", "--issuer", corp.issuer_dn, "--serial", dev.serial)
    assert_mapped(s, corp, dev, "upn", ADDR)


def test_enterprise_crl_revokes_one_device(pki):
    s, corp, d = pki
    set_rule(s, corp, "upn", "--strip-domain", DOMAIN)
    dev = d["upn-revoked"]
    assert_mapped(s, corp, dev, "upn", ADDR)
    corp.revoke(dev)
    write_crls(s, corp)
    revoked = "535 5.7.8 Client certificate rejected: revoked"
    reply = poll(lambda: (lambda r: r if r == revoked else None)(
        mail_reply(s, ident(dev), ADDR)), 10, 0.3)
    assert reply == revoked, mail_reply(s, ident(dev), ADDR)
    assert_mapped(s, corp, d["upn-spare"], "upn", ADDR)


# ---- what admins see -----------------------------------------------------------------

def test_rule_list_and_devices_in_user_show(pki):
    s, corp, d = pki
    set_rule(s, corp, "upn", "--strip-domain", DOMAIN, "--require-domain", DOMAIN)
    rules = json.loads(s.env.admin("map", "rule", "list", "--json").stdout)
    assert rules == [{"issuer": corp.issuer_dn, "field": "upn", "strip_domain": DOMAIN,
                      "require_domain": DOMAIN, "created_at": rules[0]["created_at"]}], rules
    proc = s.env.admin("map", "rule", "add", "--issuer", corp.issuer_dn, "--field", "cn",
                       check=False)
    assert proc.returncode == 1 and "has a rule already" in proc.stderr, proc.stderr
    proc = s.env.admin("map", "rule", "add", "--issuer", "CN=X", "--field", "dns", check=False)
    assert proc.returncode == 2, proc.stderr
    assert_mapped(s, corp, d["upn-spare"], "upn", ADDR)
    shown = s.env.admin("user", "show", USER).stdout
    assert d["upn-spare"].serial in shown and corp.issuer_dn in shown, shown
    shown = json.loads(s.env.admin("user", "show", USER, "--json").stdout)
    serials = [dev["serial"] for dev in shown["devices"]]
    assert d["upn-spare"].serial in serials, shown
    log = s.env.admin("log", "--json").stdout
    assert "map rule add" in log and "map rule del" in log, log


# ---- submit-ca and a shared crl bundle -------------------------------------------------

def crl_issuers(path):
    """The issuer of every CRL in a PEM bundle, in order."""
    text = path.read_text()
    blocks = text.split("-----END X509 CRL-----")[:-1]
    return [x509.load_pem_x509_crl((b + "-----END X509 CRL-----\n").strip().encode()
                                   ).issuer.rfc4514_string() for b in blocks]


def test_submit_ca_replaces_only_its_own_crl_in_the_bundle(pki):
    s, corp, d = pki
    set_rule(s, corp, "upn", "--strip-domain", DOMAIN)
    bundle = s.env.dir / "crls.pem"
    ours = x509.load_pem_x509_crl((s.env.dir / "ca" / "crl.pem").read_bytes())
    theirs = x509.load_pem_x509_crl(corp.crl.read_bytes()).issuer.rfc4514_string()
    assert theirs in crl_issuers(bundle)

    proc = s.env.ca("crl")
    assert "crl_kept: 1 CRL of other CAs in" in proc.stdout, proc.stdout
    issuers = crl_issuers(bundle)
    assert issuers == [ours.issuer.rfc4514_string(), theirs], issuers
    first = x509.load_pem_x509_crl(bundle.read_bytes())
    number = first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > ours.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    # The daemon reloads the bundle; the enterprise CA's devices are still served.
    assert_mapped(s, corp, d["upn-spare"], "upn", ADDR)

    # A bundle that is not all CRLs is left alone, with a message saying why.
    saved = bundle.read_bytes()
    tmp = s.env.dir / "crls.pem.tmp"
    tmp.write_bytes(saved + b"-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n")
    tmp.chmod(0o644)
    tmp.replace(bundle)
    broken = bundle.read_bytes()
    try:
        proc = s.env.ca("crl", check=False)
        assert proc.returncode == 1, (proc.returncode, proc.stderr)
        assert f"crl {bundle}: holds something that is not a PEM CRL, so it was not changed" \
            in proc.stderr, proc.stderr
        assert bundle.read_bytes() == broken
    finally:
        tmp.write_bytes(saved)
        tmp.chmod(0o644)
        tmp.replace(bundle)
    assert_mapped(s, corp, d["upn-spare"], "upn", ADDR)
