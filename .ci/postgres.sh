#!/usr/bin/env bash
# Start a private PostgreSQL cluster for autopeft's tests and print its URL.
#
#   eval "$(bash .ci/postgres.sh | tail -1)"   # sets AUTOPEFT_TEST_POSTGRES_URL
#   bash .ci/postgres.sh running               # exit 0 when the cluster is running
#   bash .ci/postgres.sh stop                  # stop it (nothing to do when it is not running)
#
# Installs Debian's `postgresql` if no server binaries are found, then runs a throw-away
# cluster (initdb + pg_ctl) in a directory owned by the `postgres` user, listening only
# on 127.0.0.1 on a free port with trust authentication: a test fixture, never a server
# to keep data in. Rerunning reuses the running cluster (or restarts the stopped one).
# Diagnostics go to stderr; the last stdout line is the `export ...` to eval.
#
# Environment:
#   AUTOPEFT_PG_DIR  where the cluster lives (default: $TMPDIR/autopeft-pg-$UID)
#   AUTOPEFT_PG_DB   database to create (default: autopeft_test)
set -euo pipefail

DIR="${AUTOPEFT_PG_DIR:-${TMPDIR:-/tmp}/autopeft-pg-$(id -u)}"
DB="${AUTOPEFT_PG_DB:-autopeft_test}"
DATA="$DIR/data"
log() { echo "postgres.sh: $*" >&2; }

find_bindir() {
    # Debian keeps the server binaries out of PATH, one directory per major version.
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
    return 1
}

BIN="$(find_bindir || true)"
case "${1:-start}" in
    start) ;;
    running|stop)
        [ -n "$BIN" ] && [ -s "$DATA/PG_VERSION" ] || { [ "$1" = stop ] && exit 0; exit 1; }
        if [ "$(id -u)" = 0 ]; then pg() { runuser -u postgres -- "$@"; }; else pg() { "$@"; }; fi
        pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 || { [ "$1" = stop ] && exit 0; exit 1; }
        [ "$1" = running ] && exit 0
        log "stopping the cluster in $DATA"
        pg "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >&2
        exit 0 ;;
    *) log "usage: postgres.sh [start|running|stop]"; exit 2 ;;
esac
if [ -z "$BIN" ]; then
    [ "$(id -u)" = 0 ] || { log "PostgreSQL is not installed and this is not root: apt-get install postgresql"; exit 1; }
    log "installing Debian's postgresql ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    BIN="$(find_bindir)" || { log "postgresql installed but initdb not found"; exit 1; }
fi

# initdb and postgres refuse to run as root: as root, run them as the postgres user.
if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$DIR" --shell /bin/sh postgres
    as_pg() { runuser -u postgres -- "$@"; }
    OWNER=postgres
else
    as_pg() { "$@"; }
    OWNER="$(id -un)"
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$DIR"
chown "$OWNER" "$DIR"
chmod 700 "$DIR"

if [ ! -s "$DATA/PG_VERSION" ]; then
    log "initdb in $DATA"
    rm -rf "$DATA"
    # -U postgres: the superuser is called postgres whichever OS user owns the files.
    as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 \
        || as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --no-locale >"$DIR/initdb.log" 2>&1 \
        || { cat "$DIR/initdb.log" >&2; exit 1; }
    # A disposable test cluster: durability buys nothing, speed does. Loopback only; the
    # socket lives in our own directory, not in /var/run/postgresql (may not exist or be writable).
    cat >>"$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
fi

PORT=""
if as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 && [ -s "$DIR/port" ]; then
    PORT="$(cat "$DIR/port")"
    log "reusing the running cluster in $DATA on port $PORT"
else
    for attempt in 1 2 3; do
        PORT="$(free_port)"
        echo "$PORT" >"$DIR/port"
        if as_pg "$BIN/pg_ctl" -D "$DATA" -l "$DIR/server.log" -w -t 60 -o "-p $PORT" start >&2; then
            break
        fi
        log "start on port $PORT failed (attempt $attempt); last log lines:"
        tail -5 "$DIR/server.log" >&2 || true
        PORT=""
    done
    [ -n "$PORT" ] || { log "could not start PostgreSQL; see $DIR/server.log"; exit 1; }
fi

PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -tAq)
for _ in $(seq 1 30); do "${PSQL[@]}" -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname = '$DB'")" != 1 ]; then
    "${PSQL[@]}" -c "CREATE DATABASE \"$DB\"" >&2
    log "created database $DB"
fi
python3 -c 'import psycopg' 2>/dev/null || log "warning: the Python driver is missing: pip install 'psycopg[binary]'"
log "stop it with: $( [ "$(id -u)" = 0 ] && echo 'runuser -u postgres -- ')$BIN/pg_ctl -D $DATA stop"
echo "export AUTOPEFT_TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"
