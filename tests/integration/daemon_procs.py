"""Helpers for tests that look at or steer the daemon's processes: find a child
program by name, read its CPU time and memory, stop it for a while, reset a client
connection."""

import os
import signal
import socket
import ssl
import struct
from pathlib import Path


def comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def child_pid(daemon, name):
    """The pid of the daemon's child program `name` (e.g. submitd-smtp)."""
    daemon._snapshot()
    found = [pid for pid in daemon.alive_family() if comm(pid) == name]
    assert len(found) == 1, f"expected one {name} process, found {found}"
    return found[0]


def cpu_seconds(pid):
    """utime + stime of pid in seconds."""
    data = Path(f"/proc/{pid}/stat").read_text()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vm_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


class Stopped:
    """SIGSTOP to pid for the duration of the block, SIGCONT after (also on errors)."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc):
        os.kill(self.pid, signal.SIGCONT)
        return False


def reset(sock):
    """Closes sock with an RST instead of a FIN (SO_LINGER {1, 0})."""
    raw = sock
    if isinstance(sock, ssl.SSLSocket):
        raw = socket.socket(fileno=sock.detach())
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


def log_since(daemon, offset):
    return daemon.log.read_bytes()[offset:].decode("utf-8", "replace")


def run_daemon_under_nofile(monkeypatch, tmp_path, limit):
    """From now on in this test, stacks start submitd (master and children) with
    RLIMIT_NOFILE limit:limit, through a prlimit wrapper."""
    import conftest

    real_binary = conftest.binary

    def binary(name):
        path = real_binary(name)
        if name != "submitd":
            return path
        wrapper = tmp_path / "submitd-under-prlimit"
        wrapper.write_text("#!/bin/sh\n"
                           f'exec prlimit --nofile={limit}:{limit} "{path}" "$@"\n')
        wrapper.chmod(0o755)
        return wrapper

    monkeypatch.setattr(conftest, "binary", binary)
