"""Shared harness for the submitd integration tests.

The tests drive the real programs (submitd, submit-ca, submit-admin) built into
$SUBMITD_BUILD/bin (default: build/bin) against the contract of DESIGN.md sections 5-8.
Every environment lives in its own temporary directory with its own ports on
127.0.0.1, its own CA, database and spool, and a Python SMTP server (aiosmtpd) standing
in for the corporate MTA.

Run:  /usr/bin/python3 -m pytest -q tests/integration
      SUBMITD_BUILD=build-san /usr/bin/python3 -m pytest -q tests/integration
Set SUBMITD_KEEP_TMP=1 to keep the temporary directories of every run.
Every random choice of a test comes from the `rng` fixture, seeded from
SUBMITD_TEST_SEED (a fresh seed when unset); the seed is printed with the results and
next to every failure, and SUBMITD_TEST_SEED=<seed> repeats the run.
"""

import datetime
import email.utils
import hashlib
import ipaddress
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]

# Limits written into every test configuration; tests derive their cases from them.
MAX_MESSAGE_SIZE = 65536
MAX_RECIPIENTS = 3
SESSION_TIMEOUT = 30

ALICE = "alice"
ALICE_ADDR = "alice@example.com"
ALICE_DOMAIN = "@example.org"       # a whole domain owned by alice
HOSTNAME = "mail.test"
P12_PASSWORD = "integration-test-p12"

ACCEPT_RE = re.compile(r"^250 2\.0\.0 Ok: queued as (\S+)$")


# --------------------------------------------------------------------------------
# Random choices: one seed per run, printed, and repeatable
# --------------------------------------------------------------------------------

def _test_seed():
    value = os.environ.get("SUBMITD_TEST_SEED", "").strip()
    if value:
        try:
            return int(value)
        except ValueError:
            raise pytest.UsageError(f"SUBMITD_TEST_SEED={value!r} is not an integer")
    return random.SystemRandom().randrange(1, 2**31)


TEST_SEED = _test_seed()


@pytest.fixture
def rng(request):
    """A random.Random of this test alone: seeded from the run's seed and the test's
    id, so one test repeats its choices when run alone with the same seed."""
    return random.Random(f"{TEST_SEED}:{request.node.nodeid}")


# --------------------------------------------------------------------------------
# Programs and ports
# --------------------------------------------------------------------------------

def build_dir():
    b = Path(os.environ.get("SUBMITD_BUILD", "build"))
    return b if b.is_absolute() else ROOT / b


def binary(name):
    path = build_dir() / "bin" / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build it first (make, or make SANITIZE=... for build-san)",
                    pytrace=False)
    return path


_ports_handed_out = set()


def free_port():
    """A loopback port nothing listens on, and one this run has not handed out before:
    the kernel can give the same free port to two binds in a row, and a daemon whose
    STARTTLS and implicit-TLS listeners got the same port cannot start."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port


def port_accepts(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def poll(fn, timeout, interval=0.1):
    """Calls fn until it returns something truthy or timeout seconds pass; returns the
    last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --------------------------------------------------------------------------------
# Certificates built in Python, for the cases submit-ca must never produce
# --------------------------------------------------------------------------------

def sha256_of_cert_file(path):
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _signing_hash(key):
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def _aki_for(issuer_cert, issuer_key):
    if issuer_cert is not None:
        try:
            ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            pass
    return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())


def make_ca(common_name, issuer=None):
    """A CA, self-signed, or an intermediate when issuer is (cert, key); returns
    (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_name, signer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(signer_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0 if issuer else None),
                           critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(signer_key, hashes.SHA256()))
    return cert, key


def make_leaf(issuer_cert, issuer_key, subject, *, emails=(), dns=(), ips=(),
              not_before=None, not_after=None, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,)):
    """A leaf certificate signed by issuer_key (any key type); returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.utcnow()
    not_before = not_before or now - datetime.timedelta(days=1)
    not_after = not_after or now + datetime.timedelta(days=30)
    sans = ([x509.RFC822Name(e) for e in emails] + [x509.DNSName(d) for d in dns]
            + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips])
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(_aki_for(issuer_cert, issuer_key), critical=False))
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, _signing_hash(issuer_key)), key


def write_cert_and_key(directory, name, cert, key):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    crt = directory / f"{name}.crt"
    kf = directory / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kf.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return crt, kf


class Identity:
    """A client certificate on disk: the files and the SHA-256 of its DER form."""

    def __init__(self, name, crt, key, p12=None, email=None):
        self.name = name
        self.crt = Path(crt)
        self.key = Path(key)
        self.p12 = Path(p12) if p12 else None
        self.email = email
        self.sha256 = sha256_of_cert_file(crt)

    def cert(self):
        return x509.load_pem_x509_certificate(self.crt.read_bytes())

    def __repr__(self):
        return f"Identity({self.name}, {self.sha256[:12]})"


# --------------------------------------------------------------------------------
# An installation in a temporary directory
# --------------------------------------------------------------------------------

_KEEP = os.environ.get("SUBMITD_KEEP_TMP") == "1"


class Env:
    """One configuration directory: config file, PAM file, CA, database, spool."""

    def __init__(self, name, **overrides):
        self.dir = Path(tempfile.mkdtemp(prefix=f"submitd-it-{name}-"))
        # The daemon's unprivileged processes (user nobody) must reach files in here.
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.tls_port = free_port()
        self.upstream_port = free_port()
        self.conf = self.dir / "submitd.conf"
        self.db_path = self.dir / "submitd.db"
        self.clients = self.dir / "clients"
        self.clients.mkdir()
        self.p12_password_file = self.dir / "p12-password"
        self.p12_password_file.write_text(P12_PASSWORD + "\n")
        pam = self.dir / "pam.d"
        pam.mkdir()
        (pam / "submitd").write_text("account required pam_permit.so\nauth required pam_deny.so\n")
        # What /etc/pam.d has too: without it libpam logs an error at every pam_start.
        (pam / "other").write_text("account required pam_deny.so\nauth required pam_deny.so\n")
        os.chmod(pam, 0o755)
        os.chmod(pam / "submitd", 0o644)
        os.chmod(pam / "other", 0o644)
        self.settings = {
            "hostname": HOSTNAME,
            "listen": f"127.0.0.1:{self.port}",
            "listen_tls": f"127.0.0.1:{self.tls_port}",
            "tls_cert": "server.crt",
            "tls_key": "server.key",
            "ca_dir": "ca",
            "client_ca": "ca/ca.crt",
            "crl": "",
            "database": "submitd.db",
            "spool": "spool",
            "upstream": f"127.0.0.1:{self.upstream_port}",
            "upstream_tls": "none",
            "user": "nobody",
            # smtp runs under its own uid, as the package sets it up (DESIGN §6).
            "smtp_user": "daemon",
            "pam_service": "submitd",
            "pam_confdir": str(pam),
            "max_message_size": str(MAX_MESSAGE_SIZE),
            "max_recipients": str(MAX_RECIPIENTS),
            "timeout": str(SESSION_TIMEOUT),
            "retry_min": "1",
            "retry_max": "2",
            "log_level": "debug",
        }
        self.settings.update({k: str(v) for k, v in overrides.items()})
        self.write_config()
        self.identities = {}

    @property
    def ca_cert_path(self):
        return self.dir / "ca" / "ca.crt"

    def write_config(self, extra_lines=()):
        lines = ["# written by the submitd integration tests"]
        for key, value in self.settings.items():
            lines.append(f"{key} = {value}" if value != "" else f"{key} =")
        lines.extend(extra_lines)
        self.conf.write_text("\n".join(lines) + "\n")
        os.chmod(self.conf, 0o644)

    # ---- the command-line tools ---------------------------------------------------

    def run(self, prog, *args, check=True, timeout=60, conf=None):
        cmd = [str(binary(prog)), "-c", str(conf or self.conf), *[str(a) for a in args]]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.dir)
        if check and proc.returncode != 0:
            raise AssertionError(f"`{' '.join(cmd)}` exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def ca(self, *args, **kw):
        return self.run("submit-ca", *args, **kw)

    def admin(self, *args, **kw):
        return self.run("submit-admin", *args, **kw)

    def init_pki(self):
        self.ca("init")
        self.ca("server-cert", "localhost", "--ip", "127.0.0.1")

    def issue(self, user, email):
        proc = self.ca("issue", user, "--email", email, "--out", self.clients,
                       "--p12-password-file", self.p12_password_file)
        ident = Identity(user, self.clients / f"{user}.crt", self.clients / f"{user}.key",
                         self.clients / f"{user}.p12", email)
        ident.issue_stdout = proc.stdout
        self.identities[user] = ident
        return ident

    def ca_cert_and_key(self):
        cert = x509.load_pem_x509_certificate((self.dir / "ca" / "ca.crt").read_bytes())
        key = serialization.load_pem_private_key((self.dir / "ca" / "ca.key").read_bytes(), None)
        return cert, key

    # ---- the database, read-only use -----------------------------------------------

    def query(self, sql, params=()):
        con = sqlite3.connect(str(self.db_path), timeout=10)
        con.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in con.execute(sql, params).fetchall()]
        finally:
            con.close()

    def cleanup(self, keep=False):
        if keep or _KEEP:
            print(f"\nkept {self.dir}")
            return
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------------
# The audit table
# --------------------------------------------------------------------------------

class Audit:
    def __init__(self, env):
        self.env = env

    def rows(self, since=0):
        try:
            return self.env.query("SELECT * FROM audit WHERE id > ? ORDER BY id", (since,))
        except sqlite3.OperationalError as e:
            if "no such table" in str(e) or "unable to open" in str(e):
                return []
            raise

    def mark(self):
        """The highest audit id now: rows written later belong to what follows."""
        rows = self.rows()
        return rows[-1]["id"] if rows else 0

    def wait(self, pred, since, timeout=5, what="matching audit row"):
        found = poll(lambda: [r for r in self.rows(since) if pred(r)], timeout)
        if not found:
            shown = "\n".join(repr(r) for r in self.rows(since)[-15:]) or "(none)"
            raise AssertionError(f"no {what} within {timeout}s; audit rows since id {since}:\n{shown}")
        return found[0]


def contains(value, *words):
    """True when value (a possibly NULL column) contains any of words, ignoring case."""
    v = (value or "").lower()
    return any(w.lower() in v for w in words)


# --------------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------------

def _proc_stat(pid):
    """(state, pgrp, ppid, starttime) of a live pid, or None."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[2]), int(rest[1]), int(rest[19])


def _all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


ALL_DAEMONS = []
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Memory|Thread)Sanitizer|runtime error:|"
                          r"SUMMARY: (Address|Undefined|Leak)")


class Daemon:
    """submitd -f in its own session, its log in a file."""

    def __init__(self, env, name="submitd"):
        self.env = env
        self.log = env.dir / f"{name}.log"
        self.proc = None
        self.known = {}          # pid -> starttime of the master and every descendant seen
        self.starts = 0
        ALL_DAEMONS.append(self)

    # ---- processes --------------------------------------------------------------------

    def _snapshot(self):
        """Records the master and all its descendants (by parent links and by group)."""
        if self.proc is None:
            return
        stats = {p: _proc_stat(p) for p in _all_pids()}
        stats = {p: s for p, s in stats.items() if s is not None}
        family = {self.proc.pid}
        grew = True
        while grew:
            grew = False
            for p, s in stats.items():
                if p not in family and (s[2] in family or s[1] == self.proc.pid):
                    family.add(p)
                    grew = True
        for p in family:
            if p in stats and stats[p][0] != "Z":
                self.known[p] = stats[p][3]

    def alive_family(self):
        """Pids of processes started by this daemon that are still running (not zombies)."""
        alive = []
        for pid, start in self.known.items():
            s = _proc_stat(pid)
            if s and s[3] == start and s[0] != "Z":
                alive.append(pid)
        if self.proc is not None:
            for pid in _all_pids():
                s = _proc_stat(pid)
                if s and s[1] == self.proc.pid and s[0] != "Z" and pid not in alive:
                    alive.append(pid)
        return alive

    def _kill_family(self):
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in self.alive_family():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    # ---- life cycle -------------------------------------------------------------------

    def _greets(self):
        try:
            with socket.create_connection(("127.0.0.1", self.env.port), timeout=2) as s:
                s.settimeout(2)
                # Behind a balancer the greeting waits for a PROXY header: a LOCAL
                # one, as a health check of the balancer sends it.
                if self.env.settings.get("proxy_protocol") == "v2":
                    s.sendall(b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")
                line = s.recv(512)
                if not line.startswith(b"220"):
                    return False
                s.sendall(b"QUIT\r\n")
                return True
        except OSError:
            return False

    def start(self, timeout=10, busy_retry=8):
        """Starts submitd and waits until both listeners are up. An early exit (a port
        still held by a dying previous instance) is retried for busy_retry seconds."""
        binary_path = binary("submitd")
        first = time.monotonic()
        while True:
            self.starts += 1
            with open(self.log, "ab") as logf:
                logf.write(f"\n===== test harness: start #{self.starts} =====\n".encode())
                logf.flush()
                self.proc = subprocess.Popen([str(binary_path), "-c", str(self.env.conf), "-f"],
                                             stdin=subprocess.DEVNULL, stdout=logf,
                                             stderr=subprocess.STDOUT, cwd=self.env.dir,
                                             start_new_session=True)
            self.known = {}
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if self._greets() and port_accepts(self.env.tls_port):
                    time.sleep(0.2)
                    if self.proc.poll() is None:
                        self._snapshot()
                        return self
                time.sleep(0.1)
            if self.proc.poll() is None:
                self._kill_family()
                self.proc.wait()
                raise AssertionError(f"submitd did not greet on 127.0.0.1:{self.env.port} within "
                                     f"{timeout}s\n{self.tail()}")
            if time.monotonic() - first < busy_retry:
                time.sleep(0.5)
                continue
            raise AssertionError(f"submitd exited with status {self.proc.returncode} at start\n"
                                 f"{self.tail()}")

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout=10):
        """SIGTERM to the master; returns its exit status (None if it had to be killed)."""
        if self.proc is None:
            return None
        self._snapshot()
        status = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                status = None
        else:
            status = self.proc.returncode
        return status

    def stop(self):
        self.terminate()
        # Whatever is left of this instance goes now, so that ports are free.
        self._kill_family()
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def kill9(self, group=True):
        """kill -9: the whole process group, or only the master."""
        self._snapshot()
        if group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def tail(self, max_chars=20000, offset=0):
        try:
            data = self.log.read_bytes()[offset:]
        except OSError:
            return "(no log)"
        text = data.decode("utf-8", "replace")
        if len(text) > max_chars:
            text = "...\n" + text[-max_chars:]
        return f"---- {self.log} ----\n{text}"

    def log_size(self):
        try:
            return self.log.stat().st_size
        except OSError:
            return 0

    def sanitizer_reports(self, offset=0):
        """Lines of AddressSanitizer/UndefinedBehaviorSanitizer/LeakSanitizer reports
        written to the log after offset."""
        try:
            data = self.log.read_bytes()[offset:].decode("utf-8", "replace")
        except OSError:
            return []
        return [line for line in data.splitlines() if SANITIZER_RE.search(line)]


# --------------------------------------------------------------------------------
# The upstream MTA
# --------------------------------------------------------------------------------

class Arrival:
    def __init__(self, mail_from, rcpt_tos, content, tls, helo):
        self.mail_from = mail_from
        self.rcpt_tos = rcpt_tos
        self.content = content
        self.tls = tls
        self.helo = helo
        self.at = time.monotonic()

    def __repr__(self):
        return (f"Arrival(from={self.mail_from!r}, to={self.rcpt_tos!r}, tls={self.tls}, "
                f"{len(self.content)} bytes: {self.content[:160]!r}...)")


class RecordingHandler:
    def __init__(self):
        self.lock = threading.Lock()
        self.arrivals = []

    async def handle_DATA(self, server, session, envelope):
        arrival = Arrival(envelope.mail_from, list(envelope.rcpt_tos),
                          bytes(envelope.original_content), session.ssl is not None,
                          session.host_name)
        with self.lock:
            self.arrivals.append(arrival)
        return "250 2.0.0 Ok: upstream accepted"


class Upstream:
    """An aiosmtpd server on 127.0.0.1:port that records every message it accepts.
    With tls_context it offers STARTTLS and requires it."""

    def __init__(self, port, tls_context=None):
        self.port = port
        self.tls_context = tls_context
        self.handler = RecordingHandler()
        self.controller = None

    def start(self):
        kwargs = {}
        if self.tls_context is not None:
            kwargs = {"tls_context": self.tls_context, "require_starttls": True}
        deadline = time.monotonic() + 10
        while True:
            controller = Controller(self.handler, hostname="127.0.0.1", port=self.port,
                                    ready_timeout=10, decode_data=False, **kwargs)
            try:
                controller.start()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        self.controller = controller
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def arrivals(self):
        with self.handler.lock:
            return list(self.handler.arrivals)

    def matching(self, marker):
        return [a for a in self.arrivals() if marker in a.content]

    def wait_for(self, marker, rcpts=(), timeout=15):
        """Waits until messages containing marker have reached every address in rcpts
        (or, with no rcpts, until one has arrived); returns those arrivals."""
        want = {r.lower() for r in rcpts}

        def ready():
            got = self.matching(marker)
            have = {r.lower() for a in got for r in a.rcpt_tos}
            return got if got and want <= have else None

        got = poll(ready, timeout, 0.1)
        if not got:
            raise AssertionError(f"message with {marker!r} not delivered upstream to {sorted(want)} "
                                 f"within {timeout}s; upstream has: {self.arrivals()[-5:]!r}")
        return got


# --------------------------------------------------------------------------------
# Messages and their check upstream
# --------------------------------------------------------------------------------

class Message:
    def __init__(self, data, msgid, mail_from, rcpts):
        self.data = data
        self.msgid = msgid
        self.mail_from = mail_from
        self.rcpts = rcpts

    @property
    def marker(self):
        return f"<{self.msgid}>".encode()


def unique_rcpt(tag="rcpt"):
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.net"


def make_message(mail_from=ALICE_ADDR, rcpts=None, subject="integration test", body=None,
                 with_id_and_date=True, extra_headers=()):
    rcpts = rcpts or [unique_rcpt()]
    msgid = f"{uuid.uuid4().hex}@client.test"
    headers = [f"From: Alice <{mail_from}>", f"To: {', '.join(rcpts)}", f"Subject: {subject}"]
    if with_id_and_date:
        headers.append(f"Date: {email.utils.formatdate(localtime=False)}")
        headers.append(f"Message-ID: <{msgid}>")
    headers.extend(extra_headers)
    if body is None:
        body = (f"Hello from the integration tests ({msgid}).\r\n"
                ".a line that starts with a dot\r\n"
                "..and one with two\r\n"
                "\r\n"
                "Regards,\r\n"
                "Alice\r\n")
    data = ("\r\n".join(headers) + "\r\n\r\n" + body).encode()
    return Message(data, msgid, mail_from, rcpts)


HEADER_LINE_RE = re.compile(rb"^[!-9;-~]+:")


def added_headers(arrival, original):
    """Checks that arrival.content is some header lines followed by the original message
    byte for byte, and returns those headers as [(name, unfolded value)]."""
    content = arrival.content
    assert content.endswith(original), (
        "upstream content is not the submitted message with headers prepended\n"
        f"submitted ({len(original)} bytes): {original[:300]!r}\n"
        f"upstream  ({len(content)} bytes): {content[:600]!r}")
    prefix = content[:len(content) - len(original)]
    assert prefix == b"" or prefix.endswith(b"\r\n"), f"added block does not end with CRLF: {prefix!r}"
    headers = []
    for line in prefix.split(b"\r\n")[:-1] if prefix else []:
        if line[:1] in (b" ", b"\t"):
            assert headers, f"added block starts with a continuation line: {prefix!r}"
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.decode().strip())
        else:
            assert HEADER_LINE_RE.match(line), f"added line is not a header: {line!r} in {prefix!r}"
            name, value = line.split(b":", 1)
            headers.append((name.decode(), value.decode().strip()))
        assert b"\r" not in line and b"\n" not in line, f"bare CR/LF in added headers: {prefix!r}"
    return headers


# --------------------------------------------------------------------------------
# SMTP clients
# --------------------------------------------------------------------------------

def client_context(env, identity=None, min_version=ssl.TLSVersion.TLSv1_2):
    """A client TLS context that verifies the server against our CA (host name not
    checked) and presents identity when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(env.ca_cert_path))
    ctx.minimum_version = min_version
    if identity is not None:
        ctx.load_cert_chain(str(identity.crt), str(identity.key))
    return ctx


class BioTLS:
    """A TLS client over ssl.MemoryBIO on a plain socket: the test decides which records
    go out in which write, and sees what each read of the socket brought (chunks)."""

    REPLY_RE = re.compile(rb"((?:\d{3}-[^\r\n]*\r\n)*)(\d{3}) [^\r\n]*\r\n")

    def __init__(self, ctx, sock, server_hostname=None):
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=server_hostname)
        self.sock = sock
        self.buf = b""
        self.chunks = []

    def flush(self):
        pending = self.outgoing.read()
        if pending:
            self.sock.sendall(pending)

    def recv(self):
        """One read of the socket, handed to the TLS layer."""
        data = self.sock.recv(65536)
        assert data, "connection closed by the server"
        self.chunks.append(data)
        self.incoming.write(data)
        return data

    def handshake(self, first=b""):
        """The handshake; first goes out ahead of the ClientHello in the same write.
        The client's last flight stays in outgoing, for the caller to send."""
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        else:
            return
        self.sock.sendall(first + self.outgoing.read())
        while True:
            self.recv()
            try:
                self.tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                self.flush()

    def send_records(self, *lines):
        """Each line in a TLS record of its own, all of them (and whatever else waits,
        such as the client's Finished) in one write."""
        for line in lines:
            self.tls.write(line)
        self.flush()

    def read_available(self):
        """Decrypts what has arrived, without reading the socket. True when it ended
        with the server's close_notify."""
        while True:
            try:
                data = self.tls.read(65536)
            except ssl.SSLWantReadError:
                return False
            except ssl.SSLZeroReturnError:
                return True
            if not data:
                return True
            self.buf += data

    def replies(self, n):
        """The codes of the next n replies, reading the socket as much as needed."""
        out = []
        while len(out) < n:
            m = self.REPLY_RE.match(self.buf)
            if m:
                out.append(int(m.group(2)))
                self.buf = self.buf[m.end():]
                continue
            try:
                self.buf += self.tls.read(65536)
            except ssl.SSLWantReadError:
                self.flush()
                self.recv()
        return out


def tls_records(data):
    """The content types of the TLS records that data (whole records) holds."""
    types = []
    while data:
        assert len(data) >= 5, data
        types.append(data[0])
        data = data[5 + int.from_bytes(data[3:5], "big"):]
    return types


def reply_text(code, msg):
    """smtplib's (code, msg) as the last reply line, e.g. '250 2.0.0 Ok: queued as X'."""
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return f"{code} {msg.splitlines()[-1] if msg else ''}".rstrip()


def smtp_starttls(env, identity, helo="client.test"):
    """An smtplib session after STARTTLS and the second EHLO."""
    s = smtplib.SMTP("127.0.0.1", env.port, local_hostname=helo, timeout=15)
    try:
        code, _ = s.ehlo()
        assert code == 250
        s.starttls(context=client_context(env, identity))
        code, _ = s.ehlo()
        assert code == 250, f"EHLO after STARTTLS: {code}"
    except Exception:
        s.close()
        raise
    return s


def smtp_implicit_tls(env, identity, helo="client.test"):
    s = smtplib.SMTP_SSL("127.0.0.1", env.tls_port, local_hostname=helo, timeout=15,
                         context=client_context(env, identity))
    code, _ = s.ehlo()
    assert code == 250
    return s


def mail_reply(target, identity, sender=ALICE_ADDR):
    """STARTTLS with identity (or None: no certificate), EHLO, MAIL FROM:<sender>;
    returns the reply line. target is a Stack or an Env."""
    env = getattr(target, "env", target)
    s = smtp_starttls(env, identity)
    try:
        return reply_text(*s.mail(sender))
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            s.close()


def submit(s, msg):
    """MAIL, RCPT..., DATA on an open smtplib session; asserts the intermediate replies
    and returns the final reply line."""
    code, resp = s.mail(msg.mail_from)
    assert code == 250, f"MAIL FROM:<{msg.mail_from}> -> {reply_text(code, resp)}"
    for r in msg.rcpts:
        code, resp = s.rcpt(r)
        assert code == 250, f"RCPT TO:<{r}> -> {reply_text(code, resp)}"
    code, resp = s.data(msg.data)
    return reply_text(code, resp)


def queue_id(reply):
    m = ACCEPT_RE.match(reply)
    assert m, f"expected '250 2.0.0 Ok: queued as ID', got {reply!r}"
    return m.group(1)


def send_ok(env, identity, msg):
    """One whole STARTTLS session that submits msg; returns the queue id."""
    s = smtp_starttls(env, identity)
    try:
        return queue_id(submit(s, msg))
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            s.close()


class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines            # the texts after "NNN-" / "NNN "

    @property
    def last(self):
        return f"{self.code} {self.lines[-1]}".rstrip()

    def __str__(self):
        return self.last

    def __repr__(self):
        return f"Reply({self.code}, {self.lines!r})"


class RawSMTP:
    """A byte-level SMTP client: exact bytes out, exact replies in."""

    def __init__(self, env, implicit_tls_ctx=None, timeout=15):
        self.env = env
        port = env.tls_port if implicit_tls_ctx else env.port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if implicit_tls_ctx:
            self.sock = implicit_tls_ctx.wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data):
        self.sock.sendall(data)

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"server closed the connection (pending: {self.buf!r})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            line = self._line()
            assert re.match(r"^\d{3}[ -]", line) or re.match(r"^\d{3}$", line), f"malformed reply line {line!r}"
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return Reply(int(line[:3]), lines)

    def cmd(self, line):
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self, ctx):
        r = self.cmd("STARTTLS")
        assert r.code == 220, f"STARTTLS -> {r}"
        assert self.buf == b"", f"bytes after the STARTTLS reply: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock)
        return r

    def nothing_pending(self, wait=0.7):
        """True when the server sends nothing more within wait seconds."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(4096)
        except (socket.timeout, ssl.SSLWantReadError):
            return True
        finally:
            self.sock.settimeout(15)
        if data:
            self.buf += data
            return False
        return True          # closed: nothing pending either

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def raw_tls_session(env, identity, helo="client.test"):
    """A RawSMTP after EHLO, STARTTLS and the second EHLO."""
    c = RawSMTP(env)
    assert c.greeting.code == 220, f"greeting {c.greeting}"
    r = c.cmd(f"EHLO {helo}")
    assert r.code == 250, f"EHLO -> {r}"
    c.starttls(client_context(env, identity))
    r = c.cmd(f"EHLO {helo}")
    assert r.code == 250, f"EHLO after STARTTLS -> {r}"
    return c


def start_data(c, msg):
    """MAIL, RCPT and DATA on a raw session, up to the 354."""
    assert c.cmd(f"MAIL FROM:<{msg.mail_from}>").code == 250
    for r in msg.rcpts:
        assert c.cmd(f"RCPT TO:<{r}>").code == 250
    r = c.cmd("DATA")
    assert r.code == 354, str(r)


def relay_settled(env, timeout=15):
    """Waits until spool/queue is empty: every message committed so far has been
    relayed (or bounced, or deleted) and none waits for another attempt. A message
    that was refused before this point can then never be relayed later, so a check
    that it was not relayed needs no fixed sleep."""
    queue = env.dir / "spool" / "queue"
    left = []

    def empty():
        left[:] = sorted(p.name for p in queue.iterdir()) if queue.exists() else []
        return not left

    assert poll(empty, timeout, 0.1), f"spool/queue still holds {left} after {timeout} s"


def spool_files(env):
    """The files in spool/incoming and spool/queue: none once every message committed
    is relayed and every refused one removed."""
    spool = env.dir / "spool"
    return sorted(p.name for d in ("incoming", "queue") for p in (spool / d).iterdir())


def assert_not_relayed(stack, marker):
    """A message sent afterwards is relayed and every committed one has left the
    queue; the refused one (marker) never arrived, and no file of it is left in the
    spool."""
    probe = make_message()
    send_ok(stack.env, stack.alice, probe)
    stack.upstream.wait_for(probe.marker, probe.rcpts)
    relay_settled(stack.env)
    leaked = stack.upstream.matching(marker)
    assert not leaked, f"refused message was relayed: {leaked}"
    assert spool_files(stack.env) == [], f"files left in the spool: {spool_files(stack.env)}"


def assert_served(env, identity):
    """A fresh client is still served: connect, STARTTLS, valid certificate, MAIL -> 250."""
    s = smtp_starttls(env, identity)
    try:
        code, resp = s.mail(identity.email or ALICE_ADDR)
        assert code == 250, f"fresh client after the hostile case: MAIL -> {reply_text(code, resp)}"
        s.rset()
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            s.close()


# --------------------------------------------------------------------------------
# Whole stacks: env + PKI + upstream + daemon
# --------------------------------------------------------------------------------

class Stack:
    def __init__(self, env, upstream, daemon, alice):
        self.env = env
        self.upstream = upstream
        self.daemon = daemon
        self.alice = alice
        self.audit = Audit(env)

    def close(self, keep=False):
        try:
            self.daemon.stop()
        finally:
            self.upstream.stop()
        reports = self.daemon.sanitizer_reports()
        self.env.cleanup(keep or bool(reports))
        assert not reports, "sanitizer reports in the daemon log:\n" + "\n".join(reports[:20])


def build_stack(name, start_upstream=True, start_daemon=True, upstream_tls_context=None,
                **overrides):
    env = Env(name, **overrides)
    upstream = Upstream(env.upstream_port, upstream_tls_context)
    daemon = Daemon(env)
    try:
        env.init_pki()
        alice = env.issue(ALICE, ALICE_ADDR)
        env.admin("sender", "add", ALICE, ALICE_DOMAIN)
        if start_upstream:
            upstream.start()
        if start_daemon:
            daemon.start()
    except BaseException:
        daemon.stop()
        upstream.stop()
        env.cleanup(keep=True)
        raise
    return Stack(env, upstream, daemon, alice)


@pytest.fixture(scope="module")
def stack(request):
    failed_before = request.session.testsfailed
    s = build_stack(request.module.__name__.rsplit(".", 1)[-1])
    yield s
    s.close(keep=request.session.testsfailed > failed_before)


@pytest.fixture
def fresh_stack_factory(request):
    """Builds private stacks for tests that kill or reconfigure the daemon."""
    made = []
    failed_before = request.session.testsfailed

    def factory(name, **kw):
        s = build_stack(name, **kw)
        made.append(s)
        return s

    yield factory
    for s in made:
        s.close(keep=request.session.testsfailed > failed_before)


# --------------------------------------------------------------------------------
# The daemon's log next to every failure
# --------------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item._submitd_log_offsets = {id(d): d.log_size() for d in ALL_DAEMONS}


@pytest.fixture(autouse=True)
def no_sanitizer_reports(request):
    """Fails the test whose traffic made a sanitizer report in a daemon log."""
    offsets = {id(d): d.log_size() for d in ALL_DAEMONS}
    yield
    found = []
    for d in ALL_DAEMONS:
        found += d.sanitizer_reports(offsets.get(id(d), 0))
    if found:
        pytest.fail("sanitizer reports in the daemon log:\n" + "\n".join(found[:20]), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    rep.sections.append(("seed", f"SUBMITD_TEST_SEED={TEST_SEED} repeats this run's random choices"))
    offsets = getattr(item, "_submitd_log_offsets", {})
    for d in ALL_DAEMONS:
        start = offsets.get(id(d), 0)
        if d.log_size() > start:
            rep.sections.append((f"submitd log ({rep.when})", d.tail(offset=start)))


def pytest_report_header(config):
    return f"SUBMITD_TEST_SEED={TEST_SEED}"


def _skip_reason(rep):
    """The reason a skipped report gives, without pytest's "Skipped: " prefix."""
    longrepr = rep.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
    else:
        reason = str(longrepr or "no reason given")
    if reason.startswith("Skipped: "):
        reason = reason[len("Skipped: "):]
    return " ".join(reason.split()) or "no reason given"


def pytest_terminal_summary(terminalreporter):
    """One "SKIP <test id>: <reason>" line per skipped test (scripts/run-tests.sh
    collects them into the totals), and the seed of the run."""
    for rep in terminalreporter.stats.get("skipped", []):
        terminalreporter.write_line(f"SKIP {rep.nodeid}: {_skip_reason(rep)}")
    terminalreporter.write_line(f"seed: SUBMITD_TEST_SEED={TEST_SEED}")


def pytest_sessionfinish(session, exitstatus):
    for d in ALL_DAEMONS:
        if d.running() or d.alive_family():
            d.stop()


def pytest_configure(config):
    config.addinivalue_line("markers", "package: builds the Debian package (make deb) once "
                            "per module; about a minute")
