"""Cheap exhaustion of the smtp process (DESIGN §3.4, §3.1, §9): tls_handshake_timeout
for the TLS handshake and the first command after it, IPv6 clients counted per /64 for
max_sessions_per_ip, and a client that pipelines without reading its replies is not
read either. Every case ends with an honest client being served."""

import contextlib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (RawSMTP, assert_served, build_stack, client_context,
                      free_port, raw_tls_session)
from daemon_procs import child_pid, log_since, vm_rss_kib

HANDSHAKE_TIMEOUT = 2
IDLE_TIMEOUT = 180
PER_IP = 3
TIMEOUT_REPLY = "421 4.4.2 mail.test Error: timeout exceeded"


@pytest.fixture(scope="module")
def bounded(request):
    failed_before = request.session.testsfailed
    # log_level info: a debug line per pipelined command would be gigabytes here. The
    # stalled sessions of the pipelining test must outlive its slowest run (sanitizers
    # on a loaded machine) before their clients read: a generous idle timeout.
    s = build_stack("exhaustion", tls_handshake_timeout=f"{HANDSHAKE_TIMEOUT}s", smtp_workers=1,
                    log_level="info", timeout=IDLE_TIMEOUT)
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def read_until_closed(sock, limit):
    """Everything sock receives until the server closes it; fails after limit seconds."""
    sock.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return data
            data += chunk
    except (ConnectionResetError, ssl.SSLEOFError):
        return data
    except socket.timeout:
        pytest.fail(f"still open {limit}s later (tls_handshake_timeout = {HANDSHAKE_TIMEOUT}, "
                    f"timeout = {IDLE_TIMEOUT}); received {data!r}")


# ---- tls_handshake_timeout -----------------------------------------------------------------

def test_silent_implicit_tls_connection_is_closed(bounded):
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", bounded.env.tls_port), timeout=5) as s:
        assert read_until_closed(s, HANDSHAKE_TIMEOUT + 4) == b""
    assert time.monotonic() - start >= HANDSHAKE_TIMEOUT - 0.5
    assert_served(bounded.env, bounded.alice)


def test_unfinished_handshake_is_closed(bounded):
    with socket.create_connection(("127.0.0.1", bounded.env.tls_port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01")          # the start of a ClientHello, then silence
        read_until_closed(s, HANDSHAKE_TIMEOUT + 4)
    assert_served(bounded.env, bounded.alice)


def test_no_command_after_implicit_tls_handshake(bounded):
    # The daemon's deadline runs from the accept: so does the test's clock.
    start = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", bounded.env.tls_port), timeout=5)
    tls = client_context(bounded.env, bounded.alice).wrap_socket(sock)
    try:
        data = read_until_closed(tls, HANDSHAKE_TIMEOUT + 4)
    finally:
        tls.close()
    lines = data.decode().splitlines()
    assert lines[0].startswith("220 "), data
    assert lines[-1] == TIMEOUT_REPLY, data
    assert time.monotonic() - start >= HANDSHAKE_TIMEOUT - 0.5
    assert_served(bounded.env, bounded.alice)


def test_no_command_after_starttls_handshake(bounded):
    c = RawSMTP(bounded.env)
    try:
        assert c.cmd("EHLO client.test").code == 250
        c.starttls(client_context(bounded.env, bounded.alice))
        data = read_until_closed(c.sock, HANDSHAKE_TIMEOUT + 4)
    finally:
        c.close()
    assert data.decode().splitlines()[-1:] == [TIMEOUT_REPLY], data
    assert_served(bounded.env, bounded.alice)


def test_the_bound_ends_with_the_first_command(bounded):
    """After the first command only `timeout` (client silence) applies."""
    c = raw_tls_session(bounded.env, bounded.alice)
    try:
        time.sleep(HANDSHAKE_TIMEOUT + 2)
        assert c.cmd("NOOP").code == 250
    finally:
        c.close()


# ---- IPv6 clients per /64 ------------------------------------------------------------------

PREFIX = "fd00:5b:6400"           # a ULA /48 routed to lo for the test: two /64s in it
IPV6_FREEBIND = 78


@contextlib.contextmanager
def local_ipv6_prefix():
    """Makes every address of PREFIX::/48 local (an AnyIP route on lo), for the test."""
    route = ["ip", "-6", "route", "add", "local", f"{PREFIX}::/48", "dev", "lo", "table", "local"]
    proc = subprocess.run(route, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot route {PREFIX}::/48 to lo (needs root and IPv6): {proc.stderr.strip()}")
    try:
        yield
    finally:
        route[3] = "del"
        subprocess.run(route, capture_output=True)


def connect_from(source, port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_FREEBIND, 1)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("::1", port))
    return s


def first_reply(s):
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def ipv6_stack(fresh_stack_factory):
    port6 = free_port()
    with local_ipv6_prefix():
        s = fresh_stack_factory("ipv6-64", start_daemon=False, max_sessions_per_ip=PER_IP,
                                smtp_workers=1)
        s.env.settings["listen"] += f", [::1]:{port6}"
        s.env.write_config()
        s.daemon.start()
        s.port6 = port6
        yield s


def test_ipv6_clients_are_counted_per_64(ipv6_stack):
    stack = ipv6_stack
    held = []
    try:
        for i in range(1, PER_IP + 1):
            s = connect_from(f"{PREFIX}:1::{i}", stack.port6)
            held.append(s)
            assert first_reply(s).startswith(b"220 "), f"client {i} of the /64 not greeted"
        # Another address of the same /64 is the same client for the limit.
        s = connect_from(f"{PREFIX}:1::ff:{PER_IP + 1}", stack.port6)
        held.append(s)
        assert first_reply(s).startswith(b"421 4.7.0"), "the /64's limit was not applied"
        # Another /64 is another client.
        s = connect_from(f"{PREFIX}:2::1", stack.port6)
        held.append(s)
        assert first_reply(s).startswith(b"220 "), "a client of another /64 was refused"
    finally:
        for s in held:
            s.close()
    assert_served(stack.env, stack.alice)


# ---- a client that does not read its replies -------------------------------------------------

NOOPS = b"NOOP\r\n" * 4096
STALLED_CLIENTS = 6


def pipeline_until_stalled(env):
    """Sends NOOPs without reading until the server stops taking them for a second.
    Returns (socket, number of commands sent)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    s.connect(("127.0.0.1", env.port))
    s.setblocking(False)
    sent = 0
    last_progress = time.monotonic()
    deadline = time.monotonic() + 20
    while time.monotonic() - last_progress < 1.0:
        assert time.monotonic() < deadline, "the server kept reading a client that never reads"
        try:
            # Resume where the last partial send stopped, so that no command is torn.
            n = s.send(NOOPS[sent % len(NOOPS):])
        except BlockingIOError:
            time.sleep(0.02)
            continue
        sent += n
        last_progress = time.monotonic()
    return s, sent // len(b"NOOP\r\n")


def read_replies(s, want, limit=120):
    """Reads until `want` NOOP replies (after the greeting) have arrived."""
    s.setblocking(True)
    s.settimeout(limit)
    buf = b""
    got = 0
    greeting = None
    while got < want:
        chunk = s.recv(1 << 20)
        assert chunk, f"closed after {got} of {want} replies"
        buf += chunk
        lines = buf.split(b"\r\n")
        buf = lines.pop()
        for line in lines:
            if greeting is None:
                greeting = line
                assert line.startswith(b"220 "), line
                continue
            assert line == b"250 2.0.0 Ok", f"reply {got + 1}: {line!r}"
            got += 1
    return got


def test_pipelining_without_reading_stalls_the_session(bounded):
    env = bounded.env
    smtp = child_pid(bounded.daemon, "submitd-smtp")
    offset = bounded.daemon.log_size()
    before = vm_rss_kib(smtp)
    clients = []
    try:
        for _ in range(STALLED_CLIENTS):
            clients.append(pipeline_until_stalled(env))
        grown = vm_rss_kib(smtp) - before
        # Each stalled session holds its input buffer and at most some KiB of
        # replies, never the megabytes its client pushed.
        assert grown < 4096, f"smtp grew by {grown} KiB for {STALLED_CLIENTS} stalled clients"
        assert "output buffer full" not in log_since(bounded.daemon, offset)
        # The session was stalled, not dropped: every command is answered once the
        # client reads.
        for s, sent in clients:
            assert sent > 0
            assert read_replies(s, sent) == sent
    finally:
        for s, _ in clients:
            s.close()
    assert_served(env, bounded.alice)
