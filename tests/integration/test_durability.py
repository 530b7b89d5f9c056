"""Durability and process supervision: a 250 survives kill -9, the queue waits for a
dead upstream, and the master's children never outlive it (DESIGN §2, §4)."""


import os
import signal
import smtplib

from conftest import (Audit, assert_not_relayed, assert_served, make_message, poll, queue_id, raw_tls_session,
                      relay_settled, send_ok, smtp_starttls, spool_files, start_data, submit)
from daemon_procs import comm


def test_accepted_message_survives_kill9_while_upstream_is_down(fresh_stack_factory):
    s = fresh_stack_factory("kill9", start_upstream=False)
    msg = make_message()
    qid = send_ok(s.env, s.alice, msg)
    # The 250 comes after the accept row is written (DESIGN §9): it is there at once.
    now = s.env.query("SELECT * FROM audit WHERE queue_id = ? AND decision = 'accept'", (qid,))
    assert len(now) == 1 and now[0]["user"] == "alice", now
    # No grace period: the 250 alone must mean the message is in the queue.
    s.daemon.kill9(group=True)
    assert poll(lambda: not s.daemon.alive_family(), 5), \
        f"processes left after kill -9 of the group: {s.daemon.alive_family()}"

    s.upstream.start()
    s.daemon.start()
    arrivals = s.upstream.wait_for(msg.marker, msg.rcpts, timeout=15)
    assert arrivals[0].mail_from == msg.mail_from
    Audit(s.env).wait(lambda r: r["decision"] == "accept" and r["queue_id"] == qid, 0,
                      what=f"accept row for {qid} written before the crash")


def authz_pid(daemon):
    """The authz process, not one of its PAM workers (forked, of the same name)."""
    daemon._snapshot()
    found = [pid for pid in daemon.alive_family() if comm(pid) == "submitd-authz"]
    found = [pid for pid in found if comm(ppid(pid)) != "submitd-authz"]
    assert len(found) == 1, found
    return found[0]


def ppid(pid):
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return int(data[data.rindex(")") + 2:].split()[1])


def served(s):
    try:
        assert_served(s.env, s.alice)
        return True
    except (AssertionError, OSError, smtplib.SMTPException):
        return False


def test_accept_row_is_committed_before_the_250(fresh_stack_factory):
    """authz commits the rows of a turn together (group commit) and answers only after
    the commit: killing authz alone the moment the 250 arrives loses no accept row."""
    s = fresh_stack_factory("kill9-authz")
    for _ in range(3):
        authz = authz_pid(s.daemon)
        msgs = [make_message() for _ in range(3)]
        sessions = [smtp_starttls(s.env, s.alice) for _ in msgs]
        qids = []
        for session, msg in zip(sessions, msgs):
            qids.append(queue_id(submit(session, msg)))
        os.kill(authz, signal.SIGKILL)
        for session in sessions:
            session.close()
        for qid in qids:
            rows = s.env.query("SELECT * FROM audit WHERE queue_id = ? AND decision = 'accept'",
                               (qid,))
            assert len(rows) == 1 and rows[0]["user"] == "alice", (qid, rows)
        # The master restarts the set; the next round finds the new authz.
        assert poll(lambda: served(s), 20), "not served again after authz was killed"


def test_message_whose_accept_row_cannot_be_written_is_not_queued(fresh_stack_factory):
    """The queue makes a message relayable only once authz has committed its accept row
    and rate charge. With the database locked by another writer at the final dot, the
    client gets a 451 (send it again), not a 250 without a row; the message is in no
    spool directory, never relayed, charged to nobody; and once the lock is gone the
    same client's next message is queued, recorded and relayed."""
    import sqlite3
    s = fresh_stack_factory("accept-row-locked", rate_messages_per_hour=2)
    refused, after = make_message(), make_message()
    c = raw_tls_session(s.env, s.alice)
    locker = sqlite3.connect(s.env.dir / "submitd.db", timeout=5, isolation_level=None)
    try:
        start_data(c, refused)
        c.send(refused.data)
        locker.execute("BEGIN IMMEDIATE")
        locker.execute("INSERT INTO users(name) VALUES ('lock-holder')")
        try:
            r = c.cmd(".")
        finally:
            locker.execute("ROLLBACK")
        assert r.code == 451 and r.last.startswith("451 4.3.0"), str(r)
        # Same session, lock gone: the next message goes through.
        start_data(c, after)
        c.send(after.data)
        r = c.cmd(".")
        assert r.code == 250, str(r)
        qid = queue_id(r.last)
        c.cmd("QUIT")
    finally:
        locker.close()
        c.close()
    s.upstream.wait_for(after.marker, after.rcpts)
    relay_settled(s.env)
    assert not s.upstream.matching(refused.marker), "the unrecorded message was relayed"
    assert spool_files(s.env) == [], f"files left in the spool: {spool_files(s.env)}"
    accepts = s.env.query("SELECT queue_id, user FROM audit WHERE decision = 'accept' "
                          "AND event = 'submission'")
    assert [(r["queue_id"], r["user"]) for r in accepts] == [(qid, "alice")], accepts
    assert "not queued" in s.daemon.tail()
    # Charged once (the refused message was not): the limit of 2 leaves one more.
    send_ok(s.env, s.alice, make_message())
    c = smtp_starttls(s.env, s.alice)
    try:
        code, resp = c.mail(refused.mail_from)
        assert code == 450, (code, resp)
    finally:
        c.close()


def test_stalled_authz_is_a_451_and_the_message_is_not_queued(fresh_stack_factory):
    """authz stops answering (SIGSTOP) at the final dot: the queue waits 5 s for the
    accept row, then drops the file and the client gets a 451; nothing is relayed or
    left in the spool, and once authz runs again the next client is served."""
    import time
    s = fresh_stack_factory("authz-stalled")
    refused = make_message()
    authz = authz_pid(s.daemon)
    c = raw_tls_session(s.env, s.alice)
    try:
        start_data(c, refused)
        c.send(refused.data)
        os.kill(authz, signal.SIGSTOP)
        try:
            start = time.monotonic()
            r = c.cmd(".")
            waited = time.monotonic() - start
        finally:
            os.kill(authz, signal.SIGCONT)
        assert r.code == 451 and r.last.startswith("451 4.3.0"), str(r)
        assert 4 <= waited <= 10, waited
    finally:
        c.close()
    assert_not_relayed(s, refused.marker)
    assert "no answer from authz about its accept row" in s.daemon.tail()


def test_queue_waits_for_upstream_and_delivers_when_it_returns(fresh_stack_factory):
    s = fresh_stack_factory("upstream-down", start_upstream=False)
    audit = Audit(s.env)
    msg = make_message()
    qid = send_ok(s.env, s.alice, msg)
    # The queue tried, found the upstream down and kept the message: then it is alive.
    deferred = poll(lambda: [r for r in audit.rows() if r["event"] == "deferred" and r["queue_id"] == qid], 10)
    assert s.daemon.running(), "submitd died while the upstream was down"

    s.upstream.start()
    arrivals = s.upstream.wait_for(msg.marker, msg.rcpts, timeout=15)
    assert arrivals[0].mail_from == msg.mail_from
    assert deferred, (f"no 'deferred' audit event for {qid} while the upstream was down; rows: "
                      f"{audit.rows()[-10:]}")


def test_children_die_with_a_killed_master_and_restart_works(fresh_stack_factory):
    s = fresh_stack_factory("master-kill")
    family = s.daemon.alive_family()
    assert len(family) >= 4, f"expected master + smtp + authz + queue, found pids {family}"
    s.daemon.kill9(group=False)
    left = poll(lambda: not s.daemon.alive_family(), 5)
    assert left, f"children outlived the master by 5 s: {s.daemon.alive_family()}"

    s.daemon.start()
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)


def test_sigterm_stops_every_process(fresh_stack_factory):
    s = fresh_stack_factory("sigterm")
    assert_served(s.env, s.alice)
    s.daemon._snapshot()
    status = s.daemon.terminate(timeout=10)
    assert status is not None, "submitd did not exit within 10 s of SIGTERM"
    assert poll(lambda: not s.daemon.alive_family(), 5), \
        f"processes left after SIGTERM: {s.daemon.alive_family()}"
    # The ports are free again: a new instance starts at once and serves.
    s.daemon.start(busy_retry=0)
    assert_served(s.env, s.alice)


def test_restart_keeps_serving_with_the_same_database(fresh_stack_factory):
    s = fresh_stack_factory("restart")
    first = make_message()
    send_ok(s.env, s.alice, first)
    s.upstream.wait_for(first.marker, first.rcpts)
    s.daemon.stop()
    s.daemon.start()
    second = make_message()
    send_ok(s.env, s.alice, second)
    s.upstream.wait_for(second.marker, second.rcpts)
    # The first message is not relayed a second time after the restart: once the
    # queue is empty, nothing is left that could be.
    relay_settled(s.env)
    assert len(s.upstream.matching(first.marker)) == 1, s.upstream.matching(first.marker)


def test_upstream_failover_in_order(fresh_stack_factory):
    """upstream lists hosts in failover order: with the first one down, mail goes to
    the second (DESIGN §6)."""
    from conftest import free_port
    s = fresh_stack_factory("failover", start_daemon=False)
    dead = free_port()
    s.env.settings["upstream"] = f"127.0.0.1:{dead}, 127.0.0.1:{s.env.upstream_port}"
    s.env.write_config()
    s.daemon.start()
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    arrival = s.upstream.wait_for(msg.marker, msg.rcpts)
    assert arrival[0].mail_from == msg.mail_from
    row = Audit(s.env).wait(lambda r: r["event"] == "relayed", 0, what="relayed row")
    assert f":{s.env.upstream_port}" in (row["reason"] or ""), row
