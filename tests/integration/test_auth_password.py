"""auth_password (DESIGN §3.5, §6): AUTH PLAIN checked with a real pam_authenticate
against a test PAM stack, as a fallback for users without a certificate or as a
second factor next to the certificate; never offered by default."""

import base64
import os
import smtplib

import pytest

from conftest import (ALICE, ALICE_ADDR, assert_served, build_stack, client_context, contains,
                      make_message, reply_text, smtp_starttls, submit, queue_id)

PASSWORDS = {"alice": "correct horse battery", "bob": "staple bob 42"}
INVALID = "535 5.7.8 Authentication credentials invalid"


def password_stack(mode):
    s = build_stack(f"password-{mode}", start_daemon=False, auth_password=mode)
    s.env.admin("user", "add", "bob", "--sender", "bob@example.com")
    s.bob = s.env.issue("bob", "bob@example.com")
    # A real pam_authenticate: pam_exec hands the password to a checker on stdin.
    checker = s.env.dir / "check-password"
    lines = "\n".join(f'  {u}) [ "$pw" = "{p}" ] ;;' for u, p in PASSWORDS.items())
    checker.write_text("#!/bin/sh\n# stdin: the password, NUL-terminated\n"
                       "pw=$(tr -d '\\000')\n"
                       f'case "$PAM_USER" in\n{lines}\n  *) exit 1 ;;\nesac\n')
    os.chmod(checker, 0o755)
    # pam_exec reports a failed check as a system error: fall through to pam_deny
    # so that a wrong password is PAM_AUTH_ERR, as pam_unix would answer.
    (s.env.dir / "pam.d" / "submitd").write_text(
        f"auth [success=done default=ignore] pam_exec.so quiet expose_authtok {checker}\n"
        "auth requisite pam_deny.so\n"
        "account required pam_permit.so\n")
    s.daemon.start()
    return s


@pytest.fixture(scope="module")
def fallback(request):
    failed_before = request.session.testsfailed
    s = password_stack("fallback")
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


@pytest.fixture(scope="module")
def second_factor(request):
    failed_before = request.session.testsfailed
    s = password_stack("second-factor")
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def plain(user, password, authzid=""):
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def connect(env, identity):
    """STARTTLS session, with a client certificate or (identity None) without."""
    if identity is not None:
        return smtp_starttls(env, identity)
    s = smtplib.SMTP("127.0.0.1", env.port, local_hostname="client.test", timeout=15)
    s.ehlo()
    s.starttls(context=client_context(env, None))
    s.ehlo()
    return s


def auth(s, response):
    return reply_text(*s.docmd("AUTH", "PLAIN " + response))


# ---- fallback -----------------------------------------------------------------------------

def test_fallback_offers_plain_only_without_certificate(fallback):
    s = connect(fallback.env, None)
    try:
        assert "PLAIN" in s.esmtp_features.get("auth", "").split()
    finally:
        s.close()
    s = connect(fallback.env, fallback.alice)
    try:
        mechs = s.esmtp_features.get("auth", "").split()
        assert "EXTERNAL" in mechs and "PLAIN" not in mechs, mechs
    finally:
        s.close()


def test_fallback_password_user_can_send(fallback):
    s = connect(fallback.env, None)
    try:
        assert reply_text(*s.mail(ALICE_ADDR)).startswith("530")
        assert auth(s, plain(ALICE, PASSWORDS["alice"])).startswith("235 2.7.0")
        msg = make_message()
        queue_id(submit(s, msg))
    finally:
        s.close()
    fallback.upstream.wait_for(msg.marker, msg.rcpts)
    row = fallback.audit.wait(lambda r: r["event"] == "auth" and r["decision"] == "accept",
                              0, what="password accept row")
    assert row["user"] == ALICE


def test_fallback_wrong_password_is_refused_and_audited(fallback):
    mark = fallback.audit.mark()
    s = connect(fallback.env, None)
    try:
        assert auth(s, plain(ALICE, "wrong")) == INVALID
        assert reply_text(*s.mail(ALICE_ADDR)).startswith("530")
    finally:
        s.close()
    row = fallback.audit.wait(lambda r: r["event"] == "auth" and r["decision"] == "reject",
                              mark, what="password reject row")
    assert contains(row["reason"], "pam")
    assert "wrong" not in str(row), "the password reached the audit table"


def test_fallback_unknown_user_and_sender_of_another_user(fallback):
    s = connect(fallback.env, None)
    try:
        assert auth(s, plain("mallory", "x")) == INVALID
        assert auth(s, plain("bob", PASSWORDS["bob"])).startswith("235")
        assert reply_text(*s.mail(ALICE_ADDR)) == "553 5.7.1 Sender address not owned by user bob"
    finally:
        s.close()


def test_fallback_plain_with_continuation_line(fallback):
    s = connect(fallback.env, None)
    try:
        code, _ = s.docmd("AUTH", "PLAIN")
        assert code == 334
        assert reply_text(*s.docmd(plain(ALICE, PASSWORDS["alice"]))).startswith("235")
    finally:
        s.close()


def test_three_failures_end_the_session(fallback):
    s = connect(fallback.env, None)
    try:
        assert auth(s, plain(ALICE, "a")) == INVALID
        assert auth(s, plain(ALICE, "b")) == INVALID
        assert auth(s, plain(ALICE, "c")) == INVALID
        # The third refusal is followed at once by 421 and the close: the next
        # thing the client reads is the 421, or the connection is gone.
        try:
            code, _ = s.docmd("NOOP")
        except smtplib.SMTPServerDisconnected:
            code = 421
        assert code == 421
    finally:
        s.close()
    assert_served(fallback.env, fallback.alice)


# ---- second factor ----------------------------------------------------------------------------

def test_second_factor_requires_password_of_the_certificate_user(second_factor):
    sf = second_factor
    s = connect(sf.env, sf.alice)
    try:
        mechs = s.esmtp_features.get("auth", "").split()
        assert mechs == ["PLAIN"], mechs
        assert reply_text(*s.mail(ALICE_ADDR)).startswith("530 5.7.0")
        # bob's valid password does not go with alice's certificate.
        assert auth(s, plain("bob", PASSWORDS["bob"])) == INVALID
        assert auth(s, plain(ALICE, PASSWORDS["alice"])).startswith("235")
        msg = make_message()
        queue_id(submit(s, msg))
    finally:
        s.close()
    sf.upstream.wait_for(msg.marker, msg.rcpts)


def test_second_factor_without_certificate_gets_nothing(second_factor):
    s = connect(second_factor.env, None)
    try:
        assert "PLAIN" not in s.esmtp_features.get("auth", "")
        assert auth(s, plain(ALICE, PASSWORDS["alice"])).startswith("504")
        assert reply_text(*s.mail(ALICE_ADDR)) == "530 5.7.0 Client certificate required"
    finally:
        s.close()


# ---- default: no passwords -------------------------------------------------------------------

def test_no_password_authentication_by_default(stack):
    s = connect(stack.env, None)
    try:
        assert "PLAIN" not in s.esmtp_features.get("auth", "")
        assert auth(s, plain(ALICE, "anything")).startswith("504")
    finally:
        s.close()
