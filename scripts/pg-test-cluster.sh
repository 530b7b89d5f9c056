#!/bin/sh
# A private PostgreSQL cluster for the tests: Debian's postgresql-15, initialised into
# a temporary directory as an unprivileged user, listening only on a Unix socket in
# that directory (no TCP port), with one empty database.
#
#   sh scripts/pg-test-cluster.sh start          prints the directory, then the DSN
#   sh scripts/pg-test-cluster.sh restart DIR    pg_ctl restart (connections are lost)
#   sh scripts/pg-test-cluster.sh halt DIR       stops the server, keeping DIR
#   sh scripts/pg-test-cluster.sh resume DIR     starts it again
#   sh scripts/pg-test-cluster.sh stop DIR       stops the server and removes DIR
#
# Exits 3 with the reason on stderr when PostgreSQL is not installed, so that callers
# can print a skip. initdb refuses to run as root: as root the cluster belongs to
# PG_TEST_USER (default: the "postgres" user of the Debian package, else nobody).
set -eu

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

if [ ! -x "$PGBIN/initdb" ] || [ ! -x "$PGBIN/pg_ctl" ]; then
    echo "pg-test-cluster: $PGBIN/initdb not found (install postgresql-15)" >&2
    exit 3
fi

owner=${PG_TEST_USER:-}
if [ "$(id -u)" -eq 0 ] && [ -z "$owner" ]; then
    if id postgres >/dev/null 2>&1; then owner=postgres; else owner=nobody; fi
fi

# Runs a PostgreSQL program as the cluster's owner, from a directory it can read.
as_owner() {
    if [ -n "$owner" ]; then
        (cd "$dir" && setpriv --reuid="$owner" --regid="$(id -g "$owner")" --clear-groups \
            --reset-env -- "$@")
    else
        (cd "$dir" && "$@")
    fi
}

case "${1:-}" in
start)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/submitd-pg.XXXXXX")
    [ -z "$owner" ] || chown "$owner" "$dir"
    chmod 0700 "$dir"
    # Trust is safe here: the only way in is the socket in a directory of mode 0700.
    if ! as_owner "$PGBIN/initdb" -D "$dir/data" -U submitd -A trust -E UTF8 \
            >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        exit 1
    fi
    if ! as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-c listen_addresses='' -k $dir -c fsync=off -c max_connections=50" \
            start >/dev/null; then
        cat "$dir/server.log" >&2
        rm -rf "$dir"
        exit 1
    fi
    as_owner "$PGBIN/createdb" -h "$dir" -U submitd submitd_test
    echo "$dir"
    echo "postgresql:///submitd_test?host=$dir&user=submitd"
    ;;
restart | resume)
    dir=${2:?usage: pg-test-cluster.sh $1 DIR}
    if [ "$1" = restart ]; then action="restart -m fast"; else action=start; fi
    # shellcheck disable=SC2086
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $dir -c fsync=off -c max_connections=50" \
        $action >/dev/null
    ;;
halt)
    dir=${2:?usage: pg-test-cluster.sh halt DIR}
    as_owner "$PGBIN/pg_ctl" -D "$dir/data" -w -m fast stop >/dev/null
    ;;
stop)
    dir=${2:?usage: pg-test-cluster.sh stop DIR}
    [ -d "$dir/data" ] && as_owner "$PGBIN/pg_ctl" -D "$dir/data" -w -m immediate stop \
        >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
*)
    echo "usage: pg-test-cluster.sh start | restart DIR | halt DIR | resume DIR | stop DIR" >&2
    exit 2
    ;;
esac
