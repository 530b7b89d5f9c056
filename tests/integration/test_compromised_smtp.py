"""A compromised smtp process is contained (DESIGN §2): authz decides identity and
answers for the user of its own grant only; the queue takes only envelopes authz
granted, free of CR/LF, and commits only files whose records it can vouch for.

The daemon runs with hostile_smtp.c in place of submitd-smtp: it attacks the authz
and queue channels as the smtp user, reports every outcome, then becomes the real
smtp process, so the last check is that the next honest client is served by the
same authz and queue processes."""

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import (ALICE_ADDR, Upstream, Env, assert_served, binary, build_dir, make_message,
                      poll, relay_settled, send_ok)


def read_report(path):
    outcomes = {}
    for line in Path(path).read_text().splitlines():
        name, outcome, detail = (line.split("\t") + ["", ""])[:3]
        outcomes[name] = (outcome, detail)
    return outcomes


@pytest.fixture(scope="module")
def hostile(request):
    env = Env("compromised", smtp_workers=1, auth_password="fallback")
    upstream = Upstream(env.upstream_port).start()
    env.init_pki()
    alice = env.issue("alice", ALICE_ADDR)
    bob = env.issue("bob", "bob@example.com")
    # A private installation: the master finds its workers next to its own binary.
    tree = env.dir / "install"
    (tree / "bin").mkdir(parents=True)
    libexec = tree / "libexec" / "submitd"
    libexec.mkdir(parents=True)
    shutil.copy2(binary("submitd"), tree / "bin" / "submitd")
    real_libexec = build_dir() / "libexec" / "submitd"
    for prog in ("submitd-authz", "submitd-queue"):
        shutil.copy2(real_libexec / prog, libexec / prog)
    shutil.copy2(build_dir() / "tests" / "hostile-smtp", libexec / "submitd-smtp")
    for p in tree.rglob("*"):
        os.chmod(p, 0o755)
    report = env.dir / "hostile-report.tsv"
    log = env.dir / "submitd.log"
    environ = dict(os.environ,
                   SUBMITD_HOSTILE_REAL=str(real_libexec / "submitd-smtp"),
                   SUBMITD_HOSTILE_REPORT=str(report),
                   SUBMITD_HOSTILE_ALICE=str(alice.crt),
                   SUBMITD_HOSTILE_BOB=str(bob.crt))
    with open(log, "ab") as logf:
        proc = subprocess.Popen([str(tree / "bin" / "submitd"), "-c", str(env.conf), "-f"],
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                cwd=env.dir, env=environ, start_new_session=True)
    try:
        done = poll(lambda: report.exists() and "done\tok" in report.read_text(), 30)
        assert done, f"the hostile smtp process did not finish:\n{log.read_text()[-5000:]}"
        yield env, upstream, alice, read_report(report), log
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        upstream.stop()
        env.cleanup(keep=request.session.testsfailed > 0)


def outcome(report, name):
    assert name in report, f"step {name} missing from the report: {sorted(report)}"
    return report[name]


def test_the_smtp_user_cannot_open_the_spool(hostile):
    _, _, _, report, _ = hostile
    assert outcome(report, "spool_directory")[0] == "refused", report["spool_directory"]


def test_identity_is_decided_by_authz_from_the_certificate(hostile):
    _, _, _, report, _ = hostile
    assert outcome(report, "identity_alice")[0] == "allow"
    assert outcome(report, "identity_bob")[0] == "allow"
    # A session cannot be given a second identity (to switch to another user).
    state, reply = outcome(report, "identity_again")
    assert state == "deny" and "already identified" in reply, (state, reply)


def test_requests_for_sessions_authz_never_granted_are_refused(hostile):
    _, _, _, report, _ = hostile
    state, reply = outcome(report, "sender_ungranted")
    assert state == "deny" and reply.startswith("530 5.7.0"), (state, reply)
    state, why = outcome(report, "open_ungranted")
    assert state == "refused" and "not granted" in why, why


def test_a_session_can_only_use_its_own_users_addresses(hostile):
    _, _, _, report, _ = hostile
    state, reply = outcome(report, "sender_other_user")
    assert state == "deny" and reply == "553 5.7.1 Sender address not owned by user alice", reply
    state, why = outcome(report, "open_other_sender")
    assert state == "refused" and "sender" in why, why


def test_cr_lf_in_the_envelope_is_refused_by_authz_and_queue(hostile):
    _, _, _, report, _ = hostile
    state, reply = outcome(report, "sender_crlf")
    assert state == "deny" and reply.startswith("501"), reply
    state, why = outcome(report, "open_crlf")
    assert state == "refused" and "control character" in why, why


def test_spool_files_are_checked_at_commit(hostile):
    _, _, _, report, log = hostile
    expected = {
        "commit_record_after_body": "after the envelope",
        "commit_rewritten_envelope": "envelope records were changed",
        "commit_kept_descriptor": "still holds the file open",
        "commit_not_opened": "not a file this smtp channel has open",
        "commit_oversize": "more than max_message_size with the added fields",
        "commit_from_behind_bare_cr": "bare CR in the message",
    }
    for step, words in expected.items():
        state, why = outcome(report, step)
        assert state == "refused" and words in why, (step, state, why)
    # The header From goes to authz with the commit, and authz refuses another
    # user's address, whatever smtp decided.
    state, why = outcome(report, "commit_header_from_other_user")
    assert state == "refused" and why == "550 5.7.1 Header From address not owned by user alice", \
        (state, why)
    # What smtp reports does not matter: the queue reads the From field of the message.
    for step in ("commit_header_from_reported_as_own", "commit_header_from_unreported"):
        state, why = outcome(report, step)
        assert state == "refused" and \
            why == "550 5.7.1 Header From address not owned by user alice", (step, state, why)
    state, why = outcome(report, "commit_two_from_fields")
    assert state == "refused" and "more than one From field" in why, (state, why)
    # The queue says when smtp's report and the message disagree.
    assert "the From addresses the smtp process sent (1) are not the message's (1)" in \
        log.read_text()
    # One MAIL FROM approves one message: the OPEN after it was used is refused.
    state, why = outcome(report, "open_without_sender")
    assert state == "refused" and "no sender approved" in why, why


def test_only_the_correct_exchange_is_relayed(hostile):
    env, upstream, _, report, _ = hostile
    assert outcome(report, "commit_control")[0] == "ok", report["commit_control"]
    upstream.wait_for(b"HOSTILE-CONTROL-MESSAGE")
    # Nothing is left to relay: a refused exchange that had been queued would be here.
    relay_settled(env)
    for marker in (b"HOSTILE-RECORD-AFTER-BODY", b"HOSTILE-REWRITTEN-ENVELOPE",
                   b"HOSTILE-KEPT-DESCRIPTOR", b"HOSTILE-FOREIGN-FROM", b"HOSTILE-OVERSIZE",
                   b"HOSTILE-HIDDEN-FROM", b"HOSTILE-UNREPORTED-FROM", b"HOSTILE-TWO-FROMS",
                   b"HOSTILE-BARE-CR"):
        assert not upstream.matching(marker), f"{marker!r} was relayed"
    # The control message carries the user authz granted, not one smtp named.
    rows = env.query("SELECT * FROM audit WHERE session = 'h-alice' AND event = 'data' "
                     "AND decision = 'reject'")
    assert rows and all(r["user"] == "alice" for r in rows), rows


def test_only_the_queue_reports_accepted_messages(hostile):
    """An accept row from smtp is a forgery: authz refuses it and records a reject row
    under the session's user as authz knows it; nothing is charged to that user. The
    one accept row is the queue's, for the message it queued."""
    env, _, _, report, _ = hostile
    state, reply = outcome(report, "audit_fake_submission")
    assert state == "deny" and "only the queue" in reply, (state, reply)
    rows = poll(lambda: env.query("SELECT * FROM audit WHERE session = 'h-bob' "
                                  "AND event = 'submission'"), 5)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row["decision"] == "reject" and "only the queue" in row["reason"], row
    assert row["user"] == "bob" and row["client_ip"] == "203.0.113.66", row
    accepts = env.query("SELECT * FROM audit WHERE decision = 'accept' AND event = 'submission' "
                        "AND session IN ('h-alice', 'h-bob')")
    assert [(r["session"], r["user"]) for r in accepts] == [("h-alice", "alice")], accepts
    usage = {r["user"]: (r["m"], r["r"]) for r in env.query(
        "SELECT user, sum(messages) AS m, sum(recipients) AS r FROM rate_usage GROUP BY user")}
    assert "bob" not in usage, usage
    assert usage.get("alice") == (1, 1), usage


def test_the_next_honest_client_is_served(hostile):
    env, upstream, alice, _, log = hostile
    assert poll(lambda: env.port and _greets(env.port), 15), log.read_text()[-3000:]
    assert_served(env, alice)
    msg = make_message()
    send_ok(env, alice, msg)
    upstream.wait_for(msg.marker, msg.rcpts)
    text = log.read_text()
    assert "restarting the worker processes" not in text, text[-3000:]


def _greets(port):
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.settimeout(2)
            return s.recv(64).startswith(b"220")
    except OSError:
        return False


def _sha256_of(pem_path):
    import hashlib
    import ssl
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(Path(pem_path).read_text())).hexdigest()


def test_a_session_name_used_again_while_pam_decides_keeps_its_own_identity(hostile):
    """smtp ends a session and names a new one the same while PAM still decides
    about the first identity: the late verdict answers the first request only. The
    new session has the identity of its own certificate (or none), and each audit
    row names the certificate that was presented with its request."""
    env, _, alice, report, _ = hostile
    assert outcome(report, "reused_other_user_first") == ("allow", "alice")
    assert outcome(report, "reused_other_user_second") == ("allow", "bob")
    state, reply = outcome(report, "reused_other_user_sender_alice")
    assert state == "deny" and reply == "553 5.7.1 Sender address not owned by user bob", reply
    assert outcome(report, "reused_other_user_sender_bob")[0] == "allow"

    assert outcome(report, "reused_no_cert_first") == ("allow", "alice")
    state, _ = outcome(report, "reused_no_cert_second")
    assert state == "deny", report["reused_no_cert_second"]
    state, reply = outcome(report, "reused_no_cert_sender_alice")
    assert state == "deny" and reply.startswith("530 5.7.0"), reply

    alice_sha = _sha256_of(alice.crt)
    bob_sha = _sha256_of(env.identities["bob"].crt)
    rows = env.query("SELECT user, cert_sha256, decision FROM audit WHERE session = 'h-reused' "
                     "AND event = 'identity' ORDER BY id")
    assert sorted((r["user"], r["cert_sha256"], r["decision"]) for r in rows) == \
        sorted([("alice", alice_sha, "accept"), ("bob", bob_sha, "accept")]), rows
    # The refusal of the certificate-less request may be counted into a summary row
    # (refusals from one address are bounded); alice's accept names her certificate.
    rows = env.query("SELECT user, cert_sha256, decision FROM audit "
                     "WHERE session = 'h-reused-nocert' AND event = 'identity' AND user = 'alice'")
    assert [(r["cert_sha256"], r["decision"]) for r in rows] == [(alice_sha, "accept")], rows


def test_a_second_auth_plain_waits_for_no_one(hostile):
    """Two AUTH PLAIN requests for one session in one burst: the second is refused at
    once as a second one, not sent to PAM beside the first (whose verdict alone may
    name the session's user)."""
    env, _, _, report, _ = hostile
    assert outcome(report, "password_first")[0] == "deny"
    assert outcome(report, "password_second")[0] == "deny"
    rows = env.query("SELECT reason FROM audit WHERE session = 'h-pw' AND event = 'auth' "
                     "ORDER BY id")
    reasons = [r["reason"] for r in rows]
    assert len(reasons) == 2 and "a second AUTH PLAIN in the session" in reasons, reasons
