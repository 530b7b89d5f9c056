#!/bin/sh
# Runs every test suite and prints the grand total as the last line:
#   N passed, N failed
# Usage: sh scripts/run-tests.sh BUILD_DIR   (build or build-san)
set -u
B=${1:-build}
cd "$(dirname "$0")/.." || exit 1
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

add_counts() {
    # Takes the last "N passed" and the last "N failed"/"N error(s)" of $log: the
    # unit harness and pytest both end with such a summary line.
    p=$(grep -Eo '[0-9]+ passed' "$log" | tail -n 1 | awk '{print $1}')
    f=$(tail -n 1 "$log" | grep -Eo '[0-9]+ (failed|errors?)' | awk '{s += $1} END {print s + 0}')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
}

echo "== unit tests"
for t in "$B"/tests/test_*; do
    [ -x "$t" ] || continue
    "$t" > "$log" 2>&1
    rc=$?
    grep -E '^(FAIL|  FAIL)|passed' "$log"
    add_counts
    if [ $rc -ne 0 ] && ! grep -q 'failed' "$log"; then
        echo "$t: crashed (exit $rc)"; tail -n 20 "$log"
        failed=$((failed + 1))
    fi
done

echo "== integration tests"
SUBMITD_BUILD=$B /usr/bin/python3 -m pytest -p no:cacheprovider -q tests/integration > "$log" 2>&1
rc=$?
cat "$log"
add_counts
if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
    # pytest exit codes: 1 = some tests failed (counted above); others are errors.
    echo "pytest did not run cleanly (exit $rc)"
    failed=$((failed + 1))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
