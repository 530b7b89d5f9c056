"""Relay over STARTTLS with upstream_tls = verify (DESIGN §4, §6): an upstream whose
certificate does not verify gets nothing and the reason is in the queue listing and
the audit; a real Postfix from Debian, as the corporate MTA on 127.0.0.1, receives mail
over verified STARTTLS (with PIPELINING, which Postfix offers)."""

import os
import re
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import (Audit, Upstream, free_port, make_ca, make_leaf, make_message, poll,
                      port_accepts, send_ok, unique_rcpt, write_cert_and_key)
from test_queue_retry import queue_list

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
REFUSED = "nobody-here@example.net"


def server_cert(directory, ca, ca_key, name="upstream"):
    leaf, key = make_leaf(ca, ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mta.test")]),
                          dns=("localhost",), ips=("127.0.0.1",),
                          eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    return write_cert_and_key(directory, name, leaf, key)


def write_ca(path, ca):
    path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return path


def test_untrusted_upstream_certificate_is_deferred_with_reason(fresh_stack_factory):
    trusted, _ = make_ca("Corporate MTA CA")
    other, other_key = make_ca("Somebody Else's CA")
    s = fresh_stack_factory("queue-untrusted", start_upstream=False, start_daemon=False)
    s.env.settings.update(upstream_tls="verify",
                          upstream_ca=str(write_ca(s.env.dir / "upstream-ca.crt", trusted)))
    s.env.write_config()
    crt, key = server_cert(s.env.dir, other, other_key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(key))
    s.upstream.tls_context = ctx
    s.upstream.start()
    s.daemon.start()
    audit = Audit(s.env)

    msg = make_message()
    qid = send_ok(s.env, s.alice, msg)
    entry = poll(lambda: next((m for m in queue_list(s.env) if m["id"] == qid and m["attempts"] >= 1),
                              None), 10)
    assert entry, queue_list(s.env)
    reason = entry["last_reply"]
    assert "certificate verification" in reason and "unable to get local issuer certificate" in reason, \
        entry
    assert entry["recipients"][0]["state"] == "pending", entry
    row = audit.wait(lambda r: r["event"] == "deferred" and r["queue_id"] == qid, 0)
    assert "certificate verification" in row["reason"], row
    # The deferred row ends the attempt: it relayed nothing, and the message waits.
    assert not s.upstream.arrivals(), "relayed to an upstream whose certificate does not verify"
    assert [m["id"] for m in queue_list(s.env)] == [qid], queue_list(s.env)


# ---- a real Postfix as the corporate MTA --------------------------------------------

class Postfix:
    """A private Postfix instance: its own configuration and queue directories under
    a temporary directory, smtpd on 127.0.0.1:port requiring STARTTLS, relaying what it
    receives to a recording aiosmtpd sink on another port."""

    def __init__(self, cert, key, sink_port):
        self.dir = Path(tempfile.mkdtemp(prefix="submitd-it-postfix-"))
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.conf = self.dir / "etc"
        self.conf.mkdir()
        self.log = self.dir / "postfix.log"
        # Postfix creates what is missing inside the queue directory at start.
        (self.dir / "queue").mkdir()
        (self.dir / "data").mkdir()
        shutil.chown(self.dir / "data", "postfix")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.dir / "queue"),
            "data_directory": str(self.dir / "data"),
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(self.dir),
            "myhostname": "mta.test",
            "mydestination": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": f"[127.0.0.1]:{sink_port}",
            "smtp_tls_security_level": "none",
            "smtpd_tls_cert_file": str(cert),
            "smtpd_tls_key_file": str(key),
            "smtpd_tls_security_level": "encrypt",
            "smtpd_tls_received_header": "yes",
            "smtpd_tls_loglevel": "1",
            "smtpd_relay_restrictions": "permit_mynetworks, reject",
            # One address that the corporate MTA refuses, for the bounce path.
            "smtpd_recipient_restrictions":
                f"check_recipient_access inline:{{ {{ {REFUSED} = 550 5.1.1 No such user here }} }}",
            "alias_maps": "",
            "alias_database": "",
            "biff": "no",
        }
        (self.conf / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        (self.conf / "master.cf").write_text(self._master_cf())

    def _master_cf(self):
        lines, skip = [], False
        for line in Path("/usr/share/postfix/master.cf.dist").read_text().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace():
                if not skip:
                    lines.append(line)
                continue
            f = line.split()
            skip = f[7] == "pipe"       # external delivery programs are not needed
            if skip:
                continue
            if f[0] == "smtp" and f[1] == "inet":
                f[0] = f"127.0.0.1:{self.port}"
            f[4] = "n"                      # no chroot: nothing to copy into one
            lines.append(" ".join(f))
        return "\n".join(lines) + "\n"

    def postfix(self, *args):
        return subprocess.run([POSTFIX, "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=60)

    def start(self):
        r = self.postfix("start")
        if r.returncode != 0:
            raise AssertionError(f"postfix start failed: {r.stdout}{r.stderr}\n{self.tail()}")
        if not poll(lambda: port_accepts(self.port), 15):
            raise AssertionError(f"postfix does not listen on {self.port}\n{self.tail()}")

    def stop(self):
        if self.postfix("status").returncode == 0:
            self.postfix("abort")

    def tail(self):
        try:
            return self.log.read_text()[-4000:]
        except OSError:
            return "(no postfix log)"


@pytest.mark.skipif(not os.access(POSTFIX, os.X_OK), reason="postfix is not installed "
                    "(scripts/install-deps.sh installs it)")
def test_real_postfix_receives_over_verified_starttls(fresh_stack_factory, tmp_path):
    ca, ca_key = make_ca("Corporate MTA CA")
    crt, key = server_cert(tmp_path, ca, ca_key, "postfix")
    os.chmod(tmp_path, 0o755)
    os.chmod(key, 0o600)
    sink_port = free_port()
    sink = Upstream(sink_port).start()
    postfix = Postfix(crt, key, sink_port)
    s = None
    try:
        postfix.start()
        s = fresh_stack_factory("queue-postfix", start_upstream=False, start_daemon=False,
                                upstream=f"127.0.0.1:{postfix.port}", upstream_tls="verify",
                                upstream_ca=str(write_ca(tmp_path / "mta-ca.crt", ca)))
        s.daemon.start()
        audit = Audit(s.env)
        a, b = unique_rcpt("pf-a"), unique_rcpt("pf-b")
        # MAX_RECIPIENTS is 3: two that Postfix accepts and one it refuses.
        msg = make_message(rcpts=[a, REFUSED, b])
        qid = send_ok(s.env, s.alice, msg)
        try:
            arrivals = sink.wait_for(msg.marker, [a, b], timeout=30)
            # The report for the refused one goes out through Postfix too.
            dsn = poll(lambda: [x for x in sink.arrivals() if x.mail_from in ("", "<>")
                                and qid.encode() in x.content], 15)
        except AssertionError as e:
            raise AssertionError(f"{e}\npostfix log:\n{postfix.tail()}")
        assert dsn, f"no delivery status notification through Postfix\n{postfix.tail()}"
        assert dsn[0].rcpt_tos == [s.alice.email], dsn[0]
        dsn_text = dsn[0].content.decode("utf-8", "replace")
        assert f"Final-Recipient: rfc822; {REFUSED}" in dsn_text, dsn_text
        assert "Diagnostic-Code: smtp; 550 5.1.1 <%s>: Recipient address rejected: No such user here" \
            % REFUSED in dsn_text, dsn_text
        assert [x.rcpt_tos for x in arrivals if x.mail_from == s.alice.email] in ([[a, b]], [[b, a]]), \
            arrivals
        # The report may reach the sink first and carries the marker too: the message
        # is the arrival from alice.
        content = next(x for x in arrivals
                       if x.mail_from == s.alice.email).content.decode("utf-8", "replace")
        # Postfix's Received header records the TLS session it got from submitd.
        assert re.search(r"Received: from mail\.test \(localhost \[127\.0\.0\.1\]\)\r\n"
                         r"\s+\(using TLSv1\.[23] with cipher", content), content[:800]
        assert content.endswith(msg.data.decode()), content[-400:]
        row = audit.wait(lambda r: r["event"] == "relayed" and r["queue_id"] == qid, 0, timeout=10)
        assert "127.0.0.1:%d" % postfix.port in row["reason"] and " 250 " in row["reason"], row
        log = postfix.tail()
        assert "TLS connection established from localhost[127.0.0.1]" in log, log
        # submitd sent MAIL, RCPT and DATA in one go (Postfix offers PIPELINING).
        assert "improper command pipelining" not in log, log
        assert re.search(r"connected to upstream 127\.0\.0\.1:%d \(TLSv1\.[23], PIPELINING\)"
                         % postfix.port, s.daemon.log.read_text()), s.daemon.tail()
    finally:
        postfix.stop()
        sink.stop()
        if s is not None:
            s.daemon.stop()
        shutil.rmtree(postfix.dir, ignore_errors=True)
