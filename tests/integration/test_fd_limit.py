"""The descriptor limit (DESIGN §9): at the limit the smtp process refuses cleanly and
never polls a readable listener in a loop; repeated log lines are counted, not written
one by one; a hard limit below what max_sessions needs is said plainly at start-up and
by `submitd -t`, and max_sessions is lowered to fit."""

import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

import conftest
from conftest import assert_served, poll
from daemon_procs import child_pid, comm, cpu_seconds, log_since

HARD_LIMIT = 64
# smtp_workers = 1 and two listeners: (64 - 20 - 4 - 2) / 2 sessions fit (lib/fdlimit.c).
FITTING = 19
LOWERED = (f"descriptor limit {HARD_LIMIT} is below the 2026 that max_sessions = 1000 needs: "
           f"max_sessions lowered to {FITTING}")
IDLE = 80


@pytest.fixture
def under_prlimit(fresh_stack_factory, monkeypatch, tmp_path):
    """A stack whose daemon (master and children) runs with RLIMIT_NOFILE 64:64."""
    real_binary = conftest.binary

    def binary(name):
        path = real_binary(name)
        if name != "submitd":
            return path
        wrapper = tmp_path / "submitd-under-prlimit"
        wrapper.write_text("#!/bin/sh\n"
                           f'exec prlimit --nofile={HARD_LIMIT}:{HARD_LIMIT} "{path}" "$@"\n')
        wrapper.chmod(0o755)
        return wrapper

    monkeypatch.setattr(conftest, "binary", binary)
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

    assert LOWERED in stack.daemon.tail(), "no plain start-up warning about the descriptor limit"
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
