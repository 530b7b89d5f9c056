#!/bin/sh
# Scale-out benchmark (make bench-scale): the cost of PostgreSQL, of HAProxy and of a
# second node, measured with the load generator of make bench on loopback.
#
#   sh scripts/bench-scale.sh BUILD_DIR
#
# Sets up, in one temporary directory, every deployment of docs/scale-out.md that fits
# on one machine, all running at once:
#
#   sqlite-direct   one node with its own SQLite file, clients connect to it
#   pg-direct       one node on a private PostgreSQL cluster, clients connect to it
#   pg-haproxy-1    HAProxy (TCP mode, send-proxy-v2, health checks) in front of one
#                   node with proxy_protocol = v2 on the same PostgreSQL
#   pg-haproxy-2    a second HAProxy in front of that node and a second one (own spool,
#                   port and hostname; same PostgreSQL, same CA)
#
# The PostgreSQL cluster is the one of the tests (scripts/pg-test-cluster.sh: Unix
# socket only, fsync off). Each setup has its own CA, user "bench" and client
# certificate in its database. One counting SMTP sink (tests/bench/sink.c) is the
# upstream of every node. Each run sends BENCH_MESSAGES messages with submitd-loadgen
# and waits until the sink has all of them; a message that is not relayed fails the
# benchmark. The runs go round the setups and shapes BENCH_REPEAT times, so that a
# drift of the machine's speed touches each alike; the summary takes medians.
#
# CPU per message, from /proc/PID/stat (utime + stime of every process of the session,
# with the children it reaped), from the start of a run until the relay has drained:
# "nodes" is the submitd processes of the setup's nodes, "haproxy" the balancer's
# process, "postgresql" every process of the cluster (the postmaster and its children),
# "client" the load generator's (its own figure), "own" the sum of these, and
# "machine" all CPU the machine spent (on a shared machine it includes other users'
# work, so "own" is the robust figure). The other setups' nodes stay idle during a
# run, apart from HAProxy's health checks every 2 s.
#
# Environment (all optional):
#   BENCH_CONCURRENCY    parallel sessions (8)
#   BENCH_MESSAGES       messages per run (2000)
#   BENCH_REPEAT         rounds over every setup and shape; medians (3)
#   BENCH_MAX_SECONDS    upper bound on a run (120)
#   BENCH_SIZE           body bytes per message (2048)
#   BENCH_DRAIN_TIMEOUT  seconds to wait for the relay to drain a run (120)
#   BENCH_SCALE_SETUPS   setups to run ("sqlite-direct pg-direct pg-haproxy-1 pg-haproxy-2")
#   BENCH_SCALE_SHAPES   messages per session of each shape, a "r" suffix for TLS
#                        session resumption ("1 10"; e.g. "1 1r 10")
#   BENCH_LOG_LEVEL      the nodes' log_level (info, the default of submitd.conf)
#   BENCH_KEEP=1         keep the temporary directory for inspection
# Everything started here is stopped, and the cluster removed, on exit.
set -eu

if [ $# -ne 1 ]; then
    echo "usage: sh scripts/bench-scale.sh BUILD_DIR" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=/usr/bin/python3
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"

[ -d "$1" ] || die "build directory $1 does not exist (run make)"
B=$(cd "$1" && pwd)
LOADGEN=$B/bin/submitd-loadgen
CONCURRENCY=${BENCH_CONCURRENCY:-8}
MESSAGES=${BENCH_MESSAGES:-2000}
REPEAT=${BENCH_REPEAT:-3}
MAX_SECONDS=${BENCH_MAX_SECONDS:-120}
SIZE=${BENCH_SIZE:-2048}
DRAIN_TIMEOUT=${BENCH_DRAIN_TIMEOUT:-120}
SETUPS=${BENCH_SCALE_SETUPS:-sqlite-direct pg-direct pg-haproxy-1 pg-haproxy-2}
SHAPES=${BENCH_SCALE_SHAPES:-1 10}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}

for f in "$B/bin/submitd" "$B/bin/submit-ca" "$LOADGEN"; do
    [ -x "$f" ] || die "missing $f (run make)"
done
[ -x "$HAPROXY" ] || die "$HAPROXY not found (install haproxy: make deps)"
[ -x "$B/bin/submitd-sink" ] || die "missing $B/bin/submitd-sink (run make)"
command -v setsid >/dev/null 2>&1 || die "setsid (util-linux) is required"
[ "$(id -u)" -eq 0 ] || die "run as root: the nodes drop to user nobody"

T=$(mktemp -d "${TMPDIR:-/tmp}/submitd-bench-scale.XXXXXX")
# The nodes' unprivileged processes must reach their spools in here.
chmod 755 "$T"
SINK_PID=
LOADGEN_PID=
PG_DIR=
# Process ids (each the leader of its own session) of every node and balancer started.
NODE_PIDS=
HAPROXY_PIDS=
RESULT=0
# One line per run: SETUP SHAPE RATE P50 P99 RELAY_RATE OK NODES HAPROXY PG CLIENT MACHINE
# (CPU in ms per message).
RESULTS=$T/results
: >"$RESULTS"

# shellcheck disable=SC2317 # the exit trap
cleanup() {
    rc=$?
    trap - EXIT INT TERM
    stop_pid "$LOADGEN_PID" single
    for p in $HAPROXY_PIDS; do
        stop_pid "$p" group
    done
    for p in $NODE_PIDS; do
        stop_pid "$p" group
    done
    if [ -n "$PG_DIR" ]; then
        sh "$ROOT/scripts/pg-test-cluster.sh" stop "$PG_DIR" || true
    fi
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

start_sink
mkdir -p "$T/pam.d"
echo "account required pam_permit.so" >"$T/pam.d/submitd"
echo "account required pam_deny.so" >"$T/pam.d/other"
echo "benchpass" >"$T/p12pass"
chmod 600 "$T/p12pass"

# write_conf FILE SITE DATABASE HOSTNAME PORT PROXY: a node's configuration; the CA,
# the server certificate and the database are the site's.
write_conf() {
    cat >"$1" <<EOF
# submitd scale-out benchmark configuration (temporary)
hostname = $4
listen = 127.0.0.1:$5
database = $3
spool = spool
tls_cert = $2/server.crt
tls_key = $2/server.key
ca_dir = $2/ca
client_ca = $2/ca/ca.crt
crl =
upstream = 127.0.0.1:$SINK_PORT
upstream_tls = none
user = nobody
pam_confdir = $T/pam.d
rate_messages_per_hour = 0
rate_recipients_per_hour = 0
max_sessions_per_ip = 1000
log_level = ${BENCH_LOG_LEVEL:-info}
EOF
    if [ "$6" = v2 ]; then
        cat >>"$1" <<EOF
proxy_protocol = v2
proxy_trusted = 127.0.0.1/32
EOF
    fi
}

# make_site DIR DATABASE: a CA, a server certificate for 127.0.0.1 and the user
# "bench" with a client certificate, in DATABASE.
make_site() {
    mkdir -p "$1/users"
    write_conf "$1/site.conf" "$1" "$2" localhost 0 no
    run_quiet "ca-init-${1##*/}" "$B/bin/submit-ca" -c "$1/site.conf" init
    run_quiet "ca-server-cert-${1##*/}" "$B/bin/submit-ca" -c "$1/site.conf" server-cert localhost --ip 127.0.0.1
    run_quiet "ca-issue-${1##*/}" "$B/bin/submit-ca" -c "$1/site.conf" issue bench \
        --email bench@example.com --out "$1/users" --p12-password-file "$T/p12pass"
    for f in "$1/users/bench.crt" "$1/users/bench.key" "$1/ca/ca.crt"; do
        [ -s "$f" ] || die "submit-ca did not write $f"
    done
}

# start_node NAME SITE DATABASE PROXY: a node in $T/NAME, in its own session so that
# its processes can be measured and stopped by id; sets NODE_PID and NODE_PORT.
start_node() {
    mkdir -p "$T/$1"
    NODE_PORT=$(free_port)
    write_conf "$T/$1/submitd.conf" "$2" "$3" "$1.bench" "$NODE_PORT" "$4"
    run_quiet "check-config-$1" "$B/bin/submitd" -c "$T/$1/submitd.conf" -t
    setsid "$B/bin/submitd" -c "$T/$1/submitd.conf" -f >"$T/$1/submitd.log" 2>&1 &
    NODE_PID=$!
    NODE_PIDS="$NODE_PIDS $NODE_PID"
    if ! wait_port "$NODE_PORT" 15 "$NODE_PID"; then
        tail -n 20 "$T/$1/submitd.log" | sed 's/^/    /' >&2
        die "node $1 is not listening on 127.0.0.1:$NODE_PORT after 15 s"
    fi
}

# start_haproxy NAME PORT...: HAProxy in TCP mode, round robin over the nodes on PORT...
# with send-proxy-v2, checking that each greets (docs/scale-out.md); sets LB_PID and
# LB_PORT once it listens.
start_haproxy() {
    name=$1
    shift
    LB_PORT=$(free_port)
    cfg=$T/$name.cfg
    cat >"$cfg" <<EOF
global
    maxconn 1000

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 3
    option redispatch 1

frontend submission
    bind 127.0.0.1:$LB_PORT
    default_backend nodes

backend nodes
    balance roundrobin
    option tcp-check
    tcp-check expect string 220
EOF
    n=1
    for p in "$@"; do
        echo "    server node$n 127.0.0.1:$p send-proxy-v2 check check-send-proxy inter 2s fall 2 rise 1" >>"$cfg"
        n=$((n + 1))
    done
    run_quiet "check-$name" "$HAPROXY" -c -f "$cfg"
    setsid "$HAPROXY" -db -f "$cfg" >"$T/$name.log" 2>&1 &
    LB_PID=$!
    HAPROXY_PIDS="$HAPROXY_PIDS $LB_PID"
    wait_port "$LB_PORT" 10 "$LB_PID" || { cat "$T/$name.log" >&2; die "$name did not start"; }
    # The first health checks run at start; give them a moment to mark the nodes up.
    sleep 1
}

# CPU seconds of the sessions led by each PID given.
sessions_cpu() {
    total=0
    for p in "$@"; do
        c=$(session_cpu "$p")
        total=$(awk -v a="$total" -v b="$c" 'BEGIN { printf "%.3f", a + b }')
    done
    echo "$total"
}

# --- the setups -------------------------------------------------------------------
case " $SETUPS " in
*" pg-"*)
    out=$(sh "$ROOT/scripts/pg-test-cluster.sh" start) || {
        rc=$?
        [ "$rc" -ne 3 ] || die "PostgreSQL is not installed (install postgresql-15: make deps)"
        die "the private PostgreSQL cluster did not start"
    }
    PG_DIR=$(echo "$out" | sed -n 1p)
    PG_DSN=$(echo "$out" | sed -n 2p)
    # The cluster's processes are the postmaster and its children (each of which leads
    # a session of its own, so that session_cpu would miss them).
    PG_PID=$(head -n 1 "$PG_DIR/data/postmaster.pid")
    make_site "$T/pg" "$PG_DSN"
    ;;
esac

for s in $SETUPS; do
    case $s in
    sqlite-direct)
        make_site "$T/sqlite" "$T/sqlite/submitd.db"
        start_node sqlite-direct "$T/sqlite" "$T/sqlite/submitd.db" no
        SQLITE_PID=$NODE_PID
        SQLITE_PORT=$NODE_PORT
        ;;
    pg-direct)
        start_node pg-direct "$T/pg" "$PG_DSN" no
        PGDIRECT_PID=$NODE_PID
        PGDIRECT_PORT=$NODE_PORT
        ;;
    pg-haproxy-1 | pg-haproxy-2) ;;
    *) die "unknown setup $s in BENCH_SCALE_SETUPS" ;;
    esac
done
case " $SETUPS " in
*" pg-haproxy-"*)
    start_node pg-node1 "$T/pg" "$PG_DSN" v2
    NODE1_PID=$NODE_PID
    NODE1_PORT=$NODE_PORT
    ;;
esac
case " $SETUPS " in
*" pg-haproxy-1 "*)
    start_haproxy haproxy-1 "$NODE1_PORT"
    LB1_PID=$LB_PID
    LB1_PORT=$LB_PORT
    ;;
esac
case " $SETUPS " in
*" pg-haproxy-2 "*)
    start_node pg-node2 "$T/pg" "$PG_DSN" v2
    NODE2_PID=$NODE_PID
    start_haproxy haproxy-2 "$NODE1_PORT" "$NODE_PORT"
    LB2_PID=$LB_PID
    LB2_PORT=$LB_PORT
    ;;
esac

echo "bench: $(nproc) cores, $(openssl version 2>/dev/null || echo 'openssl ?'), $("$HAPROXY" -v | head -n 1 | cut -d ' ' -f 1-3)," \
    "$("${PGBIN:-/usr/lib/postgresql/15/bin}/postgres" --version 2>/dev/null || echo 'postgres ?')"
echo "bench: setups: $SETUPS; shapes (messages per session): $SHAPES; concurrency=$CONCURRENCY size=$SIZE messages=$MESSAGES"
echo "bench: load average $(cut -d ' ' -f 1-3 /proc/loadavg) before the runs"

# --- runs -----------------------------------------------------------------------------
# run_setup SETUP SHAPE: one load generator run against the setup's port, then wait for
# the sink to have every accepted message.
run_setup() {
    setup=$1
    site=$T/pg
    lb=
    case $setup in
    sqlite-direct) site=$T/sqlite port=$SQLITE_PORT nodes=$SQLITE_PID ;;
    pg-direct) port=$PGDIRECT_PORT nodes=$PGDIRECT_PID ;;
    pg-haproxy-1) port=$LB1_PORT nodes=$NODE1_PID lb=$LB1_PID ;;
    *) port=$LB2_PORT nodes="$NODE1_PID $NODE2_PID" lb=$LB2_PID ;;
    esac
    per=${2%r}
    resume_opt=
    shape=per-session-$per
    if [ "$per" != "$2" ]; then
        resume_opt=--tls-resume
        shape=$shape-resumed
    fi
    before=$(sink_field messages)
    # shellcheck disable=SC2086 # one id per word
    n0=$(sessions_cpu $nodes)
    h0=0; [ -z "$lb" ] || h0=$(session_cpu "$lb")
    p0=0; [ -z "$PG_DIR" ] || p0=$(children_cpu "$PG_PID")
    # The machine's counter last: the readings above start interpreters whose CPU is
    # not the server's (at the end, m1 is read first for the same reason).
    m0=$(machine_cpu)
    lrc=0
    # shellcheck disable=SC2086
    run_client "$T/loadgen.out" "$LOADGEN" --host 127.0.0.1 --port "$port" \
        --cert "$site/users/bench.crt" --key "$site/users/bench.key" \
        --cafile "$site/ca/ca.crt" --from bench@example.com --to rcpt@example.net \
        --concurrency "$CONCURRENCY" --per-session "$per" --size "$SIZE" \
        --messages "$MESSAGES" --duration "$MAX_SECONDS" \
        --timeout 10 --max-failures 100 $resume_opt || lrc=$?
    sed "s/^loadgen: /loadgen: setup=$setup /" "$T/loadgen.out"
    if [ "$lrc" -ne 0 ]; then
        echo "bench: setup=$setup the load generator failed (status $lrc)" >&2
        RESULT=1
    fi
    ok=$(sed -n 's/^loadgen: shape=.* ok=\([0-9]*\) .*/\1/p' "$T/loadgen.out")
    [ -n "$ok" ] || ok=0
    [ "$ok" -eq "$MESSAGES" ] || { echo "bench: setup=$setup only $ok of $MESSAGES accepted" >&2; RESULT=1; }
    want=$((before + ok))
    start=$(date +%s)
    last_change=$start
    seen=$(sink_field messages)
    while [ "$seen" -lt "$want" ]; do
        t=$(date +%s)
        if [ $((t - start)) -ge "$DRAIN_TIMEOUT" ] || [ $((t - last_change)) -ge 30 ]; then
            echo "bench: setup=$setup the relay did not drain: $((seen - before)) of $ok relayed" >&2
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
    m1=$(machine_cpu)
    # shellcheck disable=SC2086
    n1=$(sessions_cpu $nodes)
    h1=0; [ -z "$lb" ] || h1=$(session_cpu "$lb")
    p1=0; [ -z "$PG_DIR" ] || p1=$(children_cpu "$PG_PID")
    awk -v setup="$setup" -v shape="$shape" -v ok="$ok" -v relayed="$((seen - before))" \
        -v m0="$m0" -v m1="$m1" -v n0="$n0" -v n1="$n1" -v h0="$h0" -v h1="$h1" \
        -v p0="$p0" -v p1="$p1" -v results="$RESULTS" \
        -v lg="$(sed -n 's/^loadgen: shape=/shape=/p' "$T/loadgen.out")" 'BEGIN {
        rate = "-"; p50 = "-"; p99 = "-"; lcpu = 0
        if (match(lg, / rate=[0-9.]+/)) rate = substr(lg, RSTART + 6, RLENGTH - 6)
        if (match(lg, / p50=[0-9.]+/)) p50 = substr(lg, RSTART + 5, RLENGTH - 5)
        if (match(lg, / p99=[0-9.]+/)) p99 = substr(lg, RSTART + 5, RLENGTH - 5)
        if (match(lg, / cpu=[0-9.]+/)) lcpu = substr(lg, RSTART + 5, RLENGTH - 5) + 0
        n = (ok > 0) ? ok : 1
        nodes = (n1 - n0) * 1000 / n; lb = (h1 - h0) * 1000 / n; pg = (p1 - p0) * 1000 / n
        client = lcpu * 1000 / n; machine = (m1 - m0) * 1000 / n
        printf "bench: setup=%s shape=%s accepted=%d relayed=%d rate=%s msg/s p50=%sms " \
               "p99=%sms cpu_per_msg nodes=%.2fms haproxy=%.2fms postgresql=%.2fms " \
               "client=%.2fms own=%.2fms machine=%.2fms\n", setup, shape, ok, relayed,
               rate, p50, p99, nodes, lb, pg, client, nodes + lb + pg + client, machine
        printf "%s %s %s %s %s %d %d %.3f %.3f %.3f %.3f %.3f\n", setup, shape, rate, p50,
               p99, ok, relayed, nodes, lb, pg, client, machine >> results
    }'
    for p in $nodes $lb; do
        kill -0 "$p" 2>/dev/null || die "setup=$setup: process $p exited during the run"
    done
}

r=1
while [ "$r" -le "$REPEAT" ]; do
    for s in $SETUPS; do
        for shape in $SHAPES; do
            run_setup "$s" "$shape"
        done
    done
    r=$((r + 1))
done
echo "bench: load average $(cut -d ' ' -f 1-3 /proc/loadavg) after the runs"
echo "bench: sink received $(sink_field messages) messages in total"

# --- summary ----------------------------------------------------------------------------
echo "bench: medians of $REPEAT run(s); CPU in ms per message (own = nodes + haproxy + postgresql + client)"
awk -v setups="$SETUPS" '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++)
            for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return (n % 2) ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function add(k, v) { vals[k] = (k in vals) ? vals[k] " " v : v }
    {
        k = $1 SUBSEP $2
        if (!(k in seen)) { seen[k] = 1; order[++nk] = k }
        add(k SUBSEP 1, $3); add(k SUBSEP 2, $4); add(k SUBSEP 3, $5)
        add(k SUBSEP 4, $8); add(k SUBSEP 5, $9); add(k SUBSEP 6, $10)
        add(k SUBSEP 7, $11); add(k SUBSEP 8, $12); add(k SUBSEP 9, $8 + $9 + $10 + $11)
        ok[k] += $6; relayed[k] += $7
    }
    END {
        printf "bench: | setup | shape | msg/s | p50 ms | p99 ms | nodes | haproxy | postgresql | client | own | machine |\n"
        for (i = 1; i <= nk; i++) {
            k = order[i]; split(k, sk, SUBSEP)
            for (m = 1; m <= 9; m++) med[m] = median(vals[k SUBSEP m])
            printf "bench: | %s | %s | %.1f | %.1f | %.1f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f |\n",
                   sk[1], sk[2], med[1], med[2], med[3], med[4], med[5], med[6], med[7], med[9], med[8]
            if (relayed[k] != ok[k])
                printf "bench: setup=%s shape=%s relayed %d of %d\n", sk[1], sk[2], relayed[k], ok[k]
        }
    }' "$RESULTS"

if [ "$RESULT" -ne 0 ]; then
    echo "bench: FAILED (see the failures above)" >&2
fi
exit "$RESULT"
