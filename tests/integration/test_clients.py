"""Real clients that present a certificate and send no AUTH (DESIGN §3.5;
notes/pki-facts.md: curl, swaks): swaks over STARTTLS, curl over STARTTLS and implicit
TLS with full server verification, openssl s_client for the protocol version."""

import re
import shutil
import subprocess

import pytest

from conftest import ALICE, ALICE_ADDR, added_headers, make_message


def need(tool):
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")
    return path


def write_message(stack, msg, name):
    path = stack.env.dir / f"{name}-{msg.msgid[:8]}.eml"
    path.write_bytes(msg.data)
    return path


def queue_id_in(text):
    ids = re.findall(r"250 2\.0\.0 Ok: queued as (\S+)", text)
    assert ids, f"no '250 2.0.0 Ok: queued as ID' in the client output:\n{text}"
    return ids[-1]


def check_accept_audited(stack, qid, msg):
    row = stack.audit.wait(lambda r: r["decision"] == "accept" and r["queue_id"] == qid, 0,
                           what=f"accept row for {qid}")
    assert row["user"] == ALICE
    assert row["cert_sha256"] == stack.alice.sha256
    for r in msg.rcpts:
        assert r in (row["rcpt"] or ""), row


def test_swaks_starttls_with_client_certificate(stack):
    swaks = need("swaks")
    msg = make_message()
    path = write_message(stack, msg, "swaks")
    proc = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(stack.env.port),
                           "--tls", "--tls-cert", str(stack.alice.crt), "--tls-key", str(stack.alice.key),
                           "--helo", "client.test", "--from", msg.mail_from, "--to", msg.rcpts[0],
                           "--data", f"@{path}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"swaks exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    qid = queue_id_in(proc.stdout)
    arrival = stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    # swaks ends the data with one more CRLF than the file has.
    sent = msg.data + b"\r\n" if arrival.content.endswith(msg.data + b"\r\n") else msg.data
    assert [n.lower() for n, _ in added_headers(arrival, sent)] == ["received"]
    check_accept_audited(stack, qid, msg)


def test_swaks_without_certificate_is_refused(stack):
    swaks = need("swaks")
    proc = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(stack.env.port), "--tls",
                           "--helo", "client.test", "--from", ALICE_ADDR, "--to", "x@example.net",
                           "--quit-after", "MAIL"],
                          capture_output=True, text=True, timeout=60)
    assert "530 5.7.0 Client certificate required" in proc.stdout, proc.stdout


@pytest.mark.parametrize("scheme", ["smtp", "smtps"])
def test_curl_with_client_certificate_and_server_verification(stack, scheme):
    curl = need("curl")
    msg = make_message(rcpts=[f"curl-{scheme}-{make_message().msgid[:10]}@example.net"])
    path = write_message(stack, msg, "curl")
    port = stack.env.port if scheme == "smtp" else stack.env.tls_port
    cmd = [curl, "-sS", "-v", f"{scheme}://127.0.0.1:{port}/client.test",
           "--cert", str(stack.alice.crt), "--key", str(stack.alice.key),
           "--cacert", str(stack.env.ca_cert_path), "--tlsv1.2",
           "--mail-from", msg.mail_from, "--mail-rcpt", msg.rcpts[0], "-T", str(path)]
    if scheme == "smtp":
        cmd.insert(3, "--ssl-reqd")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"curl exited {proc.returncode}:\n{proc.stderr}"
    qid = queue_id_in(proc.stderr)
    arrival = stack.upstream.wait_for(msg.marker, msg.rcpts)[0]
    assert [n.lower() for n, _ in added_headers(arrival, msg.data)] == ["received"]
    check_accept_audited(stack, qid, msg)


def test_curl_refuses_server_without_trusted_ca(stack, tmp_path):
    """The server certificate really is verified by curl above: with another CA file
    curl refuses, so the success there means something."""
    curl = need("curl")
    from conftest import make_ca
    from cryptography.hazmat.primitives import serialization
    other, _ = make_ca("Unrelated CA")
    other_pem = tmp_path / "other.pem"
    other_pem.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    proc = subprocess.run([curl, "-sS", f"smtp://127.0.0.1:{stack.env.port}", "--ssl-reqd",
                           "--cacert", str(other_pem), "--cert", str(stack.alice.crt),
                           "--key", str(stack.alice.key), "--mail-from", ALICE_ADDR,
                           "--mail-rcpt", "x@example.net", "-T", "/dev/null"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.returncode in (35, 60), f"unexpected curl failure {proc.returncode}: {proc.stderr}"


def test_openssl_s_client_negotiates_tls_1_2_or_later(stack):
    openssl = need("openssl")
    proc = subprocess.run([openssl, "s_client", "-starttls", "smtp", "-connect",
                           f"127.0.0.1:{stack.env.port}", "-CAfile", str(stack.env.ca_cert_path),
                           "-verify_return_error", "-cert", str(stack.alice.crt),
                           "-key", str(stack.alice.key), "-brief"],
                          input="QUIT\r\n", capture_output=True, text=True, timeout=30)
    out = proc.stdout + proc.stderr
    m = re.search(r"Protocol version:\s*(\S+)", out)
    assert m, f"no protocol version in s_client output:\n{out}"
    assert m.group(1) in ("TLSv1.2", "TLSv1.3"), m.group(1)
    assert "Verification: OK" in out, out
