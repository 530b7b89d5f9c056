"""Who may send: the certificate checks, the user and sender checks, and their replies
at MAIL FROM (DESIGN §3.4-3.6, §8) with the audit row each decision leaves."""

import datetime

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import (ALICE, ALICE_ADDR, assert_served, Audit, contains, Identity, mail_reply,
                      make_ca, make_leaf, make_message, reply_text, send_ok, smtp_starttls,
                      write_cert_and_key)

REJECTED = "535 5.7.8 Client certificate rejected: "
NOT_AUTHORIZED = "535 5.7.8 Not authorized: "


@pytest.fixture(scope="module")
def certs(stack):
    """Certificates for the negative cases, all claiming alice's subject and address,
    so only the cryptographic identity tells them apart."""
    env = stack.env
    alice_cert = stack.alice.cert()
    subject = alice_cert.subject
    our_ca, our_key = env.ca_cert_and_key()
    now = datetime.datetime.utcnow()
    out = env.dir / "forged"
    made = {}

    foreign_ca, foreign_key = make_ca("Another Organisation CA")
    c, k = make_leaf(foreign_ca, foreign_key, subject, emails=[ALICE_ADDR])
    made["foreign"] = Identity("foreign", *write_cert_and_key(out, "foreign", c, k), email=ALICE_ADDR)

    c, k = make_leaf(our_ca, our_key, subject, emails=[ALICE_ADDR],
                     not_before=now - datetime.timedelta(days=30),
                     not_after=now - datetime.timedelta(days=1))
    made["expired"] = Identity("expired", *write_cert_and_key(out, "expired", c, k), email=ALICE_ADDR)

    c, k = make_leaf(our_ca, our_key, subject, emails=[ALICE_ADDR])
    made["unknown"] = Identity("unknown", *write_cert_and_key(out, "unknown", c, k), email=ALICE_ADDR)

    c, k = make_leaf(our_ca, our_key, subject, emails=[ALICE_ADDR],
                     eku=(ExtendedKeyUsageOID.EMAIL_PROTECTION,))
    made["wrong-purpose"] = Identity("wrong-purpose", *write_cert_and_key(out, "wrong-purpose", c, k),
                                     email=ALICE_ADDR)
    return made


REJECTIONS = {
    # case: (certificate, exact reply, words of which the audit reason names one)
    "no-certificate": (None, "530 5.7.0 Client certificate required", ("certificate",)),
    "foreign-ca": ("foreign", REJECTED + "untrusted issuer", ("issuer", "untrusted")),
    "expired": ("expired", REJECTED + "expired", ("expired",)),
    "unknown-certificate": ("unknown", NOT_AUTHORIZED + "unknown certificate", ("unknown",)),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_identity_rejection_reply_and_audit(stack, certs, case):
    which, expected, words = REJECTIONS[case]
    identity = certs[which] if which else None
    mark = stack.audit.mark()
    assert mail_reply(stack, identity) == expected
    stack.audit.wait(lambda r: r["decision"] == "reject" and contains(r["reason"], *words), mark,
                     what=f"reject row naming {words} for {case}")
    assert_served(stack.env, stack.alice)


@pytest.mark.parametrize("case", ["foreign-ca", "expired", "unknown-certificate"])
def test_rejected_certificate_fingerprint_is_audited(stack, certs, case):
    identity = certs[REJECTIONS[case][0]]
    mark = stack.audit.mark()
    assert mail_reply(stack, identity).startswith("535 ")
    row = stack.audit.wait(lambda r: r["decision"] == "reject", mark, what=f"reject row for {case}")
    rows = [r for r in stack.audit.rows(mark) if r["decision"] == "reject"]
    assert any(r["cert_sha256"] == identity.sha256 for r in rows), (
        f"no reject row records the presented certificate {identity.sha256}: {rows}")
    assert contains(row["client_ip"], "127.0.0.1"), row


def test_certificate_without_client_auth_purpose_is_rejected(stack, certs):
    reply = mail_reply(stack, certs["wrong-purpose"])
    assert reply.startswith(REJECTED), reply
    assert_served(stack.env, stack.alice)


def test_unknown_certificate_is_not_matched_by_subject(stack, certs):
    """Same subject and e-mail address as alice's certificate, same CA, other key: the
    identity is the fingerprint, never the name."""
    assert certs["unknown"].cert().subject == stack.alice.cert().subject
    assert mail_reply(stack, certs["unknown"]) == NOT_AUTHORIZED + "unknown certificate"


@pytest.mark.parametrize("sender", ["alice@example.net", "bob@example.com",
                                    "alice@example.com.evil.test", "anyone@example.org.evil.test"])
def test_sender_not_owned(stack, sender):
    mark = stack.audit.mark()
    assert mail_reply(stack, stack.alice, sender) == f"553 5.7.1 Sender address not owned by user {ALICE}"
    row = stack.audit.wait(lambda r: r["decision"] == "reject" and contains(r["reason"], "not owned"),
                           mark, what=f"reject row for sender {sender}")
    assert row["user"] == ALICE, row
    assert_served(stack.env, stack.alice)


def test_owned_senders_are_accepted(stack):
    assert mail_reply(stack, stack.alice, ALICE_ADDR).startswith("250")
    assert mail_reply(stack, stack.alice, "someone-else@example.org").startswith("250")


def test_disabled_user_is_refused_until_enabled(stack):
    env = stack.env
    env.admin("user", "add", "bob", "--sender", "bob@example.com")
    bob = env.issue("bob", "bob@example.com")
    assert mail_reply(stack, bob, "bob@example.com").startswith("250"), "bob before disabling"

    env.admin("user", "disable", "bob")
    mark = stack.audit.mark()
    assert mail_reply(stack, bob, "bob@example.com") == NOT_AUTHORIZED + "user disabled"
    stack.audit.wait(lambda r: r["decision"] == "reject" and contains(r["reason"], "disabled"), mark,
                     what="reject row for the disabled user")
    assert_served(env, stack.alice)

    env.admin("user", "enable", "bob")
    assert mail_reply(stack, bob, "bob@example.com").startswith("250"), "bob after enabling"


def test_revoked_by_user_takes_effect_for_new_sessions(stack):
    env = stack.env
    carol = env.issue("carol", "carol@example.com")
    assert mail_reply(stack, carol, "carol@example.com").startswith("250")

    env.ca("revoke", "--user", "carol", "--reason", "keyCompromise")
    rows = env.query("SELECT status FROM certs WHERE sha256 = ?", (carol.sha256,))
    assert rows and rows[0]["status"] == "revoked", rows

    mark = stack.audit.mark()
    reply = mail_reply(stack, carol, "carol@example.com")
    assert reply.startswith(REJECTED) and "revoked" in reply.lower(), reply
    stack.audit.wait(lambda r: r["decision"] == "reject" and contains(r["reason"], "revoked"), mark,
                     what="reject row for the revoked certificate")
    assert_served(env, stack.alice)


def test_revoked_by_serial_takes_effect_for_new_sessions(stack):
    env = stack.env
    dave = env.issue("dave", "dave@example.com")
    assert mail_reply(stack, dave, "dave@example.com").startswith("250")
    serial = env.query("SELECT serial FROM certs WHERE sha256 = ?", (dave.sha256,))[0]["serial"]
    assert int(serial, 16) == dave.cert().serial_number

    env.ca("revoke", serial)
    reply = mail_reply(stack, dave, "dave@example.com")
    assert reply.startswith(REJECTED) and "revoked" in reply.lower(), reply


def test_accepted_message_after_rejections_is_delivered(stack):
    msg = make_message()
    send_ok(stack.env, stack.alice, msg)
    stack.upstream.wait_for(msg.marker, msg.rcpts)


# ---- certificates from another CA, mapped by subject ----------------------------------------

def _partner_setup(fresh_stack_factory):
    """A stack whose client_ca bundle also trusts a partner CA."""
    s = fresh_stack_factory("subject-map", start_daemon=False)
    partner_ca, partner_key = make_ca("Partner Organisation CA")
    partner_subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Partner"),
                                 x509.NameAttribute(NameOID.COMMON_NAME, "ext-alice")])
    c, k = make_leaf(partner_ca, partner_key, partner_subject, emails=["ext-alice@partner.test"])
    out = s.env.dir / "partner"
    mapped = Identity("mapped", *write_cert_and_key(out, "mapped", c, k), email=ALICE_ADDR)
    c, k = make_leaf(partner_ca, partner_key,
                     x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ext-nobody")]))
    unmapped = Identity("unmapped", *write_cert_and_key(out, "unmapped", c, k), email=ALICE_ADDR)

    from cryptography.hazmat.primitives import serialization
    bundle = s.env.dir / "client-cas.pem"
    bundle.write_bytes(s.env.ca_cert_path.read_bytes()
                       + partner_ca.public_bytes(serialization.Encoding.PEM))
    s.env.settings["client_ca"] = "client-cas.pem"
    s.env.write_config()
    return s, partner_ca, partner_subject, mapped, unmapped


def test_subject_map_for_partner_ca(fresh_stack_factory):
    s, partner_ca, partner_subject, mapped, unmapped = _partner_setup(fresh_stack_factory)
    s.env.admin("map", "add", "--subject", partner_subject.rfc4514_string(),
                "--issuer", partner_ca.subject.rfc4514_string(), ALICE)
    s.daemon.start()

    assert mail_reply(s, mapped).startswith("250")
    msg = make_message()
    send_ok(s.env, mapped, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)
    row = Audit(s.env).wait(lambda r: r["decision"] == "accept", 0, what="accept row for mapped cert")
    assert row["user"] == ALICE

    reply = mail_reply(s, unmapped)
    assert reply.startswith(NOT_AUTHORIZED), reply


def test_subject_map_compares_names_not_strings(fresh_stack_factory):
    s, partner_ca, partner_subject, mapped, _ = _partner_setup(fresh_stack_factory)
    # Same name, different case in the values: equal as canonical X.509 names.
    s.env.admin("map", "add", "--subject", "CN=EXT-Alice,O=partner", ALICE)
    s.daemon.start()
    assert mail_reply(s, mapped).startswith("250")


# ---- header From (check_header_from = yes, the default) ----------------------------------------

@pytest.mark.parametrize("header_from", ["Mallory <mallory@evil.test>",
                                         '"alice@example.com" <mallory@evil.test>',
                                         "bob@example.com"])
def test_header_from_must_be_owned(stack, header_from):
    msg = make_message()
    msg.data = msg.data.replace(b"From: Alice <alice@example.com>", f"From: {header_from}".encode(), 1)
    assert f"From: {header_from}".encode() in msg.data
    s = smtp_starttls(stack.env, stack.alice)
    try:
        assert s.mail(ALICE_ADDR)[0] == 250
        assert s.rcpt(msg.rcpts[0])[0] == 250
        reply = reply_text(*s.data(msg.data))
    finally:
        s.close()
    assert reply[:1] == "5", f"message with From: {header_from} -> {reply}"
    probe = make_message()
    send_ok(stack.env, stack.alice, probe)
    stack.upstream.wait_for(probe.marker, probe.rcpts)
    assert not stack.upstream.matching(msg.marker), f"message with From: {header_from} was relayed"


@pytest.mark.parametrize("header_from", ["Alice <alice@example.com>",
                                         '"Smith, Alice" <alice@example.com>',
                                         "Alice\r\n <alice@example.com>",
                                         "Team: alice@example.com, Alice <alice@example.com>;",
                                         "alice@example.com"])
def test_header_from_owned_in_any_form_is_relayed(stack, header_from):
    """smtp reads the From field to refuse an unreadable one; the queue reads it again
    from the committed file for authz's check. Both read every valid form alike."""
    msg = make_message()
    msg.data = msg.data.replace(b"From: Alice <alice@example.com>", f"From: {header_from}".encode(), 1)
    assert f"From: {header_from}".encode() in msg.data
    offset = stack.daemon.log_size()
    send_ok(stack.env, stack.alice, msg)
    stack.upstream.wait_for(msg.marker, msg.rcpts)
    log = stack.daemon.tail(offset=offset)
    assert "are not the message's" not in log, log
