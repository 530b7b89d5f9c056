"""submit-admin on a live installation: the queue commands and the audit query
(DESIGN §5), with the upstream down so that messages stay queued."""

import json

from conftest import ALICE, make_message, relay_settled, send_ok


def test_queue_list_and_delete(fresh_stack_factory):
    s = fresh_stack_factory("queue-admin", start_upstream=False)
    keep, drop = make_message(), make_message()
    keep_id = send_ok(s.env, s.alice, keep)
    drop_id = send_ok(s.env, s.alice, drop)

    listed = s.env.admin("queue", "list", "--json").stdout
    json.loads(listed)
    assert keep_id in listed and drop_id in listed, listed

    s.env.admin("queue", "delete", drop_id)
    listed = s.env.admin("queue", "list", "--json").stdout
    assert drop_id not in listed and keep_id in listed, listed

    s.upstream.start()
    s.env.admin("queue", "flush")
    s.upstream.wait_for(keep.marker, keep.rcpts, timeout=15)
    relay_settled(s.env)
    assert not s.upstream.matching(drop.marker), "a deleted message was relayed"


def test_audit_query(fresh_stack_factory):
    s = fresh_stack_factory("audit-cli")
    msg = make_message()
    qid = send_ok(s.env, s.alice, msg)
    s.audit.wait(lambda r: r["queue_id"] == qid and r["decision"] == "accept", 0, what="accept row")
    out = s.env.admin("audit", "--user", ALICE, "--since", "1h", "--json").stdout
    json.loads(out)
    assert qid in out, out
    rejects = s.env.admin("audit", "--decision", "reject", "--json").stdout
    json.loads(rejects)
    assert qid not in rejects, rejects


def test_queue_delete_and_flush_are_in_the_admin_log(fresh_stack_factory):
    """Held messages (the upstream is down) deleted and flushed through a running
    daemon: each command leaves one admin_log row naming the message, its user and
    sender, and an audit row."""
    s = fresh_stack_factory("queue-admin-log", start_upstream=False)
    env = s.env
    keep, drop = make_message(), make_message()
    keep_id = send_ok(env, s.alice, keep)
    drop_id = send_ok(env, s.alice, drop)

    def log():
        return json.loads(env.admin("log", "--json").stdout)

    before = len(log())
    env.admin("queue", "delete", drop_id)
    rows = log()[before:]
    assert [(r["program"], r["command"], r["target"]) for r in rows] == [
        ("submit-admin", "queue delete", drop_id)], rows
    assert rows[0]["user"] == ALICE and f"from={drop.mail_from}" in rows[0]["details"], rows
    assert "rcpts=1" in rows[0]["details"], rows
    audit = env.query("SELECT * FROM audit WHERE event = 'queue-delete'")
    assert [a["queue_id"] for a in audit] == [drop_id] and audit[0]["user"] == ALICE

    # A failed delete (no such message) leaves no row.
    assert env.admin("queue", "delete", drop_id, check=False).returncode == 1
    assert len(log()) == before + 1

    env.admin("queue", "flush")
    rows = log()[before + 1:]
    assert [(r["program"], r["command"]) for r in rows] == [("submit-admin", "queue flush")], rows
    assert len(env.query("SELECT * FROM audit WHERE event = 'queue-flush'")) == 1
    listed = env.admin("queue", "list", "--json").stdout
    assert keep_id in listed and drop_id not in listed, listed

    # Without a running queue process a flush fails, and is not recorded.
    s.daemon.stop()
    assert env.admin("queue", "flush", check=False).returncode == 1
    assert len(log()) == before + 2
