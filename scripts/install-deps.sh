#!/bin/sh
# Install the Debian packages submitd needs to build, test and run its demo.
# Idempotent: does nothing when every package is already installed.
set -eu

PKGS="build-essential pkg-config libssl-dev libpam0g-dev libsqlite3-dev libsystemd-dev sqlite3
libpam-modules libpam-runtime openssl curl swaks msmtp libnet-ssleay-perl libio-socket-ssl-perl
python3 python3-pytest python3-aiosmtpd python3-cryptography postfix
debhelper dpkg-dev fakeroot"
# make deb needs debhelper, dpkg-dev and fakeroot (tests/integration/test_package.py
# builds the package). lintian and fail2ban are not installed here: they are large,
# and fail2ban would start banning on a machine with systemd. The tests that use them
# say they were skipped and why; install them to run those too.

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
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
case " $missing " in
*" postfix "*)
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now postfix >/dev/null 2>&1 || true
    fi
    postfix status >/dev/null 2>&1 && postfix stop >/dev/null 2>&1 || true
    ;;
esac
