"""The spool file's descriptors in the queue process (DESIGN §4): the queue keeps the
descriptor it created a file with from OPEN (the DATA command) to the COMMIT, and
the relay reads the committed file through it; once the message is relayed, the
queue holds no descriptor of any spool file. Under a descriptor limit too low to
keep them, the COMMIT opens the file again and mail still flows."""

import os
import re
import time

import pytest

from conftest import make_message, poll, relay_settled, smtp_starttls
from daemon_procs import child_pid, run_daemon_under_nofile

HARD_LIMIT = 64


def spool_files_open(pid, spool):
    """Files (not the directories) under spool/incoming and spool/queue that pid has
    open, as 'incoming/ID' or 'queue/ID'."""
    found = []
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        for sub in ("incoming", "queue"):
            prefix = f"{spool}/{sub}/"
            if target.startswith(prefix):
                found.append(f"{sub}/{target[len(prefix):]}")
    return sorted(found)


def start_data(stack, msg):
    s = smtp_starttls(stack.env, stack.alice)
    assert s.mail(msg.mail_from)[0] == 250
    for r in msg.rcpts:
        assert s.rcpt(r)[0] == 250
    code, resp = s.docmd("DATA")
    assert code == 354, (code, resp)
    return s


def finish_data(s, msg):
    s.send(re.sub(rb"(?m)^\.", b"..", msg.data) + b".\r\n")
    code, resp = s.getreply()
    s.quit()
    return code, resp.decode()


def holds(pid, spool, want):
    """pid holds exactly the spool files want, and still does a moment later (the
    descriptor handed to smtp is closed just after the answer, maybe after the 354)."""
    if not poll(lambda: spool_files_open(pid, spool) == want, 2):
        return False
    time.sleep(0.3)
    return spool_files_open(pid, spool) == want


def incoming(stack):
    return sorted(p.name for p in (stack.env.dir / "spool" / "incoming").iterdir())


def test_the_queue_keeps_its_descriptor_until_commit_and_gives_all_back(stack):
    queue = child_pid(stack.daemon, "submitd-queue")
    spool = str((stack.env.dir / "spool").resolve())
    relay_settled(stack.env)
    assert spool_files_open(queue, spool) == []

    msgs = [make_message() for _ in range(3)]
    clients = [start_data(stack, m) for m in msgs]
    try:
        ids = incoming(stack)
        assert len(ids) == len(msgs), ids
        # One descriptor of each file in progress: the one the queue created it with.
        want = [f"incoming/{i}" for i in ids]
        assert holds(queue, spool, want), (spool_files_open(queue, spool), want)
        for s, m in zip(clients, msgs):
            code, resp = finish_data(s, m)
            assert code == 250, (code, resp)
    finally:
        for s in clients:
            s.close()
    for m in msgs:
        stack.upstream.wait_for(m.marker, m.rcpts)
    relay_settled(stack.env)
    # Relayed and removed: the descriptors the relay read them through are closed.
    assert poll(lambda: spool_files_open(queue, spool) == [], 5), spool_files_open(queue, spool)


def test_an_aborted_message_leaves_no_descriptor(stack):
    queue = child_pid(stack.daemon, "submitd-queue")
    spool = str((stack.env.dir / "spool").resolve())
    msg = make_message()
    s = start_data(stack, msg)
    try:
        want = [f"incoming/{i}" for i in incoming(stack)]
        assert len(want) == 1
        assert holds(queue, spool, want), (spool_files_open(queue, spool), want)
    finally:
        s.close()          # the connection drops in DATA: smtp aborts the file
    assert poll(lambda: spool_files_open(queue, spool) == [] and incoming(stack) == [], 5), \
        (spool_files_open(queue, spool), incoming(stack))
    assert not stack.upstream.matching(msg.marker)


@pytest.fixture
def under_prlimit(fresh_stack_factory, monkeypatch, tmp_path):
    """A stack whose daemon runs with RLIMIT_NOFILE 64:64: below the queue's reserve,
    so it keeps no spool file open between OPEN and COMMIT."""
    run_daemon_under_nofile(monkeypatch, tmp_path, HARD_LIMIT)
    return fresh_stack_factory("queue-fds-low", max_sessions=20, smtp_workers=1)


def test_without_room_the_commit_opens_the_file_again(under_prlimit):
    stack = under_prlimit
    queue = child_pid(stack.daemon, "submitd-queue")
    spool = str((stack.env.dir / "spool").resolve())
    msg = make_message()
    s = start_data(stack, msg)
    try:
        assert len(incoming(stack)) == 1
        assert holds(queue, spool, [])
        code, resp = finish_data(s, msg)
        assert code == 250, (code, resp)
    finally:
        s.close()
    stack.upstream.wait_for(msg.marker, msg.rcpts)
    relay_settled(stack.env)
    # The relay thread closes its descriptor after it removed the file.
    assert poll(lambda: spool_files_open(queue, spool) == [], 5), spool_files_open(queue, spool)


def test_a_message_of_many_body_records_is_checked_and_relayed_whole(fresh_stack_factory):
    """smtp writes the body in 64 KiB BODY records: the commit check reads the header
    of each one, and the relay reads the file whole through the kept descriptor."""
    stack = fresh_stack_factory("queue-fds-big", max_message_size=1000000)
    queue = child_pid(stack.daemon, "submitd-queue")
    spool = str((stack.env.dir / "spool").resolve())
    lines = [f"line {i:06d} " + "x" * 60 for i in range(4000)]       # about 300 KB
    msg = make_message(body="\r\n".join(lines) + "\r\n")
    s = start_data(stack, msg)
    try:
        code, resp = finish_data(s, msg)
        assert code == 250, (code, resp)
    finally:
        s.close()
    arrival = stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    content = arrival.content if isinstance(arrival.content, bytes) else arrival.content.encode()
    assert lines[0].encode() in content and lines[-1].encode() in content
    assert content.count(b"\r\nline ") + content.count(b"\nline ") >= len(lines) - 1
    relay_settled(stack.env)
    assert poll(lambda: spool_files_open(queue, spool) == [], 5), spool_files_open(queue, spool)
