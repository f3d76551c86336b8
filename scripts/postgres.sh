#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests and CI: one local cluster, no system service.
#
#   bash scripts/postgres.sh install   # Debian's server packages, if their binaries are missing
#   bash scripts/postgres.sh start     # initdb (first time), start; prints the DSN on stdout
#   bash scripts/postgres.sh stop
#   bash scripts/postgres.sh status    # exit 0 when running, 3 when not
#   bash scripts/postgres.sh dsn       # postgresql://postgres@127.0.0.1:54329/postgres
#
# The cluster lives in ${SENSORSTREAM_SERVICES:-<repo>/.services}/postgres, listens on
# 127.0.0.1:${SENSORSTREAM_PG_PORT:-54329} only (its unix socket in the data folder), trusts
# every local connection and runs with fsync off: it holds test data, nothing to keep. Every
# subcommand is safe to repeat. PostgreSQL refuses to run as root, so as root the server runs
# as the `postgres` system user (created when absent); when that user cannot reach the data
# folder (a repository under a private /root, say) or the socket path would be too long, the
# cluster lives in /tmp/sensorstream-<hash of the repository path>/postgres instead.
#
# The binaries come from Debian's /usr/lib/postgresql/<version>/bin, newest version first,
# never from PATH: /usr/local/bin may hold other pg_ctl wrappers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES="${SENSORSTREAM_SERVICES:-$ROOT/.services}"
PORT="${SENSORSTREAM_PG_PORT:-54329}"
PG_USER=postgres
DSN="postgresql://postgres@127.0.0.1:$PORT/postgres"
# sun_path holds 108 bytes; keep a margin for the ".s.PGSQL.<port>.lock" file beside the socket.
MAX_SOCKET_PATH=100

# say, die and is_root; the broker helpers there are not for a pg_ctl cluster.
SERVICE_SCRIPT=postgres.sh
# shellcheck source-path=SCRIPTDIR source=lib/service.sh
source "$ROOT/scripts/lib/service.sh"

# The newest Debian server binaries, or nothing; a version given as $1 is preferred.
find_bin_dir() {
    local wanted="${1:-}" dir
    if [ -n "$wanted" ] && [ -x "/usr/lib/postgresql/$wanted/bin/pg_ctl" ]; then
        echo "/usr/lib/postgresql/$wanted/bin"
        return
    fi
    # Versions are plain numbers (15, 16), so word splitting the list is safe.
    for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4 -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            echo "$dir"
            return
        fi
    done
}

# Run a command as the server's user: as root that is `postgres`, else whoever runs this.
as_pg() {
    if is_root; then
        (cd / && runuser -u "$PG_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

ensure_pg_user() {
    is_root || return 0
    if ! id -u "$PG_USER" >/dev/null 2>&1; then
        say "creating the system user $PG_USER"
        useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
            --user-group "$PG_USER"
    fi
}

# Whether the server's user can reach (search) the folder $1, or its nearest existing parent.
reachable() {
    local dir="$1"
    while [ ! -e "$dir" ]; do dir="$(dirname "$dir")"; done
    ! is_root || ! id -u "$PG_USER" >/dev/null 2>&1 || runuser -u "$PG_USER" -- test -x "$dir"
}

# Where the cluster lives; the same answer every time for the same repository and settings.
data_dir() {
    local preferred="$SERVICES/postgres"
    if reachable "$SERVICES" && [ "${#preferred}" -le $((MAX_SOCKET_PATH - 20)) ]; then
        echo "$preferred"
        return
    fi
    local hash
    hash="$(printf '%s' "$SERVICES" | sha256sum | cut -c1-12)"
    echo "/tmp/sensorstream-$hash/postgres"
}

DATA="$(data_dir)"

bin_dir_or_die() {
    local version=""
    [ -f "$DATA/PG_VERSION" ] && version="$(cat "$DATA/PG_VERSION")"
    BIN="$(find_bin_dir "$version")"
    [ -n "$BIN" ] || die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin; run \`bash scripts/postgres.sh install\`"
    if [ -n "$version" ] && [ "$BIN" != "/usr/lib/postgresql/$version/bin" ]; then
        die "$DATA was made by PostgreSQL $version, but only $BIN is installed; run \`bash scripts/postgres.sh stop\`, remove $DATA and start again"
    fi
}

running() {
    [ -f "$DATA/PG_VERSION" ] && as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

# The DSN of the running server: its port from postmaster.pid (line 4), should it differ.
running_dsn() {
    local port
    port="$(sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true)"
    echo "postgresql://postgres@127.0.0.1:${port:-$PORT}/postgres"
}

cmd_install() {
    if [ -n "$(find_bin_dir)" ]; then
        say "PostgreSQL found in $(find_bin_dir)"
        ensure_pg_user
        return
    fi
    is_root || die "PostgreSQL is not installed and installing it needs root: run \`sudo bash scripts/postgres.sh install\`"
    say "installing Debian's postgresql package"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    [ -n "$(find_bin_dir)" ] || die "apt-get installed postgresql, yet /usr/lib/postgresql/*/bin holds no server binaries"
    ensure_pg_user
    say "PostgreSQL installed in $(find_bin_dir)"
}

init_cluster() {
    if [ -d "$DATA" ] && [ -n "$(ls -A "$DATA")" ]; then
        die "$DATA exists but holds no PostgreSQL cluster (no PG_VERSION); remove it and start again"
    fi
    # initdb into a fresh folder beside the final one, then rename: an initdb cut short
    # leaves no half-made cluster that the next start would trip over.
    local parent fresh
    parent="$(dirname "$DATA")"
    (umask 022 && mkdir -p "$parent")
    fresh="$(mktemp -d "$parent/.initdb.XXXXXX")"
    is_root && chown "$PG_USER:" "$fresh"
    chmod 700 "$fresh"
    say "initdb $DATA (PostgreSQL $(basename "$(dirname "$BIN")"))"
    if ! as_pg "$BIN/initdb" -D "$fresh" -U postgres --auth=trust --encoding=UTF8 --locale=C \
        >"$parent/initdb.log" 2>&1; then
        cat "$parent/initdb.log" >&2
        rm -rf "$fresh"
        die "initdb failed (its output is above and in $parent/initdb.log)"
    fi
    cat >"$fresh/pg_hba.conf" <<'EOF'
# Throwaway test cluster: trust every connection from this machine, nothing else.
local all all trust
host all all 127.0.0.1/32 trust
EOF
    cat >>"$fresh/postgresql.conf" <<EOF

# --- scripts/postgres.sh: a throwaway cluster for tests ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DATA'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    is_root && chown "$PG_USER:" "$fresh/pg_hba.conf" "$fresh/postgresql.conf"
    [ -d "$DATA" ] && rmdir "$DATA"
    mv "$fresh" "$DATA"
}

cmd_start() {
    bin_dir_or_die
    ensure_pg_user
    if running; then
        say "already running in $DATA"
        running_dsn
        return
    fi
    [ -f "$DATA/PG_VERSION" ] || init_cluster
    say "starting on 127.0.0.1:$PORT (data and log in $DATA)"
    local log="$DATA/server.log" before=0 reason
    [ -f "$log" ] && before="$(stat -c %s "$log")"
    if ! as_pg "$BIN/pg_ctl" -D "$DATA" -l "$log" -w -t 60 -o "-p $PORT" start >/dev/null; then
        # What this start added to the log, and its last complaint for the error message.
        tail -c +$((before + 1)) "$log" 2>/dev/null | tail -n 20 >&2 || true
        reason="$(tail -c +$((before + 1)) "$log" 2>/dev/null | grep -E 'FATAL|PANIC' |
            tail -n 1 | sed -E 's/^.*(FATAL|PANIC): +//' || true)"
        die "PostgreSQL did not start: ${reason:-see $log} (if port $PORT is taken, set SENSORSTREAM_PG_PORT)"
    fi
    echo "$DSN"
}

cmd_stop() {
    bin_dir_or_die
    if ! running; then
        say "not running ($DATA)"
        return
    fi
    as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
    say "stopped ($DATA)"
}

cmd_status() {
    bin_dir_or_die
    if running; then
        say "running in $DATA"
        running_dsn
    else
        say "not running ($DATA)"
        exit 3
    fi
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    dsn) echo "$DSN" ;;
    *)
        echo "usage: bash scripts/postgres.sh install|start|stop|status|dsn" >&2
        exit 2
        ;;
esac
