"""The header section of a message under attack (DESIGN §3.8, §8): the whole header
section is parsed for From however long it is, up to max_header_size; a longer one is
refused with 552; a NUL byte anywhere in DATA is refused with 550. Each refusal is
audited, nothing refused is relayed, the session stays in sync and the next client is
served."""

import email.utils
import uuid

import pytest

from conftest import (ALICE_ADDR, Message, added_headers, assert_not_relayed, assert_served,
                      build_stack, contains, queue_id, raw_tls_session, unique_rcpt)

NOT_OWNED = "550 5.7.1 Header From address not owned"
TWO_FROM = "550 5.6.0 Message header From is malformed: more than one From field"
NUL_REFUSED = "550 5.6.0 NUL character not allowed"
HEADER_TOO_BIG = "552 5.3.4 Message header exceeds max_header_size"
VICTIM = "ceo@victim.test"

# 300 padding fields of 900 bytes (902 with CRLF): 270,600 bytes of header before the
# field that matters, more than the 256 KiB the header was once cut at.
PAD_LINES = 300
PAD_LEN = 900
BIG_MESSAGE_SIZE = 1024 * 1024
SMALL_HEADER_SIZE = 4096


# ---- helpers ---------------------------------------------------------------------------------

def _private_stack(request, name, **overrides):
    failed_before = request.session.testsfailed
    s = build_stack(name, **overrides)
    return s, failed_before


@pytest.fixture(scope="module")
def big_stack(request):
    """A stack whose message limit leaves room for a 270 KB header section."""
    s, failed_before = _private_stack(request, "data-header-big", max_message_size=BIG_MESSAGE_SIZE)
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


@pytest.fixture(scope="module")
def small_header_stack(request):
    """A stack with max_header_size = 4096 (and the usual 64 KiB message limit)."""
    s, failed_before = _private_stack(request, "data-header-small",
                                      max_header_size=SMALL_HEADER_SIZE)
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


def padding(lines=PAD_LINES, length=PAD_LEN):
    out = []
    for i in range(lines):
        prefix = f"X-Padding-{i:04d}: "
        out.append(prefix + "p" * (length - len(prefix)))
    return out


def message(header_lines, body="body of the message\r\n"):
    """A Message from raw header lines; Date and Message-ID come last so that
    finding them proves the whole section was read."""
    rcpt = unique_rcpt()
    msgid = f"{uuid.uuid4().hex}@client.test"
    headers = list(header_lines) + [f"To: {rcpt}", "Subject: header section test",
                                    f"Date: {email.utils.formatdate(localtime=False)}",
                                    f"Message-ID: <{msgid}>"]
    data = ("\r\n".join(headers) + "\r\n\r\n" + body).encode()
    return Message(data, msgid, ALICE_ADDR, [rcpt])


def stuffed(data):
    """Dot-stuffing for the wire, and the final dot."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"


def transaction(target, msg, data=None):
    """One DATA transaction on a raw session; returns the reply to the final dot after
    checking that exactly one reply came and that the session still answers."""
    c = raw_tls_session(target.env, target.alice)
    try:
        assert c.cmd(f"MAIL FROM:<{msg.mail_from}>").code == 250
        for r in msg.rcpts:
            assert c.cmd(f"RCPT TO:<{r}>").code == 250
        r = c.cmd("DATA")
        assert r.code == 354, str(r)
        c.send(stuffed(msg.data if data is None else data))
        last = c.reply().last
        assert c.cmd("NOOP").code == 250, "session out of sync after DATA"
        assert c.nothing_pending(), f"more than one reply to DATA: {c.buf!r}"
        return last
    finally:
        c.close()


def data_reject_row(target, mark, *words):
    return target.audit.wait(lambda r: r["event"] == "data" and r["decision"] == "reject"
                             and contains(r["reason"], *words), mark,
                             what=f"data reject row naming {words}")


# ---- (a), (b): From after 270 KB of header ----------------------------------------------------

def test_from_after_long_padding_is_checked(big_stack):
    msg = message(padding() + [f"From: CEO <{VICTIM}>"])
    assert len(msg.data) > 256 * 1024
    mark = big_stack.audit.mark()
    reply = transaction(big_stack, msg)
    assert reply.startswith(NOT_OWNED), reply
    row = data_reject_row(big_stack, mark, "header from")
    assert row["mail_from"] == VICTIM, row
    assert_not_relayed(big_stack, msg.marker)
    assert_served(big_stack.env, big_stack.alice)


def test_second_from_after_long_padding_is_found(big_stack):
    msg = message([f"From: Alice <{ALICE_ADDR}>"] + padding() + [f"From: CEO <{VICTIM}>"])
    mark = big_stack.audit.mark()
    assert transaction(big_stack, msg) == TWO_FROM
    data_reject_row(big_stack, mark, "more than one From")
    assert_not_relayed(big_stack, msg.marker)
    assert_served(big_stack.env, big_stack.alice)


def test_own_from_after_long_padding_is_relayed_intact(big_stack):
    msg = message(padding() + [f"From: Alice <{ALICE_ADDR}>"])
    qid = queue_id(transaction(big_stack, msg))
    arrival = big_stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    # Date and Message-ID at the very end were seen: only Received is added.
    assert [n.lower() for n, _ in added_headers(arrival, msg.data)] == ["received"]
    assert qid


# ---- (c): max_header_size --------------------------------------------------------------------

def test_header_over_max_header_size_is_refused(small_header_stack):
    st = small_header_stack
    msg = message(padding(lines=8, length=600) + [f"From: Alice <{ALICE_ADDR}>"],
                  body="MAIL FROM:<alice@example.com>\r\nRCPT TO:<x@example.net>\r\nDATA\r\n")
    assert len(msg.data) > SMALL_HEADER_SIZE
    mark = st.audit.mark()
    # transaction() also proves that the rest of DATA was consumed to the final dot:
    # the command-like body lines got no replies.
    assert transaction(st, msg) == HEADER_TOO_BIG
    data_reject_row(st, mark, "max_header_size")
    assert_not_relayed(st, msg.marker)
    assert_served(st.env, st.alice)


def test_header_without_end_over_max_header_size_is_refused(small_header_stack):
    """A message that is nothing but header, longer than the limit."""
    st = small_header_stack
    msg = message(padding(lines=8, length=600))
    data = msg.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    mark = st.audit.mark()
    assert transaction(st, msg, data) == HEADER_TOO_BIG
    data_reject_row(st, mark, "max_header_size")
    assert_not_relayed(st, msg.marker)


def test_header_under_max_header_size_with_a_large_body_is_accepted(small_header_stack):
    st = small_header_stack
    msg = message(padding(lines=4, length=600) + [f"From: Alice <{ALICE_ADDR}>"],
                  body=("b" * 98 + "\r\n") * 200)
    assert len(msg.data.split(b"\r\n\r\n", 1)[0]) < SMALL_HEADER_SIZE < len(msg.data)
    queue_id(transaction(st, msg))
    arrival = st.upstream.wait_for(msg.marker, msg.rcpts)[0]
    assert [n.lower() for n, _ in added_headers(arrival, msg.data)] == ["received"]


# ---- (d), (e): NUL bytes ---------------------------------------------------------------------

@pytest.mark.parametrize("where", ["from", "other-field", "body"])
def test_nul_is_refused(stack, where):
    if where == "from":
        msg = message([f"From: {ALICE_ADDR}\0, CEO <{VICTIM}>"])
    elif where == "other-field":
        msg = message([f"From: {ALICE_ADDR}", "X-Note: a\0b"])
    else:
        msg = message([f"From: {ALICE_ADDR}"], body="first line\r\nNUL here: \0.\r\n")
    assert b"\0" in msg.data
    mark = stack.audit.mark()
    assert transaction(stack, msg) == NUL_REFUSED
    data_reject_row(stack, mark, "NUL")
    assert_not_relayed(stack, msg.marker)
    assert_served(stack.env, stack.alice)


# ---- every From field is found ---------------------------------------------------------------

LONG_FOLDED = "X-Long: start\r\n" + "\r\n".join("\tcontinued " + "c" * 80 for _ in range(400))


@pytest.mark.parametrize("fields", [
    [f"From:\r\n CEO\r\n <{VICTIM}>"],
    [f"from: {VICTIM}"],
    [f"FROM : {VICTIM}"],
    [f"fRoM:\t{VICTIM}"],
    [f"From\t: Alice <{ALICE_ADDR}>,\r\n\tCEO <{VICTIM}>"],
    ["X-Big: " + "x" * 900, LONG_FOLDED, f"From: {VICTIM}"],
], ids=["folded", "lower-case", "space-before-colon", "mixed-case-tab", "second-address-folded",
        "after-long-fields"])
def test_every_from_field_is_checked(stack, fields):
    msg = message(fields)
    mark = stack.audit.mark()
    reply = transaction(stack, msg)
    assert reply.startswith(NOT_OWNED), reply
    row = data_reject_row(stack, mark, "header from")
    assert row["mail_from"] == VICTIM, row
    assert_not_relayed(stack, msg.marker)


def test_two_from_fields_are_refused(stack):
    msg = message([f"From: {ALICE_ADDR}", "X-Between: x", f"from: {ALICE_ADDR}"])
    mark = stack.audit.mark()
    assert transaction(stack, msg) == TWO_FROM
    data_reject_row(stack, mark, "more than one From")
    assert_not_relayed(stack, msg.marker)
    assert_served(stack.env, stack.alice)
