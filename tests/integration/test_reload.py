"""Readiness and reload as systemd drives them (DESIGN §5, §11): READY=1 once the
listeners accept and the workers serve; SIGHUP reloads the server certificate,
client_ca and limits for new sessions while sessions in progress finish on the old
ones; a broken file is refused and the running configuration stays."""

import os
import signal
import smtplib
import socket
import threading

import pytest

from cryptography import x509

from conftest import (ALICE_ADDR, assert_served, free_port, make_message,
                      poll, port_accepts, smtp_starttls, send_ok, unique_rcpt)
from daemon_procs import child_pid

WORKERS = ["submitd-authz", "submitd-queue", "submitd-smtp"]


class NotifySocket:
    """A Unix datagram socket standing in for systemd's NOTIFY_SOCKET. Each message is
    kept with whether both ports accepted at the moment it arrived."""

    def __init__(self, path, env):
        self.path = str(path)
        self.env = env
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)
        self.sock.settimeout(0.2)
        self.messages = []
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            accepting = port_accepts(self.env.port) and port_accepts(self.env.tls_port)
            self.messages.append((data, accepting))

    def fields(self):
        return [dict(line.split("=", 1) for line in data.splitlines() if "=" in line)
                for data, _ in self.messages]

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def family(daemon):
    return {"submitd": daemon.proc.pid, **{w: child_pid(daemon, w) for w in WORKERS}}


def still_running(daemon, before):
    """The master and the workers of before are the same processes still (a PAM helper
    that authz forks meanwhile carries its name too, so pids are compared one by one)."""
    for name, pid in before.items():
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            return False
        if comm != name:
            return False
    return "restarting the worker processes" not in daemon.tail()


def served_serial(env, identity):
    s = smtp_starttls(env, identity)
    try:
        der = s.sock.getpeercert(binary_form=True)
    finally:
        s.quit()
    return x509.load_der_x509_certificate(der).serial_number


def file_serial(path):
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def hup_and_wait(s, what, timeout=10):
    offset = s.daemon.log_size()
    os.kill(s.daemon.proc.pid, signal.SIGHUP)
    assert poll(lambda: what in s.daemon.tail(offset=offset), timeout), \
        f"no '{what}' after SIGHUP\n{s.daemon.tail(offset=offset)}"
    return offset


def test_ready_after_the_listeners_accept_and_around_a_reload(fresh_stack_factory, monkeypatch):
    s = fresh_stack_factory("notify", start_daemon=False)
    notify = NotifySocket(s.env.dir / "notify.sock", s.env)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
        s.daemon.start()
        assert poll(lambda: any(f.get("READY") == "1" for f in notify.fields()), 10), \
            notify.messages
        first = next(i for i, f in enumerate(notify.fields()) if f.get("READY") == "1")
        assert notify.messages[first][1], "READY=1 came before both ports accepted"
        assert_served(s.env, s.alice)

        n = len(notify.messages)
        hup_and_wait(s, "configuration %s reloaded" % s.env.conf)
        assert poll(lambda: any(f.get("READY") == "1" for f in notify.fields()[n:]), 10)
        after = notify.fields()[n:]
        reloading = [i for i, f in enumerate(after) if f.get("RELOADING") == "1"]
        ready = [i for i, f in enumerate(after) if f.get("READY") == "1"]
        assert reloading and ready and reloading[0] < ready[-1], after
        assert "MONOTONIC_USEC" in after[reloading[0]], after
    finally:
        notify.close()


def test_sighup_serves_a_new_server_certificate_while_an_old_session_delivers(
        fresh_stack_factory):
    s = fresh_stack_factory("reload-cert")
    before = family(s.daemon)
    crt = s.env.dir / "server.crt"
    old_serial = file_serial(crt)
    assert served_serial(s.env, s.alice) == old_serial

    # A session opened before the reload, in the middle of its transaction.
    msg = make_message()
    old = smtp_starttls(s.env, s.alice)
    assert old.sock.getpeercert(binary_form=True)
    code, _ = old.mail(ALICE_ADDR)
    assert code == 250
    for r in msg.rcpts:
        assert old.rcpt(r)[0] == 250

    # A renewal writes a new server certificate and key; SIGHUP takes it in.
    (s.env.dir / "server.crt").unlink()
    (s.env.dir / "server.key").unlink()
    out = s.env.ca("server-cert", "localhost", "--ip", "127.0.0.1").stdout
    assert "systemctl reload submitd" in out, out
    new_serial = file_serial(crt)
    assert new_serial != old_serial
    hup_and_wait(s, "configuration %s reloaded" % s.env.conf)

    assert served_serial(s.env, s.alice) == new_serial
    # The old session finishes on its settings and its message is delivered.
    code, resp = old.data(msg.data)
    assert code == 250, resp
    old.quit()
    s.upstream.wait_for(msg.marker, msg.rcpts)
    # Nobody was restarted for it.
    assert still_running(s.daemon, before)
    assert "restarting the worker processes" not in s.daemon.tail()


def test_a_broken_configuration_is_refused_and_the_old_one_serves(fresh_stack_factory):
    s = fresh_stack_factory("reload-broken")
    before = family(s.daemon)
    s.env.write_config(["no_such_key = 1"])
    offset = hup_and_wait(s, "reload refused")
    log = s.daemon.tail(offset=offset)
    assert "no_such_key: unknown key" in log, log
    assert s.daemon.running() and still_running(s.daemon, before)
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)

    # A server key that does not match the certificate is refused as well.
    s.env.write_config()
    key = s.env.dir / "server.key"
    good = key.read_bytes()
    other = s.env.dir / "other.key"
    os.system(f"openssl ecparam -name prime256v1 -genkey -noout -out {other} 2>/dev/null")
    key.write_bytes(other.read_bytes())
    offset = hup_and_wait(s, "reload refused")
    assert "tls_key" in s.daemon.tail(offset=offset)
    key.write_bytes(good)
    assert_served(s.env, s.alice)
    assert still_running(s.daemon, before)


def test_a_change_that_needs_a_restart_is_logged_and_the_rest_applies(fresh_stack_factory):
    s = fresh_stack_factory("reload-restart-keys")
    before = family(s.daemon)
    old_port = s.env.port
    s.env.settings["listen"] = f"127.0.0.1:{free_port()}"
    s.env.settings["max_recipients"] = "1"
    s.env.write_config()
    offset = hup_and_wait(s, "configuration %s reloaded" % s.env.conf)
    log = s.daemon.tail(offset=offset)
    assert "listen changed" in log and "takes a restart" in log, log
    assert port_accepts(old_port)
    # max_recipients applies to new sessions.
    c = smtp_starttls(s.env, s.alice)
    try:
        assert c.mail(ALICE_ADDR)[0] == 250
        assert c.rcpt(unique_rcpt())[0] == 250
        code, resp = c.rcpt(unique_rcpt())
        assert code == 452, resp
    finally:
        c.quit()
    assert still_running(s.daemon, before)


def test_a_raised_max_message_size_applies_through_to_the_queue(fresh_stack_factory):
    """smtp enforces max_message_size and the queue checks it again at the commit;
    after a reload that raises it, a message between the old and the new limit is
    queued and relayed, not refused by the queue's older limit."""
    s = fresh_stack_factory("reload-size")
    before = family(s.daemon)
    old = int(s.env.settings["max_message_size"])
    body = ("z" * 98 + "\r\n") * (old * 3 // 2 // 100)
    big = make_message(body=body)
    assert old + 8192 < len(big.data) < 2 * old
    c = smtp_starttls(s.env, s.alice)
    try:
        with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
            c.sendmail(big.mail_from, big.rcpts, big.data)
        assert refused.value.smtp_code == 552, refused.value
    finally:
        c.close()

    s.env.settings["max_message_size"] = str(2 * old)
    s.env.write_config()
    hup_and_wait(s, "configuration %s reloaded" % s.env.conf)
    big = make_message(body=body)
    send_ok(s.env, s.alice, big)
    s.upstream.wait_for(big.marker, big.rcpts)
    assert "commit refused" not in s.daemon.tail()
    assert still_running(s.daemon, before)
