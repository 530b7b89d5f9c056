"""The Debian package and the source install (DESIGN §11): `make deb` builds the .deb
from debian/, whose paths, modes, conffiles and maintainer scripts are read back with
dpkg-deb; lintian has no error; the units' `systemd-analyze security` exposure is held
at 3.0 or less; `make install` lays out the same files; submitd.conf(5) documents every
key the parser knows.

The last tests install the package into this machine with `dpkg -i` (as root; they are
skipped when submitd is already installed or any of its files exists), check the
installed layout, users and state directories, run the installed daemon on loopback,
then remove, reinstall and purge it. Whatever happens, the machine is left as it was
found: the package is purged and users it created are deleted again.

The package is built once for the module (about 30 s)."""

import fcntl
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import time
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


def test_copyright_is_machine_readable_and_isc(extracted):
    text = (extracted / "usr/share/doc/submitd/copyright").read_text()
    assert text.startswith("Format: https://www.debian.org/doc/packaging-manuals/"
                           "copyright-format/1.0/\n"), text[:200]
    assert re.search(r"^Files: \*\nCopyright: 2026 The submitd authors\nLicense: ISC$",
                     text, re.M), text
    # The stand-alone License paragraph carries the same text as the tree's LICENSE.
    body = text.split("\nLicense: ISC\n", 2)[-1]
    unindented = "\n".join(line[1:] if line != " ." else "" for line in body.splitlines())
    license_text = (ROOT / "LICENSE").read_text()
    assert unindented.strip() in license_text
    assert "Permission to use, copy, modify, and/or distribute" in unindented


# --------------------------------------------------------------------------------
# Installed into this machine with dpkg
# --------------------------------------------------------------------------------

# Two checkouts running this module at once would fight over dpkg and the paths.
INSTALL_LOCK = Path("/run/lock/submitd-package-test.lock")
USERS = ("submitd", "submitd-smtp")
STATE = {"/var/lib/submitd": ("root", "root", 0o700),
         "/var/spool/submitd": ("submitd", "submitd", 0o700)}
UNIT_NAMES = ("submitd.service", "submitd-crl.service", "submitd-crl.timer",
              "submitd-stats.service", "submitd-stats.timer")
# Where deb-systemd-helper records enabled units (the postinst enables the timers).
SYSTEMD_STATE = ("/etc/systemd/system", "/var/lib/systemd/deb-systemd-helper-enabled",
                 "/var/lib/systemd/deb-systemd-helper-masked")


def dpkg(*args, check=True):
    """dpkg ARGS, waiting while another dpkg or apt holds its lock."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    deadline = time.monotonic() + 300
    while True:
        p = subprocess.run(["dpkg", *map(str, args)], capture_output=True, text=True,
                           timeout=300, env=env, stdin=subprocess.DEVNULL)
        if p.returncode == 0 or "lock" not in p.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    if check and p.returncode != 0:
        pytest.fail(f"dpkg {' '.join(map(str, args))} exited {p.returncode}:\n"
                    f"{p.stdout[-4000:]}\n{p.stderr[-4000:]}", pytrace=False)
    return p


def package_status():
    """dpkg's status of submitd: "install ok installed", "deinstall ok config-files", or
    "not-installed" (never installed, or purged)."""
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "submitd"], capture_output=True,
                       text=True)
    status = p.stdout.strip()
    return status if p.returncode == 0 and not status.endswith("not-installed") \
        else "not-installed"


def systemd_state():
    """Every path about submitd in systemd's and deb-systemd-helper's directories."""
    found = set()
    for top in SYSTEMD_STATE:
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                if "submitd" in name:
                    found.add(os.path.join(dirpath, name))
    return found


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def owner_and_mode(path):
    st = os.stat(path)
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


@pytest.fixture(scope="module")
def installed(deb):
    """dpkg -i of the package into this machine. Afterwards (pass or fail) it is purged,
    the paths it used are gone, and the users it created (those not here before) are
    deleted: Debian's postrm keeps system users on purge, as files elsewhere may still
    be theirs, but the test leaves the machine as it found it."""
    need("dpkg", "dpkg-query")
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    INSTALL_LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = open(INSTALL_LOCK, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        status = package_status()
        if status != "not-installed":
            pytest.skip(f"submitd is already on this machine ({status}): not replacing it")
        # The package's files and its own directories; any of them already here would be
        # someone's, and the purge at the end would take it.
        shipped = ["/" + p + (".gz" if p.startswith("usr/share/man/") else "")
                   for p, (m, _) in deb_entries(deb).items() if not m.startswith("d")]
        shipped += ["/etc/submitd", "/usr/libexec/submitd", *STATE]
        present = [p for p in shipped if os.path.lexists(p)]
        if present:
            pytest.skip(f"files of the package exist on this machine: {present[:5]}")
        before = {"users": {u for u in USERS if user_exists(u)}, "systemd": systemd_state()}
        try:
            p = dpkg("-i", deb)
            print(p.stdout + p.stderr)
            yield before
        finally:
            dpkg("--purge", "submitd", check=False)
            for p in ("/etc/submitd", *STATE):
                shutil.rmtree(p, ignore_errors=True)
            for u in USERS:
                if u in before["users"]:
                    continue
                if user_exists(u):
                    subprocess.run(["deluser", "--system", "--quiet", u], check=False,
                                   capture_output=True)
                subprocess.run(["delgroup", "--system", "--quiet", u], check=False,
                               capture_output=True)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def test_dpkg_installs_the_layout_users_and_state_directories(installed):
    assert package_status() == "install ok installed"
    wrong = {}
    for rel, mode in EXPECTED.items():
        path = "/" + rel.rstrip("/")
        if rel.startswith("usr/share/man/"):
            path += ".gz"                         # dh_installman compresses them
        if rel in STATE_DIRS:
            continue                              # their owners are postinst's: below
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            wrong[path] = "missing"
            continue
        if stat.filemode(st.st_mode) != mode or (st.st_uid, st.st_gid) != (0, 0):
            wrong[path] = f"{stat.filemode(st.st_mode)} {st.st_uid}:{st.st_gid}, not {mode} root"
    assert not wrong, wrong
    assert os.access("/usr/libexec/submitd/submitd-authz", os.X_OK)
    conffiles = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "submitd"],
                               capture_output=True, text=True).stdout
    assert re.search(r"^ /etc/submitd/submitd\.conf [0-9a-f]{32}$", conffiles, re.M), conffiles
    # Every file as shipped (dpkg --verify compares the checksums).
    verify = dpkg("--verify", "submitd", check=False)
    assert verify.returncode == 0 and not verify.stdout.strip(), verify.stdout + verify.stderr

    # System users without a login shell or a home directory they could write.
    for u in USERS:
        pw = pwd.getpwnam(u)
        assert 100 <= pw.pw_uid < 1000, f"{u}: uid {pw.pw_uid} is not a system uid"
        assert pw.pw_shell in ("/usr/sbin/nologin", "/bin/false"), f"{u}: shell {pw.pw_shell}"
        assert pw.pw_dir == "/nonexistent" and not os.path.exists(pw.pw_dir), pw
        assert grp.getgrgid(pw.pw_gid).gr_name == u, f"{u}: primary group {pw.pw_gid}"
    if installed["users"]:
        print(f"users already on this machine before the install: {sorted(installed['users'])}")
    for path, want in STATE.items():
        assert owner_and_mode(path) == want, f"{path}: {owner_and_mode(path)}, not {want}"
    # dpkg made the spool root's; postinst gave it to submitd, and dpkg knows no override.
    assert subprocess.run(["dpkg-statoverride", "--list", "/var/spool/submitd"],
                          capture_output=True).returncode != 0

    # The CRL and stats timers are enabled (started once systemd runs); submitd.service
    # is not, as it has no CA, certificate or upstream yet.
    wants = Path("/etc/systemd/system/timers.target.wants")
    assert os.readlink(wants / "submitd-crl.timer") == "/lib/systemd/system/submitd-crl.timer"
    assert not Path("/etc/systemd/system/multi-user.target.wants/submitd.service").exists()


def test_postinst_user_creation_makes_a_locked_system_user(installed, deb):
    """The users may have been on this machine before the install (postinst then leaves
    them alone); postinst's own loop is run here for a user of the test's."""
    script = control_file(deb, "postinst")
    loop = re.search(r"^    for u in submitd submitd-smtp; do\n.*?^    done\n", script,
                     re.M | re.S)
    assert loop, script
    name = "submitd-pkgtest"
    assert not user_exists(name)
    try:
        run("sh", "-e", "-c", loop.group(0).replace("submitd submitd-smtp", name))
        pw = pwd.getpwnam(name)
        assert 100 <= pw.pw_uid < 1000, pw
        assert pw.pw_shell == "/usr/sbin/nologin", pw
        assert pw.pw_dir == "/nonexistent" and not os.path.exists(pw.pw_dir), pw
        assert grp.getgrgid(pw.pw_gid).gr_name == name
        # Run again (dpkg-reconfigure, upgrades), it leaves the user as it is.
        run("sh", "-e", "-c", loop.group(0).replace("submitd submitd-smtp", name))
        assert pwd.getpwnam(name) == pw
    finally:
        subprocess.run(["deluser", "--system", "--quiet", name], check=False,
                       capture_output=True)
        subprocess.run(["delgroup", "--system", "--quiet", name], check=False,
                       capture_output=True)
    assert not user_exists(name)


def test_installed_units_verify_and_are_confined(installed):
    need("systemd-analyze")
    units = [f"/lib/systemd/system/{u}" for u in UNIT_NAMES]
    # verify loads the units in a private manager: the binaries, /bin/kill and the man
    # pages of Documentation= must exist, which only the installed package provides.
    p = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0 and re.search(r"Failed to (initialize|allocate) manager|"
                                       r"not been booted with systemd", p.stderr):
        print(f"systemd-analyze verify cannot run here, not checked: {p.stderr.strip()}")
    else:
        assert p.returncode == 0 and not p.stderr.strip(), p.stdout + p.stderr
    for unit in ("submitd.service", "submitd-crl.service", "submitd-stats.service"):
        level = exposure(unit)
        print(f"installed {unit}: overall exposure {level}")
        assert level <= MAX_EXPOSURE, f"{unit}: exposure {level} > {MAX_EXPOSURE}"


def derived_config(installed_text, values):
    """The installed configuration with `key = value` set for each of values, in place of
    its line (commented out or not); every key must be in the installed file."""
    text = installed_text
    for key, value in values.items():
        text, n = re.subn(rf"^#?{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, f"{key} is not in the installed submitd.conf"
    return text


def test_installed_daemon_delivers_a_message_on_loopback(installed, monkeypatch):
    import conftest
    from conftest import ALICE, ALICE_ADDR, Daemon, Env, Upstream, make_message, send_ok

    # The harness's programs are the installed ones from here on.
    monkeypatch.setattr(conftest, "binary", lambda name: Path("/usr/sbin") / name)
    env = Env("package")
    # The package's own configuration with the ports, the upstream and a CA and server
    # certificate of the test's; database, spool, users and PAM service stay as
    # installed (/var/lib/submitd, /var/spool/submitd, submitd, submitd-smtp,
    # /etc/pam.d/submitd).
    env.conf.write_text(derived_config(Path("/etc/submitd/submitd.conf").read_text(), {
        "hostname": "localhost",
        "listen": f"127.0.0.1:{env.port}",
        "listen_tls": f"127.0.0.1:{env.tls_port}",
        "tls_cert": env.dir / "server.crt",
        "tls_key": env.dir / "server.key",
        "ca_dir": env.dir / "ca",
        "client_ca": env.dir / "ca" / "ca.crt",
        "crl": env.dir / "ca" / "crl.pem",
        "upstream": f"127.0.0.1:{env.upstream_port}",
        "upstream_tls": "none",
    }))
    os.chmod(env.conf, 0o640)
    env.db_path = Path("/var/lib/submitd/submitd.db")
    upstream = Upstream(env.upstream_port)
    daemon = Daemon(env)
    try:
        env.init_pki()
        alice = env.issue(ALICE, ALICE_ADDR)
        check = env.run("submitd", "-t", check=False)
        assert check.returncode == 0, check.stderr
        assert "error" not in check.stderr.lower(), check.stderr
        upstream.start()
        daemon.start()
        msg = make_message()
        send_ok(env, alice, msg)
        upstream.wait_for(msg.marker, msg.rcpts)
        # The queue wrote the installed spool as its user; authz the installed database.
        assert env.db_path.is_file() and owner_and_mode(env.db_path)[0] == "root"
        assert owner_and_mode("/var/spool/submitd") == STATE["/var/spool/submitd"]
        decisions = env.query("SELECT decision FROM audit WHERE user = ?", (ALICE,))
        assert decisions, "no audit row for alice in /var/lib/submitd/submitd.db"
    finally:
        daemon.stop()
        upstream.stop()
        env.cleanup(keep=False)


def test_remove_keeps_state_reinstall_works_and_purge_cleans_up(installed, deb):
    conf = Path("/etc/submitd/submitd.conf")
    with conf.open("a") as f:
        f.write("# changed by the admin\n")
    for d in STATE:
        (Path(d) / "keep-me").write_text("state\n")

    dpkg("--remove", "submitd")
    assert package_status() == "deinstall ok config-files"
    assert not os.path.exists("/usr/sbin/submitd")
    assert not os.path.exists("/usr/libexec/submitd")
    assert conf.read_text().endswith("# changed by the admin\n")
    assert os.path.exists("/etc/pam.d/submitd")
    for d, want in STATE.items():
        assert (Path(d) / "keep-me").is_file(), f"dpkg -r removed {d}"
        assert owner_and_mode(d) == want
    assert all(user_exists(u) for u in USERS)

    dpkg("-i", deb)
    assert package_status() == "install ok installed"
    assert conf.read_text().endswith("# changed by the admin\n"), "the admin's change was lost"
    for d, want in STATE.items():
        assert (Path(d) / "keep-me").is_file() and owner_and_mode(d) == want
    assert subprocess.run(["/usr/sbin/submitd", "--version"], capture_output=True,
                          text=True).stdout.strip() == f"submitd {VERSION}"

    # The CA outlives a purge (debian/submitd.postrm): its key signed every certificate.
    ca = Path("/etc/submitd/ca")
    ca.mkdir(mode=0o700)
    (ca / "ca.key").write_text("not a key\n")
    try:
        dpkg("--purge", "submitd")
        assert package_status() == "not-installed"
        for gone in ("/var/lib/submitd", "/var/spool/submitd", "/etc/pam.d/submitd",
                     "/etc/fail2ban/filter.d/submitd.conf", "/etc/submitd/submitd.conf",
                     "/lib/systemd/system/submitd.service", "/usr/sbin/submitd"):
            assert not os.path.lexists(gone), f"{gone} is left after purge"
        assert (ca / "ca.key").is_file(), "purge removed the CA"
        # The units' enablement is undone: only what was there before is left.
        assert systemd_state() == installed["systemd"], systemd_state() ^ installed["systemd"]
        # Debian keeps system users on purge: files outside the package (a backup of the
        # spool, say) may still be theirs, and a reused uid would own them. The fixture
        # deletes them when this machine had none.
        assert all(user_exists(u) for u in USERS)
    finally:
        shutil.rmtree("/etc/submitd", ignore_errors=True)
    assert not os.path.exists("/etc/submitd")
    # Installed again for any test after this one; the fixture purges at the end.
    dpkg("-i", deb)
