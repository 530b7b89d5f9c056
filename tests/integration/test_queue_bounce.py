"""Permanent failures and expiry (DESIGN §4): the sender gets an RFC 3464 delivery
status notification through the same upstream, from the null sender, naming each
failed recipient with the upstream's reply; recipients that were accepted are never
sent the message again."""

import email
import email.policy

from conftest import ALICE_ADDR, Audit, make_message, poll, relay_settled, send_ok, unique_rcpt
from test_queue_retry import ScriptedHandler, queue_list, use_handler

REFUSAL = "550 5.1.1 <{}>: Recipient address rejected: User unknown in local table"


def dsn_arrivals(upstream):
    return [a for a in upstream.arrivals() if a.mail_from in ("", "<>")]


def originals(upstream, marker):
    """Copies of the message itself (the report quotes its headers, so it matches too)."""
    return [a for a in upstream.matching(marker) if a.mail_from not in ("", "<>")]


def wait_dsn(upstream, qid, timeout=15):
    got = poll(lambda: [a for a in dsn_arrivals(upstream) if qid.encode() in a.content], timeout)
    assert got, (f"no delivery status notification for {qid} within {timeout}s; "
                 f"upstream has {upstream.arrivals()[-5:]!r}")
    return got


def parse_report(arrival):
    """The DSN as Python's email package reads it: (message, human part, list of
    delivery-status field blocks, headers part)."""
    msg = email.message_from_bytes(arrival.content, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report", msg.get_content_type()
    assert msg.get_param("report-type") == "delivery-status", msg["Content-Type"]
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == \
        ["text/plain", "message/delivery-status", "text/rfc822-headers"], \
        [p.get_content_type() for p in parts]
    blocks = parts[1].get_payload()
    assert len(blocks) >= 2, f"delivery-status needs per-message and per-recipient fields: {blocks}"
    return msg, parts[0], blocks, parts[2]


def test_one_of_two_recipients_refused(fresh_stack_factory):
    s = fresh_stack_factory("queue-bounce", start_upstream=False, start_daemon=False)
    s.daemon.start()
    good, bad = unique_rcpt("good"), unique_rcpt("bad")
    refusal = REFUSAL.format(bad)
    handler = use_handler(s, ScriptedHandler(lambda addr, n: refusal if addr == bad else None))
    audit = Audit(s.env)
    msg = make_message(rcpts=[good, bad])
    qid = send_ok(s.env, s.alice, msg)

    dsn = wait_dsn(s.upstream, qid)
    assert len(dsn) == 1, dsn
    assert dsn[0].rcpt_tos == [ALICE_ADDR], dsn[0]
    report, human, blocks, headers = parse_report(dsn[0])
    assert report["To"] == f"<{ALICE_ADDR}>" or ALICE_ADDR in report["To"], report["To"]
    assert report["Auto-Submitted"] == "auto-replied"
    assert bad in human.get_content() and refusal in human.get_content(), human.get_content()
    assert blocks[0]["Reporting-MTA"] == "dns; mail.test", blocks[0]
    assert blocks[0]["X-Submitd-Queue-ID"] == qid
    recipients = blocks[1:]
    assert len(recipients) == 1, [dict(b) for b in recipients]
    r = recipients[0]
    assert r["Final-Recipient"] == f"rfc822; {bad}", dict(r)
    assert r["Action"] == "failed", dict(r)
    assert r["Status"] == "5.1.1", dict(r)
    assert r["Diagnostic-Code"] == f"smtp; {refusal}", dict(r)
    assert r["Remote-MTA"] == "dns; 127.0.0.1", dict(r)
    assert f"<{msg.msgid}>" in headers.get_content(), "original headers missing from the report"

    # The accepted recipient has the message once, and never again.
    s.upstream.wait_for(msg.marker, [good])
    wait_dsn(s.upstream, qid)
    relay_settled(s.env)
    copies = originals(s.upstream, msg.marker)
    assert len(copies) == 1 and copies[0].rcpt_tos == [good], copies
    assert len(handler.attempts_for(good)) == 1, handler.attempts_for(good)
    assert len(handler.attempts_for(bad)) == 1, handler.attempts_for(bad)
    assert len(wait_dsn(s.upstream, qid)) == 1, "the report was sent twice"
    assert not [m for m in queue_list(s.env) if m["id"] == qid], queue_list(s.env)

    bounced = audit.wait(lambda row: row["event"] == "bounced" and row["queue_id"] == qid, 0,
                         what=f"bounced event for {qid}")
    assert bounced["rcpt"] == bad and refusal in bounced["reason"], bounced
    relayed = audit.wait(lambda row: row["event"] == "relayed" and row["queue_id"] == qid, 0,
                         what=f"relayed event for {qid}")
    assert relayed["rcpt"] == good, relayed


def test_queue_lifetime_expiry_bounces(fresh_stack_factory):
    # Long enough for two attempts one second apart even on a loaded machine (ASan).
    s = fresh_stack_factory("queue-expiry", start_upstream=False, start_daemon=False,
                            retry_min=1, retry_max=1, queue_lifetime=6)
    s.daemon.start()
    slow = unique_rcpt("slow")
    tempfail = "452 4.2.2 Mailbox full, try later"
    use_handler(s, ScriptedHandler(lambda addr, n: tempfail if addr == slow else None))
    audit = Audit(s.env)
    msg = make_message(rcpts=[slow])
    qid = send_ok(s.env, s.alice, msg)

    dsn = wait_dsn(s.upstream, qid, timeout=20)
    _, human, blocks, _ = parse_report(dsn[0])
    r = blocks[1]
    assert r["Final-Recipient"] == f"rfc822; {slow}" and r["Action"] == "failed", dict(r)
    assert r["Status"] == "4.4.7", dict(r)
    assert r["Diagnostic-Code"] == f"smtp; {tempfail}", dict(r)
    assert "in time" in human.get_content(), human.get_content()
    assert not originals(s.upstream, msg.marker)
    bounced = audit.wait(lambda row: row["event"] == "bounced" and row["queue_id"] == qid, 0)
    assert tempfail in bounced["reason"], bounced
    deferred = [row for row in audit.rows() if row["event"] == "deferred" and row["queue_id"] == qid]
    assert len(deferred) >= 2, deferred


def test_refused_data_bounces_every_recipient(fresh_stack_factory):
    s = fresh_stack_factory("queue-bounce-data", start_upstream=False, start_daemon=False)
    s.daemon.start()
    marker = "submitd-refuse-this-body"
    use_handler(s, ScriptedHandler(
        data_reply=lambda env: "554 5.7.1 Message refused by content filter"
        if marker.encode() in env.original_content else None))
    a, b = unique_rcpt("a"), unique_rcpt("b")
    msg = make_message(rcpts=[a, b], body=f"{marker}\r\n")
    qid = send_ok(s.env, s.alice, msg)
    dsn = wait_dsn(s.upstream, qid)
    _, _, blocks, _ = parse_report(dsn[0])
    finals = sorted(bl["Final-Recipient"] for bl in blocks[1:])
    assert finals == sorted([f"rfc822; {a}", f"rfc822; {b}"]), finals
    assert all(bl["Status"] == "5.7.1" for bl in blocks[1:]), [dict(bl) for bl in blocks[1:]]
    assert not originals(s.upstream, msg.marker)
