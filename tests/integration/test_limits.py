"""Per-user rate limit, per-IP session limit and the idle timeout (DESIGN §3, §6, §8),
on a daemon configured with small limits."""

import smtplib
import socket
import time

import pytest

from conftest import (ALICE_ADDR, RawSMTP, assert_served, build_stack, make_message, poll,
                      reply_text, smtp_starttls, submit, queue_id)

RATE = 2
PER_IP = 3
TIMEOUT = 3


@pytest.fixture(scope="module")
def limited(request):
    failed_before = request.session.testsfailed
    s = build_stack("limits", rate_messages_per_hour=RATE, max_sessions_per_ip=PER_IP, timeout=TIMEOUT)
    # bob proves that the server still serves others; alice spends her rate.
    s.env.admin("user", "add", "bob", "--sender", "bob@example.com")
    s.bob = s.env.issue("bob", "bob@example.com")
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def test_rate_limit_per_user(limited):
    for i in range(RATE):
        msg = make_message()
        s = smtp_starttls(limited.env, limited.alice)
        try:
            queue_id(submit(s, msg))
        finally:
            s.quit()
    s = smtp_starttls(limited.env, limited.alice)
    try:
        reply = reply_text(*s.mail(ALICE_ADDR))
        if reply.startswith("250"):
            reply = reply_text(*s.rcpt("over-the-limit@example.net"))
        assert reply == "450 4.7.1 Rate limit exceeded"
    finally:
        s.close()
    # The limit is per user: bob is not affected.
    msg = make_message(mail_from="bob@example.com")
    s = smtp_starttls(limited.env, limited.bob)
    try:
        queue_id(submit(s, msg))
    finally:
        s.quit()
    limited.upstream.wait_for(msg.marker, msg.rcpts)


def greets(env):
    c = RawSMTP(env)
    try:
        return c.greeting.code == 220
    finally:
        c.close()


def test_sessions_per_ip_limit(limited):
    held = []
    try:
        for _ in range(PER_IP):
            c = RawSMTP(limited.env)
            assert c.greeting.code == 220
            held.append(c)
        extra = socket.create_connection(("127.0.0.1", limited.env.port), timeout=10)
        try:
            data = b""
            while True:
                chunk = extra.recv(4096)
                if not chunk:
                    break
                data += chunk
        finally:
            extra.close()
        assert data.startswith(b"421 4.7.0"), f"session {PER_IP + 1} from one IP got {data!r}"
    finally:
        for c in held:
            c.close()
    # Once the held sessions are gone, clients are served again. The server notices
    # the closed sockets asynchronously: allow it a moment under load.
    assert poll(lambda: greets(limited.env), 5), "no 220 greeting after the held sessions closed"

    def served():
        try:
            assert_served(limited.env, limited.bob)
            return True
        except smtplib.SMTPConnectError:
            return False
    assert poll(served, 5), "bob not served after the held sessions closed"


def test_idle_client_is_disconnected(limited):
    c = RawSMTP(limited.env)
    start = time.monotonic()
    try:
        c.sock.settimeout(TIMEOUT + 10)
        while c.sock.recv(4096):
            pass
    except socket.timeout:
        pytest.fail(f"idle session still open {TIMEOUT + 10}s after the greeting (timeout = {TIMEOUT})")
    finally:
        c.close()
    elapsed = time.monotonic() - start
    assert elapsed >= TIMEOUT - 0.5, f"closed after {elapsed:.1f}s, before the timeout"


def test_stalled_tls_handshake_is_disconnected(limited):
    s = socket.create_connection(("127.0.0.1", limited.env.tls_port), timeout=TIMEOUT + 10)
    try:
        s.sendall(b"\x16\x03\x01")          # the start of a ClientHello, then silence
        try:
            while s.recv(4096):
                pass
        except socket.timeout:
            pytest.fail(f"stalled handshake still open {TIMEOUT + 10}s later (timeout = {TIMEOUT})")
        except ConnectionResetError:
            pass
    finally:
        s.close()
    assert_served(limited.env, limited.bob)
