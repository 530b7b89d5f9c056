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
# Before those runs it measures the memory of an idle TLS session (tests/bench/idle.py).
#
# Then, in the same run, it stops submitd and measures Postfix from Debian's package
# as a client-certificate relay the same way: a private instance under the temporary
# directory (tests/bench/postfix.sh) on 127.0.0.1, with the same CA, server and client
# certificates, the same load generator options and the same sink. Each Postfix run is
# bounded by BENCH_POSTFIX_DURATION. The last lines compare the two. When Postfix
# cannot be set up the comparison is skipped with the reason, and the exit status is
# that of the submitd part alone (failures of the Postfix runs are reported but do not
# fail the benchmark).
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
#   BENCH_IDLE_SESSIONS idle TLS sessions for the memory measurement (300; 0: none)
#   BENCH_POSTFIX=0     skip the Postfix comparison
#   BENCH_POSTFIX_DURATION  upper bound in seconds on each Postfix run (30)
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
IDLE_SESSIONS=${BENCH_IDLE_SESSIONS:-300}
POSTFIX_DURATION=${BENCH_POSTFIX_DURATION:-30}

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
POSTFIX_CONF=
POSTFIX_MASTER=
RESULT=0
# One line per run: TARGET PER_SESSION RATE P99 RELAY_RATE OK
RESULTS=$T/results
: >"$RESULTS"

# Stops a process we started (and, for submitd, its process group) by its id.
# A process group is "-PGID" right after the signal: dash's kill takes no "--".
# shellcheck disable=SC2317 # called from the exit trap
stop_pid() {
    pid=$1
    group=$2
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while [ "$i" -lt 100 ]; do
        if [ "$group" = group ]; then
            kill -0 "-$pid" 2>/dev/null || break
        else
            kill -0 "$pid" 2>/dev/null || break
        fi
        sleep 0.1
        i=$((i + 1))
    done
    if [ "$i" -ge 100 ]; then
        echo "bench: process $pid did not stop in 10 s; killing it" >&2
        if [ "$group" = group ]; then
            kill -KILL "-$pid" 2>/dev/null || true
        else
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# Stops the private Postfix instance, if one was started: postfix stop waits 5 s for
# the master, then kills its process group; the master has its own session and
# process group, and its children leave when it does: wait for them too, before the
# directory is removed.
# shellcheck disable=SC2317 # called from the exit trap
stop_postfix() {
    [ -n "$POSTFIX_CONF" ] || return 0
    if postfix -c "$POSTFIX_CONF" status >/dev/null 2>&1; then
        postfix -c "$POSTFIX_CONF" stop >>"$T/postfix-ctl.log" 2>&1 || true
    fi
    if [ -n "$POSTFIX_MASTER" ]; then
        i=0
        while kill -0 "-$POSTFIX_MASTER" 2>/dev/null && [ "$i" -lt 100 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        if [ "$i" -ge 100 ]; then
            echo "bench: postfix processes did not stop in 10 s; killing them" >&2
            kill -KILL "-$POSTFIX_MASTER" 2>/dev/null || true
        fi
    fi
    POSTFIX_CONF=
    POSTFIX_MASTER=
}

# shellcheck disable=SC2317 # the exit trap
cleanup() {
    rc=$?
    trap - EXIT INT TERM
    stop_pid "$LOADGEN_PID" single
    stop_pid "$SUBMITD_PID" group
    stop_postfix
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
echo "bench: load average $(cut -d ' ' -f 1-3 /proc/loadavg) before the runs"

# Runs a client in the background and waits for it, so that a signal to this script
# is handled at once (and the trap stops the client). Output goes to FILE.
run_client() {
    out=$1
    shift
    "$@" >"$out" 2>&1 &
    LOADGEN_PID=$!
    crc=0
    wait "$LOADGEN_PID" || crc=$?
    LOADGEN_PID=
    return "$crc"
}

# --- memory per idle TLS session (before any load, so that memory the load freed
# does not hide what the sessions take) -----------------------------------------
if [ "$IDLE_SESSIONS" -gt 0 ]; then
    if run_client "$T/idle.out" "$PY" "$ROOT/tests/bench/idle.py" --port "$PORT" \
        --cert "$T/users/bench.crt" --key "$T/users/bench.key" --cafile "$T/ca/ca.crt" \
        --sid "$SUBMITD_PID" --comm submitd-smtp --sessions "$IDLE_SESSIONS" \
        --timeout 10 --max-seconds 60; then
        cat "$T/idle.out"
        per_kib=$(sed -n 's/.* per_session=\([-0-9.]*\) KiB.*/\1/p' "$T/idle.out")
        awk -v per="$per_kib" -v n="$IDLE_SESSIONS" 'BEGIN {
            printf "bench: memory per idle TLS session (submitd-smtp RSS growth / %d) " \
                   "%.1f KiB, target < 64 KiB: %s\n", n, per, (per < 64) ? "met" : "MISSED"
        }'
    else
        sed 's/^/    /' "$T/idle.out" >&2
        echo "bench: the idle TLS session measurement failed" >&2
        RESULT=1
    fi
fi

# --- runs --------------------------------------------------------------------
# run_shape TARGET PORT PER_SESSION: one load generator run against TARGET (submitd or
# postfix) on 127.0.0.1:PORT, then wait for it to relay everything to the sink. A
# failure fails the benchmark for submitd only.
run_shape() {
    target=$1
    port=$2
    per=$3
    before=$(sink_field messages)
    # A broken or stuck daemon must not keep the benchmark running for hours: every
    # run is bounded in time, each reply waits at most 10 s, and a run gives up after
    # 100 failures.
    if [ "$target" = postfix ]; then
        limit=$POSTFIX_DURATION
        if [ -n "$DURATION" ] && [ "$DURATION" -lt "$limit" ]; then
            limit=$DURATION
        fi
        if [ -n "$DURATION" ]; then
            stop="--duration $limit"
        else
            stop="--messages $MESSAGES --duration $limit"
        fi
        prefix="target=postfix "
    elif [ -n "$DURATION" ]; then
        stop="--duration $DURATION"
        prefix=
    else
        stop="--messages $MESSAGES --duration $MAX_SECONDS"
        prefix=
    fi
    t0=$(now)
    lrc=0
    # shellcheck disable=SC2086
    run_client "$T/loadgen.out" "$LOADGEN" --host 127.0.0.1 --port "$port" \
        --cert "$T/users/bench.crt" --key "$T/users/bench.key" --cafile "$T/ca/ca.crt" \
        --from bench@example.com --to rcpt@example.net \
        --concurrency "$CONCURRENCY" --per-session "$per" --size "$SIZE" $stop \
        --timeout 10 --max-failures 100 $EXTRA || lrc=$?
    t1=$(now)
    if [ "$lrc" -ne 0 ]; then
        if [ "$target" = submitd ]; then
            RESULT=1
        else
            echo "bench: target=postfix the load generator failed (status $lrc)" >&2
        fi
    fi
    sed "s/^loadgen: /loadgen: $prefix/" "$T/loadgen.out"
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
            echo "bench: ${prefix}the relay did not drain: $((seen - before)) of $ok relayed" >&2
            [ "$target" != submitd ] || RESULT=1
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
        -v last="$last" -v prefix="$prefix" -v target="$target" -v results="$RESULTS" \
        -v lg="$(sed -n 's/^loadgen: shape=/shape=/p' "$T/loadgen.out")" 'BEGIN {
        accept = t1 - t0
        relay = (relayed > 0) ? last - t0 : 0
        drain = (relayed > 0 && last > t1) ? last - t1 : 0
        rate = (relay > 0) ? relayed / relay : 0
        arate = (accept > 0) ? ok / accept : 0
        printf "bench: %sshape=per-session-%s accepted=%d relayed=%d accept_elapsed=%.2fs " \
               "relay_elapsed=%.2fs drain_after_accept=%.2fs accept_rate=%.1f msg/s " \
               "relay_rate=%.1f msg/s\n",
               prefix, per, ok, relayed, accept, relay, drain, arate, rate
        # The load generator'\''s own rate and p99 for the comparison.
        lrate = "-"; p99 = "-"
        if (match(lg, / rate=[0-9.]+/)) lrate = substr(lg, RSTART + 6, RLENGTH - 6)
        if (match(lg, / p99=[0-9.]+/)) p99 = substr(lg, RSTART + 5, RLENGTH - 5)
        printf "%s %s %s %s %.1f %d\n", target, per, lrate, p99, rate, ok >> results
    }'
    if [ "$target" = submitd ] && ! kill -0 "$SUBMITD_PID" 2>/dev/null; then
        show_submitd_log
        die "submitd exited during the run"
    fi
}

run_shape submitd "$PORT" 1
run_shape submitd "$PORT" 10

echo "bench: sink received $(sink_field messages) messages in total"
# submitd has relayed everything (or given up): stop it, so that Postfix has the
# machine to itself.
stop_pid "$SUBMITD_PID" group
SUBMITD_PID=

# --- Postfix as a client-certificate relay, for comparison ---------------------
postfix_skip() {
    echo "bench: postfix comparison skipped: $*"
}

postfix_log_tail() {
    if [ -s "$T/postfix/postfix.log" ]; then
        echo "bench: last lines of the postfix log:" >&2
        tail -n 10 "$T/postfix/postfix.log" | sed 's/^/    /' >&2
    fi
}

run_postfix() {
    if [ "${BENCH_POSTFIX:-1}" = 0 ]; then
        postfix_skip "BENCH_POSTFIX=0"
        return 0
    fi
    pf=$T/postfix
    pf_port=$(free_port)
    if ! sh "$ROOT/tests/bench/postfix.sh" "$pf" "$pf_port" "$SINK_PORT" "$T/ca/ca.crt" \
        "$T/server.crt" "$T/server.key" "$T/users/bench.crt" 2>"$T/postfix-setup.err"; then
        postfix_skip "$(tail -n 1 "$T/postfix-setup.err")"
        return 0
    fi
    POSTFIX_CONF=$pf/etc
    if ! postfix -c "$POSTFIX_CONF" start >"$T/postfix-ctl.log" 2>&1; then
        sed 's/^/    /' "$T/postfix-ctl.log" >&2
        postfix_log_tail
        stop_postfix
        postfix_skip "postfix -c $pf/etc start failed"
        return 0
    fi
    POSTFIX_MASTER=$(tr -d ' \n' <"$pf/queue/pid/master.pid" 2>/dev/null || true)
    if [ -z "$POSTFIX_MASTER" ] || ! wait_port "$pf_port" 15 "$POSTFIX_MASTER"; then
        postfix_log_tail
        stop_postfix
        postfix_skip "postfix is not listening on 127.0.0.1:$pf_port after 15 s"
        return 0
    fi
    echo "bench: target=postfix $(postconf -c "$POSTFIX_CONF" -h mail_version 2>/dev/null || echo '?'), private" \
        "instance on 127.0.0.1:$pf_port, client certificate required, relay by its" \
        "sha256 fingerprint, each run bounded to $POSTFIX_DURATION s"
    run_shape postfix "$pf_port" 1
    run_shape postfix "$pf_port" 10
    if ! postfix -c "$POSTFIX_CONF" status >/dev/null 2>&1; then
        echo "bench: target=postfix the instance was no longer running after the runs" >&2
        postfix_log_tail
    fi
    stop_postfix
    if grep -q 'warning\|fatal\|panic' "$pf/postfix.log" 2>/dev/null; then
        echo "bench: target=postfix the postfix log has warnings:" >&2
        grep 'warning\|fatal\|panic' "$pf/postfix.log" | sort | uniq -c | sort -rn |
            head -n 5 | sed 's/^/    /' >&2
    fi
}
run_postfix

# --- comparison ----------------------------------------------------------------
if grep -q '^postfix ' "$RESULTS"; then
    echo "bench: compare ratio = submitd's advantage (msg/s: submitd/postfix, p99:" \
        "postfix/submitd); DESIGN section 9 asks for >= 10 in both"
    awk '
        { rate[$1, $2] = $3; p99[$1, $2] = $4; relay[$1, $2] = $5 }
        function ratio(a, b) {
            return (a != "-" && b != "-" && a + 0 > 0 && b + 0 > 0) ? sprintf("%.2f", a / b) : "n/a"
        }
        END {
            n = split("1 10", shapes, " ")
            for (i = 1; i <= n; i++) {
                s = shapes[i]
                if (!((("submitd", s) in rate) && (("postfix", s) in rate)))
                    continue
                rr = ratio(rate["submitd", s], rate["postfix", s])
                pr = ratio(p99["postfix", s], p99["submitd", s])
                met = (rr != "n/a" && pr != "n/a" && rr + 0 >= 10 && pr + 0 >= 10) ? "met" : "MISSED"
                printf "bench: compare shape=per-session-%s submitd=%s msg/s postfix=%s msg/s " \
                       "ratio=%s p99 submitd=%sms postfix=%sms ratio=%s relay submitd=%s msg/s " \
                       "postfix=%s msg/s target=%s\n",
                       s, rate["submitd", s], rate["postfix", s], rr,
                       p99["submitd", s], p99["postfix", s], pr,
                       relay["submitd", s], relay["postfix", s], met
            }
        }' "$RESULTS"
fi

if [ "$RESULT" -ne 0 ]; then
    show_submitd_log
    echo "bench: FAILED (see the failures above)" >&2
fi
exit "$RESULT"
