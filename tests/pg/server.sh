#!/usr/bin/env bash
# A private PostgreSQL server for the fleet tests: `start` creates a cluster under
# $PGTEST_DIR (default /tmp/fracture-pg-PORT: the server's user must reach it, which a
# checkout under /root would not let it), listening on 127.0.0.1:$PGTEST_PORT (default one
# port per checkout, 54000 + a hash of its path, so two checkouts do not meet) with
# password authentication, and prints the URL the tests use (FRACTURE_TEST_POSTGRES);
# `stop` stops it; `url` prints the URL. Runs the server as `postgres` when started by root
# (PostgreSQL refuses to run as root). Needs Debian's postgresql package (.ci/run installs it).
set -euo pipefail
cd "$(dirname "$0")/../.."
port=${PGTEST_PORT:-$((54000 + $(printf %s "$PWD" | cksum | cut -d' ' -f1) % 900))}
dir=${PGTEST_DIR:-/tmp/fracture-pg-$port}
url="postgresql://fracture:fracture@127.0.0.1:$port/postgres"
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
[ -n "$bin" ] && [ -x "$bin/initdb" ] || { echo "tests/pg/server.sh: no PostgreSQL server installed (apt-get install postgresql)" >&2; exit 1; }
as() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "${1:-}" in
start)
    if [ -f "$dir/data/postmaster.pid" ] && as "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        echo "$url"; exit 0
    fi
    rm -rf "$dir"; mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    echo fracture >"$dir/pw"; [ "$(id -u)" = 0 ] && chown postgres "$dir/pw"
    as "$bin/initdb" -D "$dir/data" -U fracture --pwfile="$dir/pw" --auth=scram-sha-256 \
        -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    as "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=300 -c fsync=off" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "$url"
    ;;
stop)
    [ -d "$dir/data" ] && as "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
url) echo "$url" ;;
*) echo "usage: $0 start|stop|url" >&2; exit 2 ;;
esac
