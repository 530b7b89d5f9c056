#!/bin/sh
# Configures a private Postfix instance as a client-certificate relay, for the
# comparison in make bench (DESIGN section 9).
#
#   sh tests/bench/postfix.sh DIR PORT SINK_PORT CA_CERT SERVER_CERT SERVER_KEY CLIENT_CERT
#
# Writes DIR/etc/main.cf and DIR/etc/master.cf and creates DIR/queue and DIR/data, for
# "postfix -c DIR/etc start". The instance listens on 127.0.0.1:PORT only, requires
# STARTTLS and a client certificate signed by CA_CERT, relays only for the certificate
# whose SHA-256 fingerprint is that of CLIENT_CERT (relay_clientcerts), and hands every
# message to the sink on 127.0.0.1:SINK_PORT without TLS (as submitd does in the
# benchmark, upstream_tls = none). No local delivery; logs to DIR/postfix.log.
#
# Starts nothing. Exits 1 with one line on stderr saying why when Postfix cannot be
# set up here (not installed, not root, no postfix user, ...).
set -eu

if [ $# -ne 7 ]; then
    echo "usage: sh tests/bench/postfix.sh DIR PORT SINK_PORT CA_CERT SERVER_CERT SERVER_KEY CLIENT_CERT" >&2
    exit 2
fi
D=$1
PORT=$2
SINK_PORT=$3
CA=$4
CRT=$5
KEY=$6
CLIENT=$7

fail() {
    echo "$*" >&2
    exit 1
}

POSTFIX=$(command -v postfix 2>/dev/null || echo /usr/sbin/postfix)
POSTCONF=$(command -v postconf 2>/dev/null || echo /usr/sbin/postconf)
MASTER_DIST=/usr/share/postfix/master.cf.dist
[ -x "$POSTFIX" ] || fail "postfix is not installed (apt-get install postfix)"
[ -x "$POSTCONF" ] || fail "postconf is not installed"
[ -r "$MASTER_DIST" ] || fail "$MASTER_DIST is missing (Debian's postfix package)"
[ "$(id -u)" -eq 0 ] || fail "a private Postfix instance needs root"
id postfix >/dev/null 2>&1 || fail "there is no postfix user"
getent group postdrop >/dev/null 2>&1 || fail "there is no postdrop group"
for f in "$CA" "$CRT" "$KEY" "$CLIENT"; do
    [ -s "$f" ] || fail "missing $f"
done
FP=$(openssl x509 -in "$CLIENT" -noout -fingerprint -sha256 | sed -n 's/^[^=]*Fingerprint=//p')
[ -n "$FP" ] || fail "cannot compute the SHA-256 fingerprint of $CLIENT"

mkdir -p "$D/etc" "$D/queue" "$D/data"
chmod 755 "$D" "$D/etc" "$D/queue"
chown postfix "$D/data"
# texthash: needs no postmap; Postfix compares colon-separated upper-case hex.
printf '%s bench\n' "$FP" >"$D/etc/relay_clientcerts"

cat >"$D/etc/main.cf" <<EOF
# Private Postfix instance for make bench (temporary)
compatibility_level = 3.6
config_directory = $D/etc
queue_directory = $D/queue
data_directory = $D/data
mail_owner = postfix
maillog_file = $D/postfix.log
maillog_file_prefixes = $D
myhostname = localhost
mydomain = localdomain
myorigin = localhost
mydestination =
local_transport = error:no local delivery
alias_maps =
alias_database =
biff = no
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relayhost = [127.0.0.1]:$SINK_PORT
smtp_tls_security_level = none
smtpd_tls_security_level = encrypt
smtpd_tls_CAfile = $CA
smtpd_tls_cert_file = $CRT
smtpd_tls_key_file = $KEY
smtpd_tls_fingerprint_digest = sha256
smtpd_tls_loglevel = 0
relay_clientcerts = texthash:$D/etc/relay_clientcerts
smtpd_relay_restrictions = permit_tls_clientcerts, reject
smtpd_recipient_restrictions =
EOF

# The services of Debian's master.cf, without the external delivery programs (pipe)
# and without chroot (nothing to copy into one); smtpd on 127.0.0.1:PORT only, with a
# client certificate required.
awk -v port="$PORT" '
    /^#/ || /^[ \t]*$/ { next }
    /^[ \t]/ { if (!skip) print; next }
    {
        skip = ($8 == "pipe")
        if (skip) next
        $5 = "n"
        if ($1 == "smtp" && $2 == "inet") {
            $1 = "127.0.0.1:" port
            print
            print "  -o smtpd_tls_security_level=encrypt"
            print "  -o smtpd_tls_req_ccert=yes"
            next
        }
        print
    }' "$MASTER_DIST" >"$D/etc/master.cf"

grep -q "^127.0.0.1:$PORT inet" "$D/etc/master.cf" || fail "no smtpd service in $MASTER_DIST"
"$POSTCONF" -c "$D/etc" -n >/dev/null 2>"$D/postconf.err" ||
    fail "postconf rejects the configuration: $(head -n 1 "$D/postconf.err")"
if [ -s "$D/postconf.err" ]; then
    fail "postconf: $(head -n 1 "$D/postconf.err")"
fi
