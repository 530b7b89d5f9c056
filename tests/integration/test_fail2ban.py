"""The fail2ban filter (conf/fail2ban/filter.d/submitd.conf) against the daemon's own
log: refusals a test causes (certificates refused, max_sessions_per_ip exceeded) are
found with the client's address by fail2ban-regex; temporary failures and a full
server are not."""

import re
import shutil
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (ALICE_ADDR, Identity, make_ca, make_leaf, mail_reply, poll,
                      write_cert_and_key)

ROOT = Path(__file__).resolve().parents[2]
FILTER = ROOT / "conf" / "fail2ban" / "filter.d" / "submitd.conf"
COMMON = Path("/etc/fail2ban/filter.d/common.conf")


@pytest.fixture(scope="module")
def filter_dir(tmp_path_factory):
    if shutil.which("fail2ban-regex") is None or not COMMON.is_file():
        pytest.skip("fail2ban is not installed (apt-get install fail2ban)")
    # fail2ban reads the filter's includes (common.conf) from the filter's directory.
    d = tmp_path_factory.mktemp("fail2ban") / "filter.d"
    d.mkdir()
    shutil.copy(COMMON, d)
    shutil.copy(FILTER, d)
    return d / "submitd.conf"


def fail2ban_regex(filter_path, log_path):
    """(matched lines, addresses found) of fail2ban-regex over log_path."""
    p = subprocess.run(["fail2ban-regex", "--print-all-matched", "--print-no-missed",
                        str(log_path), str(filter_path)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched", p.stdout, re.M)
    assert m, p.stdout
    matched = [l[3:].strip() for l in p.stdout.split("Matched line(s):", 1)[-1].splitlines()
               if l.startswith("|  ")]
    return int(m.group(1)), matched


def admitted_reply(s, identity):
    """mail_reply once the per-IP limit (1) admits the client: the previous session
    may take a moment to be counted out on a loaded machine."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return mail_reply(s, identity)
        except smtplib.SMTPConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def greeted(port, source="127.0.0.1"):
    """A connection that got the 220, or None (closed) when it got a 421."""
    c = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    if c.recv(512).startswith(b"220"):
        return c
    c.close()
    return None


def test_filter_matches_the_refusals_of_a_real_run(fresh_stack_factory, filter_dir):
    s = fresh_stack_factory("fail2ban", max_sessions_per_ip=1)
    env = s.env
    our_ca, our_key = env.ca_cert_and_key()
    c, k = make_leaf(our_ca, our_key, s.alice.cert().subject, emails=[ALICE_ADDR])
    unknown = Identity("unknown", *write_cert_and_key(env.dir / "f2b", "unknown", c, k))
    other_ca, other_key = make_ca("Unrelated CA")
    c, k = make_leaf(other_ca, other_key, s.alice.cert().subject, emails=[ALICE_ADDR])
    foreign = Identity("foreign", *write_cert_and_key(env.dir / "f2b", "foreign", c, k))

    assert admitted_reply(s, unknown).startswith("535 ")
    assert admitted_reply(s, foreign).startswith("535 ")
    # A second connection from one address while one is open: max_sessions_per_ip = 1.
    # From 127.0.0.3, which nothing above used: a refusal of 127.0.0.1 while the
    # sessions above were counted out would make this one's line a repeat, which the
    # log holds back for 10 seconds.
    before = s.daemon.log.read_text().count("refused: max_sessions_per_ip reached")
    first = poll(lambda: greeted(env.port, "127.0.0.3"), 10, 0.2)
    assert first, "no greeting within 10 s"
    try:
        second = socket.create_connection(("127.0.0.1", env.port), timeout=10,
                                          source_address=("127.0.0.3", 0))
        assert second.recv(512).startswith(b"421")
        second.close()
    finally:
        first.close()
    assert poll(lambda: s.daemon.log.read_text().count(
        "refused: max_sessions_per_ip reached client=127.0.0.3") > 0, 10), \
        s.daemon.tail()
    time.sleep(0.3)

    log = s.daemon.log.read_text()
    rejects = [l for l in log.splitlines() if re.search(r" (identity|auth) reject: ", l)]
    per_ip = [l for l in log.splitlines() if "refused: max_sessions_per_ip reached" in l]
    assert len(rejects) >= 2 and len(per_ip) >= 1 + before, log[-4000:]
    # Refusal lines that carry the client's address must all be found; those that do
    # not yet (authz's "identity reject" lines without client=) cannot be.
    with_client = [l for l in rejects if "client=" in l]
    print(f"{len(rejects)} reject lines, {len(with_client)} with client=; "
          f"{len(per_ip)} max_sessions_per_ip line")

    n, matched = fail2ban_regex(filter_dir, s.daemon.log)
    assert n == len(with_client) + len(per_ip), "\n".join(matched)
    assert set(matched) == set(with_client + per_ip)
    assert all("127.0.0.1" in l or "127.0.0.3" in l for l in matched)


SAMPLES = """\
2026-12-03T16:20:28.231Z submitd/authz[57]: info: session=95dd000004 identity reject: unknown certificate (not in the certs table) client=192.0.2.10
2026-12-03T16:20:28.232Z submitd/authz[57]: info: session=95dd000005 client=192.0.2.11 identity reject: certificate expired
2026-12-03T16:20:28.233Z submitd/authz[57]: info: session=95dd000006 auth reject: PAM authentication denied bob: Authentication failure user=bob client=2001:db8::5
2026-12-03T16:20:28.234Z submitd/smtp[58]: warning: connect from [192.0.2.13] refused: max_sessions_per_ip reached
Dec  3 16:20:28 mail submitd/authz[57]: session=95dd000007 identity reject: certificate revoked client=192.0.2.12
Dec  3 16:20:28 mail submitd/smtp[58]: connect from [192.0.2.14] refused: max_sessions_per_ip reached
2026-12-03T16:20:29.000Z submitd/authz[57]: info: session=95dd000008 identity tempfail: audit row could not be written client=192.0.2.90
2026-12-03T16:20:29.001Z submitd/smtp[58]: warning: connect from [192.0.2.91] refused: max_sessions reached
2026-12-03T16:20:29.002Z submitd/authz[57]: info: session=95dd000009 user=alice sender <ceo@example.com>: not an address of alice client=192.0.2.92
2026-12-03T16:20:29.003Z submitd/authz[57]: info: session=95dd00000a identity accept: certificate user=alice client=192.0.2.93
"""


def test_filter_finds_each_log_form_and_skips_what_is_not_the_clients_fault(filter_dir,
                                                                           tmp_path):
    log = tmp_path / "samples.log"
    log.write_text(SAMPLES)
    n, matched = fail2ban_regex(filter_dir, log)
    hosts = sorted((re.search(r"client=(\S+)", l) or re.search(r"\[(\S+)\] refused", l)).group(1)
                   for l in matched)
    assert n == 6, "\n".join(matched)
    assert hosts == sorted(["192.0.2.10", "192.0.2.11", "2001:db8::5", "192.0.2.13",
                            "192.0.2.12", "192.0.2.14"])
