"""Thunderbird desktop against a real submitd, as docs/clients.md sets it up.

A real Thunderbird runs in an X server without a screen (Xvfb). Its profile is written
from scratch: alice's PKCS#12 imported into the profile's own certificate store (NSS),
our CA trusted for servers, one account with an outgoing server on the daemon's
STARTTLS port. Thunderbird opens a compose window from its command line (-compose) and
xdotool presses the Send shortcut (Ctrl+Return), so the message goes out through
Thunderbird's own SMTP code, which has no SASL EXTERNAL and presents the certificate in
the TLS handshake.

- "No authentication" (authMethod 1): the message arrives upstream, the accept row names
  alice and her certificate, and Thunderbird's SMTP log shows that it sent no AUTH.
- "Normal password" (authMethod 3, Thunderbird's default): Thunderbird refuses to send,
  because the server offers no password mechanism; nothing arrives. This is the failure
  docs/clients.md describes.

Run with `make test-clients` (scripts/install-client-deps.sh installs Thunderbird, Xvfb,
xdotool and the NSS tools). Screenshots and Thunderbird's logs of a failed case are kept
in its pytest temporary directory (the path is printed)."""

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from conftest import ALICE, ALICE_ADDR, P12_PASSWORD, contains, poll, unique_rcpt

TOOLS = {
    "thunderbird": "thunderbird",
    "Xvfb": "xvfb",
    "xdotool": "xdotool",
    "certutil": "libnss3-tools",
    "pk12util": "libnss3-tools",
}

# Thunderbird's values of mail.smtpserver.*.try_ssl and .authMethod (nsMsgSocketType,
# nsMsgAuthMethod).
STARTTLS = 2
AUTH_NONE = 1
AUTH_PASSWORD_CLEARTEXT = 3

SEND_TIMEOUT = 60


def need_tools():
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        pytest.skip(f"not installed: {' '.join(missing)} (scripts/install-client-deps.sh, "
                    "or make test-clients, installs them)")


def run(cmd, **kw):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=60, **kw)
    assert proc.returncode == 0, (f"`{' '.join(map(str, cmd))}` exited {proc.returncode}\n"
                                  f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


# --------------------------------------------------------------------------------
# The profile
# --------------------------------------------------------------------------------

def js_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def profile_prefs(env, auth_method):
    """user.js: one account whose identity is alice and whose outgoing server is the
    daemon's STARTTLS port, and no first-run dialog, wizard, update, telemetry or other
    network use."""
    prefs = {
        # The account: a POP3 server nobody checks (an identity needs an account) and
        # Local Folders.
        "mail.accountmanager.accounts": "account1,account2",
        "mail.accountmanager.defaultaccount": "account1",
        "mail.accountmanager.localfoldersserver": "server2",
        "mail.account.account1.identities": "id1",
        "mail.account.account1.server": "server1",
        "mail.account.account2.server": "server2",
        "mail.server.server1.type": "pop3",
        "mail.server.server1.hostname": "127.0.0.1",
        "mail.server.server1.port": 9,
        "mail.server.server1.userName": ALICE,
        "mail.server.server1.name": ALICE_ADDR,
        "mail.server.server1.login_at_startup": False,
        "mail.server.server1.check_new_mail": False,
        "mail.server.server1.download_on_biff": False,
        "mail.server.server2.type": "none",
        "mail.server.server2.hostname": "Local Folders",
        "mail.server.server2.userName": "nobody",
        "mail.server.server2.name": "Local Folders",
        "mail.identity.id1.fullName": "Alice",
        "mail.identity.id1.useremail": ALICE_ADDR,
        "mail.identity.id1.smtpServer": "smtp1",
        "mail.identity.id1.valid": True,
        "mail.identity.id1.compose_html": False,
        "mail.identity.id1.fcc": False,
        "mail.identity.id1.doBcc": False,
        # The outgoing server, as docs/clients.md sets it: STARTTLS, and the
        # authentication method of the case. The server's certificate is issued by our
        # CA for localhost and 127.0.0.1.
        "mail.smtpservers": "smtp1",
        "mail.smtp.defaultserver": "smtp1",
        "mail.smtpserver.smtp1.description": "submitd",
        "mail.smtpserver.smtp1.hostname": "127.0.0.1",
        "mail.smtpserver.smtp1.port": env.port,
        "mail.smtpserver.smtp1.try_ssl": STARTTLS,
        "mail.smtpserver.smtp1.authMethod": auth_method,
        "mail.smtpserver.smtp1.username": ALICE if auth_method != AUTH_NONE else "",
        # The client certificate: chosen without asking, as a user would by default.
        "security.default_personal_cert": "Select Automatically",
        # Thunderbird's SMTP log, on its standard output (console messages).
        "mailnews.smtp.loglevel": "All",
        "mailnews.send.loglevel": "All",
        "devtools.console.stdout.chrome": True,
        # Ctrl+Return sends without asking.
        "mail.warn_on_send_accel_key": False,
        # No first-run dialogs, account wizard, start page, donation or news pages.
        "mail.provider.suppress_dialog_on_startup": True,
        "mailnews.start_page.enabled": False,
        "mail.shell.checkDefaultClient": False,
        "mail.spotlight.firstRunDone": True,
        "mail.winsearch.firstRunDone": True,
        "mail.rights.override": True,
        "mail.inappnotifications.enabled": False,
        "app.donation.eoy.version.viewed": 999,
        "calendar.integration.notify": False,
        "mail.biff.play_sound": False,
        "mail.biff.show_alert": False,
        "mailnews.database.global.indexer.enabled": False,
        # No updates, telemetry, data reporting, remote settings, add-on checks.
        "app.update.disabledForTesting": True,
        "app.update.auto": False,
        "app.update.enabled": False,
        "app.normandy.enabled": False,
        "toolkit.telemetry.enabled": False,
        "toolkit.telemetry.unified": False,
        "toolkit.telemetry.archive.enabled": False,
        "toolkit.telemetry.server": "",
        "datareporting.policy.dataSubmissionEnabled": False,
        "datareporting.healthreport.uploadEnabled": False,
        "extensions.update.enabled": False,
        "extensions.getAddons.cache.enabled": False,
        "extensions.blocklist.enabled": False,
        "services.settings.server": "http://127.0.0.1:9/",
        "security.remote_settings.crlite_filters.enabled": False,
        "security.remote_settings.intermediates.enabled": False,
        "security.OCSP.enabled": 0,
        "browser.safebrowsing.malware.enabled": False,
        "browser.safebrowsing.phishing.enabled": False,
        "mail.phishing.detection.enabled": False,
        "mailnews.auto_config_url": "",
        "mailnews.mx_service_url": "",
        "dom.push.connection.enabled": False,
        "captivedetect.canonicalURL": "",
        "network.captive-portal-service.enabled": False,
        "network.connectivity-service.enabled": False,
        "geo.provider.network.url": "",
        "browser.region.network.url": "",
        "network.trr.mode": 5,
        "network.dns.disablePrefetch": True,
        # Whatever web request is left goes to a closed port on 127.0.0.1 (the SMTP
        # connection does not use an HTTP proxy).
        "network.proxy.type": 1,
        "network.proxy.http": "127.0.0.1",
        "network.proxy.http_port": 9,
        "network.proxy.ssl": "127.0.0.1",
        "network.proxy.ssl_port": 9,
        "network.proxy.no_proxies_on": "",
        "network.proxy.allow_hijacking_localhost": False,
    }
    return "".join(f"user_pref({js_value(k)}, {js_value(v)});\n" for k, v in prefs.items())


def make_profile(stack, directory, auth_method):
    """A Thunderbird profile with alice's certificate and key in its NSS database and
    our CA trusted to identify servers."""
    env = stack.env
    directory.mkdir(parents=True)
    db = f"sql:{directory}"
    run(["certutil", "-N", "-d", db, "--empty-password"])
    run(["pk12util", "-d", db, "-i", stack.alice.p12, "-W", P12_PASSWORD])
    run(["certutil", "-A", "-n", "submitd-ca", "-t", "C,,", "-i", env.ca_cert_path, "-d", db])
    listing = run(["certutil", "-L", "-d", db]).stdout
    assert "u,u,u" in listing, f"alice's key did not reach the profile:\n{listing}"
    (directory / "user.js").write_text(profile_prefs(env, auth_method))
    return directory


# --------------------------------------------------------------------------------
# Xvfb and Thunderbird
# --------------------------------------------------------------------------------

class Xvfb:
    """An X server without a screen on a display number it picks itself."""

    def __init__(self, logfile):
        r, w = os.pipe()
        with open(logfile, "ab") as log:
            self.proc = subprocess.Popen(
                ["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x1024x24",
                 "-nolisten", "tcp", "-noreset"],
                pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        os.close(w)
        number = b""
        deadline = time.monotonic() + 20
        with os.fdopen(r, "rb", buffering=0) as pipe:
            while not number.endswith(b"\n") and time.monotonic() < deadline:
                chunk = pipe.read(16)
                if not chunk:
                    break
                number += chunk
        if not number.strip():
            self.stop()
            raise AssertionError(f"Xvfb did not start; see {logfile}")
        self.display = f":{int(number)}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Thunderbird:
    """One Thunderbird with its own profile, X display, home directory and logs."""

    def __init__(self, stack, workdir, auth_method):
        self.dir = workdir
        self.profile = make_profile(stack, workdir / "profile", auth_method)
        self.home = workdir / "home"
        self.home.mkdir()
        self.console = workdir / "thunderbird-console.log"
        self.mozlog = workdir / "thunderbird-moz.log"
        self.xvfb = Xvfb(workdir / "xvfb.log")
        self.proc = None
        self.shots = 0

    def environ(self):
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        env.update({
            "DISPLAY": self.xvfb.display,
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "TMPDIR": str(self.dir),
            "MOZ_CRASHREPORTER_DISABLE": "1",
            "MOZ_DISABLE_AUTO_SAFE_MODE": "1",
            "MOZ_LOG": "timestamp,pipnss:4",
            "MOZ_LOG_FILE": str(self.mozlog),
        })
        return env

    def compose(self, to, subject, body):
        """Starts Thunderbird with a compose window filled in from the command line."""
        spec = f"to='{to}',subject='{subject}',body='{body}',from='{ALICE_ADDR}'"
        with open(self.console, "ab") as out:
            self.proc = subprocess.Popen(
                ["thunderbird", "-profile", str(self.profile), "-no-remote", "-compose", spec],
                env=self.environ(), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)

    def xdotool(self, *args, check=True):
        proc = subprocess.run(["xdotool", *map(str, args)], capture_output=True, text=True,
                              timeout=30, env={**self.environ()})
        if check and proc.returncode != 0:
            raise AssertionError(f"xdotool {' '.join(map(str, args))} exited "
                                 f"{proc.returncode}: {proc.stderr}")
        return proc

    def windows(self, title_re):
        proc = self.xdotool("search", "--onlyvisible", "--name", title_re, check=False)
        return proc.stdout.split()

    def wait_window(self, title_re, timeout=SEND_TIMEOUT):
        found = poll(lambda: self.windows(title_re), timeout, 0.5)
        if not found:
            names = []
            for w in self.xdotool("search", "--onlyvisible", "--name", ".", check=False).stdout.split():
                names.append(self.xdotool("getwindowname", w, check=False).stdout.strip())
            raise AssertionError(f"no window named /{title_re}/ within {timeout}s; "
                                 f"visible windows: {names}\n{self.log_tail()}")
        return found[0]

    def press_send(self, window):
        """Ctrl+Return in the compose window (there is no window manager: the window
        gets the focus directly)."""
        self.xdotool("windowfocus", "--sync", window, check=False)
        self.xdotool("key", "--clearmodifiers", "ctrl+Return")

    def log(self):
        """Thunderbird's standard output (its console, where the SMTP and send logs
        go) and the MOZ_LOG files (NSS: the TLS handshake and the client certificate)."""
        text = ""
        for path in [self.console, *sorted(self.dir.glob(self.mozlog.name + "*"))]:
            try:
                text += path.read_text(errors="replace")
            except OSError:
                pass
        return text

    def smtp_log(self):
        """The lines of the SMTP client and of the send process that drives it."""
        return "\n".join(line for line in self.log().splitlines()
                         if "mailnews.smtp" in line or "mailnews.send" in line)

    def log_tail(self, lines=60):
        return "---- Thunderbird SMTP log ----\n" + "\n".join(
            self.smtp_log().splitlines()[-lines:])

    def wait_log(self, *words, timeout=SEND_TIMEOUT):
        return poll(lambda: any(w in self.smtp_log() for w in words), timeout, 0.5)

    def screenshot(self, name, window=None):
        """The whole screen, or one window (a dialog drawn over a window the screen
        shows black without a compositor); an .xwd file, or .png with ImageMagick."""
        self.shots += 1
        xwd = self.dir / f"screen-{self.shots:02d}-{name}.xwd"
        which = ["-id", str(window)] if window else ["-root"]
        subprocess.run(["xwd", *which, "-silent", "-display", self.xvfb.display, "-out", str(xwd)],
                       capture_output=True, timeout=30)
        if xwd.exists() and shutil.which("convert"):
            png = xwd.with_suffix(".png")
            subprocess.run(["convert", f"xwd:{xwd}", str(png)], capture_output=True, timeout=60)
            if png.exists():
                xwd.unlink()
                return png
        return xwd

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.xvfb.stop()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            shot = self.screenshot("failure")
            print(f"\nThunderbird case failed; screenshot {shot}, profile and logs in {self.dir}")
            print(self.log_tail(200))
        self.stop()
        return False


@pytest.fixture
def thunderbird(stack, tmp_path):
    need_tools()
    made = []

    def start(name, auth_method):
        tb = Thunderbird(stack, tmp_path / name, auth_method)
        made.append(tb)
        return tb

    yield start
    for tb in made:
        tb.stop()


def send_from_compose(tb, marker, rcpt):
    """Opens the compose window for a message to rcpt with marker as its subject and
    body, and presses Send until Thunderbird starts an SMTP session (a key pressed
    before the window is ready is lost)."""
    tb.compose(rcpt, marker, f"{marker} sent by Thunderbird")
    window = tb.wait_window(f"^Write: {marker}")
    time.sleep(2)
    for _ in range(4):
        tb.press_send(window)
        if tb.wait_log("Connecting to smtp://", timeout=15):
            return
    raise AssertionError(f"Thunderbird did not start sending after Ctrl+Return\n{tb.log_tail()}")


# --------------------------------------------------------------------------------
# The cases
# --------------------------------------------------------------------------------

def test_no_authentication_sends_with_the_certificate(stack, thunderbird):
    marker = f"tb-{uuid.uuid4().hex[:16]}"
    rcpt = unique_rcpt("tb")
    mark = stack.audit.mark()
    with thunderbird("no-auth", AUTH_NONE) as tb:
        send_from_compose(tb, marker, rcpt)
        arrivals = stack.upstream.wait_for(marker.encode(), [rcpt], timeout=SEND_TIMEOUT)
        assert arrivals[0].mail_from == ALICE_ADDR
        assert b"Thunderbird" in arrivals[0].content, arrivals[0].content[:1000]

        row = stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept"
                               and contains(r["rcpt"], rcpt), mark, timeout=10,
                               what="accept row of Thunderbird's message")
        assert row["user"] == ALICE, row
        assert row["cert_sha256"] == stack.alice.sha256, row
        assert row["mail_from"] == ALICE_ADDR, row
        assert not [r for r in stack.audit.rows(mark) if r["event"] == "auth"], \
            "an AUTH was audited for a session without AUTH"

        # Thunderbird's own view of the session: STARTTLS, then the mail, no AUTH.
        assert tb.wait_log("C: MAIL FROM", timeout=10), tb.log_tail()
        log = tb.smtp_log()
        assert "C: STARTTLS" in log, tb.log_tail()
        assert "C: AUTH" not in log, f"Thunderbird sent an AUTH command\n{tb.log_tail()}"


def test_normal_password_is_refused_by_thunderbird(stack, thunderbird):
    """Thunderbird's default authentication method: it finds no password mechanism on
    the server and refuses to send (docs/clients.md)."""
    marker = f"tb-{uuid.uuid4().hex[:16]}"
    rcpt = unique_rcpt("tb")
    mark = stack.audit.mark()
    with thunderbird("password", AUTH_PASSWORD_CLEARTEXT) as tb:
        send_from_compose(tb, marker, rcpt)
        assert tb.wait_log("Authentication failed", timeout=SEND_TIMEOUT), \
            f"Thunderbird did not report the missing authentication method\n{tb.log_tail()}"
        log = tb.smtp_log()
        assert "No available auth method" in log, tb.log_tail()
        assert "does not support the selected authentication method" in log, tb.log_tail()
        assert "C: AUTH" not in log, f"Thunderbird sent an AUTH command\n{tb.log_tail()}"
        assert "C: MAIL FROM" not in log, tb.log_tail()
        # The user sees it as an error dialog (kept as a screenshot).
        dialog = tb.wait_window("^Send Message Error$", timeout=20)
        time.sleep(1)
        tb.screenshot("refused")
        tb.screenshot("refused-dialog", dialog)

        time.sleep(3)
        assert not stack.upstream.matching(marker.encode()), "the message arrived upstream"
        assert not [r for r in stack.audit.rows(mark)
                    if r["event"] == "submission" and r["decision"] == "accept"], \
            "a submission was accepted"
