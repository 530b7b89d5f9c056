#!/bin/sh
# Helpers shared by scripts/bench.sh and scripts/bench-scale.sh, sourced by both.
# They expect PY (the Python interpreter), ROOT (the checkout) and T (the temporary
# directory) to be set, and LOADGEN_PID and SINK_PID to be variables of the caller.
# shellcheck shell=sh
# shellcheck disable=SC2034 # LOADGEN_PID, SINK_PID and SINK_PORT are the caller's

die() {
    echo "bench: $*" >&2
    exit 1
}

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


now() {
    date +%s.%N
}

free_port() {
    # A free port on 127.0.0.1 that is none of the arguments (ports already chosen).
    "$PY" "$ROOT"/scripts/free-port.py "$@"
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

# CPU seconds of every process in session SID, with the children they reaped
# (utime, stime, cutime, cstime of /proc/PID/stat); with more arguments, of the
# processes of those names only.
session_cpu() {
    "$PY" - "$@" <<'EOF'
import os, sys
sid, names, total = int(sys.argv[1]), sys.argv[2:], 0
for name in os.listdir("/proc"):
    if not name.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % name) as f:
            head, _, rest = f.read().rpartition(")")
    except OSError:
        continue
    fields = rest.split()
    if int(fields[3]) == sid and (not names or head.split("(", 1)[1] in names):
        total += sum(int(x) for x in fields[11:15])
print("%.3f" % (total / os.sysconf("SC_CLK_TCK")))
EOF
}

# CPU seconds of process PID and of its children, with the children they reaped: for
# servers whose children leave its session, as PostgreSQL's backends do.
children_cpu() {
    "$PY" - "$1" <<'EOF'
import os, sys
top, total = int(sys.argv[1]), 0
for name in os.listdir("/proc"):
    if not name.isdigit():
        continue
    try:
        with open("/proc/%s/stat" % name) as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        continue
    if int(name) == top or int(fields[1]) == top:
        total += sum(int(x) for x in fields[11:15])
print("%.3f" % (total / os.sysconf("SC_CLK_TCK")))
EOF
}

# CPU seconds process PID has spent (utime and stime of /proc/PID/stat).
pid_cpu() {
    sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f\n", ($12 + $13) / hz }'
}

# CPU seconds the whole machine has spent (user, nice, system, irq, softirq, steal).
machine_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.3f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
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

# Starts the counting SMTP sink (tests/bench/sink.c, built as $B/bin/submitd-sink) as
# the upstream; sets SINK_PID and SINK_PORT. sink_field reads its statistics.
# Waits until FILE holds the port that process PID listens on; fails after 10 s or as
# soon as PID has exited.
wait_port_file() {
    waited=0
    while [ ! -s "$1" ]; do
        if ! kill -0 "$2" 2>/dev/null || [ "$waited" -ge 100 ]; then
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

start_sink() {
    "$B/bin/submitd-sink" --port-file "$T/sink.port" --stats "$T/sink.stats" \
        >"$T/sink.log" 2>&1 &
    SINK_PID=$!
    if ! wait_port_file "$T/sink.port" "$SINK_PID"; then
        cat "$T/sink.log" >&2
        die "the sink did not write its port within 10 s"
    fi
    SINK_PORT=$(cat "$T/sink.port")
}

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
