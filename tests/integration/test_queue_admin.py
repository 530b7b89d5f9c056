"""submit-admin on a live installation: the queue commands and the audit query
(DESIGN §5), with the upstream down so that messages stay queued."""

import json
import time

from conftest import ALICE, make_message, send_ok


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
    time.sleep(2)
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
