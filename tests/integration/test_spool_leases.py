"""Where the spool's file system refuses leases, the queue cannot tell that the smtp
process closed a message before its commit: a copy of its descriptor could rewrite
the message (envelope, From field) after every check. So the queue says so at start,
refuses each commit as a temporary failure with the reason in the log, relays
nothing, and serves the next message once leases work again, without a restart."""

import os
import smtplib
from pathlib import Path

import pytest

from conftest import make_message, poll, send_ok, smtp_starttls

LEASES = Path("/proc/sys/fs/leases-enable")


@pytest.fixture
def leases_off():
    if not os.access(LEASES, os.W_OK):
        pytest.skip("needs a writable /proc/sys/fs/leases-enable (root, outside a container)")
    before = LEASES.read_text().strip()
    if before != "1":
        pytest.skip(f"leases are already off on this machine ({LEASES} = {before})")
    LEASES.write_text("0\n")
    try:
        yield
    finally:
        LEASES.write_text(before + "\n")


def test_without_leases_commits_are_refused_until_they_work_again(fresh_stack_factory,
                                                                  leases_off):
    s = fresh_stack_factory("no-leases")
    assert poll(lambda: "refuses leases" in s.daemon.tail(), 10), s.daemon.tail()
    assert "every message will be refused" in s.daemon.tail()

    msg = make_message()
    c = smtp_starttls(s.env, s.alice)
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            c.sendmail(msg.mail_from, msg.rcpts, msg.data)
        assert refused.value.smtp_code == 452, refused.value
    finally:
        c.close()
    log = s.daemon.tail()
    assert "commit refused: the spool file system refuses leases" in log, log[-3000:]
    assert not list((s.env.dir / "spool" / "queue").iterdir())

    LEASES.write_text("1\n")
    ok = make_message()
    send_ok(s.env, s.alice, ok)
    s.upstream.wait_for(ok.marker, ok.rcpts)
    assert not s.upstream.matching(msg.marker)
