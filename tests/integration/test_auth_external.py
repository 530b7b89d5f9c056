"""AUTH EXTERNAL as clients send it, in raw SMTP (DESIGN §3.5): the authorization
identity may be the certificate's user name or an address that user owns (Thunderbird
for Android / K-9 sends the account's user name, usually the e-mail address), and the
audit row says which; another user's address is refused with 535. A response that
cannot be used (not base64, cancelled, a control character) is refused, audited and
logged with the mechanism."""

import base64

from conftest import (ALICE, ALICE_ADDR, assert_served, contains, make_message, poll,
                      raw_tls_session)


def b64(text):
    return base64.b64encode(text.encode()).decode()


def auth_row(stack, mark, decision, *words):
    return stack.audit.wait(lambda r: r["event"] == "auth" and r["decision"] == decision
                            and all(contains(r["reason"], w) for w in words),
                            mark, what=f"auth {decision} row naming {words}")


def send_after_auth(stack, c):
    """The session authenticated by AUTH EXTERNAL submits a message that arrives."""
    msg = make_message()
    assert c.cmd(f"MAIL FROM:<{msg.mail_from}>").code == 250
    for r in msg.rcpts:
        assert c.cmd(f"RCPT TO:<{r}>").code == 250
    assert c.cmd("DATA").code == 354
    c.send(msg.data + b".\r\n")
    r = c.reply()
    assert r.code == 250, f"end of data -> {r}"
    stack.upstream.wait_for(msg.marker, msg.rcpts)


def external(stack, authzid_b64, initial=True):
    """AUTH EXTERNAL with the response as an initial response, or after the 334."""
    c = raw_tls_session(stack.env, stack.alice)
    if initial:
        return c, c.cmd(f"AUTH EXTERNAL {authzid_b64}")
    r = c.cmd("AUTH EXTERNAL")
    assert r.code == 334, f"AUTH EXTERNAL -> {r}"
    return c, c.cmd(authzid_b64)


def test_authzid_user_name_is_accepted_and_audited_as_the_user_name(stack):
    mark = stack.audit.mark()
    c, r = external(stack, b64(ALICE))
    try:
        assert r.last == "235 2.7.0 Authentication successful", r
        send_after_auth(stack, c)
    finally:
        c.close()
    row = auth_row(stack, mark, "accept", "user name")
    assert row["user"] == ALICE and row["cert_sha256"] == stack.alice.sha256, row


def test_authzid_owned_address_is_accepted_as_k9_sends_it(stack):
    """K-9 / Thunderbird for Android: AUTH EXTERNAL base64(account user name)."""
    mark = stack.audit.mark()
    c, r = external(stack, b64(ALICE_ADDR))
    try:
        assert r.last == "235 2.7.0 Authentication successful", r
        send_after_auth(stack, c)
    finally:
        c.close()
    row = auth_row(stack, mark, "accept", ALICE_ADDR, "address the user owns")
    assert row["user"] == ALICE, row


def test_authzid_address_of_an_owned_domain_is_accepted_after_334(stack):
    # alice owns @example.org as a whole domain (conftest).
    mark = stack.audit.mark()
    c, r = external(stack, b64("Alice.Smith@Example.ORG"), initial=False)
    try:
        assert r.last == "235 2.7.0 Authentication successful", r
        send_after_auth(stack, c)
    finally:
        c.close()
    auth_row(stack, mark, "accept", "alice.smith@example.org", "address the user owns")


def test_authzid_of_another_users_address_is_refused(stack):
    stack.env.admin("user", "add", "bob", "--sender", "bob@example.com")
    mark = stack.audit.mark()
    c, r = external(stack, b64("bob@example.com"))
    try:
        assert r.last == ("535 5.7.8 Not authorized: authorization identity does not match "
                          "certificate"), r
        # No identity switch: the session is still alice's and unauthenticated by AUTH,
        # and bob's address stays refused.
        assert c.cmd("MAIL FROM:<bob@example.com>").code == 553
    finally:
        c.close()
    row = auth_row(stack, mark, "reject", "bob@example.com", "neither the user name")
    assert row["user"] == ALICE, row
    assert_served(stack.env, stack.alice)


def test_authzid_of_another_user_name_is_refused(stack):
    mark = stack.audit.mark()
    c, r = external(stack, b64("bob"))
    try:
        assert r.code == 535, r
    finally:
        c.close()
    auth_row(stack, mark, "reject", "authzid bob ")


def test_undecodable_response_is_refused_audited_and_logged(stack):
    """What msmtp does without `user`: after the 334 a line that is not base64."""
    mark = stack.audit.mark()
    offset = stack.daemon.log_size()
    c, r = external(stack, "not base64!", initial=False)
    try:
        assert r.last == "501 5.5.2 Cannot decode response", r
        # The session goes on: a usable response is still accepted.
        assert c.cmd("AUTH EXTERNAL =").code == 235
    finally:
        c.close()
    row = auth_row(stack, mark, "reject", "AUTH EXTERNAL", "not valid base64")
    assert row["user"] == ALICE, row
    # smtp writes its log lines at the end of its turn, after the reply has left.
    assert poll(lambda: "AUTH EXTERNAL response is not valid base64" in
                stack.daemon.tail(offset=offset), 10), stack.daemon.tail(offset=offset)[-3000:]


def test_cancelled_and_control_character_responses_are_audited(stack):
    mark = stack.audit.mark()
    c, r = external(stack, "*", initial=False)
    try:
        assert r.last == "501 5.7.0 Authentication cancelled", r
        r = c.cmd("AUTH EXTERNAL " + base64.b64encode(b"alice\x01").decode())
        assert r.last == "501 5.5.4 Malformed authorization identity", r
        r = c.cmd("AUTH EXTERNAL " + "QUFB" * 240)
        assert r.code == 501, r
    finally:
        c.close()
    auth_row(stack, mark, "reject", "AUTH EXTERNAL cancelled")
    auth_row(stack, mark, "reject", "AUTH EXTERNAL authzid holds a control character")
    auth_row(stack, mark, "reject", "AUTH EXTERNAL response too long")


def test_undecodable_plain_response_is_audited_with_its_mechanism(fresh_stack_factory):
    s = fresh_stack_factory("plain-unusable", auth_password="fallback")
    mark = s.audit.mark()
    c = raw_tls_session(s.env, None)
    try:
        assert c.cmd("AUTH PLAIN").code == 334
        r = c.cmd("%%%")
        assert r.last == "501 5.5.2 Cannot decode response", r
        r = c.cmd("AUTH PLAIN " + b64("only-one-part"))
        assert r.last == "501 5.5.2 Malformed AUTH PLAIN response", r
    finally:
        c.close()
    s.audit.wait(lambda r: r["event"] == "auth" and contains(r["reason"], "AUTH PLAIN response is not valid base64"),
                 mark, what="PLAIN undecodable row")
    row = s.audit.wait(lambda r: r["event"] == "auth" and contains(r["reason"], "AUTH PLAIN response malformed"),
                       mark, what="PLAIN malformed row")
    assert "only-one-part" not in (row["reason"] or ""), row


def test_command_instead_of_a_response_is_named_in_the_audit_row(stack):
    """msmtp's "auth external" without "user": nothing after the 334, MAIL FROM next."""
    mark = stack.audit.mark()
    c, r = external(stack, f"MAIL FROM:<{ALICE_ADDR}>", initial=False)
    try:
        assert r.last == "501 5.5.2 Cannot decode response", r
    finally:
        c.close()
    auth_row(stack, mark, "reject", "AUTH EXTERNAL response is not valid base64 but an SMTP command")
