"""The master supervises its workers (DESIGN §2): when one dies, the set is restarted
and the next client is served; nothing queued is lost on the way."""

import os
import signal

import pytest

from conftest import assert_served, make_message, poll, send_ok


def child_pid(daemon, program):
    daemon._snapshot()
    for pid in daemon.alive_family():
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(cmd).decode() == program:
            return pid
    return None


@pytest.mark.parametrize("program", ["submitd-smtp", "submitd-authz", "submitd-queue"])
def test_a_dead_worker_is_restarted_and_clients_are_served(fresh_stack_factory, program):
    s = fresh_stack_factory(f"restart-{program}")
    victim = child_pid(s.daemon, program)
    assert victim, f"no {program} among {s.daemon.alive_family()}"
    os.kill(victim, signal.SIGKILL)

    def replaced():
        p = child_pid(s.daemon, program)
        return p is not None and p != victim
    assert poll(replaced, 10), f"{program} was not restarted"
    assert s.daemon.running(), "the master died with its worker"
    assert "restarting the worker processes" in s.daemon.tail()

    def served():
        try:
            assert_served(s.env, s.alice)
            return True
        except Exception:
            return False
    assert poll(served, 10), "no client served after the restart"
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)
