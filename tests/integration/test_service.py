"""The service as systemd runs it (DESIGN §5, §11): signals that `systemctl kill` may
send to every process of the service never stop it, and one spool has one instance."""

import os
import signal
import subprocess
import time

import pytest

from conftest import assert_served, binary, free_port, make_message, send_ok
from daemon_procs import child_pid

WORKERS = ["submitd-authz", "submitd-queue", "submitd-smtp"]


def family_pids(daemon):
    return {"submitd": daemon.proc.pid, **{w: child_pid(daemon, w) for w in WORKERS}}


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGPIPE])
def test_a_signal_to_every_process_leaves_the_service_serving(fresh_stack_factory, sig):
    s = fresh_stack_factory(f"signal-{sig.name.lower()}")
    before = family_pids(s.daemon)
    for pid in before.values():
        os.kill(pid, sig)
    time.sleep(1.0)
    assert s.daemon.running(), f"{sig.name} stopped the master\n{s.daemon.tail()}"
    assert family_pids(s.daemon) == before, f"a worker was restarted after {sig.name}"
    assert "restarting the worker processes" not in s.daemon.tail()
    assert_served(s.env, s.alice)
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)


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
