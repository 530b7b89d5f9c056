"""The service as systemd runs it (DESIGN §5, §11): signals that `systemctl kill` may
send to every process of the service never stop it, and one spool has one instance."""

import os
import signal
import subprocess

import pytest

from conftest import assert_served, binary, free_port, make_message, send_ok
from daemon_procs import child_pid, comm

WORKERS = ["submitd-authz", "submitd-queue", "submitd-smtp"]


def family_pids(daemon):
    return {"submitd": daemon.proc.pid, **{w: child_pid(daemon, w) for w in WORKERS}}


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE])
def test_a_signal_to_every_process_leaves_the_service_serving(fresh_stack_factory, sig):
    s = fresh_stack_factory(f"signal-{sig.name.lower()}")
    before = family_pids(s.daemon)
    for pid in before.values():
        os.kill(pid, sig)
    # Each worker handles this message after the signal, so a signal that killed or
    # restarted one of them has done so by the time it arrives upstream.
    assert_served(s.env, s.alice)
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)
    assert s.daemon.running(), f"{sig.name} stopped the master\n{s.daemon.tail()}"
    # The same processes (authz may have started PAM workers of its own meanwhile).
    gone = {name: pid for name, pid in before.items() if comm(pid) != name}
    assert not gone, f"gone or restarted after {sig.name}: {gone}"
    assert "restarting the worker processes" not in s.daemon.tail()


def test_a_second_instance_on_the_same_spool_is_refused(fresh_stack_factory):
    s = fresh_stack_factory("second-instance")
    before = family_pids(s.daemon)
    # Other ports, same spool: only the lock can refuse it.
    other = s.env.dir / "other.conf"
    text = s.env.conf.read_text()
    text = text.replace(f"127.0.0.1:{s.env.port}", f"127.0.0.1:{free_port()}").replace(
        f"127.0.0.1:{s.env.tls_port}", f"127.0.0.1:{free_port()}")
    other.write_text(text)
    r = subprocess.run([str(binary("submitd")), "-c", str(other), "-f"], capture_output=True,
                       text=True, timeout=20, cwd=s.env.dir)
    assert r.returncode == 1, r.stderr
    spool = str(s.env.dir / "spool")
    assert spool in r.stderr and str(s.daemon.proc.pid) in r.stderr, r.stderr
    assert "in use" in r.stderr, r.stderr
    # The first instance is undisturbed.
    assert s.daemon.running()
    assert family_pids(s.daemon) == before
    pidfile = s.env.dir / "spool" / "queue.pid"
    assert pidfile.read_text().strip() == str(before["submitd-queue"])
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)


def test_n_prints_the_settings_made_in_the_file_and_p_every_one(fresh_stack_factory):
    s = fresh_stack_factory("print-settings", start_daemon=False)
    s.env.settings["database"] = ("postgresql://submitd:s3cret@db.example/submitd"
                                  "?sslmode=require&password=s3cret")
    s.env.write_config()
    n = s.env.run("submitd", "-n")
    lines = n.stdout.splitlines()
    assert f"listen = 127.0.0.1:{s.env.port}" in lines
    assert f"tls_cert = {s.env.dir / 'server.crt'}" in lines
    assert "max_recipients = " + s.env.settings["max_recipients"] in lines
    assert not any("# default" in line for line in lines)
    assert "max_sessions" not in n.stdout          # not in the file
    assert "s3cret" not in n.stdout
    assert "database = postgresql://submitd:****@db.example/submitd?sslmode=require&password=****" \
        in lines

    p = s.env.run("submitd", "-p")
    plines = p.stdout.splitlines()
    assert "max_sessions = 1000  # default" in plines
    assert "log = auto  # default" in plines
    assert "syslog_facility = mail  # default" in plines
    assert f"listen = 127.0.0.1:{s.env.port}" in plines
    assert "s3cret" not in p.stdout
    assert len(plines) > len(lines)

    bad = s.env.run("submitd", "-n", "-t", check=False)
    assert bad.returncode == 2


def test_journal_priorities_and_client_on_reject_lines(fresh_stack_factory, monkeypatch):
    import re
    import socket as sk

    from conftest import ALICE_ADDR, mail_reply, poll

    s = fresh_stack_factory("journal", start_daemon=False)
    s.daemon.log.touch()
    st = s.daemon.log.stat()
    # stderr is "the journal": the stream systemd names in JOURNAL_STREAM.
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    offset = s.daemon.log_size()
    s.daemon.start()

    # A client without a certificate is refused.
    reply = mail_reply(s, None, ALICE_ADDR)
    assert reply.startswith("530"), reply
    # A failed TLS handshake on the implicit-TLS port.
    with sk.create_connection(("127.0.0.1", s.env.tls_port), timeout=5) as c:
        c.sendall(b"EHLO not-tls\r\n" * 4)
        try:
            c.recv(100)
        except OSError:
            pass

    def log_lines():
        text = s.daemon.log.read_bytes()[offset:].decode("utf-8", "replace")
        return [line for line in text.splitlines()
                if line and not line.startswith("=====")]

    assert poll(lambda: any("handshake failed" in line for line in log_lines()), 5), \
        s.daemon.tail(offset=offset)
    lines = log_lines()
    prefixed = re.compile(r"^<([0-7])>submitd(/[a-z]+)?\[\d+\]: (error|warning|info|debug): ")
    bad = [line for line in lines if not prefixed.match(line)]
    assert not bad, "lines without a journal priority prefix:\n" + "\n".join(bad[:10])
    assert not any(re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line.split(": ", 1)[0])
                   for line in lines), "a timestamp of our own under the journal"
    # Priorities match the level words.
    words = {"3": "error", "4": "warning", "6": "info", "7": "debug"}
    for line in lines:
        m = prefixed.match(line)
        assert words[m.group(1)] == m.group(3), line

    refusals = [line for line in lines if "identity reject" in line or "no identity" in line
                or "handshake failed" in line]
    assert refusals, "\n".join(lines[-30:])
    for line in refusals:
        assert "client=127.0.0.1" in line, line


def test_check_lists_every_problem(fresh_stack_factory):
    import datetime

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    from cryptography import x509 as cx509

    s = fresh_stack_factory("check-all", start_daemon=False)
    env = s.env
    assert env.run("submitd", "-t", check=False).returncode == 0

    # An expired server certificate for the same key, the key readable by all.
    key = serialization.load_pem_private_key((env.dir / "server.key").read_bytes(), None)
    now = datetime.datetime.utcnow()
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (cx509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(cx509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=10))
            .not_valid_after(now - datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (env.dir / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(env.dir / "server.key", 0o644)
    env.settings["listen"] = "127.0.0.1:99999"
    env.settings["pam_service"] = "no-such-service"
    env.settings["timeout"] = "soon"
    env.write_config(["bogus_one = 1", "bogus_two = 2"])

    r = env.run("submitd", "-t", check=False)
    assert r.returncode == 1, r.stderr
    err = r.stderr
    for needle in ("bogus_one: unknown key", "bogus_two: unknown key", "timeout: expected",
                   "listen: \"127.0.0.1:99999\" is not host:port",
                   "tls_key: " + str(env.dir / "server.key") + " is readable or writable by "
                   "group or others (mode 0644)",
                   "tls_cert: " + str(env.dir / "server.crt") + " expired on",
                   "pam_service: " + str(env.dir / "pam.d" / "no-such-service")):
        assert needle in err, f"{needle!r} not in:\n{err}"

    # A key that does not belong to the certificate.
    os.chmod(env.dir / "server.key", 0o600)
    other = ec.generate_private_key(ec.SECP256R1())
    (env.dir / "server.key").write_bytes(other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    r = env.run("submitd", "-t", check=False)
    assert r.returncode == 1 and "are not a usable pair" in r.stderr, r.stderr
