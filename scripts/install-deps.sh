#!/bin/sh
# Install the Debian packages submitd needs to build, test and run its demo.
# Idempotent: does nothing when every package is already installed.
set -eu

PKGS="build-essential pkg-config libssl-dev libpam0g-dev libsqlite3-dev libsystemd-dev sqlite3
libpam-modules libpam-runtime openssl curl swaks msmtp libnet-ssleay-perl libio-socket-ssl-perl
python3 python3-pytest python3-aiosmtpd python3-cryptography postfix
debhelper dpkg-dev fakeroot fail2ban haproxy libpq-dev postgresql-15 strace"
# make deb needs debhelper, dpkg-dev and fakeroot (tests/integration/test_package.py
# builds the package). fail2ban is here for fail2ban-regex only (the filter is tested
# against the daemon's own log): its service is kept from starting, so that it bans
# nobody on this machine. haproxy is a test balancer in front of submitd (PROXY
# protocol): the tests start private instances on 127.0.0.1, its service is kept from
# starting like the others. postgresql-15 is for the tests only: they run private
# clusters in temporary directories (scripts/pg-test-cluster.sh); the package's own
# cluster service is kept from starting too. lintian is not installed (large); the
# test that uses it says it was skipped and why. strace counts the system calls of
# the benchmark's durable-write floor in a test (tests/integration/test_bench_floor.py).

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
# Postfix is only a test upstream: the tests run private instances on 127.0.0.1 with
# their own configuration. The system's own instance gets no configuration and must
# not run (nor listen on port 25).
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
apt-get update -q
# No service of a package installed here may start (fail2ban would begin banning).
own_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    own_policy=1
fi
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing || { [ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
[ -z "$own_policy" ] || rm -f /usr/sbin/policy-rc.d
case " $missing " in
*" postfix "*)
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now postfix >/dev/null 2>&1 || true
    fi
    postfix status >/dev/null 2>&1 && postfix stop >/dev/null 2>&1 || true
    ;;
esac
case " $missing " in
*" fail2ban "*)
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now fail2ban >/dev/null 2>&1 || true
    fi
    ;;
esac
