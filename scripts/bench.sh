#!/bin/sh
# Benchmark submitd on loopback with its own load generator (make bench).
#
#   sh scripts/bench.sh BUILD_DIR
#
# Builds a throw-away installation in a temporary directory: a CA, a server
# certificate, one user "bench" with a client certificate, a configuration and a PAM
# stack that permits the account. Starts a counting SMTP sink as the upstream
# (tests/bench/sink.py) and submitd in the foreground, then runs submitd-loadgen in
# the two shapes of DESIGN section 9: a new TLS session with a client certificate per
# message, and ten messages per session. After each run it waits until the relay has
# delivered every accepted message to the sink and reports how long that took.
# Everything is stopped and removed on exit.
#
# Environment (all optional):
#   BENCH_CONCURRENCY   parallel sessions (16)
#   BENCH_MESSAGES      messages per run (3000)
#   BENCH_DURATION      seconds per run instead of a message count
#   BENCH_MAX_SECONDS   upper bound on a run that counts messages (120)
#   BENCH_SIZE          body bytes per message (2048)
#   BENCH_DRAIN_TIMEOUT seconds to wait for the relay to drain a run (120)
#   BENCH_LOADGEN_ARGS  extra submitd-loadgen options (e.g. --tls-resume)
#   BENCH_KEEP=1        keep the temporary directory for inspection
set -eu

if [ $# -ne 1 ]; then
    echo "usage: sh scripts/bench.sh BUILD_DIR" >&2
    exit 2
fi

die() {
    echo "bench: $*" >&2
    exit 1
}

[ -d "$1" ] || die "build directory $1 does not exist (run make)"
B=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
LOADGEN=$B/bin/submitd-loadgen
CONCURRENCY=${BENCH_CONCURRENCY:-16}
MESSAGES=${BENCH_MESSAGES:-3000}
DURATION=${BENCH_DURATION:-}
MAX_SECONDS=${BENCH_MAX_SECONDS:-120}
SIZE=${BENCH_SIZE:-2048}
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-120}
EXTRA=${BENCH_LOADGEN_ARGS:-}

for f in "$B/bin/submitd" "$B/bin/submit-ca" "$LOADGEN"; do
    [ -x "$f" ] || die "missing $f (run make)"
done
"$PY" -c 'import aiosmtpd' 2>/dev/null ||
    die "$PY cannot import aiosmtpd (install python3-aiosmtpd: make deps)"
command -v setsid >/dev/null 2>&1 || die "setsid (util-linux) is required"

T=$(mktemp -d "${TMPDIR:-/tmp}/submitd-bench.XXXXXX")
# The smtp and queue processes run as an unprivileged user that must reach the spool.
chmod 755 "$T"
CONF=$T/submitd.conf
SINK_PID=
SUBMITD_PID=
LOADGEN_PID=
RESULT=0

# Stops a process we started (and, for submitd, its process group) by its id.
# shellcheck disable=SC2317 # called from the exit trap
stop_pid() {
    pid=$1
    group=$2
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while [ "$i" -lt 100 ]; do
        if [ "$group" = group ]; then
            kill -0 -- "-$pid" 2>/dev/null || break
        else
            kill -0 "$pid" 2>/dev/null || break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    if [ "$i" -ge 100 ]; then
        echo "bench: process $pid did not stop in 10 s; killing it" >&2
        if [ "$group" = group ]; then
            kill -KILL -- "-$pid" 2>/dev/null || true
        else
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317 # the exit trap
cleanup() {
    rc=$?
    trap - EXIT INT TERM
    stop_pid "$LOADGEN_PID" single
    stop_pid "$SUBMITD_PID" group
    stop_pid "$SINK_PID" single
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: kept $T"
    else
        rm -rf "$T"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

now() {
    date +%s.%N
}

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:PORT accepts connections; fails after SECONDS or as soon as
# process PID has exited.
wait_port() {
    "$PY" - "$1" "$2" "$3" <<'EOF'
import os, socket, sys, time
port, limit, pid = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
end = time.time() + limit
while time.time() < end:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
EOF
}

# Prints one field (messages, first, last, ...) of the sink's statistics line.
sink_field() {
    sed -n "s/.*\\b$1=\\([0-9.]*\\).*/\\1/p" "$T/sink.stats"
}

# Runs a set-up command quietly; on failure shows its output and stops.
run_quiet() {
    name=$1
    shift
    if ! "$@" >"$T/$name.log" 2>&1; then
        sed 's/^/    /' "$T/$name.log" >&2
        die "$name failed: $*"
    fi
}

show_submitd_log() {
    if [ -s "$T/submitd.log" ]; then
        echo "bench: last lines of the submitd log:" >&2
        tail -n 20 "$T/submitd.log" | sed 's/^/    /' >&2
    fi
}

# --- upstream sink ---------------------------------------------------------
"$PY" "$ROOT/tests/bench/sink.py" --port-file "$T/sink.port" --stats "$T/sink.stats" \
    >"$T/sink.log" 2>&1 &
SINK_PID=$!
i=0
while [ ! -s "$T/sink.port" ]; do
    kill -0 "$SINK_PID" 2>/dev/null || { cat "$T/sink.log" >&2; die "the sink did not start"; }
    [ $i -lt 100 ] || die "the sink did not write its port in 10 s"
    sleep 0.1
    i=$((i + 1))
done
SINK_PORT=$(cat "$T/sink.port")

# --- configuration, CA, user -----------------------------------------------
PORT=$(free_port)
RUN_USER=nobody
if [ "$(id -u)" -ne 0 ]; then
    RUN_USER=$(id -un)
    echo "bench: not running as root; submitd will try to run as $RUN_USER" >&2
fi
mkdir -p "$T/pam.d" "$T/users"
echo "account required pam_permit.so" >"$T/pam.d/submitd"
cat >"$CONF" <<EOF
# submitd benchmark configuration (temporary)
hostname = localhost
listen = 127.0.0.1:$PORT
database = submitd.db
spool = spool
upstream = 127.0.0.1:$SINK_PORT
upstream_tls = none
user = $RUN_USER
pam_confdir = $T/pam.d
crl =
rate_messages_per_hour = 0
rate_recipients_per_hour = 0
max_sessions_per_ip = 1000
log_level = warning
EOF
echo "benchpass" >"$T/p12pass"
chmod 600 "$T/p12pass"

run_quiet ca-init "$B/bin/submit-ca" -c "$CONF" init
run_quiet ca-server-cert "$B/bin/submit-ca" -c "$CONF" server-cert localhost --ip 127.0.0.1
run_quiet ca-issue "$B/bin/submit-ca" -c "$CONF" issue bench --email bench@example.com \
    --out "$T/users" --p12-password-file "$T/p12pass"
for f in "$T/users/bench.crt" "$T/users/bench.key" "$T/ca/ca.crt"; do
    [ -s "$f" ] || die "submit-ca did not write $f"
done
run_quiet check-config "$B/bin/submitd" -c "$CONF" -t

# --- daemon ------------------------------------------------------------------
# Its own process group, so that every process of the daemon can be stopped by id.
setsid "$B/bin/submitd" -c "$CONF" -f >"$T/submitd.log" 2>&1 &
SUBMITD_PID=$!
if ! wait_port "$PORT" 15 "$SUBMITD_PID"; then
    show_submitd_log
    kill -0 "$SUBMITD_PID" 2>/dev/null || die "submitd exited at start"
    die "submitd is not listening on 127.0.0.1:$PORT after 15 s"
fi

echo "bench: $(nproc) cores, $(openssl version 2>/dev/null || echo 'openssl ?'), concurrency=$CONCURRENCY size=$SIZE"

# --- runs --------------------------------------------------------------------
# run_shape PER_SESSION: one load generator run, then wait for the relay to drain it.
run_shape() {
    per=$1
    before=$(sink_field messages)
    # A broken or stuck daemon must not keep the benchmark running for hours: every
    # run is bounded in time, each reply waits at most 10 s, and a run gives up after
    # 100 failures.
    if [ -n "$DURATION" ]; then
        stop="--duration $DURATION"
    else
        stop="--messages $MESSAGES --duration $MAX_SECONDS"
    fi
    t0=$(now)
    # In the background with wait, so that a signal to this script is handled at once.
    # shellcheck disable=SC2086
    "$LOADGEN" --host 127.0.0.1 --port "$PORT" \
        --cert "$T/users/bench.crt" --key "$T/users/bench.key" --cafile "$T/ca/ca.crt" \
        --from bench@example.com --to rcpt@example.net \
        --concurrency "$CONCURRENCY" --per-session "$per" --size "$SIZE" $stop \
        --timeout 10 --max-failures 100 $EXTRA \
        >"$T/loadgen.out" 2>&1 &
    LOADGEN_PID=$!
    lrc=0
    wait "$LOADGEN_PID" || lrc=$?
    LOADGEN_PID=
    [ "$lrc" -eq 0 ] || RESULT=1
    t1=$(now)
    cat "$T/loadgen.out"
    ok=$(sed -n 's/^loadgen: shape=.* ok=\([0-9]*\) .*/\1/p' "$T/loadgen.out")
    [ -n "$ok" ] || ok=0
    want=$((before + ok))

    # Wait for every accepted message to reach the sink; give up after the timeout or
    # when nothing has arrived for 30 s.
    start=$(date +%s)
    last_change=$start
    seen=$(sink_field messages)
    while [ "$seen" -lt "$want" ]; do
        t=$(date +%s)
        if [ $((t - start)) -ge "$DRAIN_TIMEOUT" ] || [ $((t - last_change)) -ge 30 ]; then
            echo "bench: the relay did not drain: $((seen - before)) of $ok relayed" >&2
            RESULT=1
            break
        fi
        kill -0 "$SINK_PID" 2>/dev/null || die "the sink exited during the run"
        sleep 0.2
        n=$(sink_field messages)
        if [ "$n" != "$seen" ]; then
            seen=$n
            last_change=$t
        fi
    done
    last=$(sink_field last)
    relayed=$((seen - before))
    awk -v per="$per" -v ok="$ok" -v relayed="$relayed" -v t0="$t0" -v t1="$t1" \
        -v last="$last" 'BEGIN {
        accept = t1 - t0
        relay = (relayed > 0) ? last - t0 : 0
        drain = (relayed > 0 && last > t1) ? last - t1 : 0
        rate = (relay > 0) ? relayed / relay : 0
        arate = (accept > 0) ? ok / accept : 0
        printf "bench: shape=per-session-%s accepted=%d relayed=%d accept_elapsed=%.2fs " \
               "relay_elapsed=%.2fs drain_after_accept=%.2fs accept_rate=%.1f msg/s " \
               "relay_rate=%.1f msg/s\n",
               per, ok, relayed, accept, relay, drain, arate, rate
    }'
    if ! kill -0 "$SUBMITD_PID" 2>/dev/null; then
        show_submitd_log
        die "submitd exited during the run"
    fi
}

run_shape 1
run_shape 10

echo "bench: sink received $(sink_field messages) messages in total"
if [ "$RESULT" -ne 0 ]; then
    show_submitd_log
    echo "bench: FAILED (see the failures above)" >&2
fi
exit "$RESULT"
