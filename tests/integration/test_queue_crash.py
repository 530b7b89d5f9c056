"""Crash loop (DESIGN §4): while clients submit a few hundred messages, the whole
daemon is killed with SIGKILL at random moments and restarted. Every message that got
a 250 must reach the upstream; a message may arrive once more than it was sent only
when it was in flight to the upstream at a kill (at most one per relay thread per kill).
A client that lost the connection during DATA sends the message again, as real
clients do: the daemon may have queued the first copy before the kill took the 250, so
each such try may arrive too."""

import smtplib
import ssl
import threading
import time

from conftest import ACCEPT_RE, make_message, poll, relay_settled, reply_text, smtp_starttls

MESSAGES = 400
PER_SESSION = 5
CLIENTS = 3
KILLS = 5
RELAY_THREADS = 4       # submitd/queue.c


def client(env, identity, todo, acked, lock, stop, tries):
    while not stop.is_set():
        with lock:
            if not todo:
                return
            batch = [todo.pop() for _ in range(min(PER_SESSION, len(todo)))]
        s = None
        try:
            s = smtp_starttls(env, identity)
            while batch:
                msg = batch[-1]
                code, resp = s.mail(msg.mail_from)
                if code != 250:
                    raise smtplib.SMTPException(reply_text(code, resp))
                for r in msg.rcpts:
                    s.rcpt(r)
                with lock:
                    tries[msg.msgid] = tries.get(msg.msgid, 0) + 1
                code, resp = s.data(msg.data)
                batch.pop()
                if ACCEPT_RE.match(reply_text(code, resp)):
                    with lock:
                        acked.append(msg)
                # Not accepted (e.g. the queue went away): resubmitted as a new try.
                elif code >= 400:
                    with lock:
                        todo.append(msg)
            s.quit()
        except (OSError, smtplib.SMTPException, ssl.SSLError, AssertionError):
            # The daemon was killed under us; unacknowledged messages are retried.
            with lock:
                todo.extend(batch)
            time.sleep(0.2)
        finally:
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def test_kill9_loop_loses_no_acknowledged_message(fresh_stack_factory, rng):
    # The moments of the kills come from rng: SUBMITD_TEST_SEED repeats them.
    s = fresh_stack_factory("queue-crash", retry_min=1, retry_max=2)
    todo = [make_message() for _ in range(MESSAGES)]
    acked, lock, stop, tries = [], threading.Lock(), threading.Event(), {}
    threads = [threading.Thread(target=client,
                                args=(s.env, s.alice, todo, acked, lock, stop, tries))
               for _ in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    kills = 0
    try:
        while kills < KILLS:
            # Most kills land while clients submit, the later ones while the queue
            # relays what is left.
            time.sleep(rng.uniform(0.05, 0.6))
            s.daemon.kill9(group=True)
            assert poll(lambda: not s.daemon.alive_family(), 5), s.daemon.alive_family()
            kills += 1
            s.daemon.start()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(1, deadline - time.monotonic()))
    finally:
        stop.set()
    assert not any(t.is_alive() for t in threads), "clients did not finish within 60 s"
    assert len(acked) == MESSAGES, f"only {len(acked)} of {MESSAGES} messages acknowledged"

    def missing():
        return [m for m in acked if not s.upstream.matching(m.marker)]

    poll(lambda: not missing(), 45, 0.5)
    lost = missing()
    assert not lost, (f"{len(lost)} acknowledged messages never reached the upstream, e.g. "
                      f"{[m.msgid for m in lost[:5]]}")
    # A file whose message just arrived may not be removed yet, and a copy relayed
    # again after a kill may still be on its way: count once the queue is empty.
    relay_settled(s.env, 30)
    arrived = {m.msgid: len(s.upstream.matching(m.marker)) for m in acked}
    dups = {k: v for k, v in arrived.items() if v > 1}
    # Copies beyond the tries of DATA: only a relay in flight at a kill makes those.
    extra = {k: v - tries[k] for k, v in arrived.items() if v > tries[k]}
    print(f"\ncrash loop: {MESSAGES} messages, {kills} kills, {time.monotonic() - started:.1f}s, "
          f"{len(dups)} duplicates: {dups}")
    assert len(extra) <= RELAY_THREADS * kills, f"more duplicates than messages in flight: {extra}"
    assert all(v == 1 for v in extra.values()), \
        f"a message arrived twice more than it was sent: {extra} (tries: " \
        f"{ {k: tries[k] for k in extra} })"
    corrupt = list((s.env.dir / "spool" / "corrupt").iterdir())
    assert not corrupt, f"torn files after the crashes: {corrupt}"
    leftover = list((s.env.dir / "spool" / "queue").iterdir())
    assert not leftover, f"queue not empty after every delivery: {leftover}"
