#!/bin/sh
# Runs the real mail clients of tests/clients against a real submitd and prints the
# totals as the last line:  N passed, N failed, N skipped
# Usage: sh scripts/run-client-tests.sh BUILD_DIR
#
# The clients are full applications that would otherwise try the network (updates,
# telemetry, remote settings). When the kernel allows it, the whole run gets a network
# namespace of its own with only the loopback interface: daemon, upstream and clients
# talk over 127.0.0.1 and nothing else is reachable.
set -u
B=${1:-build}
cd "$(dirname "$0")/.." || exit 1
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_pytest='SUBMITD_BUILD="$0" /usr/bin/python3 -m pytest -p no:cacheprovider -q -rs tests/clients'
if [ "${SUBMITD_CLIENTS_NETNS:-1}" = 1 ] && command -v unshare >/dev/null 2>&1 \
   && command -v ip >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
    echo "== client tests (network namespace: loopback only)"
    unshare -n sh -c "ip link set lo up && $run_pytest" "$B" > "$log" 2>&1
else
    echo "== client tests (no network namespace available: clients are kept off the network by their settings)"
    sh -c "$run_pytest" "$B" > "$log" 2>&1
fi
rc=$?
cat "$log"

last=$(tail -n 1 "$log")
count() { echo "$last" | grep -Eo "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
passed=$(count passed)
failed=$(( $(count failed) + $(count 'errors?') ))
skipped=$(count skipped)
if [ $rc -ne 0 ] && [ $rc -ne 1 ] && [ $rc -ne 5 ]; then
    # pytest exit codes: 1 = some tests failed (counted above), 5 = none collected.
    echo "pytest did not run cleanly (exit $rc)"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
