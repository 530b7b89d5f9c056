"""PROXY protocol in front of the listeners (DESIGN §6, §8, §10).

With proxy_protocol = v2 every connection must open with a PROXY header from a
source in proxy_trusted; the address in the header is then the client's for the
audit, the logs, Received and max_sessions_per_ip. Anything else is closed without a
greeting, and the next honest client is still served. The last tests put a real
HAProxy (send-proxy-v2) in front of submitd, with the client on 127.0.0.2.
"""

import re
import shutil
import smtplib
import socket
import struct
import subprocess
import time

import pytest

from conftest import (ALICE_ADDR, BioTLS, build_stack, client_context, free_port, make_message,
                      added_headers, poll, port_accepts, queue_id, reply_text, submit,
                      unique_rcpt)

# The header must come within min(tls_handshake_timeout, 10 s): short here, so that
# the silent-client case is quick.
HEADER_TIMEOUT = 3
MAX_PER_IP = 3
TRUSTED = "127.0.0.1"       # the test balancer: every raw test connects from here
OUTSIDER = "127.0.0.2"      # a loopback alias (Linux routes all of 127/8 to lo)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_header(src, dst="127.0.0.1", sport=40000, dport=587, cmd=0x21, tlvs=b""):
    """A PROXY v2 header for TCP over IPv4 or IPv6, as HAProxy's send-proxy-v2 writes it."""
    if ":" in src:
        fam = 0x21
        body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                + struct.pack(">HH", sport, dport))
    else:
        fam = 0x11
        body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
    body += tlvs
    return SIG + bytes([cmd, fam]) + struct.pack(">H", len(body)) + body


def v2_local():
    return SIG + bytes([0x20, 0x00]) + struct.pack(">H", 0)


@pytest.fixture(scope="module")
def stack(request):
    failed_before = request.session.testsfailed
    s = build_stack("proxy", proxy_protocol="v2", proxy_trusted=f"{TRUSTED}/32, 2001:db8::/32",
                    tls_handshake_timeout=HEADER_TIMEOUT, max_sessions_per_ip=MAX_PER_IP)
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def connect(env, port=None, source=TRUSTED):
    sock = socket.create_connection(("127.0.0.1", port or env.port), timeout=15,
                                    source_address=(source, 0))
    return sock


def read_reply(sock, buf=b""):
    """One whole SMTP reply (multi-line included) from sock; returns (reply, rest)."""
    while True:
        lines = buf.split(b"\r\n")
        for i, line in enumerate(lines[:-1]):
            if len(line) >= 4 and line[3:4] == b" ":
                done = b"\r\n".join(lines[:i + 1]) + b"\r\n"
                return done.decode(), buf[len(done):]
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed by the server (pending: {buf!r})")
        buf += chunk


def closed_without_greeting(sock, timeout=HEADER_TIMEOUT + 5):
    """The server closes the connection and has sent nothing at all."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    assert data == b"", f"the server sent {data!r} to a connection without a valid PROXY header"
    return True


class ProxiedSMTP(smtplib.SMTP):
    """smtplib's client, with a PROXY header written before anything else."""

    def __init__(self, header, *args, source=TRUSTED, **kw):
        self._header = header
        self._source = source
        super().__init__(*args, **kw)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout, source_address=(self._source, 0))
        if self._header:
            sock.sendall(self._header)
        return sock


class ProxiedSMTP_SSL(smtplib.SMTP_SSL):
    def __init__(self, header, *args, **kw):
        self._header = header
        super().__init__(*args, **kw)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout, source_address=(TRUSTED, 0))
        sock.sendall(self._header)
        return self.context.wrap_socket(sock, server_hostname=host)


def send_via_header(stack, header, helo="client.test"):
    """A whole STARTTLS session behind header that submits one message: (qid, msg)."""
    env = stack.env
    msg = make_message(rcpts=[unique_rcpt("proxy")])
    s = ProxiedSMTP(header, "127.0.0.1", env.port, local_hostname=helo, timeout=15)
    try:
        assert s.ehlo()[0] == 250
        s.starttls(context=client_context(env, stack.alice))
        assert s.ehlo()[0] == 250
        qid = queue_id(submit(s, msg))
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            s.close()
    return qid, msg


def received_of(stack, msg):
    arrival = stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    return dict((n.lower(), v) for n, v in added_headers(arrival, msg.data))["received"]


def assert_served(stack, src="198.51.100.200"):
    """The next honest client behind the balancer is greeted and may send MAIL."""
    env = stack.env
    s = ProxiedSMTP(v2_header(src), "127.0.0.1", env.port, local_hostname="honest.test",
                    timeout=15)
    try:
        assert s.ehlo()[0] == 250
        s.starttls(context=client_context(env, stack.alice))
        assert s.ehlo()[0] == 250
        code, resp = s.mail(ALICE_ADDR)
        assert code == 250, f"honest client after the hostile case: {reply_text(code, resp)}"
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            s.close()


def log_since(stack, offset):
    return stack.daemon.log.read_bytes()[offset:].decode("utf-8", "replace")


def wait_log(stack, offset, needle, timeout=HEADER_TIMEOUT + 5):
    found = poll(lambda: needle in log_since(stack, offset), timeout)
    assert found, f"no log line with {needle!r}\n{stack.daemon.tail(offset=offset)}"
    return [line for line in log_since(stack, offset).splitlines() if needle in line]


# ---- honest clients behind a balancer ------------------------------------------------


def test_header_address_in_audit_received_and_log(stack):
    mark = stack.audit.mark()
    offset = stack.daemon.log_size()
    qid, msg = send_via_header(stack, v2_header("203.0.113.9", sport=51234))
    row = stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept" and r["queue_id"] == qid, mark)
    assert row["client_ip"] == "203.0.113.9", row
    # Every row of the session names the client, none the balancer.
    rows = [r for r in stack.audit.rows(mark) if r["session"] == row["session"]]
    assert rows and all(r["client_ip"] == "203.0.113.9" for r in rows), rows
    received = received_of(stack, msg)
    assert "[203.0.113.9]" in received, received
    assert "127.0.0.1" not in received, received
    lines = wait_log(stack, offset, "connect from [203.0.113.9] via PROXY from [127.0.0.1]")
    assert len(lines) == 1, lines
    assert "client=203.0.113.9" in lines[0], lines


def test_ipv6_client_through_ipv4_balancer(stack):
    mark = stack.audit.mark()
    qid, msg = send_via_header(stack, v2_header("2001:db8::77", "2001:db8::1"))
    row = stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept" and r["queue_id"] == qid, mark)
    assert row["client_ip"] == "2001:db8::77", row
    assert "[2001:db8::77]" in received_of(stack, msg)


def test_v1_text_header(stack):
    mark = stack.audit.mark()
    header = b"PROXY TCP4 192.0.2.45 127.0.0.1 40001 587\r\n"
    qid, _ = send_via_header(stack, header)
    row = stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept" and r["queue_id"] == qid, mark)
    assert row["client_ip"] == "192.0.2.45", row


def test_header_with_tlvs(stack):
    tlvs = b"\x01\x00\x04smtp" + b"\x04\x00\x00" + b"\x05\x00\x08abcdefgh"
    mark = stack.audit.mark()
    qid, _ = send_via_header(stack, v2_header("192.0.2.46", tlvs=tlvs))
    row = stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept" and r["queue_id"] == qid, mark)
    assert row["client_ip"] == "192.0.2.46", row


def test_local_command_is_served_as_the_balancer(stack):
    """LOCAL is the balancer's own connection (a health check): served, under the
    balancer's address, as HAProxy itself does."""
    offset = stack.daemon.log_size()
    sock = connect(stack.env)
    sock.sendall(v2_local())
    greeting, rest = read_reply(sock)
    assert greeting.startswith("220 "), greeting
    sock.sendall(b"QUIT\r\n")
    reply, _ = read_reply(sock, rest)
    assert reply.startswith("221"), reply
    sock.close()
    wait_log(stack, offset, "connect from [127.0.0.1] via PROXY LOCAL from [127.0.0.1]")


def test_header_and_pipelined_ehlo_in_one_write(stack):
    """Bytes after the header are the client's: an EHLO in the same segment is answered."""
    sock = connect(stack.env)
    sock.sendall(v2_header("192.0.2.50") + b"EHLO pipelined.test\r\n")
    greeting, rest = read_reply(sock)
    assert greeting.startswith("220 "), greeting
    ehlo, _ = read_reply(sock, rest)
    assert ehlo.startswith("250-") and "STARTTLS" in ehlo, ehlo
    sock.close()
    assert_served(stack)


def test_header_split_across_writes(stack):
    mark = stack.audit.mark()
    header = v2_header("192.0.2.51")
    sock = connect(stack.env)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    cuts = [0, 1, 7, 12, 15, 16, 20, len(header)]
    for a, b in zip(cuts, cuts[1:]):
        sock.sendall(header[a:b])
        time.sleep(0.05)
    greeting, rest = read_reply(sock)
    assert greeting.startswith("220 "), greeting
    # The session is the header's client: its pre-TLS rejection is audited under it.
    sock.sendall(b"EHLO split.test\r\nMAIL FROM:<a@example.com>\r\n")
    ehlo, rest = read_reply(sock, rest)
    assert ehlo.startswith("250"), ehlo
    mail, _ = read_reply(sock, rest)
    assert mail.startswith("530"), mail
    sock.close()
    rows = poll(lambda: [r for r in stack.audit.rows(mark) if r["client_ip"] == "192.0.2.51"], 5)
    assert rows, stack.audit.rows(mark)


def test_implicit_tls_right_after_header_in_one_write(stack):
    """On the implicit-TLS port the ClientHello follows the header in the same segment:
    only the header may be consumed before the handshake."""
    env = stack.env
    sock = connect(env, env.tls_port)
    c = BioTLS(client_context(env, stack.alice), sock)
    try:
        c.handshake(first=v2_header("192.0.2.52", dport=465))
        c.flush()
        assert c.replies(1) == [220], c.buf
    finally:
        sock.close()


def test_implicit_tls_session_carries_the_header_address(stack):
    env = stack.env
    mark = stack.audit.mark()
    msg = make_message(rcpts=[unique_rcpt("proxy-tls")])
    s = ProxiedSMTP_SSL(v2_header("192.0.2.53", dport=465), "127.0.0.1", env.tls_port,
                        local_hostname="tls.test", timeout=15, context=client_context(env, stack.alice))
    try:
        assert s.ehlo()[0] == 250
        qid = queue_id(submit(s, msg))
    finally:
        s.quit()
    row = stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept" and r["queue_id"] == qid, mark)
    assert row["client_ip"] == "192.0.2.53", row
    assert "[192.0.2.53]" in received_of(stack, msg)


def test_per_ip_limit_counts_the_header_address(stack):
    """max_sessions_per_ip counts the clients the headers name, not the balancer: more
    sessions than the limit from the balancer are fine, one too many from one client
    is refused."""
    env = stack.env
    socks = []
    try:
        for i in range(MAX_PER_IP + 2):            # different clients: all served
            s = connect(env)
            s.sendall(v2_header(f"192.0.2.{100 + i}"))
            assert read_reply(s)[0].startswith("220 ")
            socks.append(s)
        for i in range(MAX_PER_IP):                 # one client up to its limit
            s = connect(env)
            s.sendall(v2_header("192.0.2.99"))
            assert read_reply(s)[0].startswith("220 ")
            socks.append(s)
        offset = stack.daemon.log_size()
        s = connect(env)
        s.sendall(v2_header("192.0.2.99"))
        reply, _ = read_reply(s)
        assert reply.startswith("421 4.7.0 Too many sessions"), reply
        s.close()
        wait_log(stack, offset, "connect from [192.0.2.99] refused: max_sessions_per_ip reached")
    finally:
        for s in socks:
            s.close()
    # The closed sessions leave the count of the address the header named.
    def served_again():
        s = connect(env)
        try:
            s.sendall(v2_header("192.0.2.99"))
            return read_reply(s)[0].startswith("220 ")
        finally:
            s.close()
    assert poll(served_again, 5)


# ---- connections that are not served --------------------------------------------------


def refused(stack, payload, reason, source=TRUSTED, port=None):
    """Sends payload (or nothing) and checks: closed without any byte, one log line with
    the peer's address and reason, and the next honest client is served."""
    offset = stack.daemon.log_size()
    sock = connect(stack.env, port, source)
    if payload:
        sock.sendall(payload)
    assert closed_without_greeting(sock)
    lines = wait_log(stack, offset, reason)
    assert len(lines) == 1 and f"client={source}" in lines[0], lines
    # One line for the refused connection: no "disconnect" line after it.
    session = re.search(r"session=(\S+)", lines[0]).group(1)
    mine = [line for line in log_since(stack, offset).splitlines() if f"session={session} " in line]
    assert mine == lines, mine
    assert_served(stack)


def test_untrusted_source_with_valid_header_is_closed(stack):
    refused(stack, v2_header("192.0.2.60"), "refused: not in proxy_trusted", source=OUTSIDER)


def test_untrusted_source_on_implicit_tls_port_is_closed(stack):
    refused(stack, v2_header("192.0.2.60"), "refused: not in proxy_trusted", source=OUTSIDER,
            port=stack.env.tls_port)


def test_plain_smtp_without_header_is_closed(stack):
    refused(stack, b"EHLO client.test\r\n", "PROXY header refused: no PROXY header")


def test_tls_client_hello_without_header_is_closed(stack):
    refused(stack, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
            "PROXY header refused: no PROXY header", port=stack.env.tls_port)


def test_silent_client_is_closed_after_the_header_timeout(stack):
    start = time.monotonic()
    refused(stack, b"", "PROXY header refused: not received within")
    # The deadline is checked once a second, and refused() also serves a client after.
    assert time.monotonic() - start < HEADER_TIMEOUT + 10


def test_incomplete_header_is_closed_after_the_header_timeout(stack):
    refused(stack, v2_header("192.0.2.61")[:20], "PROXY header refused: not received within")


def test_client_leaving_inside_the_header_is_logged(stack):
    offset = stack.daemon.log_size()
    sock = connect(stack.env)
    sock.sendall(v2_header("192.0.2.62")[:10])
    time.sleep(0.2)
    sock.close()
    wait_log(stack, offset, "connection closed inside the PROXY header")
    assert_served(stack)


@pytest.mark.parametrize("payload,reason", [
    (b"\r\n\r\n\x00\r\nQUIX\n" + bytes(16), "bad PROXY v2 signature"),
    (SIG + b"\x11\x11\x00\x0c" + bytes(12), "unsupported PROXY v2 version"),
    (SIG + b"\x23\x11\x00\x0c" + bytes(12), "unknown PROXY v2 command"),
    (SIG + b"\x21\x11\xff\xff", "PROXY v2 header too long"),
    (SIG + b"\x21\x11\x00\x08" + bytes(8), "PROXY v2 address block too short"),
    (SIG + b"\x21\x12\x00\x0c" + bytes(12), "not TCP"),
    (SIG + b"\x21\x11\x00\x0f" + bytes(12) + b"\x01\x00\x09", "malformed PROXY v2 TLV"),
    (b"PROXY TCP4 192.0.2.999 127.0.0.1 1 2\r\n", "bad address in PROXY v1 line"),
    (b"PROXY TCP4 192.0.2.1 127.0.0.1 1 2\n", "bad character in PROXY v1 line"),
    (b"PROXY UNKNOWN " + b"x" * 200, "PROXY v1 line too long"),
    (b"PROXY TCP4 192.0.2.1 127.0.0.1 70000 2\r\n", "bad port in PROXY v1 line"),
])
def test_malformed_header_is_closed(stack, payload, reason):
    refused(stack, payload, reason)


def test_garbage_is_closed(stack, rng):
    payload = bytes(rng.randrange(256) for _ in range(64))
    # Garbage that happens to start like a header is refused later, but refused.
    if payload[:1] in (b"\r", b"P"):
        payload = b"\x00" + payload
    refused(stack, payload, "PROXY header refused")


# ---- a real HAProxy in front ----------------------------------------------------------


class HAProxy:
    """A private haproxy in the foreground: TCP mode, send-proxy-v2, health checks."""

    def __init__(self, env):
        self.port = free_port()
        self.tls_port = free_port()
        self.cfg = env.dir / "haproxy.cfg"
        self.log = env.dir / "haproxy.log"
        self.cfg.write_text(f"""\
global
    maxconn 200

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend submission
    bind 127.0.0.1:{self.port}
    default_backend submitd

frontend submissions
    bind 127.0.0.1:{self.tls_port}
    default_backend submitd_tls

backend submitd
    server node1 127.0.0.1:{env.port} send-proxy-v2 check check-send-proxy inter 1s

backend submitd_tls
    server node1 127.0.0.1:{env.tls_port} send-proxy-v2 check check-send-proxy inter 1s
""")
        self.proc = None

    def start(self):
        exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
        check = subprocess.run([exe, "-c", "-f", str(self.cfg)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([exe, "-db", "-f", str(self.cfg)], stdout=out,
                                         stderr=subprocess.STDOUT)
        assert poll(lambda: port_accepts(self.port) and port_accepts(self.tls_port), 10), \
            self.log.read_text()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def haproxy_available():
    return shutil.which("haproxy") or shutil.which("/usr/sbin/haproxy")


@pytest.fixture(scope="module")
def haproxy(stack):
    if not haproxy_available():
        pytest.skip("haproxy is not installed (scripts/install-deps.sh installs it)")
    h = HAProxy(stack.env)
    h.start()
    yield h
    h.stop()


def test_haproxy_client_address_reaches_audit_and_received(stack, haproxy):
    env = stack.env
    mark = stack.audit.mark()
    msg = make_message(rcpts=[unique_rcpt("haproxy")])
    s = smtplib.SMTP("127.0.0.1", haproxy.port, local_hostname="roaming.test", timeout=15,
                     source_address=(OUTSIDER, 0))
    try:
        assert s.ehlo()[0] == 250
        s.starttls(context=client_context(env, stack.alice))
        assert s.ehlo()[0] == 250
        qid = queue_id(submit(s, msg))
    finally:
        s.quit()
    row = stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept" and r["queue_id"] == qid, mark)
    assert row["client_ip"] == OUTSIDER, row
    received = received_of(stack, msg)
    assert f"[{OUTSIDER}]" in received, received


def test_haproxy_implicit_tls(stack, haproxy):
    env = stack.env
    mark = stack.audit.mark()
    msg = make_message(rcpts=[unique_rcpt("haproxy-tls")])
    s = smtplib.SMTP_SSL("127.0.0.1", haproxy.tls_port, local_hostname="roaming.test",
                         timeout=15, source_address=(OUTSIDER, 0),
                         context=client_context(env, stack.alice))
    try:
        assert s.ehlo()[0] == 250
        qid = queue_id(submit(s, msg))
    finally:
        s.quit()
    row = stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept" and r["queue_id"] == qid, mark)
    assert row["client_ip"] == OUTSIDER, row


def test_haproxy_health_checks_are_served_as_local(stack, haproxy):
    """HAProxy's checks (check-send-proxy) open with a LOCAL header: served, never
    refused, so the balancer sees the node up."""
    offset = stack.daemon.log_size()
    wait_log(stack, offset, "via PROXY LOCAL from [127.0.0.1]", timeout=5)
    assert "PROXY header refused" not in log_since(stack, offset)


def test_direct_connection_bypassing_haproxy_is_not_served(stack, haproxy):
    refused(stack, b"EHLO sneaky.test\r\n", "refused: not in proxy_trusted", source=OUTSIDER)
