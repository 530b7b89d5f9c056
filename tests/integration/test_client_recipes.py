"""The client recipes of docs/clients.md, run exactly as the document shows them.

Each recipe is the code block after a `<!-- recipe: NAME -->` marker. The test gives
the client a home directory of its own with the PEM files in ~/.certs, as the document
assumes, and changes only the example server, port and recipient; the message must
arrive upstream and the accept row must name alice and her certificate. msmtp without
`user` is the documented failure: refused with 501 and audited."""

import os
import re
import shlex
import shutil
import subprocess

import pytest

from conftest import ALICE, ROOT, contains, make_message

DOC = ROOT / "docs" / "clients.md"
DOC_HOST = "mail.example.com"
DOC_RCPT = "bob@example.net"


def need(tool):
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (scripts/install-deps.sh installs it)")
    return path


def recipe(name):
    """The text of the code block after <!-- recipe: name --> in the document."""
    m = re.search(r"<!-- recipe: " + re.escape(name) + r" -->\n```[a-z]*\n(.*?)```",
                  DOC.read_text(), re.S)
    assert m, f"{DOC}: no code block after <!-- recipe: {name} -->"
    return m.group(1)


def localise(text, stack, rcpt):
    """The recipe for this test's server: its port and a recipient the test can find."""
    env = stack.env
    text = text.replace(f"smtp://{DOC_HOST}:587", f"smtp://127.0.0.1:{env.port}")
    text = re.sub(r"(--port |^port )587\b", lambda m: f"{m.group(1)}{env.port}", text, flags=re.M)
    return text.replace(DOC_HOST, "127.0.0.1").replace(DOC_RCPT, rcpt)


def client_home(stack, name):
    """A home directory as the document assumes it: the PEM files in ~/.certs."""
    home = stack.env.dir / f"home-{name}"
    certs = home / ".certs"
    certs.mkdir(parents=True)
    shutil.copy(stack.alice.crt, certs / "alice.crt")
    shutil.copy(stack.alice.key, certs / "alice.key")
    shutil.copy(stack.env.ca_cert_path, certs / "ca.crt")
    return home


def run_command(text, home, stdin=None):
    """One shell command of the document, without a shell: ~ is the client's home and
    "< FILE" its input."""
    args = shlex.split(text.replace("\\\n", " "))
    if "<" in args:
        i = args.index("<")
        stdin = (home / args[i + 1]).read_bytes()
        del args[i:i + 2]
    args = [str(home) + a[1:] if a.startswith("~/") else a for a in args]
    env = dict(os.environ, HOME=str(home))
    return subprocess.run(args, input=stdin, capture_output=True, cwd=home, env=env,
                          timeout=60)


def check_arrived(stack, msg, proc, mark):
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{out}"
    stack.upstream.wait_for(msg.marker, msg.rcpts)
    row = stack.audit.wait(lambda r: r["event"] == "submission" and r["decision"] == "accept"
                           and contains(r["rcpt"], msg.rcpts[0]), mark, what="accept row")
    assert row["user"] == ALICE and row["cert_sha256"] == stack.alice.sha256, row
    return out


def write_message(home, msg):
    (home / "message.eml").write_bytes(msg.data)


def test_swaks_recipe(stack):
    need("swaks")
    home = client_home(stack, "swaks")
    msg = make_message()
    write_message(home, msg)
    mark = stack.audit.mark()
    proc = run_command(localise(recipe("swaks"), stack, msg.rcpts[0]), home)
    out = check_arrived(stack, msg, proc, mark)
    assert "AUTH" not in re.findall(r"^ -> (\S+)", out, re.M), out


def test_curl_recipe(stack):
    need("curl")
    home = client_home(stack, "curl")
    msg = make_message()
    write_message(home, msg)
    mark = stack.audit.mark()
    proc = run_command(localise(recipe("curl"), stack, msg.rcpts[0]), home)
    check_arrived(stack, msg, proc, mark)


def write_msmtprc(stack, home, text):
    rc = home / ".msmtprc"
    rc.write_text(localise(text, stack, DOC_RCPT))
    rc.chmod(0o600)


def test_msmtp_recipe_with_auth_external_and_user(stack):
    need("msmtp")
    home = client_home(stack, "msmtp")
    write_msmtprc(stack, home, recipe("msmtprc"))
    msg = make_message()
    write_message(home, msg)
    mark = stack.audit.mark()
    proc = run_command(recipe("msmtp"), home)
    check_arrived(stack, msg, proc, mark)
    row = stack.audit.wait(lambda r: r["event"] == "auth" and r["decision"] == "accept", mark,
                           what="AUTH EXTERNAL accept row")
    assert contains(row["reason"], "alice@example.com is an address the user owns"), row


def test_msmtp_without_user_is_refused_and_audited(stack):
    """The failure the document warns about: no response after the 334."""
    need("msmtp")
    home = client_home(stack, "msmtp-nouser")
    text = recipe("msmtprc")
    assert re.search(r"^user .*\n", text, re.M)
    write_msmtprc(stack, home, re.sub(r"^user .*\n", "", text, flags=re.M))
    msg = make_message()
    write_message(home, msg)
    mark = stack.audit.mark()
    proc = run_command(recipe("msmtp"), home)
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
    assert proc.returncode != 0, out
    assert "501 5.5.2 Cannot decode response" in out, out
    row = stack.audit.wait(lambda r: r["event"] == "auth" and r["decision"] == "reject", mark,
                           what="refused AUTH EXTERNAL row")
    assert contains(row["reason"], "AUTH EXTERNAL response is not valid base64 but an SMTP command"), row
    assert row["user"] == ALICE, row
    assert not stack.upstream.matching(msg.marker)
