# Sourced by .ci/run: a throwaway PostgreSQL server for the test of `devsim tune` with
# workers sharing one study in a database (tests/test_tune.py). Installs PostgreSQL from
# the system package manager where it is missing, starts a server on a free localhost
# port in a temporary folder (as an unprivileged user: postgres refuses to run as root),
# exports DEVSIM_TEST_POSTGRES_URL and stops the server when the calling script exits.
# Where PostgreSQL cannot be installed or started it says why and exports nothing; the
# test is then skipped.

PG_DIR="" PG_BIN="" PG_USER="" PG_WHY=""

_pg_bin() {  # the folder holding initdb and pg_ctl, if any
    local dir
    for dir in "$(dirname "$(command -v initdb || echo .)")" \
               $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    done
    return 1
}

_pg_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        PG_WHY="PostgreSQL is missing and cannot be installed here (needs root and apt-get)"
        return 1
    fi
    echo "postgres: installing PostgreSQL from apt" >&2
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >/dev/null; then
        PG_WHY="apt-get install postgresql failed"
        return 1
    fi
}

_pg_as() {  # run a command as the server's user
    if [ "$(id -un)" = "$PG_USER" ]; then "$@"; else runuser -u "$PG_USER" -- "$@"; fi
}

_pg_start() {
    local port
    if ! PG_BIN=$(_pg_bin); then
        _pg_install || return 1
        PG_BIN=$(_pg_bin) || { PG_WHY="no initdb found after installing PostgreSQL"; return 1; }
    fi
    PG_DIR=$(mktemp -d /tmp/devsim-pg.XXXXXX)
    PG_USER=$(id -un)
    if [ "$(id -u)" = 0 ]; then
        PG_USER=postgres
        if ! id -u "$PG_USER" >/dev/null 2>&1 && ! useradd --system --no-create-home "$PG_USER"; then
            PG_WHY="cannot create the unprivileged user $PG_USER"
            return 1
        fi
        chown "$PG_USER" "$PG_DIR"
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if ! _pg_as "$PG_BIN/initdb" -D "$PG_DIR/data" -U devsim --auth=trust -E UTF8 \
            >"$PG_DIR/initdb.log" 2>&1; then
        PG_WHY="initdb failed: $(tail -n 1 "$PG_DIR/initdb.log")"
        return 1
    fi
    if ! _pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
            -o "-p $port -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null; then
        PG_WHY="the server did not start: $(tail -n 1 "$PG_DIR/server.log")"
        return 1
    fi
    export DEVSIM_TEST_POSTGRES_URL="postgresql://devsim@127.0.0.1:$port/postgres"
}

_pg_stop() {
    if [ -n "$PG_DIR" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
        _pg_as "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    if [ -n "$PG_DIR" ]; then rm -rf "$PG_DIR"; fi
}

trap _pg_stop EXIT
if _pg_start; then
    echo "postgres: throwaway server at $DEVSIM_TEST_POSTGRES_URL" >&2
else
    echo "postgres: not available ($PG_WHY); the PostgreSQL test of devsim tune is skipped" >&2
fi
