#!/bin/sh
# Install the Debian packages `make test-clients` needs: a real Thunderbird, an X server
# without a screen (Xvfb) to run it in, xdotool to press its Send shortcut, the NSS tools
# that fill its certificate store, and xwd for screenshots of failed cases.
# Idempotent: does nothing when every package is already installed.
set -eu

PKGS="thunderbird xvfb xdotool libnss3-tools x11-apps iproute2"

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
    echo "install-client-deps: missing packages:$missing (run as root to install them)" >&2
    exit 1
fi

echo "install-client-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
