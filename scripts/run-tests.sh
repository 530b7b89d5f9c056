#!/bin/sh
# Runs every test suite and prints the grand total as the last line:
#   N passed, N failed
# Just before it: "N skipped", then one line per skipped test with its reason, so a
# skip is never silent. A CI parser reads the last line: keep its form.
# Usage: sh scripts/run-tests.sh BUILD_DIR   (build or build-san)
# SUBMITD_TEST_SEED=N repeats the random choices of an earlier run (printed below).
set -u
B=${1:-build}
cd "$(dirname "$0")/.." || exit 1
passed=0
failed=0
skipped=0
log=$(mktemp)
skips=$(mktemp)
trap 'rm -f "$log" "$skips"' EXIT

# One seed for the whole run, shared by every suite that makes random choices.
if [ -z "${SUBMITD_TEST_SEED:-}" ]; then
    SUBMITD_TEST_SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fi
export SUBMITD_TEST_SEED
echo "seed: SUBMITD_TEST_SEED=$SUBMITD_TEST_SEED (set it to repeat this run)"

add_counts() {
    # Takes the last "N passed", "N skipped" and the last "N failed"/"N error(s)" of
    # $log: the unit harness and pytest both end with such a summary line.
    p=$(grep -Eo '[0-9]+ passed' "$log" | tail -n 1 | awk '{print $1}')
    f=$(tail -n 1 "$log" | grep -Eo '[0-9]+ (failed|errors?)' | awk '{s += $1} END {print s + 0}')
    s=$(tail -n 1 "$log" | grep -Eo '[0-9]+ skipped' | awk '{print $1}')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    skipped=$((skipped + ${s:-0}))
}

echo "== unit tests"
for t in "$B"/tests/test_*; do
    [ -x "$t" ] || continue
    "$t" > "$log" 2>&1
    rc=$?
    grep -E '^(FAIL|  FAIL|SKIP )|passed' "$log"
    # "SKIP name: reason" from tests/unit/unit.h, named by the binary.
    sed -n "s|^SKIP |${t##*/}: |p" "$log" >> "$skips"
    add_counts
    if [ $rc -ne 0 ] && ! grep -q 'failed' "$log"; then
        echo "$t: crashed (exit $rc)"; tail -n 20 "$log"
        failed=$((failed + 1))
    fi
done

# The conformance suite again, on PostgreSQL: a private cluster (scripts/pg-test-cluster.sh)
# with a new database, restarted once by the test of a lost connection.
echo "== db conformance on PostgreSQL"
pg_out=$(mktemp)
if [ -x "$B/tests/test_db_conformance" ]; then
    sh scripts/pg-test-cluster.sh start > "$pg_out" 2> "$log"
    rc=$?
    if [ $rc -eq 0 ]; then
        pg_dir=$(sed -n 1p "$pg_out")
        pg_dsn="postgresql://submitd:conformance-pw@/submitd_test?host=$pg_dir"
        SUBMITD_TEST_DSN=$pg_dsn SUBMITD_TEST_DSN_SECRET=conformance-pw \
            SUBMITD_TEST_RESTART="sh scripts/pg-test-cluster.sh restart $pg_dir" \
            SUBMITD_TEST_HALT="sh scripts/pg-test-cluster.sh halt $pg_dir" \
            SUBMITD_TEST_RESUME="sh scripts/pg-test-cluster.sh resume $pg_dir" \
            "$B/tests/test_db_conformance" > "$log" 2>&1
        rc=$?
        sh scripts/pg-test-cluster.sh stop "$pg_dir"
        grep -E '^(FAIL|  FAIL|SKIP )|passed' "$log"
        sed -n "s|^SKIP |test_db_conformance (PostgreSQL): |p" "$log" >> "$skips"
        add_counts
        if [ $rc -ne 0 ] && ! grep -q 'failed' "$log"; then
            echo "test_db_conformance (PostgreSQL): crashed (exit $rc)"; tail -n 20 "$log"
            failed=$((failed + 1))
        fi
    elif [ $rc -eq 3 ]; then
        echo "test_db_conformance (PostgreSQL): $(cat "$log")" >> "$skips"
        skipped=$((skipped + 1))
    else
        echo "test_db_conformance (PostgreSQL): the private cluster did not start:"
        cat "$log"
        failed=$((failed + 1))
    fi
fi
rm -f "$pg_out"

echo "== integration tests"
SUBMITD_BUILD=$B /usr/bin/python3 -m pytest -p no:cacheprovider -q tests/integration > "$log" 2>&1
rc=$?
cat "$log"
# "SKIP test-id: reason" from tests/integration/conftest.py.
sed -n 's|^SKIP ||p' "$log" >> "$skips"
add_counts
if [ $rc -ne 0 ] && [ $rc -ne 1 ]; then
    # pytest exit codes: 1 = some tests failed (counted above); others are errors.
    echo "pytest did not run cleanly (exit $rc)"
    failed=$((failed + 1))
fi

echo "seed: SUBMITD_TEST_SEED=$SUBMITD_TEST_SEED"
listed=$(wc -l < "$skips")
# A binary that crashed listed its skips but printed no total: count what it listed.
[ "$listed" -gt "$skipped" ] && skipped=$listed
if [ "$skipped" -eq 0 ]; then
    echo "0 skipped"
else
    echo "$skipped skipped:"
    sed 's|^|  |' "$skips"
    if [ "$listed" -ne "$skipped" ]; then
        echo "  ($((skipped - listed)) skipped without a SKIP line: see the output above)"
    fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
