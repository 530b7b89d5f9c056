"""The authorization process (DESIGN §3.4, §3.5, §8): PAM account checks run off the
smtp process with a deadline, SASL EXTERNAL as real clients send it, and the per-user
rate limit that survives a restart."""

import base64
import threading
import time
from pathlib import Path

import pytest

from conftest import (ALICE, ALICE_ADDR, assert_served, build_stack, contains,
                      mail_reply, make_message, poll, queue_id, reply_text, send_ok,
                      smtp_starttls, submit)

NOT_AUTHORIZED_ACCOUNT = "535 5.7.8 Not authorized: account"
TEMPFAIL = "454 4.7.0 Temporary authentication failure"


def write_pam(env, text):
    (env.dir / "pam.d" / "submitd").write_text(text)


# ---- PAM ---------------------------------------------------------------------------------

@pytest.fixture
def pam_stack(request):
    failed_before = request.session.testsfailed
    s = build_stack("pam", start_daemon=False, pam_timeout=2)
    s.env.admin("user", "add", "bob", "--sender", "bob@example.com")
    s.bob = s.env.issue("bob", "bob@example.com")
    s.env.admin("user", "add", "slowpoke", "--sender", "slowpoke@example.com")
    s.slowpoke = s.env.issue("slowpoke", "slowpoke@example.com")
    # bob is denied by an account rule; slowpoke's account check hangs in a module
    # (pam_exec running sleep) far beyond pam_timeout; everybody else passes.
    write_pam(s.env,
              "account [success=done default=ignore] pam_succeed_if.so quiet user notin bob:slowpoke\n"
              "account requisite pam_succeed_if.so quiet user notin bob\n"
              "account required pam_exec.so quiet /bin/sleep 30\n")
    s.daemon.start()
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def test_pam_account_rule_denies_one_user(pam_stack):
    s = pam_stack
    mark = s.audit.mark()
    assert mail_reply(s.env, s.bob, "bob@example.com") == NOT_AUTHORIZED_ACCOUNT
    row = s.audit.wait(lambda r: r["event"] == "identity" and r["decision"] == "reject"
                       and r["user"] == "bob", mark, what="PAM denial of bob")
    assert contains(row["reason"], "pam"), row
    # Others pass the same stack.
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)


def pam_hang_running(daemon):
    """True once the daemon runs the hanging module's /bin/sleep 30 (pam_exec): a PAM
    check is then in progress."""
    daemon._snapshot()
    for pid in daemon.alive_family():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"/bin/sleep", b"30"]:
            return True
    return False


def test_hanging_pam_module_times_out_and_others_are_served(pam_stack):
    s = pam_stack
    mark = s.audit.mark()
    result = {}

    def slow():
        t0 = time.monotonic()
        result["reply"] = mail_reply(s.env, s.slowpoke, "slowpoke@example.com")
        result["done"] = time.monotonic()
        result["elapsed"] = result["done"] - t0

    t = threading.Thread(target=slow)
    t.start()
    assert poll(lambda: pam_hang_running(s.daemon), 10), "slowpoke's PAM check did not start"
    # While slowpoke's PAM check hangs, alice is served: before the check times out
    # (what the test is about), and well within a generous bound for a slow machine.
    t0 = time.monotonic()
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    alice_done = time.monotonic()
    assert alice_done - t0 < 5, "a hanging PAM check held up another session"
    t.join(20)
    assert result.get("reply") == TEMPFAIL, result
    assert alice_done < result["done"], "alice was served only after slowpoke's PAM timeout"
    assert 1.5 < result["elapsed"] < 8, result
    row = s.audit.wait(lambda r: r["event"] == "identity" and r["decision"] == "tempfail"
                       and r["user"] == "slowpoke", mark, what="PAM timeout row")
    assert contains(row["reason"], "pam_timeout"), row
    assert s.daemon.running()
    assert_served(s.env, s.alice)


# ---- SASL EXTERNAL ---------------------------------------------------------------------------

def auth_external(s, initial):
    code, resp = s.docmd("AUTH", "EXTERNAL " + initial)
    return reply_text(code, resp)


def test_auth_external_is_advertised_after_tls_with_a_certificate(stack):
    s = smtp_starttls(stack.env, stack.alice)
    try:
        assert "EXTERNAL" in s.esmtp_features.get("auth", "").upper().split()
    finally:
        s.close()


def test_auth_external_equals_sign_as_thunderbird_for_android_sends(stack):
    s = smtp_starttls(stack.env, stack.alice)
    try:
        assert auth_external(s, "=").startswith("235 2.7.0")
        msg = make_message()
        queue_id(submit(s, msg))
    finally:
        s.close()
    stack.upstream.wait_for(msg.marker, msg.rcpts)


def test_auth_external_with_own_user_as_authzid(stack):
    s = smtp_starttls(stack.env, stack.alice)
    try:
        assert auth_external(s, base64.b64encode(ALICE.encode()).decode()).startswith("235")
        assert reply_text(*s.mail(ALICE_ADDR)).startswith("250")
    finally:
        s.close()


def test_auth_external_naming_another_user_fails(stack):
    mark = stack.audit.mark()
    s = smtp_starttls(stack.env, stack.alice)
    try:
        assert auth_external(s, base64.b64encode(b"bob").decode()).startswith("535 5.7.8")
    finally:
        s.close()
    stack.audit.wait(lambda r: r["event"] == "auth" and r["decision"] == "reject", mark,
                     what="refused authzid")


def test_auth_external_oversized_response_is_refused_cleanly(stack):
    s = smtp_starttls(stack.env, stack.alice)
    try:
        assert auth_external(s, "QUFB" * 240).startswith("501")
    finally:
        s.close()
    assert_served(stack.env, stack.alice)


def test_no_auth_external_without_certificate(stack):
    import smtplib
    from conftest import client_context
    s = smtplib.SMTP("127.0.0.1", stack.env.port, local_hostname="client.test", timeout=15)
    try:
        s.ehlo()
        s.starttls(context=client_context(stack.env, None))
        s.ehlo()
        assert "EXTERNAL" not in s.esmtp_features.get("auth", "").upper()
    finally:
        s.close()


# ---- rate limit across a restart -------------------------------------------------------------

def test_rate_limit_still_enforced_after_restart(fresh_stack_factory):
    s = fresh_stack_factory("rate-restart", rate_messages_per_hour=2)
    for _ in range(2):
        send_ok(s.env, s.alice, make_message())
    s.daemon.stop()
    s.daemon.start()
    mark = s.audit.mark()
    assert mail_reply(s.env, s.alice, ALICE_ADDR) == "450 4.7.1 Rate limit exceeded"
    row = s.audit.wait(lambda r: r["decision"] == "tempfail" and contains(r["reason"], "rate"),
                       mark, what="rate limit row")
    assert row["user"] == ALICE


# ---- a locked database ---------------------------------------------------------------------

def test_locked_database_is_a_temporary_failure_never_an_accept(fresh_stack_factory):
    import sqlite3
    s = fresh_stack_factory("locked-db")
    locker = sqlite3.connect(s.env.dir / "submitd.db", timeout=5, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    locker.execute("INSERT INTO users(name) VALUES ('lock-holder')")
    try:
        reply = mail_reply(s.env, s.alice, ALICE_ADDR)
        assert reply == TEMPFAIL, reply
        assert s.daemon.running()
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)
    assert "AUDIT ROW NOT WRITTEN" in s.daemon.tail()


# ---- hide_client -------------------------------------------------------------------------------

def test_hide_client_removes_the_client_address_from_received(fresh_stack_factory):
    s = fresh_stack_factory("hide-client", hide_client="yes")
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    arrival = s.upstream.wait_for(msg.marker, msg.rcpts)[0]
    received = arrival.content.split(b"\r\n\r\n", 1)[0].split(b"\nFrom:", 1)[0]
    assert received.startswith(b"Received: by "), received
    assert b"127.0.0.1" not in received and b"client.test" not in received, received


def test_recipient_rate_limit(fresh_stack_factory):
    s = fresh_stack_factory("rcpt-rate", rate_recipients_per_hour=3)
    msg = make_message(rcpts=["r1@example.net", "r2@example.net"])
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)
    row = s.audit.wait(lambda r: r["event"] == "submission", 0, what="submission row")
    assert s.env.query("SELECT nrcpt FROM audit WHERE id = ?", (row["id"],))[0]["nrcpt"] == 2
    c = smtp_starttls(s.env, s.alice)
    try:
        assert reply_text(*c.mail(ALICE_ADDR)).startswith("250")
        assert reply_text(*c.rcpt("r3@example.net")).startswith("250")
        assert reply_text(*c.rcpt("r4@example.net")) == "450 4.7.1 Rate limit exceeded"
    finally:
        c.close()
    s.audit.wait(lambda r: r["decision"] == "tempfail" and contains(r["reason"], "recipients"),
                 0, what="recipient rate row")


def test_auth_external_without_initial_response(stack):
    """RFC 4954: the server asks with 334 and the client answers "=" (no authzid)."""
    s = smtp_starttls(stack.env, stack.alice)
    try:
        code, _ = s.docmd("AUTH", "EXTERNAL")
        assert code == 334
        assert reply_text(*s.docmd("=")).startswith("235 2.7.0")
        assert reply_text(*s.mail(ALICE_ADDR)).startswith("250")
    finally:
        s.close()
