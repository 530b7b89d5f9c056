"""The ordinary session: greeting, the plaintext phase, STARTTLS, acceptance, relay of the
exact bytes, the headers submitd adds, and the audit rows (DESIGN §3, §7, §8)."""

import email.utils
import os
import re
import smtplib
import socket
import select
import ssl
import subprocess
import threading
import time
import uuid

import pytest

from conftest import (ALICE, ALICE_ADDR, HOSTNAME, SESSION_TIMEOUT, BioTLS, Message, RawSMTP, added_headers,
                      assert_served,
                      client_context, tls_records,
                      contains, make_message, queue_id, send_ok, smtp_implicit_tls,
                      smtp_starttls, submit, unique_rcpt)

STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
TLS_VERSION_RE = re.compile(r"TLS\s*v?1\.[23]", re.I)
ISO_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:?00)$")


# ---- before TLS ---------------------------------------------------------------------------

def test_greeting_names_the_configured_host(stack):
    c = RawSMTP(stack.env)
    try:
        assert c.greeting.code == 220
        assert re.match(rf"^220 {re.escape(HOSTNAME)} ESMTP", c.greeting.last), c.greeting.last
    finally:
        c.close()


def test_ehlo_before_tls_offers_starttls_and_nothing_that_implies_trust(stack):
    c = RawSMTP(stack.env)
    try:
        r = c.cmd("EHLO client.test")
        assert r.code == 250
        keywords = [line.split()[0].upper() for line in r.lines[1:] if line.split()]
        assert "STARTTLS" in keywords, r.lines
        assert "AUTH" not in keywords, f"AUTH offered before TLS: {r.lines}"
    finally:
        c.close()


def test_allowed_commands_before_starttls(stack):
    c = RawSMTP(stack.env)
    try:
        assert c.cmd("HELO client.test").code == 250
        assert c.cmd("NOOP").code == 250
        assert c.cmd("RSET").code == 250
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("QUIT").code == 221
    finally:
        c.close()


@pytest.mark.parametrize("command", ["MAIL FROM:<alice@example.com>", "RCPT TO:<bob@example.net>",
                                     "DATA"])
def test_transaction_commands_before_starttls_are_refused(stack, command):
    mark = stack.audit.mark()
    c = RawSMTP(stack.env)
    try:
        assert c.cmd("EHLO client.test").code == 250
        r = c.cmd(command)
        assert r.last == STARTTLS_FIRST
        # The refusal does not end the session: the client may still STARTTLS.
        assert c.cmd("NOOP").code == 250
    finally:
        c.close()
    if command.startswith("MAIL"):
        row = stack.audit.wait(lambda r: r["decision"] == "reject" and contains(r["reason"], "starttls"),
                               mark, what="reject row for MAIL before STARTTLS")
        assert contains(row["client_ip"], "127.0.0.1"), row


def test_mail_before_starttls_then_starttls_works(stack):
    """The 530 is not sticky: the same connection upgrades and is served."""
    c = RawSMTP(stack.env)
    try:
        c.cmd("EHLO client.test")
        assert c.cmd(f"MAIL FROM:<{ALICE_ADDR}>").last == STARTTLS_FIRST
        c.starttls(client_context(stack.env, stack.alice))
        assert c.cmd("EHLO client.test").code == 250
        r = c.cmd(f"MAIL FROM:<{ALICE_ADDR}>")
        assert r.code == 250, str(r)
    finally:
        c.close()


# ---- accepted messages ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def relayed(stack):
    """One message to two recipients, accepted and relayed; shared by the checks below."""
    msg = make_message(rcpts=[unique_rcpt("first"), unique_rcpt("second")])
    qid = send_ok(stack.env, stack.alice, msg)
    arrivals = stack.upstream.wait_for(msg.marker, msg.rcpts)
    return msg, qid, arrivals


def test_accepted_message_reaches_upstream_with_the_envelope(stack, relayed):
    msg, _, arrivals = relayed
    assert {a.mail_from for a in arrivals} == {ALICE_ADDR}
    assert sorted(r for a in arrivals for r in a.rcpt_tos) == sorted(msg.rcpts)


def test_relayed_bytes_equal_submitted_bytes_plus_one_received_header(stack, relayed):
    msg, _, arrivals = relayed
    for a in arrivals:
        names = [n.lower() for n, _ in added_headers(a, msg.data)]
        # The message had Message-ID and Date, so only the trace header is added.
        assert names == ["received"], f"added headers: {names}"


def test_received_header_names_host_and_tls_version(stack, relayed):
    msg, _, arrivals = relayed
    received = dict((n.lower(), v) for n, v in added_headers(arrivals[0], msg.data))["received"]
    assert HOSTNAME in received, received
    assert TLS_VERSION_RE.search(received), f"no TLS version in Received: {received}"


def test_received_header_carries_certificate_fingerprint_prefix(stack, relayed):
    msg, _, arrivals = relayed
    received = dict((n.lower(), v) for n, v in added_headers(arrivals[0], msg.data))["received"]
    flat = received.lower().replace(":", "")
    assert stack.alice.sha256[:8] in flat, (
        f"Received lacks a prefix of the certificate SHA-256 {stack.alice.sha256[:16]}...: {received}")


def test_accept_is_audited(stack, relayed):
    msg, qid, _ = relayed
    row = stack.audit.wait(lambda r: r["decision"] == "accept" and r["queue_id"] == qid, 0,
                           what=f"accept row for queue id {qid}")
    assert row["user"] == ALICE
    assert row["cert_sha256"] == stack.alice.sha256
    assert contains(row["mail_from"], ALICE_ADDR), row
    for r in msg.rcpts:
        assert contains(row["rcpt"], r), f"recipient {r} missing from audit rcpt {row['rcpt']!r}"
    assert contains(row["client_ip"], "127.0.0.1"), row
    assert contains(row["tls"], "tls"), row
    assert row["size"] is not None and int(row["size"]) >= len(msg.data), row
    assert ISO_UTC_RE.match(row["ts"] or ""), f"ts is not ISO-8601 UTC: {row['ts']!r}"


def test_relay_outcome_is_audited(stack, relayed):
    _, qid, _ = relayed
    row = stack.audit.wait(lambda r: r["event"] == "relayed" and r["queue_id"] == qid, 0,
                           timeout=15, what=f"'relayed' event for queue id {qid}")
    assert row["queue_id"] == qid


def test_audit_is_append_only(stack, relayed, tmp_path):
    """Triggers refuse UPDATE and DELETE on the audit table (DESIGN §7). Tried on a
    copy, so the live database is only ever read."""
    import sqlite3
    stack.audit.wait(lambda r: True, 0, what="any audit row")
    src = sqlite3.connect(str(stack.env.db_path), timeout=10)
    copy = sqlite3.connect(str(tmp_path / "audit-copy.db"))
    try:
        src.backup(copy)
        before = copy.execute("SELECT count(*) FROM audit").fetchone()[0]
        assert before > 0
        with pytest.raises(sqlite3.DatabaseError):
            copy.execute("UPDATE audit SET reason = 'tampered' WHERE id = (SELECT min(id) FROM audit)")
        with pytest.raises(sqlite3.DatabaseError):
            copy.execute("DELETE FROM audit WHERE id = (SELECT min(id) FROM audit)")
        copy.rollback()
        assert copy.execute("SELECT count(*) FROM audit").fetchone()[0] == before
        assert not copy.execute("SELECT 1 FROM audit WHERE reason = 'tampered'").fetchall()
    finally:
        src.close()
        copy.close()


def test_message_id_and_date_added_when_missing(stack):
    msg = make_message(with_id_and_date=False, subject=f"no-id {unique_rcpt('subj')}")
    marker = msg.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0]
    send_ok(stack.env, stack.alice, msg)
    arrival = stack.upstream.wait_for(marker, msg.rcpts)[0]
    names = [n.lower() for n, _ in added_headers(arrival, msg.data)]
    assert sorted(names) == ["date", "message-id", "received"], f"added headers: {names}"
    values = {n.lower(): v for n, v in added_headers(arrival, msg.data)}
    assert re.match(r"^<[^<>@\s]+@[^<>@\s]+>$", values["message-id"]), values["message-id"]
    assert email.utils.parsedate_to_datetime(values["date"]) is not None


def test_two_transactions_in_one_session(stack):
    first, second = make_message(), make_message()
    s = smtp_starttls(stack.env, stack.alice)
    try:
        q1 = queue_id(submit(s, first))
        q2 = queue_id(submit(s, second))
    finally:
        s.quit()
    assert q1 != q2
    for m in (first, second):
        a = stack.upstream.wait_for(m.marker, m.rcpts)[0]
        added_headers(a, m.data)


def test_sender_in_owned_domain_is_accepted(stack):
    msg = make_message(mail_from="anyone@example.org")
    send_ok(stack.env, stack.alice, msg)
    arrival = stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    assert arrival.mail_from == "anyone@example.org"


def test_line_of_exactly_1000_bytes_is_accepted(stack):
    long_line = "x" * 998 + "\r\n"            # 1000 bytes with its CRLF: the RFC 5321 limit
    msg = make_message(body="Short line.\r\n" + long_line + "end\r\n")
    send_ok(stack.env, stack.alice, msg)
    arrival = stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    added_headers(arrival, msg.data)


def test_implicit_tls_listener(stack):
    msg = make_message()
    s = smtp_implicit_tls(stack.env, stack.alice)
    try:
        qid = queue_id(submit(s, msg))
    finally:
        s.quit()
    arrival = stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    added_headers(arrival, msg.data)
    row = stack.audit.wait(lambda r: r["decision"] == "accept" and r["queue_id"] == qid, 0,
                           what=f"accept row for {qid}")
    assert row["user"] == ALICE


def test_implicit_tls_without_certificate_is_refused_at_mail(stack):
    c = RawSMTP(stack.env, implicit_tls_ctx=client_context(stack.env, None))
    try:
        assert c.greeting.code == 220
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd(f"MAIL FROM:<{ALICE_ADDR}>").last == "530 5.7.0 Client certificate required"
    finally:
        c.close()


# ---- TLS parameters -----------------------------------------------------------------------------

def _handshake_possible(client_ctx_factory):
    """Self-check: the client context can complete a handshake with a permissive local
    server, so a failure against submitd is the server's refusal, not ours."""
    import tempfile
    from pathlib import Path

    from conftest import make_ca, make_leaf, write_cert_and_key
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    ca, ca_key = make_ca("self-check CA")
    leaf, key = make_leaf(ca, ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
                          dns=["localhost"], eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    with tempfile.TemporaryDirectory() as d:
        crt, kf = write_cert_and_key(Path(d), "srv", leaf, key)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        server_ctx.set_ciphers("ALL:@SECLEVEL=0")
        server_ctx.load_cert_chain(str(crt), str(kf))
        a, b = socket.socketpair()
        result = {}

        def serve():
            try:
                with server_ctx.wrap_socket(a, server_side=True):
                    result["server"] = True
            except (ssl.SSLError, OSError):
                result["server"] = False

        t = threading.Thread(target=serve)
        t.start()
        ctx = client_ctx_factory()
        ctx.verify_mode = ssl.CERT_NONE
        try:
            with ctx.wrap_socket(b):
                ok = True
        except (ssl.SSLError, OSError):
            ok = False
        t.join(5)
        return ok


def _legacy_ctx(stack, max_version, ciphers):
    def factory():
        ctx = client_context(stack.env, stack.alice, min_version=ssl.TLSVersion.MINIMUM_SUPPORTED)
        ctx.maximum_version = max_version
        ctx.set_ciphers(ciphers)
        return ctx
    return factory


def _starttls_handshake(stack, ctx):
    c = RawSMTP(stack.env)
    try:
        c.cmd("EHLO client.test")
        r = c.cmd("STARTTLS")
        assert r.code == 220
        tls = ctx.wrap_socket(c.sock)
        # A server that refuses may only say so when the client reads.
        tls.sendall(b"EHLO client.test\r\n")
        data = tls.recv(4096)
        return tls.version(), tls.cipher(), data
    finally:
        c.close()


def test_the_chain_in_tls_cert_is_sent_and_nothing_else(fresh_stack_factory):
    """tls_cert holds the server certificate and its intermediate: a client that
    trusts only the root verifies the server through it, over STARTTLS and implicit
    TLS, and the server sends exactly that chain, nothing it built itself."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    from conftest import make_ca, make_leaf, write_cert_and_key

    s = fresh_stack_factory("server-chain", start_daemon=False)
    root, root_key = make_ca("server chain root")
    inter, ikey = make_ca("server chain intermediate", issuer=(root, root_key))
    leaf, key = make_leaf(inter, ikey, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]),
                          dns=["localhost"], ips=["127.0.0.1"], eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    crt, _ = write_cert_and_key(s.env.dir, "server", leaf, key)
    crt.write_bytes(leaf.public_bytes(serialization.Encoding.PEM) +
                    inter.public_bytes(serialization.Encoding.PEM))
    root_file = s.env.dir / "server-root.crt"
    root_file.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    s.daemon.start()

    def ctx():
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.check_hostname = False
        c.verify_mode = ssl.CERT_REQUIRED
        c.load_verify_locations(cafile=str(root_file))
        c.load_cert_chain(str(s.alice.crt), str(s.alice.key))
        return c

    def sent_chain():
        """The subjects of the certificates the server sends, as s_client shows them."""
        out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{s.env.tls_port}",
                              "-showcerts", "-cert", str(s.alice.crt), "-key", str(s.alice.key),
                              "-CAfile", str(root_file), "-verify_return_error"],
                             input=b"QUIT\r\n", capture_output=True, timeout=30)
        text = out.stdout.decode(errors="replace")
        assert "Verify return code: 0 (ok)" in text, text[-2000:]
        pems = re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", text, re.S)
        return [x509.load_pem_x509_certificate(p.encode()).subject for p in pems]

    c = smtplib.SMTP("127.0.0.1", s.env.port, local_hostname="client.test", timeout=15)
    try:
        c.ehlo()
        # The client trusts only the root: the handshake verifies through the
        # intermediate the server sent.
        assert c.starttls(context=ctx())[0] == 220
        c.ehlo()
        assert c.mail(ALICE_ADDR)[0] == 250
    finally:
        c.close()
    c = smtplib.SMTP_SSL("127.0.0.1", s.env.tls_port, local_hostname="client.test", timeout=15,
                         context=ctx())
    try:
        assert c.ehlo()[0] == 250
        assert c.mail(ALICE_ADDR)[0] == 250
    finally:
        c.close()
    assert sent_chain() == [leaf.subject, inter.subject]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_1_1_is_refused(stack):
    factory = _legacy_ctx(stack, ssl.TLSVersion.TLSv1_1, "ALL:@SECLEVEL=0")
    assert _handshake_possible(factory), "this OpenSSL cannot speak TLS 1.1 at all: test meaningless"
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        version, _, data = _starttls_handshake(stack, factory())
        assert data, "no reply"
        pytest.fail(f"TLS handshake with maximum TLS 1.1 succeeded: {version}")


def test_tls_1_2_without_aead_is_refused(stack):
    cbc = ("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA:"
           "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:AES128-SHA:AES256-SHA:AES128-SHA256:@SECLEVEL=0")
    factory = _legacy_ctx(stack, ssl.TLSVersion.TLSv1_2, cbc)
    assert _handshake_possible(factory), "this OpenSSL cannot offer CBC suites: test meaningless"
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        version, cipher, data = _starttls_handshake(stack, factory())
        assert data, "no reply"
        pytest.fail(f"handshake with only CBC suites succeeded: {version} {cipher}")


def test_tls_1_2_with_aead_is_served(stack):
    ctx = client_context(stack.env, stack.alice)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    c = RawSMTP(stack.env)
    try:
        c.cmd("EHLO client.test")
        c.starttls(ctx)
        assert c.sock.version() == "TLSv1.2"
        name = c.sock.cipher()[0]
        assert "GCM" in name or "CHACHA20" in name or "CCM" in name, f"non-AEAD suite {name}"
        assert c.cmd("EHLO client.test").code == 250
        r = c.cmd(f"MAIL FROM:<{ALICE_ADDR}>")
        assert r.code == 250, str(r)
    finally:
        c.close()


def test_server_certificate_verifies_for_ip_and_localhost(stack):
    """The certificate from submit-ca server-cert matches 127.0.0.1 and localhost."""
    for name in ("127.0.0.1", "localhost"):
        ctx = client_context(stack.env, stack.alice)
        ctx.check_hostname = True
        c = RawSMTP(stack.env)
        try:
            c.cmd("EHLO client.test")
            assert c.cmd("STARTTLS").code == 220
            c.sock = ctx.wrap_socket(c.sock, server_hostname=name)
            assert c.cmd("EHLO client.test").code == 250
        finally:
            c.close()


def test_large_header_section_is_relayed_exactly(stack):
    """A header section of ~25 KB arrives in many pieces: Date and Message-ID far down
    in it are still seen (nothing is added but Received), and the bytes are exact."""
    rcpt = unique_rcpt()
    msgid = f"{uuid.uuid4().hex}@client.test"
    filler = [f"X-Filler-{i:03d}: " + "f" * 70 for i in range(320)]
    headers = [f"From: Alice <{ALICE_ADDR}>", f"To: {rcpt}", "Subject: big header"] + filler + [
        f"Date: {email.utils.formatdate(localtime=False)}", f"Message-ID: <{msgid}>"]
    data = ("\r\n".join(headers) + "\r\n\r\nbody line\r\n").encode()
    msg = Message(data, msgid, ALICE_ADDR, [rcpt])
    send_ok(stack.env, stack.alice, msg)
    arrival = stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    assert [n.lower() for n, _ in added_headers(arrival, msg.data)] == ["received"]


def implicit_bio_after_ehlo(stack, sock):
    """A BioTLS session on sock, connected to the implicit-TLS port, greeted and past
    its EHLO."""
    c = BioTLS(client_context(stack.env, stack.alice), sock, server_hostname="localhost")
    c.handshake()
    c.flush()
    assert c.replies(1) == [220]
    c.send_records(b"EHLO client.test\r\n")
    assert c.replies(1) == [250]
    return c


def test_pipelined_records_in_one_segment_are_all_answered(stack):
    """Each pipelined command in a TLS record of its own, all records in one TCP segment.
    The server reads the socket ahead of the record it needs, so the records after MAIL
    wait inside the TLS layer, where no readiness event announces them, while authz
    answers MAIL: each must still be answered, and the message relayed."""
    env = stack.env
    msg = make_message(rcpts=[unique_rcpt("records")])
    sock = socket.create_connection(("127.0.0.1", env.tls_port), timeout=15)
    try:
        c = implicit_bio_after_ehlo(stack, sock)
        c.send_records(f"MAIL FROM:<{msg.mail_from}>\r\n".encode(),
                       f"RCPT TO:<{msg.rcpts[0]}>\r\n".encode(), b"DATA\r\n")
        assert c.replies(3) == [250, 250, 354]
        body = msg.data.replace(b"\r\n.", b"\r\n..")
        c.send_records(body, b".\r\n", b"QUIT\r\n")
        assert c.replies(2) == [250, 221]
    finally:
        sock.close()
    stack.upstream.wait_for(msg.marker, msg.rcpts)


def starttls_bio(stack):
    """A BioTLS session on the STARTTLS port, its handshake done; the client's Finished
    still waits in its outgoing buffer."""
    env = stack.env
    sock = socket.create_connection(("127.0.0.1", env.port), timeout=15)
    f = sock.makefile("rb")
    assert f.readline().startswith(b"220 ")
    sock.sendall(b"EHLO client.test\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    sock.sendall(b"STARTTLS\r\n")
    assert f.readline().startswith(b"220 ")
    c = BioTLS(client_context(env, stack.alice), sock, server_hostname="localhost")
    c.handshake()
    return c


def test_session_ticket_leaves_with_the_first_reply(stack):
    """TLS 1.3 sends the session ticket after the handshake. The server keeps it while
    authz checks the certificate and sends it with the reply to the EHLO that came
    with the client's Finished: one segment, so the client's first read after the
    handshake holds the ticket and the reply, and the client resumes with that ticket."""
    c = starttls_bio(stack)
    try:
        assert c.tls.version() == "TLSv1.3"
        c.send_records(b"EHLO client.test\r\n")    # with the client's Finished
        first = c.recv()
        assert len(tls_records(first)) >= 2, tls_records(first)
        assert not c.read_available()
        assert re.search(rb"^250 ", c.buf, re.M), c.buf
        assert c.tls.session is not None and c.tls.session.has_ticket
        c.buf = b""
        c.send_records(b"QUIT\r\n")
        assert c.replies(1) == [221]
    finally:
        c.sock.close()


def test_last_reply_and_close_notify_leave_together(stack):
    """After QUIT the 221 and the TLS close_notify go in one segment: the client's
    next read holds both, and the session ends cleanly at the TLS layer."""
    c = starttls_bio(stack)
    try:
        c.send_records(b"EHLO client.test\r\n")
        assert c.replies(1) == [250]
        c.send_records(b"QUIT\r\n")
        first = c.recv()
        assert len(tls_records(first)) == 2, tls_records(first)
        assert c.read_available(), "no close_notify with the 221"
        assert c.buf.startswith(b"221 "), c.buf
    finally:
        c.sock.close()


def test_slow_reader_pipelining_many_records_is_answered_throughout(stack):
    """A client pipelines thousands of commands in full-size TLS records and reads the
    replies slowly through a small receive buffer. The replies back up into
    the socket and the server stops reading; commands it had read ahead wait inside
    OpenSSL, where no readiness event announces them. Each time the replies drain the
    server must go on with those: every command is answered long before the idle
    timeout, and the next client is served."""
    env = stack.env
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.settimeout(15)
    sock.connect(("127.0.0.1", env.tls_port))
    n = 1000
    try:
        c = implicit_bio_after_ehlo(stack, sock)
        start = time.monotonic()
        c.send_records(b"NOOP\r\n" * n + f"MAIL FROM:<{ALICE_ADDR}>\r\n".encode() +
                       b"NOOP\r\n" * n + b"QUIT\r\n")
        codes = []
        while len(codes) < 2 * n + 2:
            time.sleep(0.002)
            codes += c.replies(1)
        assert codes == [250] * (2 * n + 1) + [221], codes[-5:]
        assert time.monotonic() - start < SESSION_TIMEOUT / 2
    finally:
        sock.close()
    with smtp_starttls(env, stack.alice) as s:
        assert s.noop()[0] == 250


# ---- TLS 1.3 KeyUpdate ----------------------------------------------------------------------------

class SClient:
    """openssl s_client on the implicit TLS port with -msg: its "K" command sends a
    KeyUpdate that asks for ours, and -msg shows each handshake message both ways."""

    SERVER_KEY_UPDATE = "<<< TLS 1.3, Handshake [length 0005], KeyUpdate"
    CLIENT_KEY_UPDATE = ">>> TLS 1.3, Handshake [length 0005], KeyUpdate"

    def __init__(self, stack):
        self.p = subprocess.Popen(
            ["openssl", "s_client", "-connect", f"127.0.0.1:{stack.env.tls_port}", "-msg",
             "-cert", str(stack.alice.crt), "-key", str(stack.alice.key),
             "-CAfile", str(stack.env.ca_cert_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        os.set_blocking(self.p.stdout.fileno(), False)
        self.out = ""

    def line(self, text):
        self.p.stdin.write(text.encode() + b"\n")
        self.p.stdin.flush()

    def wait_for(self, pred, timeout):
        """Reads until pred(output) holds; returns whether it did within timeout."""
        end = time.monotonic() + timeout
        while not pred(self.out):
            left = end - time.monotonic()
            if left <= 0:
                return False
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                data = self.p.stdout.read()
                if not data:
                    return pred(self.out)
                self.out += data.decode(errors="replace")
        return True

    def close(self):
        self.p.kill()
        self.p.wait(10)


def test_a_key_update_that_asks_for_ours_is_answered_at_once(stack):
    """RFC 8446 4.6.3: the server's KeyUpdate must come before its next data; it comes
    at once, not with the next reply, and the session goes on under the new keys."""
    c = SClient(stack)
    try:
        c.line("EHLO client.test")
        assert c.wait_for(lambda o: "250 " in o, 10), c.out[-2000:]
        start = len(c.out)
        c.line("K")
        # Nothing else is sent: the answer must not wait for the next command.
        assert c.wait_for(lambda o: SClient.SERVER_KEY_UPDATE in o[start:], 5), \
            "no KeyUpdate from the server before the next command:\n" + c.out[start:]
        c.line("NOOP")
        assert c.wait_for(lambda o: "250 2.0.0" in o[start:], 10), c.out[start:]
        assert c.out[start:].count(SClient.SERVER_KEY_UPDATE) == 1, c.out[start:]
    finally:
        c.close()
    assert_served(stack.env, stack.alice)


def test_a_flood_of_key_updates_is_answered_and_the_session_goes_on(stack):
    """RFC 8446 4.6.3 lets a silent receiver answer several requests with one update:
    the last request is followed by an answer, never more answers than requests, and
    the session goes on under the new keys."""
    c = SClient(stack)
    try:
        c.line("EHLO client.test")
        assert c.wait_for(lambda o: "250 " in o, 10), c.out[-2000:]
        start = len(c.out)
        # s_client takes one command per read of its input: one line at a time.
        for _ in range(40):
            c.line("K")
            time.sleep(0.02)
        assert c.wait_for(lambda o: o[start:].count(SClient.CLIENT_KEY_UPDATE) >= 20, 10), \
            c.out[-2000:]
        assert c.wait_for(lambda o: o.rfind(SClient.SERVER_KEY_UPDATE) >
                          o.rfind(SClient.CLIENT_KEY_UPDATE), 10), \
            "the last KeyUpdate that asked for ours got no answer:\n" + c.out[-2000:]
        sent = c.out[start:].count(SClient.CLIENT_KEY_UPDATE)
        c.line("NOOP")
        assert c.wait_for(lambda o: "250 2.0.0" in o[start:], 10), c.out[-2000:]
        assert 1 <= c.out[start:].count(SClient.SERVER_KEY_UPDATE) <= sent
    finally:
        c.close()
    assert_served(stack.env, stack.alice)
