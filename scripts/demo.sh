#!/bin/sh
# make demo: the main job of submitd, end to end, on loopback.
#   1. a throwaway CA, a server certificate and a user certificate (submit-ca)
#   2. an upstream MTA on 127.0.0.1 (Python aiosmtpd from Debian, writing a Maildir)
#   3. submitd on 127.0.0.1, requiring the client certificate
#   4. a real client (curl) sends a message presenting alice's certificate
#   5. the message arrives upstream and the audit table holds the accept row
# Everything lives in build/demo/ and only talks to 127.0.0.1.
set -eu
B=${1:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
BIN=$top/$B/bin
D=$top/$B/demo
PY=/usr/bin/python3

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

free_port() {
    # A free port on 127.0.0.1 that is none of the arguments (ports already chosen).
    $PY "$top"/scripts/free-port.py "$@"
}

wait_port() {
    i=0
    while ! $PY -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.5)" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 50 ]; then echo "demo: nothing is listening on 127.0.0.1:$1 ($2)" >&2; exit 1; fi
        sleep 0.2
    done
}

# A previous demo may still run: stop it first.
for f in "$D"/submitd.pid "$D"/upstream.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
done
sleep 0.5
rm -rf "$D"
mkdir -p "$D/users" "$D/pam.d"
chmod 755 "$D"

# The daemon drops privileges to unprivileged users of its own: submitd (the queue
# and the spool) and submitd-smtp (the process that talks to clients).
for u in submitd submitd-smtp; do
    if [ "$(id -u)" -eq 0 ] && ! getent passwd "$u" >/dev/null; then
        step "Creating the system user '$u'"
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$u"
    fi
done

SUBMIT_PORT=$(free_port)
UP_PORT=$(free_port "$SUBMIT_PORT")

step "Configuration ($D/submitd.conf)"
cat > "$D/submitd.conf" <<CONF
# Demo configuration: every path is relative to this file's directory.
hostname = localhost
listen = 127.0.0.1:$SUBMIT_PORT
upstream = 127.0.0.1:$UP_PORT
# The demo upstream speaks plain SMTP on loopback; production uses verify.
upstream_tls = none
pam_confdir = pam.d
smtp_user = submitd-smtp
retry_min = 2
retry_max = 10
log_level = info
CONF
# PAM account check: this demo stack permits every account.
printf 'account required pam_permit.so\nauth required pam_deny.so\n' > "$D/pam.d/submitd"
printf 'account required pam_deny.so\nauth required pam_deny.so\n' > "$D/pam.d/other"
cat "$D/submitd.conf"

step "Creating the CA, the server certificate and alice's certificate"
"$BIN/submit-ca" -c "$D/submitd.conf" init --cn "submitd demo CA"
"$BIN/submit-ca" -c "$D/submitd.conf" server-cert localhost --ip 127.0.0.1
echo "demo-p12-password" > "$D/users/p12-password"
"$BIN/submit-ca" -c "$D/submitd.conf" issue alice --email alice@example.com \
    --out "$D/users" --p12-password-file "$D/users/p12-password"
"$BIN/submit-admin" -c "$D/submitd.conf" user list

step "Starting the upstream MTA (aiosmtpd) on 127.0.0.1:$UP_PORT"
$PY -m aiosmtpd -n -l "127.0.0.1:$UP_PORT" -c aiosmtpd.handlers.Mailbox "$D/upstream-maildir" \
    > "$D/upstream.log" 2>&1 &
echo $! > "$D/upstream.pid"
wait_port "$UP_PORT" upstream

step "Starting submitd on 127.0.0.1:$SUBMIT_PORT"
"$BIN/submitd" -c "$D/submitd.conf" -t
"$BIN/submitd" -c "$D/submitd.conf" -f > "$D/submitd.log" 2>&1 &
echo $! > "$D/submitd.pid"
wait_port "$SUBMIT_PORT" submitd

step "Sending a message with curl, presenting alice's certificate"
cat > "$D/message.txt" <<MSG
From: Alice <alice@example.com>
To: Bob <bob@example.net>
Subject: Hello from submitd
Date: $(LC_ALL=C date -R)
Message-ID: <demo.$(date +%s)@example.com>

Sent through submitd with a TLS client certificate instead of a password.
MSG
curl -sS --ssl-reqd --crlf "smtp://127.0.0.1:$SUBMIT_PORT/laptop.example.com" --cacert "$D/ca/ca.crt" \
    --cert "$D/users/alice.crt" --key "$D/users/alice.key" \
    --mail-from alice@example.com --mail-rcpt bob@example.net \
    -T "$D/message.txt" -v 2>&1 | grep -E '^[<>] (MAIL|RCPT|DATA|250 2\.0\.0|[45][0-9][0-9])' || true

step "Waiting for the upstream to receive it"
i=0
while [ -z "$(ls "$D/upstream-maildir/new" 2>/dev/null)" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
        echo "demo: the message did not reach the upstream; see $D/submitd.log" >&2
        tail -n 20 "$D/submitd.log" >&2
        exit 1
    fi
    sleep 0.1
done
f=$(ls "$D"/upstream-maildir/new/* | head -n 1)
echo "Received upstream ($f):"
sed 's/^/    /' "$f"

step "The audit trail (submit-admin audit)"
sleep 0.3
"$BIN/submit-admin" -c "$D/submitd.conf" audit
"$BIN/submit-admin" -c "$D/submitd.conf" audit --decision accept | grep -q alice@example.com || {
    echo "demo: no accept row for alice in the audit table" >&2; exit 1; }

cat <<EOF2

The demo is still running:
  submitd     127.0.0.1:$SUBMIT_PORT   (pid $(cat "$D/submitd.pid"), log $D/submitd.log)
  upstream    127.0.0.1:$UP_PORT   (pid $(cat "$D/upstream.pid"), Maildir $D/upstream-maildir)

Send another message:
  curl --ssl-reqd --crlf smtp://127.0.0.1:$SUBMIT_PORT/laptop.example.com --cacert $D/ca/ca.crt \\
       --cert $D/users/alice.crt --key $D/users/alice.key \\
       --mail-from alice@example.com --mail-rcpt bob@example.net -T $D/message.txt
  (or: swaks --server 127.0.0.1:$SUBMIT_PORT --tls --tls-cert $D/users/alice.crt \\
       --tls-key $D/users/alice.key --from alice@example.com --to bob@example.net)

Look around:
  $BIN/submit-admin -c $D/submitd.conf audit
  $BIN/submit-ca -c $D/submitd.conf list

Stop the demo:
  kill \$(cat $D/submitd.pid) \$(cat $D/upstream.pid)
EOF2
