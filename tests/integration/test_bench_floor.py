"""The benchmark's floors of its own: the durable-write floor (submitd-durable-floor,
tests/bench/durable_floor.c), the process-crossing floor (submitd-crossing-floor,
tests/bench/crossing_floor.c) and the dialogue floor (submitd-dialogue-floor,
tests/bench/dialogue_floor.c).

make bench compares every shape with the CPU these programs make the machine spend,
so each must do all the work it claims (every file written, synced, renamed and
removed, one audit page a message; every question answered by another process woken
from epoll; every message taken over STARTTLS from a client whose certificate chain
was verified) and leave nothing behind.
"""

import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from conftest import binary, make_ca, make_leaf, poll, write_cert_and_key


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


@pytest.fixture
def dialogue_floor(tmp_path):
    """submitd-dialogue-floor on a free port with a fresh CA, its server certificate
    and a client certificate; yields (port, paths, process); stopped with SIGTERM."""
    ca, ca_key = make_ca("floor test CA")
    server, server_key = make_leaf(ca, ca_key, x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, "localhost")]), dns=("localhost",), ips=("127.0.0.1",), eku=())
    client, client_key = make_leaf(ca, ca_key, x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, "bench")]))
    paths = {"ca": write_cert_and_key(tmp_path, "ca", ca, ca_key)[0]}
    paths["server"], paths["server_key"] = write_cert_and_key(tmp_path, "server", server, server_key)
    paths["client"], paths["client_key"] = write_cert_and_key(tmp_path, "client", client, client_key)
    port_file = tmp_path / "port"
    proc = subprocess.Popen([str(binary("submitd-dialogue-floor")), "--cert", str(paths["server"]),
                             "--key", str(paths["server_key"]), "--ca", str(paths["ca"]),
                             "--port-file", str(port_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert poll(lambda: port_file.exists() and port_file.read_text().strip(), 10), \
            "submitd-dialogue-floor wrote no port"
        yield int(port_file.read_text()), paths, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def stop_floor(proc):
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    m = re.fullmatch(r"dialogue-floor: sessions=(\d+) messages=(\d+)\n", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


def loadgen(port, paths, *args):
    return subprocess.run([str(binary("submitd-loadgen")), "--host", "127.0.0.1", "--port",
                           str(port), "--cert", str(paths["client"]), "--key",
                           str(paths["client_key"]), "--cafile", str(paths["ca"]),
                           "--from", "bench@example.com", "--to", "rcpt@example.net",
                           "--size", "3000", "--timeout", "10", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_dialogue_floor_takes_every_message_of_every_shape(dialogue_floor):
    port, paths, proc = dialogue_floor
    for args, conc, sessions in (((), 4, 12), (("--tls-resume",), 4, 12),
                                 (("--per-session", 10), 1, 2)):
        r = loadgen(port, paths, "--concurrency", conc, "--messages", 12, *args)
        assert r.returncode == 0, r.stdout + r.stderr
        assert " ok=12 failed=0 " in r.stdout, r.stdout
        assert f" sessions={sessions} " in r.stdout, r.stdout
        if args == ("--tls-resume",):
            # Every session after the first of each client thread resumes.
            resumed = int(re.search(r" resumed=(\d+)", r.stdout).group(1))
            assert resumed >= 12 - 4, r.stdout
    assert stop_floor(proc) == (26, 36)


def test_dialogue_floor_verifies_the_client_chain_and_serves_the_next_client(dialogue_floor, tmp_path):
    """A client without a certificate, and one whose certificate another CA signed, get
    no session; the next honest client sends its message."""
    port, paths, proc = dialogue_floor
    other_ca, other_key = make_ca("some other CA")
    foreign, foreign_key = make_leaf(other_ca, other_key, x509.Name([x509.NameAttribute(
        NameOID.COMMON_NAME, "bench")]))
    fcrt, fkey = write_cert_and_key(tmp_path / "foreign", "client", foreign, foreign_key)
    for cert in (None, (fcrt, fkey)):
        ctx = ssl.create_default_context(cafile=str(paths["ca"]))
        if cert:
            ctx.load_cert_chain(str(cert[0]), str(cert[1]))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            f = sock.makefile("rb")
            assert f.readline().startswith(b"220 ")
            sock.sendall(b"EHLO attacker.test\r\nSTARTTLS\r\n")
            while not f.readline().startswith(b"250 "):
                pass
            assert f.readline().startswith(b"220 ")
            with pytest.raises((ssl.SSLError, ConnectionError)):
                with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
                    # TLS 1.3: the server's refusal arrives with the first read.
                    tls.sendall(b"EHLO attacker.test\r\n")
                    if not tls.recv(100):
                        raise ConnectionError("closed")
    r = loadgen(port, paths, "--concurrency", 1, "--messages", 1)
    assert " ok=1 failed=0 " in r.stdout, r.stdout + r.stderr
    assert stop_floor(proc) == (3, 1)


def test_dialogue_floor_drops_a_silent_client_and_serves_the_next(dialogue_floor):
    """It serves one connection at a time: a client that connects and says nothing must
    not hold up the benchmark for longer than the 10 s the floor waits."""
    port, paths, proc = dialogue_floor
    with socket.create_connection(("127.0.0.1", port), timeout=30) as silent:
        start = time.monotonic()
        # A later --timeout wins: the load generator waits longer than the floor does.
        r = loadgen(port, paths, "--concurrency", 1, "--messages", 1, "--timeout", 20)
        waited = time.monotonic() - start
        assert " ok=1 failed=0 " in r.stdout, r.stdout + r.stderr
        assert 8 < waited < 25, waited
        # The silent client got the greeting, then the end of its connection.
        assert silent.recv(100).startswith(b"220 ")
        assert silent.recv(100) == b""
    assert stop_floor(proc) == (2, 1)


def test_dialogue_floor_refuses_bad_arguments():
    r = subprocess.run([str(binary("submitd-dialogue-floor")), "--cert", "x"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "usage: submitd-dialogue-floor --cert FILE --key FILE --ca FILE --port-file FILE" in r.stderr
