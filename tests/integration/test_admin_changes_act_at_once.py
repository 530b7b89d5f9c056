"""An admin's change acts on the very next question authz is asked (DESIGN: revocation
and "user disable" act at once). Every test first makes the old answer known (sessions
that use it, so that anything authz keeps between sessions holds it), then changes the
database with the admin tools and checks the next MAIL, header From or session at
once, with no wait: an answer kept from before must never outlive the change that ends
it."""
import smtplib

import pytest

from conftest import ALICE, ALICE_ADDR, ALICE_DOMAIN, assert_served, mail_reply, smtp_starttls


@pytest.fixture(scope="module")
def rita(stack):
    """A second user of the module's stack, for the changes that cannot be undone."""
    return stack.env.issue("rita", "rita@example.com")


def mail(session, sender):
    code, resp = session.mail(sender)
    session.rset()
    return code, resp.decode(errors="replace")


def test_a_removed_sender_is_refused_at_the_next_mail_of_the_same_session(stack):
    domain_addr = "someone" + ALICE_DOMAIN
    s = smtp_starttls(stack.env, stack.alice)
    try:
        for _ in range(3):
            assert mail(s, domain_addr)[0] == 250
        stack.env.admin("sender", "del", ALICE, ALICE_DOMAIN)
        try:
            code, resp = mail(s, domain_addr)
            assert code == 553, resp
            # Not a blanket refusal: the address alice still owns is accepted.
            assert mail(s, ALICE_ADDR)[0] == 250
        finally:
            stack.env.admin("sender", "add", ALICE, ALICE_DOMAIN)
        assert mail(s, domain_addr)[0] == 250
    finally:
        s.quit()


def test_a_removed_sender_is_refused_in_the_header_from(stack):
    domain_addr = "header" + ALICE_DOMAIN
    msg = (f"From: {domain_addr}\r\nTo: rcpt@example.net\r\nSubject: recall\r\n\r\nbody\r\n")
    s = smtp_starttls(stack.env, stack.alice)
    try:
        assert s.sendmail(ALICE_ADDR, ["rcpt@example.net"], msg) == {}
        stack.env.admin("sender", "del", ALICE, ALICE_DOMAIN)
        try:
            with pytest.raises(smtplib.SMTPDataError) as e:
                s.sendmail(ALICE_ADDR, ["rcpt@example.net"], msg)
            assert e.value.smtp_code == 550, e.value
        finally:
            stack.env.admin("sender", "add", ALICE, ALICE_DOMAIN)
    finally:
        s.close()
    assert_served(stack.env, stack.alice)


def test_a_disabled_user_is_refused_at_the_next_session(stack):
    for _ in range(3):
        assert mail_reply(stack, stack.alice).startswith("250 ")
    stack.env.admin("user", "disable", ALICE)
    try:
        reply = mail_reply(stack, stack.alice)
        assert reply.startswith("535 ") and "disabled" in reply, reply
    finally:
        stack.env.admin("user", "enable", ALICE)
    assert mail_reply(stack, stack.alice).startswith("250 ")


def test_a_blocked_certificate_is_refused_at_the_next_session(stack):
    for _ in range(3):
        assert mail_reply(stack, stack.alice).startswith("250 ")
    stack.env.admin("cert", "block", stack.alice.sha256, "--reason", "recall test")
    try:
        reply = mail_reply(stack, stack.alice)
        assert reply == "535 5.7.8 Client certificate rejected: blocked", reply
    finally:
        stack.env.admin("cert", "unblock", stack.alice.sha256)
    assert mail_reply(stack, stack.alice).startswith("250 ")


def test_a_revoked_certificate_is_refused_at_the_next_session(stack, rita):
    for _ in range(3):
        assert mail_reply(stack, rita, "rita@example.com").startswith("250 ")
    stack.env.ca("revoke", "--user", "rita", "--reason", "keyCompromise")
    reply = mail_reply(stack, rita, "rita@example.com")
    assert reply.startswith("535 ") and "revoked" in reply, reply
    # Everyone else is still served.
    assert_served(stack.env, stack.alice)
