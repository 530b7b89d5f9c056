"""The enterprise CA of the rule-map tests (enterprise_ca.py) makes what it claims:
a chain that OpenSSL verifies for client authentication, device certificates whose
fields are the intended ones as OpenSSL and python3-cryptography read them, and a CRL
that revokes the device it names. A helper that silently made the wrong certificate
would let the rule-map tests pass for the wrong reason."""

import subprocess

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from enterprise_ca import UPN_OID, EnterpriseCA, concat_pem, der_utf8, raw_san

ADDR = "alice@corp.example"
MALLORY = "mallory@corp.example"


@pytest.fixture(scope="module")
def corp(tmp_path_factory):
    ca = EnterpriseCA(tmp_path_factory.mktemp("corp"))
    return ca, ca.standard_devices()


def openssl(*args, check=True):
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=check)


def verify(ca, device):
    """openssl verify's verdict on device against the chain and the CRL, as submitd
    checks it: client purpose, the CRL of the issuing CA."""
    r = openssl("verify", "-CAfile", str(ca.chain), "-crl_check", "-CRLfile", str(ca.crl),
                "-purpose", "sslclient", str(device.crt), check=False)
    return r.returncode, r.stdout + r.stderr


def text(device):
    return openssl("x509", "-in", str(device.crt), "-noout", "-text").stdout


def san_values(device, kind):
    try:
        san = device.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    if kind == "upn":
        return [o.value for o in san.get_values_for_type(x509.OtherName) if o.type_id == UPN_OID]
    return san.get_values_for_type(x509.RFC822Name)


def subject_values(device, oid):
    return [a.value for a in device.cert.subject.get_attributes_for_oid(oid)]


def test_every_device_verifies_for_client_authentication(corp):
    ca, devices = corp
    for case, dev in devices.items():
        rc, out = verify(ca, dev)
        assert rc == 0, (case, out)
        eku = dev.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH], case
        assert "TLS Web Client Authentication" in text(dev), case


def test_the_chain_is_two_tier_and_the_issuer_dn_is_what_openssl_prints(corp):
    ca, devices = corp
    # The bundle holds the issuing CA first, then the root.
    end = b"-----END CERTIFICATE-----\n"
    chain = [x509.load_pem_x509_certificate(block + end)
             for block in ca.chain.read_bytes().split(end) if block.strip()]
    assert [c.subject for c in chain] == [ca.cert.subject, ca.root.subject]
    assert ca.cert.issuer == ca.root.subject and ca.root.issuer == ca.root.subject
    printed = openssl("x509", "-in", str(devices["upn"].crt), "-noout", "-issuer", "-nameopt",
                      "RFC2253").stdout.strip()
    assert printed == f"issuer={ca.issuer_dn}", printed
    assert ca.issuer_dn == "CN=Example Corp Issuing CA 1,O=Example Corp,C=US"


def test_upn_is_an_othername_utf8string(corp):
    _, devices = corp
    dev = devices["upn"]
    assert san_values(dev, "upn") == [der_utf8(ADDR)]
    assert der_utf8(ADDR)[0] == 0x0C      # UTF8String, as AD CS writes it
    assert f"othername: UPN::{ADDR}" in text(dev)
    assert san_values(dev, "email") == []
    assert subject_values(dev, NameOID.EMAIL_ADDRESS) == []


def test_san_email_and_subject_email(corp):
    _, devices = corp
    san, subj = devices["san-email"], devices["email"]
    assert san_values(san, "email") == [ADDR]
    assert f"email:{ADDR}" in text(san)
    assert subject_values(san, NameOID.EMAIL_ADDRESS) == []
    assert subject_values(subj, NameOID.EMAIL_ADDRESS) == [ADDR]
    assert f"emailAddress = {ADDR}" in text(subj)
    assert san_values(subj, "email") == [] and san_values(subj, "upn") == []
    assert subject_values(devices["cn"], NameOID.COMMON_NAME) == ["alice"]


def test_none_has_none_of_the_fields(corp):
    _, devices = corp
    dev = devices["none"]
    assert san_values(dev, "upn") == [] and san_values(dev, "email") == []
    assert subject_values(dev, NameOID.EMAIL_ADDRESS) == []
    assert subject_values(dev, NameOID.COMMON_NAME) == []
    assert "DNS:alice-laptop.corp.example" in text(dev)


def test_fields_twice(corp):
    _, devices = corp
    assert san_values(devices["upn-twice"], "upn") == [der_utf8(ADDR), der_utf8(MALLORY)]
    assert san_values(devices["san-email-twice"], "email") == [ADDR, MALLORY]
    assert subject_values(devices["email-twice"], NameOID.EMAIL_ADDRESS) == [ADDR, MALLORY]
    assert subject_values(devices["cn-twice"], NameOID.COMMON_NAME) == ["alice", "mallory"]


def test_nul_inside_the_san_email_is_in_the_der(corp):
    _, devices = corp
    dev = devices["san-email-nul"]
    hostile = ADDR.encode() + b"\x00.evil.example"
    # rfc822Name is [1] IMPLICIT IA5String: tag 0x81, then the length and the bytes.
    assert bytes([0x81, len(hostile)]) + hostile in dev.der
    assert raw_san(("email", hostile)) in dev.der
    assert san_values(dev, "email") == [hostile.decode()]
    upn = devices["upn-nul"]
    assert der_utf8(ADDR.encode() + b"\x00x") in upn.der
    assert san_values(upn, "upn") == [der_utf8(ADDR.encode() + b"\x00x")]


def test_revoking_one_device_republishes_the_crl(tmp_path):
    ca = EnterpriseCA(tmp_path / "corp")
    keep = ca.issue("keep", upn=[ADDR])
    lost = ca.issue("lost", upn=[ADDR])
    first = x509.load_pem_x509_crl(ca.crl.read_bytes())
    assert verify(ca, lost)[0] == 0
    ca.revoke(lost)
    crl = x509.load_pem_x509_crl(ca.crl.read_bytes())
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert [r.serial_number for r in crl] == [lost.cert.serial_number]
    assert crl.is_signature_valid(ca.cert.public_key())
    rc, out = verify(ca, lost)
    assert rc != 0 and "certificate revoked" in out, out
    assert verify(ca, keep)[0] == 0
    assert lost.serial in openssl("crl", "-in", str(ca.crl), "-noout", "-text").stdout


def test_bundles_of_several_cas_and_crls(tmp_path):
    one = EnterpriseCA(tmp_path / "one", org="One Corp")
    two = EnterpriseCA(tmp_path / "two", org="Two Corp", key="rsa")
    cas = concat_pem(tmp_path / "client-cas.pem", one.chain, two.chain)
    crls = concat_pem(tmp_path / "crls.pem", one.crl, two.crl)
    assert cas.read_text().count("BEGIN CERTIFICATE") == 4
    assert crls.read_text().count("BEGIN X509 CRL") == 2
    dev = two.issue("bob", san_emails=["bob@two.example"])
    r = openssl("verify", "-CAfile", str(cas), "-crl_check", "-CRLfile", str(crls),
                "-purpose", "sslclient", str(dev.crt), check=False)
    assert r.returncode == 0, r.stdout + r.stderr
