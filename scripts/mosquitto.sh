#!/usr/bin/env bash
# A local Mosquitto MQTT broker for the tests and CI: our own process, never the system service.
#
#   bash scripts/mosquitto.sh install   # Debian's mosquitto package, if /usr/sbin/mosquitto is missing
#   bash scripts/mosquitto.sh start     # config and certificates (first time), start; prints the URL
#   bash scripts/mosquitto.sh stop
#   bash scripts/mosquitto.sh restart   # stop, then start: persistent sessions and queues survive
#   bash scripts/mosquitto.sh status    # exit 0 when running, 3 when not
#   bash scripts/mosquitto.sh url       # mqtt://127.0.0.1:18830
#
# Three listeners, all on 127.0.0.1 only, port P = ${SENSORSTREAM_MQTT_PORT:-18830}:
#   P      anonymous
#   P + 1  username and password required: sensorstream / sensorstream
#   P + 2  TLS, anonymous; the server's certificate (CN 127.0.0.1, SANs 127.0.0.1 and localhost)
#          is signed by a self-signed CA made once, <services>/mosquitto/tls/ca.crt
# Persistence is on, saved every second and at shutdown, so a restart keeps persistent sessions
# and their queued QoS 1 messages; the queue per client holds up to a million messages.
#
# Everything lives in ${SENSORSTREAM_SERVICES:-<repo>/.services}/mosquitto: config, password
# file, certificates, persistence, log and pid file. Every subcommand is safe to repeat. As root,
# mosquitto drops to the `mosquitto` user, which owns that folder; should that user be unable to
# reach it (a repository under a private /root, say), the broker stays root instead.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES="${SENSORSTREAM_SERVICES:-$ROOT/.services}"
PORT="${SENSORSTREAM_MQTT_PORT:-18830}"
AUTH_PORT=$((PORT + 1))
TLS_PORT=$((PORT + 2))
DIR="$SERVICES/mosquitto"
CONF="$DIR/mosquitto.conf"
PID_FILE="$DIR/mosquitto.pid"
LOG="$DIR/mosquitto.log"
TLS="$DIR/tls"
BIN=/usr/sbin/mosquitto
PASSWD_BIN=/usr/bin/mosquitto_passwd
# While it exists, Debian's maintainer scripts start no service (exit 101: "not allowed").
POLICY_RC=/usr/sbin/policy-rc.d
MQTT_USER=sensorstream
MQTT_PASSWORD=sensorstream
URL="mqtt://127.0.0.1:$PORT"
START_TIMEOUT_S=30
STOP_TIMEOUT_S=30

say() { echo "mosquitto.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# The pid of our broker, or nothing: the pid file's process, if it is a mosquitto using our config.
broker_pid() {
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [ -n "$pid" ] || return 0
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- " -c $CONF -d "; then
        echo "$pid"
    fi
}

running() { [ -n "$(broker_pid)" ]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The user the broker runs as: `mosquitto` when we are root and it can reach the folder.
broker_user() {
    if ! is_root; then
        id -un
    elif id -u mosquitto >/dev/null 2>&1 && runuser -u mosquitto -- test -x "$SERVICES"; then
        echo mosquitto
    else
        echo root
    fi
}

cmd_install() {
    if [ -x "$BIN" ]; then
        say "mosquitto found: $("$BIN" -h 2>&1 | head -n 1 || true)"
        return
    fi
    is_root || die "mosquitto is not installed and installing it needs root: run \`sudo bash scripts/mosquitto.sh install\`"
    say "installing Debian's mosquitto package"
    # Keep the package's own service from starting: we run our own broker, on our own ports.
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$POLICY_RC"
        chmod 755 "$POLICY_RC"
        trap 'rm -f "$POLICY_RC"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now mosquitto.service >/dev/null 2>&1 || true
    fi
    [ -x "$BIN" ] || die "apt-get installed mosquitto, yet $BIN is missing"
    say "mosquitto installed: $("$BIN" -h 2>&1 | head -n 1 || true)"
}

# A CA and a server certificate signed by it, made once: clients trust tls/ca.crt.
make_certificates() {
    [ -f "$TLS/server.crt" ] && [ -f "$TLS/server.key" ] && [ -f "$TLS/ca.crt" ] && return
    command -v openssl >/dev/null 2>&1 || die "openssl is missing: apt-get install openssl"
    say "making a CA and a server certificate in $TLS"
    local fresh
    fresh="$(mktemp -d "$DIR/.tls.XXXXXX")"
    (
        cd "$fresh"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
            -subj "/CN=sensorstream test CA" -keyout ca.key -out ca.crt \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=127.0.0.1" \
            -keyout server.key -out server.csr
        printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
            -sha256 -extfile server.ext -out server.crt
        rm -f server.csr server.ext ca.srl
    ) >"$DIR/openssl.log" 2>&1 || {
        cat "$DIR/openssl.log" >&2
        rm -rf "$fresh"
        die "openssl failed (its output is above and in $DIR/openssl.log)"
    }
    chmod 755 "$fresh"
    chmod 644 "$fresh/ca.crt" "$fresh/server.crt"
    chmod 600 "$fresh/ca.key" "$fresh/server.key"
    rm -rf "$TLS"
    mv "$fresh" "$TLS"
}

write_config() {
    local user="$1"
    # mosquitto_passwd hashes the password; the file is made anew at each start.
    (umask 077 && "$PASSWD_BIN" -c -b "$DIR/passwd" "$MQTT_USER" "$MQTT_PASSWORD")
    cat >"$CONF" <<EOF
# Written by scripts/mosquitto.sh at each start: edit the script, not this file.
per_listener_settings true
user $user
pid_file $PID_FILE

persistence true
persistence_location $DIR/data/
autosave_interval 1
max_queued_messages 1000000

log_dest file $LOG
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp_format %Y-%m-%dT%H:%M:%S

listener $PORT 127.0.0.1
allow_anonymous true

listener $AUTH_PORT 127.0.0.1
allow_anonymous false
password_file $DIR/passwd

listener $TLS_PORT 127.0.0.1
allow_anonymous true
cafile $TLS/ca.crt
certfile $TLS/server.crt
keyfile $TLS/server.key
EOF
}

cmd_start() {
    [ -x "$BIN" ] || die "$BIN is missing; run \`bash scripts/mosquitto.sh install\`"
    if running; then
        say "already running (pid $(broker_pid), folder $DIR)"
        echo "$URL"
        return
    fi
    local port
    for port in "$PORT" "$AUTH_PORT" "$TLS_PORT"; do
        ! port_open "$port" || die "127.0.0.1:$port is taken by another program; set SENSORSTREAM_MQTT_PORT to use other ports"
    done
    (umask 022 && mkdir -p "$DIR/data")
    make_certificates
    local user
    user="$(broker_user)"
    write_config "$user"
    # The broker writes its persistence file (and removes its pid file) after dropping to $user.
    [ "$user" = "$(id -un)" ] || chown -R "$user:" "$DIR"
    rm -f "$PID_FILE"
    say "starting on 127.0.0.1:$PORT (password on $AUTH_PORT, TLS on $TLS_PORT; as $user; log $LOG)"
    local before=0 waited=0
    [ -f "$LOG" ] && before="$(stat -c %s "$LOG")"
    if ! "$BIN" -c "$CONF" -d 2>"$DIR/start.err"; then
        cat "$DIR/start.err" >&2
        die "mosquitto did not start (its complaint is above; if a port is taken, set SENSORSTREAM_MQTT_PORT)"
    fi
    for port in "$PORT" "$AUTH_PORT" "$TLS_PORT"; do
        until port_open "$port"; do
            if [ "$waited" -ge $((START_TIMEOUT_S * 10)) ] || { [ "$waited" -ge 10 ] && ! running; }; then
                tail -c +$((before + 1)) "$LOG" 2>/dev/null | tail -n 20 >&2 || true
                die "mosquitto is not listening on 127.0.0.1:$port (see $LOG; if a port is taken, set SENSORSTREAM_MQTT_PORT)"
            fi
            sleep 0.1
            waited=$((waited + 1))
        done
    done
    # The daemon reports no failure of its own after forking (a listener it could not open).
    running || die "mosquitto exited after starting (see $LOG; if a port is taken, set SENSORSTREAM_MQTT_PORT)"
    echo "$URL"
}

cmd_stop() {
    local pid waited=0
    pid="$(broker_pid)"
    if [ -z "$pid" ]; then
        say "not running ($DIR)"
        return
    fi
    kill -TERM "$pid"
    # broker_pid, not kill -0: an exited broker nobody has reaped yet is gone all the same.
    while [ -n "$(broker_pid)" ]; do
        [ "$waited" -lt $((STOP_TIMEOUT_S * 10)) ] || die "mosquitto (pid $pid) still runs ${STOP_TIMEOUT_S}s after SIGTERM"
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$PID_FILE"
    say "stopped ($DIR)"
}

cmd_status() {
    if running; then
        say "running (pid $(broker_pid), folder $DIR)"
        echo "$URL"
    else
        say "not running ($DIR)"
        exit 3
    fi
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart)
        cmd_stop
        cmd_start
        ;;
    status) cmd_status ;;
    url) echo "$URL" ;;
    *)
        echo "usage: bash scripts/mosquitto.sh install|start|stop|restart|status|url" >&2
        exit 2
        ;;
esac
