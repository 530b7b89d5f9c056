"""The Debian package and the source install (DESIGN §11): `make deb` builds the .deb
from debian/, whose paths, modes, conffiles and maintainer scripts are read back with
dpkg-deb (never installed on this machine: dpkg -x only); lintian has no error; the
units' `systemd-analyze security` exposure is held at 3.0 or less; `make install`
lays out the same files; submitd.conf(5) documents every key the parser knows.

The package is built once for the module (about 30 s)."""

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.package

ROOT = Path(__file__).resolve().parents[2]
VERSION = (ROOT / "VERSION").read_text().strip()
UNIT = ROOT / "conf" / "submitd.service"
CRL_UNIT = ROOT / "conf" / "submitd-crl.service"
STATS_UNIT = ROOT / "conf" / "submitd-stats.service"
MAX_EXPOSURE = 3.0

# Files other than the package's own bookkeeping, with their mode and owner in the .deb.
EXPECTED = {
    "usr/sbin/submitd": "-rwxr-xr-x",
    "usr/sbin/submit-ca": "-rwxr-xr-x",
    "usr/sbin/submit-admin": "-rwxr-xr-x",
    "usr/libexec/submitd/submitd-smtp": "-rwxr-xr-x",
    "usr/libexec/submitd/submitd-authz": "-rwxr-xr-x",
    "usr/libexec/submitd/submitd-queue": "-rwxr-xr-x",
    "etc/submitd/submitd.conf": "-rw-r-----",
    "etc/pam.d/submitd": "-rw-r--r--",
    "etc/fail2ban/filter.d/submitd.conf": "-rw-r--r--",
    "lib/systemd/system/submitd.service": "-rw-r--r--",
    "lib/systemd/system/submitd-crl.service": "-rw-r--r--",
    "lib/systemd/system/submitd-crl.timer": "-rw-r--r--",
    "lib/systemd/system/submitd-stats.service": "-rw-r--r--",
    "lib/systemd/system/submitd-stats.timer": "-rw-r--r--",
    "usr/share/man/man5/submitd.conf.5": "-rw-r--r--",
    "usr/share/man/man8/submitd.8": "-rw-r--r--",
    "usr/share/man/man8/submit-ca.8": "-rw-r--r--",
    "usr/share/man/man8/submit-admin.8": "-rw-r--r--",
    "usr/share/doc/submitd/examples/submitd.local.example": "-rw-r--r--",
    # root's 0700 in the package; postinst gives the spool to submitd
    "var/lib/submitd/": "drwx------",
    "var/spool/submitd/": "drwx------",
    "etc/submitd/": "drwxr-xr-x",
}
# dh's own files, not laid out by make install
PACKAGING_ONLY = {"usr/share/doc/submitd/changelog.gz", "usr/share/doc/submitd/copyright",
                  "usr/share/lintian/overrides/submitd"}
STATE_DIRS = ("var/lib/submitd/", "var/spool/submitd/")


def run(*cmd, cwd=ROOT, timeout=300, check=True, env=None):
    p = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {p.returncode}:\n{p.stdout[-4000:]}"
                    f"\n{p.stderr[-4000:]}", pytrace=False)
    return p


def need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (apt-get install debhelper dpkg-dev "
                    "lintian systemd)")


@pytest.fixture(scope="module")
def deb():
    need("dpkg-buildpackage", "dh", "dpkg-deb")
    run("make", "--no-print-directory", "deb", timeout=600)
    path = ROOT / "build" / f"submitd_{VERSION}_amd64.deb"
    assert path.is_file(), f"make deb did not produce {path}"
    return path


def deb_entries(deb):
    """{path without ./ and .gz: (mode string, owner)} from dpkg-deb -c."""
    out = run("dpkg-deb", "-c", deb).stdout
    entries = {}
    for line in out.splitlines():
        f = line.split()
        mode, owner, name = f[0], f[1], f[-1]
        if name == "./":
            continue
        name = name[2:] if name.startswith("./") else name
        if name.startswith("usr/share/man/") and name.endswith(".gz"):
            name = name[:-3]
        entries[name] = (mode, owner)
    return entries


def control_file(deb, name):
    return run("dpkg-deb", "--info", deb, name).stdout


@pytest.fixture(scope="module")
def extracted(deb, tmp_path_factory):
    d = tmp_path_factory.mktemp("deb-x")
    run("dpkg", "-x", deb, d)
    return d


def test_deb_has_the_layout_modes_and_owners(deb):
    entries = deb_entries(deb)
    wrong = {p: (entries.get(p), m) for p, m in EXPECTED.items()
             if p not in entries or entries[p][0] != m}
    assert not wrong, f"path: (in the .deb, expected mode): {wrong}"
    not_root = {p: o for p, (_, o) in entries.items() if o != "root/root"}
    assert not not_root, f"files not root's in the .deb: {not_root}"
    # Nothing else but directories and dh's bookkeeping.
    files = {p for p, (m, _) in entries.items() if not m.startswith("d")}
    extra = files - set(EXPECTED) - PACKAGING_ONLY
    assert not extra, f"unexpected files in the .deb: {sorted(extra)}"
    # The daemon finds its workers at <dir of its binary>/../libexec/submitd.
    assert "usr/libexec/submitd/" in entries and "usr/sbin/" in entries


def test_deb_control_conffiles_and_dependencies(deb):
    fields = control_file(deb, "control")
    assert re.search(rf"^Version: {re.escape(VERSION)}$", fields, re.M), fields
    assert re.search(r"^Architecture: amd64$", fields, re.M), fields
    depends = re.search(r"^Depends: (.*)$", fields, re.M).group(1)
    for lib in ("adduser", "libssl3", "libsqlite3-0", "libpam0g"):
        assert lib in depends, f"Depends lacks {lib}: {depends}"
    conffiles = set(control_file(deb, "conffiles").split())
    assert {"/etc/submitd/submitd.conf", "/etc/pam.d/submitd",
            "/etc/fail2ban/filter.d/submitd.conf"} <= conffiles, conffiles


def test_postinst_creates_users_and_state_directories(deb):
    script = control_file(deb, "postinst")
    for user in ("submitd", "submitd-smtp"):
        assert "for u in submitd submitd-smtp" in script
    assert "adduser --system" in script
    assert "chown submitd:submitd /var/spool/submitd" in script
    assert "chmod 0700 /var/spool/submitd" in script
    assert "chown root:root /var/lib/submitd" in script
    assert "chmod 0700 /var/lib/submitd" in script
    # The service is not started by dpkg (no CA, no upstream yet); the CRL timer is.
    assert "deb-systemd-invoke $_dh_action 'submitd-crl.timer'" in script
    assert "deb-systemd-invoke $_dh_action 'submitd.service'" not in script
    run("sh", "-n", "-c", script)


def test_postrm_removes_state_on_purge_only(deb, tmp_path):
    script = control_file(deb, "postrm")
    run("sh", "-n", "-c", script)
    # Run it with the state directories moved into a scratch root: only purge empties it.
    fake = script.replace("/var/lib/submitd", str(tmp_path / "lib")).replace(
        "/var/spool/submitd", str(tmp_path / "spool"))
    fake = re.sub(r"# Automatically added by dh_.*?# End automatically added section\n", "",
                  fake, flags=re.S)
    for action in ("remove", "upgrade", "purge"):
        for d in ("lib", "spool"):
            (tmp_path / d).mkdir(exist_ok=True)
            (tmp_path / d / "keep").write_text("x")
        run("sh", "-c", fake, "postrm", action)
        left = all((tmp_path / d / "keep").exists() for d in ("lib", "spool"))
        assert left == (action != "purge"), f"postrm {action}: state left: {left}"


def test_extracted_daemon_finds_its_workers_and_names_the_placeholder(extracted, tmp_path):
    submitd = extracted / "usr/sbin/submitd"
    conf = extracted / "etc/submitd/submitd.conf"
    assert run(submitd, "--version").stdout.strip() == f"submitd {VERSION}"
    p = run(submitd, "-c", conf, "-t", check=False)
    assert p.returncode == 1
    assert "upstream: required key is not set" in p.stderr, p.stderr
    assert "libexec" not in p.stderr and "submitd-smtp:" not in p.stderr, p.stderr
    # Without the workers next to it, -t says so: the check above could fail.
    moved = extracted / "usr/libexec/submitd.away"
    (extracted / "usr/libexec/submitd").rename(moved)
    try:
        p = run(submitd, "-c", conf, "-t", check=False)
    finally:
        moved.rename(extracted / "usr/libexec/submitd")
    assert p.returncode == 1 and "submitd-smtp" in p.stderr, p.stderr


def test_packaged_configuration_values(extracted):
    text = (extracted / "etc/submitd/submitd.conf").read_text()
    settings = dict(re.findall(r"^(\w+) = (.*)$", text, re.M))
    assert settings["database"] == "/var/lib/submitd/submitd.db"
    assert settings["spool"] == "/var/spool/submitd"
    assert settings["user"] == "submitd"
    assert settings["smtp_user"] == "submitd-smtp"
    assert settings["ca_dir"] == "/etc/submitd/ca"
    assert settings["client_ca"] == "/etc/submitd/ca/ca.crt"
    assert settings["crl"] == "/etc/submitd/ca/crl.pem"
    assert "upstream" not in settings and re.search(r"^#upstream = ", text, re.M)


def test_lintian_has_no_error(deb):
    need("lintian")
    p = run("lintian", "--fail-on", "error,warning", deb, check=False, timeout=180)
    tags = [l for l in p.stdout.splitlines() if re.match(r"[EW]: ", l)]
    assert p.returncode == 0 and not tags, (
        "lintian errors or warnings not explained in debian/submitd.lintian-overrides:\n"
        + p.stdout + p.stderr)


def exposure(unit):
    need("systemd-analyze")
    p = run("systemd-analyze", "security", "--offline=true", "--no-pager", unit, check=False)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
    assert m, f"no exposure figure in:\n{p.stdout[-2000:]}\n{p.stderr}"
    return float(m.group(1))


@pytest.mark.parametrize("unit", [UNIT, CRL_UNIT, STATS_UNIT], ids=lambda u: u.name)
def test_unit_exposure_at_most_3(unit):
    level = exposure(unit)
    print(f"{unit.name}: overall exposure {level}")
    assert level <= MAX_EXPOSURE, f"{unit.name}: exposure {level} > {MAX_EXPOSURE}"


def unit_settings(path):
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^(\w+)=(.*)$", line)
        if m:
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


def test_unit_runs_the_packaged_daemon_confined():
    s = unit_settings(UNIT)
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["ExecStartPre"] == "/usr/sbin/submitd -c /etc/submitd/submitd.conf -t"
    assert one["ExecStart"] == "/usr/sbin/submitd -f -c /etc/submitd/submitd.conf"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["ProtectSystem"] == "strict"
    assert one["ReadWritePaths"].split() == ["/var/spool/submitd", "/var/lib/submitd"]
    assert set(one["CapabilityBoundingSet"].split()) == {
        "CAP_NET_BIND_SERVICE", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER",
        "CAP_DAC_OVERRIDE", "CAP_KILL"}
    assert one["NoNewPrivileges"] == "yes" and one["UMask"] == "0077"
    assert one["LimitNOFILE"] == "20000"
    assert one["RestrictAddressFamilies"].split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert one["SystemCallFilter"] == "@system-service"
    # The paths the unit may write are the packaged configuration's.
    conf = dict(re.findall(r"^(\w+) = (.*)$", (ROOT / "conf/submitd.conf").read_text(), re.M))
    assert os.path.dirname(conf["database"]) in one["ReadWritePaths"].split()
    assert conf["spool"] in one["ReadWritePaths"].split()
    timer = unit_settings(ROOT / "conf/submitd-crl.timer")
    assert timer["OnCalendar"] == ["daily"] and timer["Persistent"] == ["true"]
    crl = unit_settings(CRL_UNIT)
    assert crl["ExecStart"] == ["/usr/sbin/submit-ca -c /etc/submitd/submitd.conf crl"]
    assert crl["Type"] == ["oneshot"]
    stats = unit_settings(STATS_UNIT)
    assert "submit-admin -c /etc/submitd/submitd.conf stats --prometheus" in stats["ExecStart"][0]
    assert "/var/lib/prometheus/node-exporter/submitd.prom" in stats["ExecStart"][0]
    assert unit_settings(ROOT / "conf/submitd-stats.timer")["OnUnitActiveSec"] == ["1min"]


def test_make_install_lays_out_the_same_files(deb, tmp_path):
    dest = tmp_path / "root"
    run("make", "--no-print-directory", "install", f"DESTDIR={dest}", "PREFIX=/usr")
    installed = {}
    for p in dest.rglob("*"):
        rel = p.relative_to(dest).as_posix()
        if p.is_dir():
            if rel + "/" not in STATE_DIRS:
                continue
            rel += "/"
        installed[rel] = stat.filemode(p.stat().st_mode)
    packaged = {p: m for p, (m, _) in deb_entries(deb).items()
                if not m.startswith("d") or p in STATE_DIRS}
    packaged = {p: m for p, m in packaged.items() if p not in PACKAGING_ONLY}
    assert installed == packaged
    # The units name the binaries under PREFIX.
    run("make", "--no-print-directory", "install", f"DESTDIR={tmp_path / 'local'}",
        "PREFIX=/usr/local")
    unit = (tmp_path / "local/etc/systemd/system/submitd.service").read_text()
    assert "ExecStart=/usr/local/sbin/submitd -f" in unit and "/usr/sbin/" not in unit
    assert (tmp_path / "local/usr/local/libexec/submitd/submitd-authz").is_file()


def config_keys():
    src = (ROOT / "submitd/lib/config.c").read_text()
    table = src[src.index("static const struct key_def keys[]"):]
    table = table[:table.index("};")]
    keys = re.findall(r"(?:STR|INT|BOOL|DURATION)\((\w+)", table)
    keys += re.findall(r'\{ "(\w+)"', table)
    assert len(keys) >= 35, keys
    return keys


def test_man_page_documents_every_configuration_key():
    page = (ROOT / "man/submitd.conf.5").read_text()
    documented = set()
    for line in page.splitlines():
        if line.startswith((".B ", ".BR ")):
            documented |= set(re.findall(r"[a-z_]+", line.split(" ", 1)[1].split('"')[0]))
            documented |= set(re.findall(r'" ([a-z_]+)', line))
    missing = [k for k in config_keys() if k not in documented]
    assert not missing, f"submitd.conf(5) lacks: {missing}"
