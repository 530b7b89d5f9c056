"""Refused handshakes cannot flood the audit trail (DESIGN §3): from one client
address, the first rows of a window are written one by one and the rest are counted
into one row that says how many; accepted identities are always written."""

import re
import socket
import ssl

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

    def settled():
        rows = [r for r in stack.audit.rows(mark) if r["event"] == "identity"]
        summary = [r for r in rows if "more refusals from 127.0.0.1" in (r["reason"] or "")]
        return (rows, summary) if summary else None

    got = poll(settled, 20, 0.5)
    assert got, f"no summary row: {stack.audit.rows(mark)[-5:]}"
    rows, summary = got
    refused = [r for r in rows if r["decision"] == "reject" and r not in summary]
    accepted = [r for r in rows if r["decision"] == "accept"]
    assert len(refused) == WINDOW_ROWS, len(refused)
    assert len(summary) == 1, summary
    m = re.search(r"and (\d+) more refusals", summary[0]["reason"])
    assert m and int(m.group(1)) == STORM - WINDOW_ROWS, summary[0]["reason"]
    assert summary[0]["reason"].startswith("no client certificate"), summary[0]
    # The honest client in the middle of the storm has its own row.
    assert accepted and accepted[-1]["user"] == "alice", accepted
