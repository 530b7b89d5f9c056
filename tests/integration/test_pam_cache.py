"""pam_cache (DESIGN §6): a user's PAM account result is reused for pam_cache seconds,
so the account stack runs once for many sessions; a disabled user and a revoked
certificate are refused at the next session all the same (database checks, made for
every session). With the default 0 the stack runs for every session."""

import os

import pytest

from conftest import build_stack, mail_reply

NOT_AUTHORIZED = "535 5.7.8 Not authorized: "
REJECTED = "535 5.7.8 Client certificate rejected: "


def counting_pam(s):
    """An account stack that permits everybody and notes each run in a file."""
    count = s.env.dir / "pam-runs"
    script = s.env.dir / "pam.d" / "count.sh"
    script.write_text(f"#!/bin/sh\necho \"$PAM_USER\" >> {count}\n")
    os.chmod(script, 0o755)
    (s.env.dir / "pam.d" / "submitd").write_text(
        f"account required pam_exec.so quiet {script}\n"
        "account required pam_permit.so\nauth required pam_deny.so\n")
    return count


def runs(count, user):
    if not count.exists():
        return 0
    return sum(1 for line in count.read_text().split() if line == user)


@pytest.fixture
def cached_stack(request):
    failed_before = request.session.testsfailed
    s = build_stack("pamcache", start_daemon=False, pam_cache=600)
    s.count = counting_pam(s)
    s.daemon.start()
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def test_account_result_is_reused(cached_stack):
    s = cached_stack
    for _ in range(3):
        assert mail_reply(s.env, s.alice, s.alice.email).startswith("250")
    assert runs(s.count, "alice") == 1


def test_disabled_user_and_revoked_certificate_act_at_once(cached_stack):
    s = cached_stack
    env = s.env
    env.admin("user", "add", "bob", "--sender", "bob@example.com")
    bob = env.issue("bob", "bob@example.com")
    assert mail_reply(env, bob, "bob@example.com").startswith("250")
    assert runs(s.count, "bob") == 1

    env.admin("user", "disable", "bob")
    assert mail_reply(env, bob, "bob@example.com") == NOT_AUTHORIZED + "user disabled"
    env.admin("user", "enable", "bob")
    assert mail_reply(env, bob, "bob@example.com").startswith("250")

    env.ca("revoke", "--user", "bob", "--reason", "keyCompromise")
    reply = mail_reply(env, bob, "bob@example.com")
    assert reply.startswith(REJECTED) and "revoked" in reply.lower(), reply
    assert runs(s.count, "bob") == 1


def test_without_pam_cache_every_session_runs_the_stack(request):
    failed_before = request.session.testsfailed
    s = build_stack("pamnocache", start_daemon=False)
    try:
        count = counting_pam(s)
        s.daemon.start()
        for _ in range(2):
            assert mail_reply(s.env, s.alice, s.alice.email).startswith("250")
        assert runs(count, "alice") == 2
    finally:
        s.close(keep=request.session.testsfailed > failed_before)


def test_without_pam_cache_a_changed_stack_applies_to_the_next_session(request):
    """The PAM workers keep the modules loaded between checks, not the stack: an
    edit of the service's file applies to the very next session, both ways."""
    failed_before = request.session.testsfailed
    s = build_stack("pamedit", start_daemon=False)
    try:
        service = s.env.dir / "pam.d" / "submitd"
        service.write_text("account required pam_permit.so\n")
        s.daemon.start()
        assert mail_reply(s.env, s.alice, s.alice.email).startswith("250")
        service.write_text("account required pam_deny.so\n")
        reply = mail_reply(s.env, s.alice, s.alice.email)
        assert reply.startswith(NOT_AUTHORIZED), reply
        service.write_text("account required pam_permit.so\n")
        assert mail_reply(s.env, s.alice, s.alice.email).startswith("250")
    finally:
        s.close(keep=request.session.testsfailed > failed_before)
