"""An enterprise CA for the tests, independent of submit-ca (issue 14).

It is built the way organisations run one for their MDM (Intune, Workspace ONE, Jamf
enrolling devices over SCEP, often from Active Directory Certificate Services): a root
CA, an issuing CA under it that signs the device certificates, and the issuing CA's
CRL. The device certificates carry the user in the fields that rule maps read:

    email      subject emailAddress
    san-email  subjectAltName rfc822Name
    upn        subjectAltName otherName 1.3.6.1.4.1.311.20.2.3 (UTF8String)
    cn         subject commonName

and, for the refusals, a field twice, none of them, or a NUL inside a subjectAltName
e-mail address (written as raw DER, so no library can clean it on the way).

Usage:

    ca = EnterpriseCA(tmp_path / "corp")           # writes root.crt, issuing.crt,
                                                   # chain.pem, crl.pem
    dev = ca.issue("alice-upn", upn=["alice@corp.example"])
    dev.crt, dev.key, dev.sha256, dev.serial       # files and identifiers
    ca.revoke(dev)                                 # rewrites crl.pem (crlNumber + 1)
    ca.issuer_dn                                   # for `map rule add --issuer`

Only python3-cryptography (Debian's) is used; nothing here talks to submitd.
"""

import datetime
import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, ObjectIdentifier

UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
CRL_URL = "http://pki.corp.example/crl/issuing.crl"


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _new_key(kind):
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


# ---- DER, for what a correct library refuses to write ----------------------------

def _der_len(n):
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_tlv(tag, content):
    """One DER element: tag byte, length, content."""
    return bytes([tag]) + _der_len(len(content)) + content


def der_utf8(value):
    """A UTF8String of value (str or bytes, taken as they are)."""
    return der_tlv(0x0C, value.encode() if isinstance(value, str) else value)


def _der_oid(dotted):
    arcs = [int(a) for a in dotted.split(".")]
    out = bytes([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return der_tlv(0x06, out)


def raw_san(*names):
    """The DER of a subjectAltName (GeneralNames) from (kind, value) pairs, values as
    bytes and written exactly: kind "email" is an rfc822Name [1], "dns" a dNSName
    [2], "upn" an otherName [0] with a UTF8String."""
    body = b""
    for kind, value in names:
        value = value.encode() if isinstance(value, str) else value
        if kind == "email":
            body += der_tlv(0x81, value)
        elif kind == "dns":
            body += der_tlv(0x82, value)
        elif kind == "upn":
            body += der_tlv(0xA0, _der_oid(UPN_OID.dotted_string) + der_tlv(0xA0, der_utf8(value)))
        else:
            raise ValueError(f"unknown name kind {kind}")
    return der_tlv(0x30, body)


# ---- the CA ------------------------------------------------------------------------

class Device:
    """A device certificate on disk."""

    def __init__(self, name, cert, key, directory):
        self.name = name
        self.cert = cert
        self.crt = directory / f"{name}.crt"
        self.key = directory / f"{name}.key"
        self.crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        self.key.chmod(0o600)
        der = cert.public_bytes(serialization.Encoding.DER)
        self.der = der
        self.sha256 = hashlib.sha256(der).hexdigest()
        self.serial = format(cert.serial_number, "X")

    def __repr__(self):
        return f"Device({self.name}, serial {self.serial})"


class EnterpriseCA:
    """A root CA, an issuing CA under it, and the issuing CA's CRL, in directory."""

    def __init__(self, directory, *, org="Example Corp", key="ec", crl_days=7):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.org = org
        self.key_kind = key
        self.crl_days = crl_days
        self.revoked = []          # (serial number, datetime, reason flag)
        self.crl_number = 0
        self.root_key = _new_key(key)
        root_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                               x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                               x509.NameAttribute(NameOID.COMMON_NAME, f"{org} Root CA")])
        self.root = self._ca_cert(root_name, root_name, self.root_key, self.root_key, None,
                                  days=3650, path_length=1)
        self.key = _new_key(key)
        issuing_name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                                  x509.NameAttribute(NameOID.COMMON_NAME,
                                                     f"{org} Issuing CA 1")])
        self.cert = self._ca_cert(issuing_name, root_name, self.key, self.root_key, self.root,
                                  days=1825, path_length=0)
        self.root_crt = self.dir / "root.crt"
        self.issuing_crt = self.dir / "issuing.crt"
        self.chain = self.dir / "chain.pem"     # issuing + root: what goes in client_ca
        self.crl = self.dir / "crl.pem"         # the issuing CA's CRL: what goes in crl
        self.root_crt.write_bytes(self._pem(self.root))
        self.issuing_crt.write_bytes(self._pem(self.cert))
        self.chain.write_bytes(self._pem(self.cert) + self._pem(self.root))
        self.publish_crl()

    # -- names --

    @property
    def issuer_dn(self):
        """The issuing CA's subject in RFC 4514 form, as `openssl x509 -noout -subject
        -nameopt RFC2253` prints it: what `map rule add --issuer` takes."""
        return self.cert.subject.rfc4514_string()

    @property
    def root_dn(self):
        return self.root.subject.rfc4514_string()

    # -- building --

    @staticmethod
    def _pem(cert):
        return cert.public_bytes(serialization.Encoding.PEM)

    @staticmethod
    def _signing_hash():
        return hashes.SHA256()

    def _ca_cert(self, subject, issuer, key, issuer_key, issuer_cert, *, days, path_length):
        now = _now()
        aki = (x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
               if issuer_cert is not None else None)
        b = (x509.CertificateBuilder()
             .subject_name(subject).issuer_name(issuer)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                          crl_sign=True, content_commitment=False,
                                          key_encipherment=False, data_encipherment=False,
                                          key_agreement=False, encipher_only=False,
                                          decipher_only=False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                            critical=False))
        if aki is not None:
            b = b.add_extension(aki, critical=False)
        return b.sign(issuer_key, self._signing_hash())

    def issue(self, name, *, cn=None, subject_emails=(), san_emails=(), upn=(), dns=(),
              raw_san_der=None, org_unit="Devices", days=365, not_after=None,
              eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), key=None):
        """A device certificate signed by the issuing CA, written as NAME.crt/NAME.key.

        cn: the subject commonName (None: no CN; a list: one CN per item, for "twice").
        subject_emails: emailAddress attributes of the subject, in order.
        san_emails / upn / dns: subjectAltName rfc822Names, UPN otherNames, dNSNames.
        raw_san_der: a subjectAltName written exactly as given (see raw_san()), instead
        of the one made from san_emails/upn/dns.
        """
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.org),
                 x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, org_unit)]
        for c in ([cn] if isinstance(cn, str) else list(cn or [])):
            attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, c))
        for e in subject_emails:
            attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, e))
        dev_key = _new_key(key or self.key_kind)
        now = _now()
        b = (x509.CertificateBuilder()
             .subject_name(x509.Name(attrs))
             .issuer_name(self.cert.subject)
             .public_key(dev_key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(not_after or now + datetime.timedelta(days=days))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                          crl_sign=False, content_commitment=False,
                                          key_encipherment=self.key_kind == "rsa",
                                          data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False),
                            critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(dev_key.public_key()),
                            critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), critical=False)
             .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                 full_name=[x509.UniformResourceIdentifier(CRL_URL)], relative_name=None,
                 reasons=None, crl_issuer=None)]), critical=False))
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
        if raw_san_der is not None:
            b = b.add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
                                                           raw_san_der), critical=False)
        else:
            sans = ([x509.OtherName(UPN_OID, der_utf8(u)) for u in upn]
                    + [x509.RFC822Name(e) for e in san_emails]
                    + [x509.DNSName(d) for d in dns])
            if sans:
                b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return Device(name, b.sign(self.key, self._signing_hash()), dev_key, self.dir)

    # -- the usual devices of the tests --

    def standard_devices(self, user="alice", domain="corp.example"):
        """One device per case of the rule-map tests, by case name."""
        addr = f"{user}@{domain}"
        return {
            "upn": self.issue(f"{user}-upn", cn=f"{user}-laptop", upn=[addr]),
            "san-email": self.issue(f"{user}-san", cn=f"{user}-phone", san_emails=[addr]),
            "email": self.issue(f"{user}-subject-email", cn=user, subject_emails=[addr]),
            "cn": self.issue(f"{user}-cn", cn=user),
            "none": self.issue(f"{user}-none", dns=[f"{user}-laptop.{domain}"]),
            "upn-twice": self.issue(f"{user}-upn-twice", upn=[addr, f"mallory@{domain}"]),
            "san-email-twice": self.issue(f"{user}-san-twice",
                                          san_emails=[addr, f"mallory@{domain}"]),
            "email-twice": self.issue(f"{user}-subject-email-twice",
                                      subject_emails=[addr, f"mallory@{domain}"]),
            "cn-twice": self.issue(f"{user}-cn-twice", cn=[user, "mallory"]),
            "san-email-nul": self.issue(
                f"{user}-san-nul",
                raw_san_der=raw_san(("email", addr.encode() + b"\x00.evil.example"))),
            "upn-nul": self.issue(
                f"{user}-upn-nul", raw_san_der=raw_san(("upn", addr.encode() + b"\x00x"))),
        }

    # -- revocation --

    def revoke(self, device, reason=x509.ReasonFlags.key_compromise):
        """Revokes device (a Device or a serial number) and republishes the CRL."""
        serial = device.cert.serial_number if isinstance(device, Device) else int(device)
        self.revoked.append((serial, _now() - datetime.timedelta(minutes=2), reason))
        return self.publish_crl()

    def publish_crl(self, path=None):
        """Writes the issuing CA's CRL (a higher crlNumber every time) to path
        (default crl.pem) and returns its PEM."""
        self.crl_number += 1
        now = _now() - datetime.timedelta(minutes=1)
        b = (x509.CertificateRevocationListBuilder()
             .issuer_name(self.cert.subject)
             .last_update(now)
             .next_update(now + datetime.timedelta(days=self.crl_days))
             .add_extension(x509.CRLNumber(self.crl_number), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 self.key.public_key()), critical=False))
        for serial, when, reason in self.revoked:
            entry = (x509.RevokedCertificateBuilder().serial_number(serial)
                     .revocation_date(when))
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            b = b.add_revoked_certificate(entry.build())
        pem = b.sign(self.key, self._signing_hash()).public_bytes(serialization.Encoding.PEM)
        Path(path or self.crl).write_bytes(pem)
        return pem


def concat_pem(out, *sources):
    """Writes the PEM files (or bytes) of sources one after the other into out: a
    client_ca bundle of several CAs, or a crl file with the CRLs of several issuers."""
    data = b""
    for s in sources:
        chunk = s if isinstance(s, bytes) else Path(s).read_bytes()
        data += chunk if chunk.endswith(b"\n") else chunk + b"\n"
    Path(out).write_bytes(data)
    return Path(out)
