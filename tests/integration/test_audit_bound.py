"""Refused handshakes cannot flood the audit trail (DESIGN §3): from one client
address, the first rows of a window are written one by one and the rest are counted
into one row that says how many; accepted identities are always written."""

import re
import socket

from conftest import assert_served, client_context, poll

WINDOW_ROWS = 50          # authz_refusals.h: REFUSAL_ROWS
STORM = 80


def refused_handshake(env):
    """Implicit TLS without a client certificate: an identity refusal in the audit."""
    ctx = client_context(env, None)
    with socket.create_connection(("127.0.0.1", env.tls_port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            f = tls.makefile("rb")
            assert f.readline().startswith(b"220")
            tls.sendall(b"QUIT\r\n")
            f.readline()


def test_refusals_from_one_address_are_aggregated(stack):
    env = stack.env
    mark = stack.audit.mark()
    for _ in range(STORM):
        refused_handshake(env)
    assert_served(env, stack.alice)

    # A window is 10 s from a whole second: the storm usually fits in one (50 rows and
    # one summary of 30), but on a slow machine it may cross into the next, whose first
    # refusals are written one by one again. Either way each refusal is accounted for
    # once, in its own row or in a summary's count, and a window writes at most 50.
    def counted(summary):
        return sum(int(re.search(r"and (\d+) more refusals", r["reason"]).group(1))
                   for r in summary)

    def settled():
        rows = [r for r in stack.audit.rows(mark) if r["event"] == "identity"]
        summary = [r for r in rows if "more refusals from 127.0.0.1" in (r["reason"] or "")]
        refused = [r for r in rows if r["decision"] == "reject" and r not in summary]
        if summary and len(refused) + counted(summary) >= STORM:
            return rows, summary, refused
        return None

    got = poll(settled, 20, 0.5)
    assert got, f"not every refusal accounted for: {stack.audit.rows(mark)[-5:]}"
    rows, summary, refused = got
    accepted = [r for r in rows if r["decision"] == "accept"]
    assert len(refused) <= WINDOW_ROWS * (len(summary) + 1), len(refused)
    assert len(refused) + counted(summary) == STORM, (len(refused), counted(summary))
    assert 1 <= len(summary) <= 2, summary
    assert summary[0]["reason"].startswith("no client certificate"), summary[0]
    # The honest client in the middle of the storm has its own row.
    assert accepted and accepted[-1]["user"] == "alice", accepted
