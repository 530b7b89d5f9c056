"""The descriptor limit (DESIGN §9): at the limit the smtp process refuses cleanly and
never polls a readable listener in a loop; repeated log lines are counted, not written
one by one; a hard limit below what max_sessions needs is said plainly at start-up and
by `submitd -t`, and max_sessions is lowered to fit."""

import os
import re
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import assert_served, make_message, poll, smtp_starttls
from daemon_procs import child_pid, comm, cpu_seconds, log_since, run_daemon_under_nofile

HARD_LIMIT = 64
# smtp_workers = 1 and two listeners leave 64 - 20 - 4 - 2 = 38 descriptors: 38 / 16 for
# the spool files of sessions in DATA, one each for the other 36 sessions (lib/fdlimit.c).
DATA_POOL = 2
FITTING = 36
LOWERED = (f"descriptor limit {HARD_LIMIT} is below the 2026 that max_sessions = 1000 needs: "
           f"max_sessions lowered to {FITTING}, at most {DATA_POOL} of them in DATA at once")
IDLE = 80


@pytest.fixture
def under_prlimit(fresh_stack_factory, monkeypatch, tmp_path):
    """A stack whose daemon (master and children) runs with RLIMIT_NOFILE 64:64."""
    run_daemon_under_nofile(monkeypatch, tmp_path, HARD_LIMIT)
    return fresh_stack_factory("fd-limit", max_sessions=1000, max_sessions_per_ip=1000,
                               smtp_workers=1, log_level="info")


@pytest.fixture
def plain(fresh_stack_factory):
    return fresh_stack_factory("fd-emfile", max_sessions=1000, max_sessions_per_ip=1000,
                               smtp_workers=1, log_level="info")


def lower_limit(pid, n):
    """Lowers the descriptor limit of a running process. The smtp process runs as the
    unprivileged user (nobody in the tests): prlimit as that user needs no capability."""
    st = Path(f"/proc/{pid}/status").read_text()
    uid = next(line.split()[1] for line in st.splitlines() if line.startswith("Uid:"))
    gid = next(line.split()[1] for line in st.splitlines() if line.startswith("Gid:"))
    proc = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
                           "prlimit", "--pid", str(pid), f"--nofile={n}:{n}"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"cannot lower the descriptor limit of {pid}: {proc.stderr}"
    assert f"Max open files            {n}" in Path(f"/proc/{pid}/limits").read_text()


def open_idle(env, n):
    """n connections that say nothing; returns (sockets, how many were greeted with 220,
    how many were refused with a 421 or closed)."""
    socks, greeted, refused = [], 0, 0
    for i in range(n):
        port = env.port if i % 4 else env.tls_port
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            refused += 1
            continue
        socks.append(s)
        if port == env.port:
            s.settimeout(3)
            try:
                first = s.recv(512)
            except OSError:
                first = b""
            if first.startswith(b"220 "):
                greeted += 1
            else:
                assert first == b"" or first.startswith(b"421 4.7.0"), first
                refused += 1
    return socks, greeted, refused


def assert_quiet_and_idle(daemon, smtp, offset, what):
    """Over 5 s the smtp process stays nearly idle and its log does not grow by floods."""
    cpu = cpu_seconds(smtp)
    time.sleep(3)
    used = cpu_seconds(smtp) - cpu
    time.sleep(2)
    assert used < 0.5, f"{what}: submitd-smtp used {used:.2f} s of CPU in 3 s (a busy loop?)"
    log = log_since(daemon, offset)
    accepts = sum(1 for line in log.splitlines() if "accept:" in line)
    refusals = sum(1 for line in log.splitlines() if "refused:" in line)
    assert accepts < 50, f"{what}: {accepts} accept warnings in the log"
    assert refusals < 50, f"{what}: {refusals} refusal lines in the log"
    assert len(log) < 200_000, f"{what}: the log grew by {len(log)} bytes"


def assert_served_again(stack):
    def served():
        try:
            assert_served(stack.env, stack.alice)
            return True
        except (smtplib.SMTPException, OSError):
            return False
    assert poll(served, 10, 0.5), "no honest client served after the idle connections closed"


def test_hard_limit_below_max_sessions_lowers_it(under_prlimit):
    stack = under_prlimit
    smtp = child_pid(stack.daemon, "submitd-smtp")
    limits = open(f"/proc/{smtp}/limits").read()
    assert f"Max open files            {HARD_LIMIT}" in limits, limits
    offset = stack.daemon.log_size()
    socks, greeted, refused = open_idle(stack.env, IDLE)
    try:
        assert_quiet_and_idle(stack.daemon, smtp, offset, "at the lowered max_sessions")
        assert greeted <= FITTING, f"{greeted} sessions greeted, only {FITTING} fit"
        assert refused > 0, "nothing was refused beyond the descriptor limit"
    finally:
        for s in socks:
            s.close()
    assert_served_again(stack)
    assert comm(smtp) == "submitd-smtp" and child_pid(stack.daemon, "submitd-smtp") == smtp
    assert "restarting" not in log_since(stack.daemon, offset)

    # The whole log: the warning came at start, before the sessions' lines.
    assert LOWERED.encode() in stack.daemon.log.read_bytes(), \
        "no plain start-up warning about the descriptor limit"
    proc = stack.env.run("submitd", "-t", check=False)
    assert LOWERED in proc.stderr, f"submitd -t did not warn:\n{proc.stderr}"


def test_out_of_descriptors_refuses_without_spinning(plain):
    """The limit is lowered under the running process, so that accept() itself fails
    with EMFILE while max_sessions would still allow more."""
    stack = plain
    smtp = child_pid(stack.daemon, "submitd-smtp")
    lower_limit(smtp, 40)
    offset = stack.daemon.log_size()
    socks, greeted, refused = open_idle(stack.env, IDLE)
    try:
        assert 0 < greeted < IDLE and refused > 0, (greeted, refused)
        log = log_since(stack.daemon, offset)
        assert "accept: Too many open files" in log, "the descriptor limit was never reached"
        assert_quiet_and_idle(stack.daemon, smtp, offset, "out of descriptors")
    finally:
        for s in socks:
            s.close()
    assert_served_again(stack)
    assert comm(smtp) == "submitd-smtp" and child_pid(stack.daemon, "submitd-smtp") == smtp
    assert "restarting" not in log_since(stack.daemon, offset)


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_data(stack, msg):
    """A client past RCPT that has sent DATA; returns it and the reply to DATA."""
    s = smtp_starttls(stack.env, stack.alice)
    assert s.mail(msg.mail_from)[0] == 250
    assert s.rcpt(msg.rcpts[0])[0] == 250
    code, resp = s.docmd("DATA")
    return s, code, resp.decode()


def finish_data(s, msg):
    s.send(re.sub(rb"(?m)^\.", b"..", msg.data) + b".\r\n")
    code, resp = s.getreply()
    s.quit()
    return code, resp.decode()


def test_idle_sessions_cost_one_descriptor_and_data_has_a_pool(under_prlimit):
    """More idle sessions than half the limit are served; a DATA beyond the spool pool
    gets a temporary reply and its session stays, while the others complete; every
    descriptor is given back."""
    stack = under_prlimit
    smtp = child_pid(stack.daemon, "submitd-smtp")
    assert_served(stack.env, stack.alice)
    time.sleep(0.5)
    baseline = fd_count(smtp)
    offset = stack.daemon.log_size()

    idle = []
    clients = []
    try:
        for _ in range(HARD_LIMIT // 2 + 1):
            s = socket.create_connection(("127.0.0.1", stack.env.port), timeout=5)
            idle.append(s)
            assert s.recv(512).startswith(b"220 "), f"idle session {len(idle)} not greeted"

        msgs = [make_message() for _ in range(DATA_POOL + 1)]
        for m in msgs:
            clients.append(start_data(stack, m))
        codes = [c[1] for c in clients]
        assert codes[:DATA_POOL] == [354] * DATA_POOL, clients
        late, code, resp = clients[DATA_POOL]
        assert code == 452 and resp.startswith("4.3.1 Insufficient system resources"), (code, resp)

        # The first message frees its spool descriptor: the refused client, still in
        # its session and transaction, is served on its next try.
        code, resp = finish_data(clients[0][0], msgs[0])
        assert code == 250, (code, resp)
        code, resp = late.docmd("DATA")
        assert code == 354, (code, resp)
        assert finish_data(late, msgs[DATA_POOL])[0] == 250
        for (s, _, _), m in zip(clients[1:DATA_POOL], msgs[1:DATA_POOL]):
            assert finish_data(s, m)[0] == 250
        for m in msgs:
            stack.upstream.wait_for(m.marker, m.rcpts)
        log = log_since(stack.daemon, offset)
        assert "Too many open files" not in log, "the descriptor budget was overrun"
        assert "DATA refused: every spool descriptor is in use" in log
    finally:
        for s in idle:
            s.close()
        for s, _, _ in clients:
            s.close()
    assert poll(lambda: fd_count(smtp) == baseline, 10, 0.2), \
        f"descriptors of submitd-smtp: {fd_count(smtp)}, {baseline} before"
    assert_served_again(stack)
