"""The spool under stress (DESIGN §4, §8): a spool that cannot be written gets
`452 4.3.1` and leaves nothing behind, and a torn file found at start-up is moved to
spool/corrupt/ with a log line and never relayed."""

import os
import smtplib

from conftest import make_message, poll, relay_settled, reply_text, send_ok, smtp_starttls, submit

STORAGE = "452 4.3.1 Insufficient system storage"


def try_submit(env, identity, msg):
    s = smtp_starttls(env, identity)
    try:
        return submit(s, msg)
    except smtplib.SMTPDataError as e:      # refused at the DATA command itself
        return reply_text(e.smtp_code, e.smtp_error)
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            s.close()


def spool_files(env):
    spool = env.dir / "spool"
    return {d: sorted(p.name for p in (spool / d).iterdir()) for d in ("incoming", "queue")}


def test_unwritable_spool_gives_452_and_leaves_nothing(fresh_stack_factory):
    s = fresh_stack_factory("queue-452")
    spool = s.env.dir / "spool"
    for sub in ("incoming", "queue"):
        d = spool / sub
        mode = d.stat().st_mode & 0o7777
        # The queue process runs as nobody, the owner of the directory.
        os.chmod(d, 0o500)
        try:
            msg = make_message()
            reply = try_submit(s.env, s.alice, msg)
            assert reply == STORAGE, f"spool/{sub} unwritable: expected {STORAGE!r}, got {reply!r}"
        finally:
            os.chmod(d, mode)
        # Nothing in incoming or queue: the refused message can never be relayed.
        assert spool_files(s.env) == {"incoming": [], "queue": []}, \
            f"left behind with spool/{sub} unwritable: {spool_files(s.env)}"
        assert not s.upstream.matching(msg.marker), "a refused message was relayed"
    # Writable again: the next message goes through.
    msg = make_message()
    send_ok(s.env, s.alice, msg)
    s.upstream.wait_for(msg.marker, msg.rcpts)
    assert s.daemon.running()


def test_torn_file_is_moved_to_corrupt_at_start(fresh_stack_factory):
    s = fresh_stack_factory("queue-torn", start_upstream=False)
    intact, torn = make_message(), make_message()
    intact_id = send_ok(s.env, s.alice, intact)
    torn_id = send_ok(s.env, s.alice, torn)
    s.daemon.stop()
    path = s.env.dir / "spool" / "queue" / torn_id
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 40])      # a crash in the middle of the body
    log_offset = s.daemon.log_size()

    s.upstream.start()
    s.daemon.start()
    s.upstream.wait_for(intact.marker, intact.rcpts)
    moved = s.env.dir / "spool" / "corrupt" / torn_id
    assert poll(moved.exists, 5), f"{torn_id} not moved to spool/corrupt"
    assert not path.exists()
    log = s.daemon.log.read_bytes()[log_offset:].decode("utf-8", "replace")
    assert f"id={torn_id} spool file is corrupt (torn:" in log and "never relayed" in log, log[-3000:]
    relay_settled(s.env)
    assert not s.upstream.matching(torn.marker), "a torn file was relayed"
    listed = s.env.admin("queue", "list").stdout
    assert torn_id not in listed and intact_id not in listed, listed
