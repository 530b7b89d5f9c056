"""A full disk (DESIGN §8, issue "nothing lost"): the spool on a tiny tmpfs runs out of
space in the middle of DATA. The client gets 452 4.3.1, nothing half-written stays in
the spool, nothing is relayed, and the next message that fits is accepted."""

import os
import subprocess

import pytest

from conftest import make_message, poll, reply_text, send_ok, smtp_starttls

STORAGE = "452 4.3.1 Insufficient system storage"


@pytest.fixture
def small_spool(fresh_stack_factory):
    s = fresh_stack_factory("disk-full", start_daemon=False, max_message_size="10M")
    spool = s.env.dir / "spool"
    spool.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the spool needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(spool)],
                   check=True)
    try:
        s.daemon.start()
        yield s
    finally:
        s.daemon.stop()
        subprocess.run(["umount", "-l", str(spool)], check=False)


def spool_files(env):
    spool = env.dir / "spool"
    return {d: sorted(p.name for p in (spool / d).iterdir()) for d in ("incoming", "queue")}


def test_disk_full_during_data_gives_452_and_leaves_nothing(small_spool):
    s = small_spool
    big = make_message(body="x" * 76 + "\r\n")
    big.data = big.data + b"y" * 76 + b"\r\n" * 1 + (b"z" * 998 + b"\r\n") * 600  # ~600 KB
    c = smtp_starttls(s.env, s.alice)
    try:
        assert reply_text(*c.mail("alice@example.com")).startswith("250")
        assert reply_text(*c.rcpt(big.rcpts[0])).startswith("250")
        reply = reply_text(*c.data(big.data))
    finally:
        c.close()
    assert reply == STORAGE, reply
    # smtp asks the queue to remove the partial file before it replies; the queue
    # process does so a moment later.
    empty = {"incoming": [], "queue": []}
    assert poll(lambda: spool_files(s.env) == empty, 5), spool_files(s.env)
    assert s.daemon.running()

    small = make_message()
    send_ok(s.env, s.alice, small)
    s.upstream.wait_for(small.marker, small.rcpts)
    assert not s.upstream.matching(big.marker), "the refused message was relayed"
