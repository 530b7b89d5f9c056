"""Hostile input: each case sends a malformed or malicious sequence, asserts the exact
reply, checks that nothing of it was relayed, and that a fresh client is still served
(DESIGN §3, §8; STYLE "Tests that count")."""

import socket
import ssl

import pytest

from conftest import (ALICE_ADDR, MAX_MESSAGE_SIZE, MAX_RECIPIENTS, RawSMTP, added_headers,
                      assert_not_relayed, assert_served, client_context, contains,
                      make_message, queue_id,
                      raw_tls_session, relay_settled, send_ok, start_data, unique_rcpt)

LINE_TOO_LONG = "500 5.5.2 Line too long"
BARE_NEWLINE = "550 5.5.2 Bare CR or LF not allowed"
TOO_BIG = "552 5.3.4 Message size exceeds fixed limit"


# ---- STARTTLS -------------------------------------------------------------------------------

def test_starttls_plaintext_injection_is_discarded(stack):
    mark = stack.audit.mark()
    c = RawSMTP(stack.env)
    try:
        assert c.cmd("EHLO client.test").code == 250
        c.send(b"STARTTLS\r\nMAIL FROM:<x@evil.test>\r\n")
        r = c.reply()
        assert r.code == 220, str(r)
        assert c.buf == b"", f"the server answered the injected command in plaintext: {c.buf!r}"
        c.sock = client_context(stack.env, stack.alice).wrap_socket(c.sock)
        r = c.cmd("EHLO client.test")
        assert r.code == 250 and len(r.lines) > 1, f"expected the multi-line EHLO reply, got {r!r}"
        r = c.cmd("NOOP")
        assert r.code == 250, f"NOOP after the handshake -> {r!r} (a reply to the injected MAIL?)"
        assert c.nothing_pending(), f"unexpected further replies: {c.buf!r}"
        # The session continues in TLS with alice's identity.
        assert c.cmd(f"MAIL FROM:<{ALICE_ADDR}>").code == 250
    finally:
        c.close()
    # No wait is needed: authz answers the checks of one session in order and writes
    # a row before it answers, so by the 250 to alice's MAIL a row for the injected
    # MAIL (sent before it) would already be there.
    assert not [r for r in stack.audit.rows(mark) if contains(r["mail_from"], "evil")], \
        "the injected MAIL FROM reached the audit trail"
    assert_served(stack.env, stack.alice)


def test_starttls_injection_of_a_whole_transaction(stack):
    """Everything after STARTTLS in the same packet is dropped, however much there is."""
    c = RawSMTP(stack.env)
    rcpt = unique_rcpt("smuggled")
    try:
        c.cmd("EHLO client.test")
        c.send(b"STARTTLS\r\nEHLO evil.test\r\nMAIL FROM:<alice@example.com>\r\n"
               b"RCPT TO:<" + rcpt.encode() + b">\r\nDATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n")
        assert c.reply().code == 220
        assert c.buf == b""
        c.sock = client_context(stack.env, stack.alice).wrap_socket(c.sock)
        assert c.cmd("NOOP").code == 250
        assert c.nothing_pending()
        c.cmd("QUIT")
    finally:
        c.close()
    # A message sent afterwards is relayed and nothing is left in the queue: the
    # smuggled one, had it been queued, would have arrived by now.
    probe = make_message()
    send_ok(stack.env, stack.alice, probe)
    stack.upstream.wait_for(probe.marker, probe.rcpts)
    relay_settled(stack.env)
    assert not [a for a in stack.upstream.arrivals() if rcpt in a.rcpt_tos]
    assert_served(stack.env, stack.alice)


def test_starttls_forgets_the_helo(stack):
    """After STARTTLS the client must greet again (RFC 3207 §4.2): MAIL straight after
    the handshake is not accepted."""
    c = RawSMTP(stack.env)
    try:
        c.cmd("EHLO client.test")
        c.starttls(client_context(stack.env, stack.alice))
        r = c.cmd(f"MAIL FROM:<{ALICE_ADDR}>")
        assert r.code >= 500, f"MAIL without EHLO after STARTTLS -> {r}"
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd(f"MAIL FROM:<{ALICE_ADDR}>").code == 250
    finally:
        c.close()


def test_second_starttls_is_refused(stack):
    c = raw_tls_session(stack.env, stack.alice)
    try:
        r = c.cmd("STARTTLS")
        assert r.code >= 500, f"STARTTLS inside TLS -> {r}"
        assert c.cmd("NOOP").code == 250
    finally:
        c.close()


def test_garbage_instead_of_tls_handshake(stack, rng):
    c = RawSMTP(stack.env)
    try:
        c.cmd("EHLO client.test")
        assert c.cmd("STARTTLS").code == 220
        c.send(b"\x16\x03\x01\x00\x05hello" + rng.randbytes(200) + b"\r\nQUIT\r\n")
        c.sock.settimeout(5)
        try:
            while c.sock.recv(4096):
                pass
        except (socket.timeout, OSError):
            pass
    finally:
        c.close()
    assert_served(stack.env, stack.alice)


# ---- line length ---------------------------------------------------------------------------

def test_command_line_too_long_before_tls(stack):
    c = RawSMTP(stack.env)
    try:
        c.send(b"NOOP " + b"x" * 1100 + b"\r\n")
        assert c.reply().last == LINE_TOO_LONG
    finally:
        c.close()
    assert_served(stack.env, stack.alice)


def test_command_line_too_long_after_tls(stack):
    c = raw_tls_session(stack.env, stack.alice)
    try:
        c.send(b"MAIL FROM:<" + b"a" * 1200 + b"@example.com>\r\n")
        assert c.reply().last == LINE_TOO_LONG
    finally:
        c.close()
    assert_served(stack.env, stack.alice)


def test_very_long_line_without_newline(stack):
    """64 KiB with no line end: refused, not buffered without bound. The server may
    close after its reply; if it does, the reply can be lost to the reset, so only a
    reply other than the contract's fails here, and the fresh client must be served."""
    c = raw_tls_session(stack.env, stack.alice)
    reply = None
    try:
        c.send(b"NOOP " + b"y" * 65536 + b"\r\n")
        reply = c.reply()
    except (ConnectionError, ssl.SSLError, OSError):
        pass
    finally:
        c.close()
    if reply is not None:
        assert reply.last == LINE_TOO_LONG
    assert_served(stack.env, stack.alice)


def test_data_line_too_long(stack):
    msg = make_message(body="ok\r\n" + "z" * 1001 + "\r\nmore\r\n")
    c = raw_tls_session(stack.env, stack.alice)
    try:
        start_data(c, msg)
        c.send(msg.data + b".\r\n")
        assert c.reply().last == LINE_TOO_LONG
    finally:
        c.close()
    assert_not_relayed(stack, msg.marker)
    assert_served(stack.env, stack.alice)


# ---- end of data: CRLF.CRLF and nothing else -------------------------------------------------

@pytest.mark.parametrize("body", [b"line one\nline two\r\n", b"line one\rline two\r\n",
                                  b"ends with bare LF\n", b"bare\n.\nin the middle\r\n"],
                         ids=["bare-LF", "bare-CR", "trailing-bare-LF", "LF-dot-LF"])
def test_bare_cr_or_lf_in_data(stack, body):
    msg = make_message(body="")
    data = msg.data + body
    mark = stack.audit.mark()
    c = raw_tls_session(stack.env, stack.alice)
    try:
        start_data(c, msg)
        c.send(data + b"\r\n.\r\n" if not data.endswith(b"\r\n") else data + b".\r\n")
        assert c.reply().last == BARE_NEWLINE
        # Exactly one reply, then the session is usable.
        assert c.cmd("NOOP").code == 250
        assert c.nothing_pending()
    finally:
        c.close()
    stack.audit.wait(lambda r: r["decision"] == "reject" and contains(r["reason"], "bare", "cr", "lf"),
                     mark, what="reject row for bare CR/LF")
    assert_not_relayed(stack, msg.marker)
    assert_served(stack.env, stack.alice)


@pytest.mark.parametrize("fake_end", [b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\n"],
                         ids=["LF.CRLF", "CRLF.LF", "CR.CRLF", "LF.LF"])
def test_smtp_smuggling_fake_end_of_data(stack, fake_end):
    """A fake end of data followed by a second transaction: no command after the fake
    end is executed, nothing is relayed, and the real end gets one 550."""
    msg = make_message(body="")
    victim = unique_rcpt("victim")
    smuggled = (b"body" + fake_end
                + b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<" + victim.encode() + b">\r\n"
                + b"DATA\r\nFrom: alice@example.com\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")
    c = raw_tls_session(stack.env, stack.alice)
    try:
        start_data(c, msg)
        c.send(msg.data + smuggled + b".\r\n")
        assert c.reply().last == BARE_NEWLINE
        assert c.cmd("NOOP").code == 250, "a smuggled command was answered"
        assert c.nothing_pending()
    finally:
        c.close()
    assert_not_relayed(stack, msg.marker)
    assert not [a for a in stack.upstream.arrivals() if victim in a.rcpt_tos], "smuggled message relayed"


def test_dot_stuffing_round_trip(stack):
    """Lines starting with dots survive unchanged, and '..' is not an end of data."""
    msg = make_message(body=".\r\n..\r\n...\r\n. \r\n.x\r\n")
    send_ok(stack.env, stack.alice, msg)
    arrival = stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    added_headers(arrival, msg.data)


# ---- limits ----------------------------------------------------------------------------------

def test_too_many_recipients(stack):
    rcpts = [unique_rcpt(f"r{i}") for i in range(MAX_RECIPIENTS + 1)]
    msg = make_message(rcpts=rcpts[:MAX_RECIPIENTS])
    mark = stack.audit.mark()
    c = raw_tls_session(stack.env, stack.alice)
    try:
        assert c.cmd(f"MAIL FROM:<{ALICE_ADDR}>").code == 250
        for r in rcpts[:MAX_RECIPIENTS]:
            assert c.cmd(f"RCPT TO:<{r}>").code == 250
        assert c.cmd(f"RCPT TO:<{rcpts[-1]}>").last == "452 4.5.3 Too many recipients"
        # The recipients accepted so far still make a message.
        assert c.cmd("DATA").code == 354
        c.send(msg.data + b".\r\n")
        qid = queue_id(c.reply().last)
    finally:
        c.close()
    got = stack.upstream.wait_for(msg.marker, rcpts[:MAX_RECIPIENTS])
    assert rcpts[-1] not in {r for a in got for r in a.rcpt_tos}
    stack.audit.wait(lambda r: r["decision"] in ("reject", "tempfail") and contains(r["reason"], "recipient"),
                     mark, what="audit row for too many recipients")
    assert qid
    assert_served(stack.env, stack.alice)


def test_message_too_large(stack):
    filler = ("f" * 76 + "\r\n") * (MAX_MESSAGE_SIZE // 78 + 10)
    msg = make_message(body=filler)
    assert len(msg.data) > MAX_MESSAGE_SIZE
    mark = stack.audit.mark()
    c = raw_tls_session(stack.env, stack.alice)
    try:
        start_data(c, msg)
        c.send(msg.data + b".\r\n")
        assert c.reply().last == TOO_BIG
        assert c.cmd("RSET").code == 250
        assert c.cmd(f"MAIL FROM:<{ALICE_ADDR}>").code == 250, "session unusable after 552"
    finally:
        c.close()
    stack.audit.wait(lambda r: r["decision"] == "reject" and contains(r["reason"], "size", "large", "limit"),
                     mark, what="reject row for the oversized message")
    assert_not_relayed(stack, msg.marker)
    assert_served(stack.env, stack.alice)


def test_message_just_under_the_limit_is_accepted(stack):
    msg = make_message(body="")
    # Leave room for the Received header the daemon adds; the limit is on what was sent.
    room = MAX_MESSAGE_SIZE - len(msg.data) - 2048
    body = ("u" * 98 + "\r\n") * (room // 100)
    msg = make_message(body=body)
    assert len(msg.data) < MAX_MESSAGE_SIZE
    send_ok(stack.env, stack.alice, msg)
    stack.upstream.wait_for(msg.marker, msg.rcpts)


def test_size_parameter_over_the_limit(stack):
    c = raw_tls_session(stack.env, stack.alice)
    try:
        r = c.cmd(f"MAIL FROM:<{ALICE_ADDR}> SIZE={MAX_MESSAGE_SIZE + 1}")
        assert r.last == TOO_BIG
        r = c.cmd(f"MAIL FROM:<{ALICE_ADDR}> SIZE={MAX_MESSAGE_SIZE // 2}")
        assert r.code == 250, str(r)
    finally:
        c.close()
    assert_served(stack.env, stack.alice)


def test_size_parameter_absurd_value(stack):
    c = raw_tls_session(stack.env, stack.alice)
    try:
        r = c.cmd(f"MAIL FROM:<{ALICE_ADDR}> SIZE=99999999999999999999999999")
        assert r.code >= 500, f"absurd SIZE accepted: {r}"
    finally:
        c.close()
    assert_served(stack.env, stack.alice)


# ---- broken clients ---------------------------------------------------------------------------

def test_binary_garbage_commands(stack):
    c = RawSMTP(stack.env)
    try:
        c.send(b"\x00\xff\xfe garbage \x00\x01\r\n")
        r = c.reply()
        assert 500 <= r.code < 600, f"garbage command -> {r}"
    except ConnectionError:
        pass      # closing on garbage is acceptable; the fresh client below must work
    finally:
        c.close()
    assert_served(stack.env, stack.alice)


def test_disconnect_in_the_middle_of_data(stack):
    msg = make_message()
    c = raw_tls_session(stack.env, stack.alice)
    try:
        start_data(c, msg)
        c.send(msg.data[: len(msg.data) // 2])
    finally:
        c.close()
    assert_not_relayed(stack, msg.marker)
    assert_served(stack.env, stack.alice)


def test_many_idle_connections_do_not_block_others(stack):
    """Twenty silent connections (some mid-handshake) do not stop a real client."""
    idle = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", stack.env.port if i % 2 else stack.env.tls_port),
                                         timeout=5)
            if i % 4 == 0:
                s.sendall(b"\x16\x03\x01")          # a handshake that never finishes
            idle.append(s)
        msg = make_message()
        send_ok(stack.env, stack.alice, msg)
        stack.upstream.wait_for(msg.marker, msg.rcpts)
    finally:
        for s in idle:
            s.close()


def test_client_leaving_during_commit_still_gets_an_accept_row(stack):
    """The message is the queue's once it is committed: relayed and audited even when
    the client hangs up right after the final dot, before reading the 250."""
    msg = make_message()
    mark = stack.audit.mark()
    c = raw_tls_session(stack.env, stack.alice)
    try:
        start_data(c, msg)
        c.send(msg.data + b".\r\n")
    finally:
        c.close()
    stack.upstream.wait_for(msg.marker, msg.rcpts)
    stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept", mark,
                     what="accept row of a message whose client left")
    assert_served(stack.env, stack.alice)
