"""Relay to an upstream that offers STARTTLS, with upstream_tls = verify (DESIGN §4, §6):
delivered over TLS when the upstream certificate verifies, held when it does not."""

import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import Audit, make_ca, make_leaf, make_message, send_ok, write_cert_and_key


def upstream_tls(tmp_dir, ca, ca_key, *, dns=("localhost",), ips=("127.0.0.1",)):
    leaf, key = make_leaf(ca, ca_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mta.test")]),
                          dns=dns, ips=ips, eku=(ExtendedKeyUsageOID.SERVER_AUTH,))
    crt, kf = write_cert_and_key(tmp_dir, "upstream", leaf, key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(crt), str(kf))
    return ctx


def write_ca(path, ca):
    path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture
def upstream_cas(tmp_path):
    trusted = make_ca("Corporate MTA CA")
    other = make_ca("Somebody Else's CA")
    return trusted, other, tmp_path


def test_relay_over_verified_starttls(fresh_stack_factory, upstream_cas):
    (ca, ca_key), _, tmp = upstream_cas
    s = fresh_stack_factory("upstream-verify", start_upstream=False, start_daemon=False)
    s.env.settings.update(upstream_tls="verify",
                          upstream_ca=str(write_ca(s.env.dir / "upstream-ca.crt", ca)))
    s.env.write_config()
    s.upstream.tls_context = upstream_tls(tmp, ca, ca_key)
    s.upstream.start()
    s.daemon.start()

    msg = make_message()
    qid = send_ok(s.env, s.alice, msg)
    arrival = s.upstream.wait_for(msg.marker, msg.rcpts)[0]
    assert arrival.tls, "the message reached the upstream without STARTTLS"
    assert arrival.content.endswith(msg.data)
    Audit(s.env).wait(lambda r: r["event"] == "relayed" and r["queue_id"] == qid, 0, timeout=10,
                      what=f"'relayed' event for {qid}")


@pytest.mark.parametrize("problem", ["untrusted-ca", "wrong-name"])
def test_relay_holds_message_when_upstream_certificate_fails(fresh_stack_factory, upstream_cas, problem):
    (ca, ca_key), (other, other_key), tmp = upstream_cas
    s = fresh_stack_factory(f"upstream-{problem}", start_upstream=False, start_daemon=False)
    s.env.settings.update(upstream_tls="verify",
                          upstream_ca=str(write_ca(s.env.dir / "upstream-ca.crt", ca)))
    s.env.write_config()
    if problem == "untrusted-ca":
        s.upstream.tls_context = upstream_tls(tmp, other, other_key)
    else:
        s.upstream.tls_context = upstream_tls(tmp, ca, ca_key, dns=("mta.elsewhere.test",), ips=())
    s.upstream.start()
    s.daemon.start()

    msg = make_message()
    qid = send_ok(s.env, s.alice, msg)
    # The queue tried the upstream, refused its certificate and kept the message.
    Audit(s.env).wait(lambda r: r["event"] == "deferred" and r["queue_id"] == qid, 0, timeout=10,
                      what=f"deferred row for {qid}")
    assert not s.upstream.matching(msg.marker), \
        f"relayed to an upstream whose certificate does not verify ({problem})"
    assert s.daemon.running()
