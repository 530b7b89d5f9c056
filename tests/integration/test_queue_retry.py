"""The queue's retry behaviour (DESIGN §4): an upstream that answers 4xx for a while
is retried with exponential backoff from retry_min, the message is delivered exactly
once, the attempts are counted in the spool file and shown by `submit-admin queue
list`, and `queue flush` makes a waiting message go at once.

ScriptedHandler, used by the other test_queue_* modules too, is an aiosmtpd handler
whose RCPT and DATA replies a test chooses per recipient address."""

import datetime
import json
import threading
import time

from conftest import (ALICE_ADDR, Audit, RecordingHandler, make_message, poll, relay_settled,
                      send_ok, unique_rcpt)


class ScriptedHandler(RecordingHandler):
    """Records every RCPT attempt (address, monotonic time) and answers RCPT with
    rcpt_reply(address, attempt_number) when that returns a reply line, 250 otherwise.
    data_reply(envelope) may likewise replace the 250 after DATA."""

    def __init__(self, rcpt_reply=None, data_reply=None):
        super().__init__()
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.attempts = {}          # address -> [monotonic times]
        self.attempt_lock = threading.Lock()

    def attempts_for(self, address):
        with self.attempt_lock:
            return list(self.attempts.get(address.lower(), []))

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with self.attempt_lock:
            times = self.attempts.setdefault(address.lower(), [])
            times.append(time.monotonic())
            n = len(times)
        reply = self.rcpt_reply(address, n) if self.rcpt_reply else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        reply = self.data_reply(envelope) if self.data_reply else None
        if reply:
            return reply
        return await super().handle_DATA(server, session, envelope)


def use_handler(stack, handler):
    stack.upstream.handler = handler
    stack.upstream.start()
    return handler


def queue_list(env):
    return json.loads(env.admin("queue", "list", "--json").stdout)


def seconds_from_now(iso):
    """Seconds from now to a queue listing's UTC time (2024-01-31T12:00:00Z)."""
    t = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    return (t - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


def queued(env, qid):
    return next((m for m in queue_list(env) if m["id"] == qid), None)


def test_tempfail_then_accept_backoff_and_attempts(fresh_stack_factory):
    s = fresh_stack_factory("queue-retry", start_upstream=False, start_daemon=False,
                            retry_min=1, retry_max=8)
    s.daemon.start()
    rcpt = unique_rcpt("retry")
    handler = use_handler(s, ScriptedHandler(
        lambda addr, n: "451 4.3.0 Busy, try again later" if addr == rcpt and n <= 3 else None))
    audit = Audit(s.env)
    msg = make_message(rcpts=[rcpt])
    qid = send_ok(s.env, s.alice, msg)

    # While it waits, the listing shows the attempts, the state and the last reply.
    entry = poll(lambda: (lambda m: m if m and m["attempts"] >= 2 else None)(queued(s.env, qid)), 10)
    assert entry, f"{qid} not listed with 2 attempts: {queue_list(s.env)}"
    assert entry["sender"] == ALICE_ADDR and entry["user"] == "alice", entry
    assert entry["recipients"] == [{"address": rcpt, "state": "pending",
                                    "reply": "451 4.3.0 Busy, try again later"}], entry
    assert "451 4.3.0 Busy" in entry["last_reply"], entry
    assert entry["next_attempt"] != "", entry

    s.upstream.wait_for(msg.marker, [rcpt], timeout=20)
    relay_settled(s.env)
    assert len(s.upstream.matching(msg.marker)) == 1, "delivered more than once"
    times = handler.attempts_for(rcpt)
    assert len(times) == 4, f"expected 3 refused attempts and 1 accepted, saw {len(times)}"
    gaps = [b - a for a, b in zip(times, times[1:])]
    # retry_min 1 doubling: at least 1, 2 and 4 seconds between the attempts.
    for gap, want in zip(gaps, [1, 2, 4]):
        assert gap >= want - 0.05, f"backoff not respected: gaps {gaps}, expected >= 1, 2, 4"
    assert gaps[2] < 4 + 3, f"attempt came much later than the backoff: {gaps}"

    deferred = [r for r in audit.rows() if r["queue_id"] == qid and r["event"] == "deferred"]
    assert len(deferred) == 3, deferred
    assert all("451 4.3.0 Busy" in (r["reason"] or "") for r in deferred), deferred
    relayed = audit.wait(lambda r: r["queue_id"] == qid and r["event"] == "relayed", 0)
    assert rcpt in relayed["rcpt"], relayed
    assert queued(s.env, qid) is None, "delivered message still listed"


def test_flush_sends_a_waiting_message_at_once(fresh_stack_factory):
    s = fresh_stack_factory("queue-flush", start_upstream=False, start_daemon=False,
                            retry_min=300, retry_max=3600)
    s.daemon.start()
    rcpt = unique_rcpt("flush")
    handler = use_handler(s, ScriptedHandler(
        lambda addr, n: "421 4.3.2 Not now" if n == 1 else None))
    audit = Audit(s.env)
    msg = make_message(rcpts=[rcpt])
    qid = send_ok(s.env, s.alice, msg)
    entry = poll(lambda: (lambda m: m if m and m["attempts"] == 1 else None)(queued(s.env, qid)), 10)
    assert entry, f"no deferred entry for {qid}: {queue_list(s.env)}"
    # retry_min 300: the next attempt is minutes away, so only a flush can send it now.
    assert seconds_from_now(entry["next_attempt"]) > 200, entry
    assert not s.upstream.matching(msg.marker)
    assert len(handler.attempts_for(rcpt)) == 1

    mark = audit.mark()
    out = s.env.admin("queue", "flush").stdout
    assert "due now" in out, out
    s.upstream.wait_for(msg.marker, [rcpt], timeout=5)
    audit.wait(lambda r: r["event"] == "queue-flush" and "flush requested by" in (r["reason"] or ""),
               mark, what="queue-flush audit row")


def test_restart_keeps_attempts_and_next_attempt(fresh_stack_factory):
    s = fresh_stack_factory("queue-restart", start_upstream=False, start_daemon=False,
                            retry_min=300, retry_max=3600)
    s.daemon.start()
    rcpt = unique_rcpt("restart")
    use_handler(s, ScriptedHandler(lambda addr, n: "450 4.2.1 Mailbox busy"))
    msg = make_message(rcpts=[rcpt])
    qid = send_ok(s.env, s.alice, msg)
    before = poll(lambda: (lambda m: m if m and m["attempts"] == 1 else None)(queued(s.env, qid)), 10)
    assert before, queue_list(s.env)
    s.daemon.stop()
    s.daemon.start()
    # Another message, refused the same way, is tried once: the queue has loaded the
    # spool and made its first pass since the restart.
    probe = make_message(rcpts=[unique_rcpt("restart-probe")])
    probe_id = send_ok(s.env, s.alice, probe)
    assert poll(lambda: (lambda m: m and m["attempts"] == 1)(queued(s.env, probe_id)), 10), \
        queue_list(s.env)
    after = queued(s.env, qid)
    # The restart does not reset the backoff: no new attempt, same state.
    assert after["attempts"] == 1, after
    assert after["next_attempt"] == before["next_attempt"], (before, after)
    assert after["recipients"][0]["reply"] == "450 4.2.1 Mailbox busy", after


def test_queue_delete_is_audited_and_never_relayed(fresh_stack_factory):
    s = fresh_stack_factory("queue-delete", start_upstream=False)
    audit = Audit(s.env)
    msg = make_message()
    qid = send_ok(s.env, s.alice, msg)
    mark = audit.mark()
    plain = s.env.admin("queue", "list").stdout
    assert qid in plain and msg.rcpts[0] + "=pending" in plain, plain
    s.env.admin("queue", "delete", qid)
    row = audit.wait(lambda r: r["event"] == "queue-delete" and r["queue_id"] == qid, mark,
                     what="queue-delete audit row")
    assert row["user"] == "alice" and msg.rcpts[0] in row["rcpt"], row
    again = s.env.admin("queue", "delete", qid, check=False)
    assert again.returncode == 1 and qid in again.stderr, again
    bad = s.env.admin("queue", "delete", "../../etc/passwd", check=False)
    assert bad.returncode == 2, bad
    s.upstream.start()
    s.env.admin("queue", "flush")
    # A message sent now is relayed and the queue empties: the deleted one, had it
    # stayed queued, would have gone with the flush.
    probe = make_message()
    send_ok(s.env, s.alice, probe)
    s.upstream.wait_for(probe.marker, probe.rcpts)
    relay_settled(s.env)
    assert not s.upstream.matching(msg.marker), "a deleted message was relayed"


def test_mail_flows_within_seconds_of_the_upstream_coming_back(fresh_stack_factory):
    # retry_min 2: the messages back off 2, 4, 8, 16... seconds, while the upstream is
    # probed every 2 s; once a probe gets through, everything waiting goes at once.
    s = fresh_stack_factory("queue-comeback", start_upstream=False, start_daemon=False,
                            retry_min=2, retry_max=3600)
    s.daemon.start()
    msgs = [make_message() for _ in range(3)]
    ids = [send_ok(s.env, s.alice, m) for m in msgs]
    waited = poll(lambda: all((queued(s.env, i) or {}).get("attempts", 0) >= 3 for i in ids), 20)
    assert waited, queue_list(s.env)
    entry = queued(s.env, ids[0])
    assert "connect to 127.0.0.1" in entry["last_reply"], entry
    started = time.monotonic()
    s.upstream.start()
    for m in msgs:
        s.upstream.wait_for(m.marker, m.rcpts, timeout=15)
    took = time.monotonic() - started
    # Their own next attempts are 8 s or more away: a flow within 7 s came from the
    # probe (the margin is for the upstream's own start and a slow machine).
    assert took < 7, f"took {took:.1f}s after the upstream came back"
