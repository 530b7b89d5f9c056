"""The benchmark's floors of its own: the durable-write floor (submitd-durable-floor,
tests/bench/durable_floor.c) and the process-crossing floor (submitd-crossing-floor,
tests/bench/crossing_floor.c).

make bench compares every shape with the CPU these programs make the machine spend,
so each must do all the work it claims (every file written, synced, renamed and
removed, one audit page a message; every question answered by another process woken
from epoll) and leave nothing behind.
"""

import os
import re
import subprocess

from conftest import binary


def run_floor(*args):
    return subprocess.run([str(binary("submitd-durable-floor")), *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_floor_writes_every_message_and_leaves_nothing(tmp_path):
    d = tmp_path / "floor"
    r = run_floor(d, 21, 3000, 4)
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"durable-floor: messages=21 batch=4 process_cpu_us=([0-9.]+)\n", r.stdout)
    assert m, r.stdout
    assert float(m.group(1)) > 0
    assert sorted(p.name for p in d.iterdir()) == ["incoming", "queue"]
    assert list((d / "incoming").iterdir()) == []
    assert list((d / "queue").iterdir()) == []


def test_floor_counts_each_system_call_it_claims(tmp_path):
    """strace counts: per message a create, a write, an fsync, a rename and a remove,
    plus one audit page; per batch one directory fsync and one log fdatasync."""
    d = tmp_path / "floor"
    out = tmp_path / "strace.txt"
    # LeakSanitizer cannot run under ptrace: a sanitizer build checks leaks elsewhere.
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    r = subprocess.run(["strace", "-f", "-c", "-o", str(out), str(binary("submitd-durable-floor")),
                        str(d), "10", "100", "4"], capture_output=True, text=True, timeout=60,
                       env=env)
    assert r.returncode == 0, r.stderr
    calls = {}
    for line in out.read_text().splitlines():
        f = line.split()
        if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit():
            calls[f[-1]] = int(f[3])
    assert calls.get("renameat") == 10
    assert calls.get("unlinkat", 0) >= 10          # the log is removed too
    assert calls.get("fsync") == 10 + 3            # every file, and the directory per batch
    assert calls.get("fdatasync") == 3             # the log per batch of 4: 4 + 4 + 2
    assert calls.get("write", 0) >= 20             # the message and the audit page


def test_floor_refuses_bad_arguments(tmp_path):
    r = run_floor(tmp_path / "floor", 0, 100, 4)
    assert r.returncode == 2
    assert "not a number from 1 to" in r.stderr and ": 0" in r.stderr
    r = run_floor(tmp_path / "floor", 10, 100)
    assert r.returncode == 2
    assert "usage: submitd-durable-floor DIR MESSAGES SIZE BATCH" in r.stderr


def test_floor_names_a_directory_it_cannot_create(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run_floor(blocker / "floor", 1, 100, 1)
    assert r.returncode == 1
    assert "cannot create" in r.stderr and str(blocker / "floor") in r.stderr


def run_crossing(*args, **kw):
    return subprocess.run([str(binary("submitd-crossing-floor")), *map(str, args)],
                          capture_output=True, text=True, timeout=60, **kw)


def strace_counts(path):
    calls = {}
    for line in path.read_text().splitlines():
        f = line.split()
        if len(f) >= 5 and f[-1].isidentifier() and f[3].isdigit():
            calls[f[-1]] = int(f[3])
    return calls


def test_crossing_floor_answers_every_question():
    r = run_crossing(2000)
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"crossing-floor: rounds=2000 process_cpu_us=([0-9.]+)\n", r.stdout)
    assert m, r.stdout
    # Two processes, two system calls each way and two wake-ups: never free.
    assert float(m.group(1)) > 0


def test_crossing_floor_makes_each_round_trip_through_two_processes(tmp_path):
    """strace counts over both processes: per round a question and an answer sent, each
    read by the other side after it woke from epoll_wait."""
    out = tmp_path / "strace.txt"
    env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0")
    r = subprocess.run(["strace", "-f", "-c", "-o", str(out),
                        str(binary("submitd-crossing-floor")), "300"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    calls = strace_counts(out)
    assert calls.get("sendto") == 600                 # 300 questions and 300 answers
    assert calls.get("recvfrom", 0) >= 600
    assert calls.get("epoll_wait", 0) >= 600 + 1      # and the answerer sees the end
    assert calls.get("clone", 0) + calls.get("fork", 0) + calls.get("clone3", 0) == 1


def test_crossing_floor_refuses_bad_arguments():
    r = run_crossing(0)
    assert r.returncode == 2
    assert "not a number from 1 to" in r.stderr and ": 0" in r.stderr
    r = run_crossing("many")
    assert r.returncode == 2 and "many" in r.stderr
    r = run_crossing()
    assert r.returncode == 2
    assert "usage: submitd-crossing-floor ROUNDS" in r.stderr
