#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests, on 127.0.0.1 with trust auth.
#
#   .ci/postgres.sh install      # the server via apt-get, unless initdb/pg_ctl are found
#   eval "$(.ci/postgres.sh start DIR)"   # new cluster in DIR (made if missing, must be empty);
#                                # prints `export CHUTES_TEST_POSTGRES_URL=postgresql://...`
#   .ci/postgres.sh stop DIR     # stop it and delete DIR
#
# As root the server runs as the `postgres` user (made if missing): initdb refuses root.
set -euo pipefail

say() { echo "postgres.sh: $*" >&2; }

# initdb and pg_ctl on PATH, else Debian's versioned folders (off PATH), newest first.
find_bindir() {
    local initdb dir
    if initdb=$(command -v initdb) && command -v pg_ctl >/dev/null; then
        dirname "$(readlink -f "$initdb")"
        return 0
    fi
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x $dir/initdb && -x $dir/pg_ctl ]]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

install_server() {
    if bindir=$(find_bindir); then
        say "server binaries found in $bindir"
        return 0
    fi
    if ! command -v apt-get >/dev/null; then
        say "no initdb/pg_ctl and no apt-get: install the PostgreSQL server by hand"
        return 1
    fi
    say "installing the PostgreSQL server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    local log
    log=$(mktemp)
    if ! { apt-get update -q && apt-get install -y -q --no-install-recommends postgresql; } \
        >"$log" 2>&1; then
        say "apt-get failed:"
        tail -n 20 "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    bindir=$(find_bindir) || { say "apt-get installed postgresql but no initdb was found"; return 1; }
    say "server binaries installed in $bindir"
}

# Run a server command as the cluster's owner (from /: the owner may not read our folder).
as_owner() {
    if [[ $(id -u) -ne 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && su -s /bin/sh postgres -c "$(printf '%q ' "$@")")
    fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 port
    bindir=$(find_bindir) || { say "PostgreSQL server binaries not found (try: $0 install)"; return 1; }
    mkdir -p "$dir"
    if [[ -n $(ls -A "$dir") ]]; then
        say "$dir is not empty"
        return 1
    fi
    if [[ $(id -u) -eq 0 ]]; then
        if ! id -u postgres >/dev/null 2>&1; then
            say "creating the postgres user"
            useradd --system --user-group --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin postgres
        fi
        chown postgres: "$dir"
        chmod 700 "$dir"
    fi
    as_owner "$bindir/initdb" --pgdata="$dir/data" --username=postgres --auth=trust \
        --encoding=UTF8 --locale=C --no-sync >"$dir/initdb.log" 2>&1 \
        || { say "initdb failed:"; cat "$dir/initdb.log" >&2; return 1; }
    port=$(free_port)
    # A throwaway cluster: no fsync; the unix socket stays in its own folder.
    if ! as_owner "$bindir/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait \
        --timeout=60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off" start >/dev/null; then
        say "pg_ctl start failed:"
        cat "$dir/server.log" >&2
        return 1
    fi
    echo "$bindir" >"$dir/bindir"
    say "PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port in $dir"
    echo "export CHUTES_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/postgres"
}

stop() {
    local dir=$1
    if [[ -f $dir/bindir && -d $dir/data ]]; then
        as_owner "$(cat "$dir/bindir")/pg_ctl" --pgdata="$dir/data" --mode=immediate stop \
            >/dev/null 2>&1 || say "pg_ctl stop failed (already stopped?)"
    fi
    rm -rf "$dir"
}

case "${1:-}" in
    install) install_server ;;
    start) start "${2:?usage: $0 start DIR}" ;;
    stop) stop "${2:?usage: $0 stop DIR}" ;;
    *)
        echo "usage: $0 install | start DIR | stop DIR" >&2
        exit 2
        ;;
esac
