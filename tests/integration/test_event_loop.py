"""Ownership in the smtp event loop (DESIGN §2): epoll events name sessions by slot and
generation, and a session closed while another event of the same epoll_wait batch is
handled is freed only after the batch.

The ordering tests make one batch hold [the authz channel's answer, the client's reset]
in that order, deterministically: the authz process is stopped while the session's
request is sent, the smtp process is stopped, authz answers onto the channel, the
client resets its connection, and only then does the smtp process run again. Handling
the answer pumps the session, whose read fails on the reset, so the session closes
while the reset event is still waiting in the same batch.
"""

import os
import random
import signal
import socket
import ssl
import threading
import time

import pytest

from conftest import (ALICE_ADDR, RawSMTP, assert_served, client_context, make_message,
                      raw_tls_session)
from daemon_procs import Stopped, child_pid, comm, log_since, reset

ROUNDS = 4


def assert_no_restart(stack, smtp_pid, log_offset):
    assert comm(smtp_pid) == "submitd-smtp", "the smtp process died"
    assert child_pid(stack.daemon, "submitd-smtp") == smtp_pid, "the smtp process was replaced"
    log = log_since(stack.daemon, log_offset)
    assert "restarting" not in log, "the master restarted the workers:\n" + log[-3000:]


@pytest.fixture
def one_worker(fresh_stack_factory):
    """A private daemon with one smtp worker: every event is in that worker's batch.
    Private, so that a test that breaks the worker does not take the next one along."""
    return fresh_stack_factory("event-loop", smtp_workers=1)


# ---- the answer first, the reset later -------------------------------------------------------

def implicit_tls_greeted(env, identity):
    """An implicit-TLS connection after the handshake and the 220 greeting: the identity
    request has gone to authz by then (it is sent before the greeting is flushed)."""
    sock = socket.create_connection(("127.0.0.1", env.tls_port), timeout=10)
    tls = client_context(env, identity).wrap_socket(sock)
    data = b""
    while b"\r\n" not in data:
        chunk = tls.recv(4096)
        assert chunk, "closed before the greeting"
        data += chunk
    assert data.startswith(b"220 "), f"greeting {data!r}"
    return tls


@pytest.mark.parametrize("with_cert", [True, False], ids=["cert", "no-cert"])
def test_identity_answer_then_reset_in_one_batch(one_worker, with_cert):
    stack = one_worker
    smtp = child_pid(stack.daemon, "submitd-smtp")
    authz = child_pid(stack.daemon, "submitd-authz")
    offset = stack.daemon.log_size()
    for _ in range(ROUNDS):
        with Stopped(authz) as held_authz:
            tls = implicit_tls_greeted(stack.env, stack.alice if with_cert else None)
            with Stopped(smtp):
                os.kill(held_authz.pid, signal.SIGCONT)
                time.sleep(0.3)             # authz answers onto the channel meanwhile
                reset(tls)
                time.sleep(0.1)             # the reset reaches the session's socket
    # A session served after the batch proves smtp has handled it: a worker that the
    # batch broke would be gone, or replaced, by then.
    assert_served(stack.env, stack.alice)
    assert_no_restart(stack, smtp, offset)


def test_sender_answer_then_reset_in_one_batch(one_worker):
    stack = one_worker
    smtp = child_pid(stack.daemon, "submitd-smtp")
    authz = child_pid(stack.daemon, "submitd-authz")
    offset = stack.daemon.log_size()
    for _ in range(ROUNDS):
        c = RawSMTP(stack.env)
        assert c.cmd("EHLO client.test").code == 250
        c.starttls(client_context(stack.env, stack.alice))
        assert c.cmd("EHLO client.test").code == 250
        with Stopped(authz) as held_authz:
            c.send(f"MAIL FROM:<{ALICE_ADDR}>\r\n".encode())
            time.sleep(0.3)                 # smtp reads MAIL and asks authz
            with Stopped(smtp):
                os.kill(held_authz.pid, signal.SIGCONT)
                time.sleep(0.3)             # authz answers onto the channel meanwhile
                reset(c.sock)
                time.sleep(0.1)
    # A session served after the batch proves smtp has handled it: a worker that the
    # batch broke would be gone, or replaced, by then.
    assert_served(stack.env, stack.alice)
    assert_no_restart(stack, smtp, offset)


def answer_then_reset(stack, answering, request, client):
    """Makes one smtp batch hold [the answer of process `answering`, client's reset]:
    `answering` is stopped while request() makes smtp send it a request, then smtp is
    stopped while it answers and the client resets."""
    smtp = child_pid(stack.daemon, "submitd-smtp")
    other = child_pid(stack.daemon, answering)
    with Stopped(other):
        request()
        time.sleep(0.3)                     # smtp reads the command and asks
        with Stopped(smtp):
            os.kill(other, signal.SIGCONT)
            time.sleep(0.3)                 # the answer waits on the channel meanwhile
            reset(client)
            time.sleep(0.1)


def test_queue_open_answer_then_reset_in_one_batch(one_worker):
    stack = one_worker
    smtp = child_pid(stack.daemon, "submitd-smtp")
    offset = stack.daemon.log_size()
    for _ in range(ROUNDS):
        msg = make_message()
        c = raw_tls_session(stack.env, stack.alice)
        assert c.cmd(f"MAIL FROM:<{msg.mail_from}>").code == 250
        assert c.cmd(f"RCPT TO:<{msg.rcpts[0]}>").code == 250
        answer_then_reset(stack, "submitd-queue", lambda: c.send(b"DATA\r\n"), c.sock)
    # A session served after the batch proves smtp has handled it: a worker that the
    # batch broke would be gone, or replaced, by then.
    assert_served(stack.env, stack.alice)
    assert_no_restart(stack, smtp, offset)


def test_queue_commit_answer_then_reset_in_one_batch(one_worker):
    stack = one_worker
    smtp = child_pid(stack.daemon, "submitd-smtp")
    offset = stack.daemon.log_size()
    sent = []
    for _ in range(ROUNDS):
        msg = make_message()
        c = raw_tls_session(stack.env, stack.alice)
        assert c.cmd(f"MAIL FROM:<{msg.mail_from}>").code == 250
        assert c.cmd(f"RCPT TO:<{msg.rcpts[0]}>").code == 250
        assert c.cmd("DATA").code == 354
        answer_then_reset(stack, "submitd-queue", lambda: c.send(msg.data + b".\r\n"), c.sock)
        sent.append(msg)
    assert_served(stack.env, stack.alice)
    assert_no_restart(stack, smtp, offset)
    # Committed before the client left: the queue's now, relayed.
    for msg in sent:
        stack.upstream.wait_for(msg.marker, msg.rcpts)


# ---- a bounded storm of resets ---------------------------------------------------------------

STORM_THREADS = 6
STORM_SECONDS = 3.0


def storm_client(env, identity, seed, stop, errors):
    rnd = random.Random(seed)
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", env.tls_port), timeout=5)
            tls = client_context(env, identity if rnd.random() < 0.5 else None).wrap_socket(sock)
            tls.recv(4096)                  # the greeting
            time.sleep(rnd.uniform(0, 0.003))
            reset(tls)
        except (OSError, ssl.SSLError) as e:
            errors.append(repr(e))


def test_reset_storm_keeps_the_worker(one_worker, rng):
    stack = one_worker
    smtp = child_pid(stack.daemon, "submitd-smtp")
    offset = stack.daemon.log_size()
    stop = threading.Event()
    errors = []
    threads = [threading.Thread(target=storm_client,
                                args=(stack.env, stack.alice, rng.getrandbits(32), stop, errors))
               for i in range(STORM_THREADS)]
    for t in threads:
        t.start()
    time.sleep(STORM_SECONDS)
    stop.set()
    for t in threads:
        t.join(15)
    # A session served after the batch proves smtp has handled it: a worker that the
    # batch broke would be gone, or replaced, by then.
    assert_served(stack.env, stack.alice)
    assert_no_restart(stack, smtp, offset)
    # A storm that never reached the server would prove nothing.
    log = log_since(stack.daemon, offset)
    assert log.count("(implicit TLS)") > 50, "too few storm connections reached the server"
