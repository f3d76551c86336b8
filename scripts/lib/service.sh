# shellcheck shell=bash
# What the service scripts share (kafka.sh, mosquitto.sh, postgres.sh); sourced, never run.
#
# Set before sourcing:
#   SERVICE_SCRIPT    the script's name, the prefix of its messages: kafka.sh
# and, for the helpers about a broker we started ourselves (broker_pid and on):
#   SERVICE_NAME      what the messages call it: Kafka
#   SERVICE_DIR       its folder, named in the messages
#   SERVICE_PID_FILE  the pid file
#   SERVICE_CMDLINE   a piece of the broker's command line, with a space either side, that
#                     tells our broker from another process that got its old pid
#   SERVICE_PORT_VAR  the variable that moves its ports: SENSORSTREAM_KAFKA_PORT

say() { echo "$SERVICE_SCRIPT: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# The pid of our broker, or nothing: the pid file's process, if its command line is ours.
broker_pid() {
    local pid
    pid="$(cat "$SERVICE_PID_FILE" 2>/dev/null || true)"
    [ -n "$pid" ] || return 0
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- "$SERVICE_CMDLINE"; then
        echo "$pid"
    fi
}

running() { [ -n "$(broker_pid)" ]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Die if another program listens on one of the ports: a readiness check would take its answer
# for our broker's.
ports_free() {
    local port
    for port in "$@"; do
        ! port_open "$port" || die "127.0.0.1:$port is taken by another program; set $SERVICE_PORT_VAR to use other ports"
    done
}

# wait_until INTERVAL MAX_POLLS GRACE_POLLS COMMAND...: run COMMAND every INTERVAL seconds
# until it succeeds (return 0). Return 1 once the broker is no longer running (asked from poll
# GRACE_POLLS on), 2 after MAX_POLLS polls. WAITED counts the polls; the caller sets it to 0
# first, and calls again to go on counting.
WAITED=0
wait_until() {
    local interval="$1" max_polls="$2" grace_polls="$3"
    shift 3
    until "$@"; do
        if [ "$WAITED" -ge "$grace_polls" ] && ! running; then
            return 1
        fi
        if [ "$WAITED" -ge "$max_polls" ]; then
            return 2
        fi
        sleep "$interval"
        WAITED=$((WAITED + 1))
    done
}

# stop_broker TIMEOUT_S [KILL]: SIGTERM, then wait for the broker to go. After TIMEOUT_S
# seconds, SIGKILL when KILL is `kill` (dying 10 s later if even that fails), else die.
stop_broker() {
    local timeout_s="$1" kill="${2:-}" pid waited=0
    pid="$(broker_pid)"
    if [ -z "$pid" ]; then
        say "not running ($SERVICE_DIR)"
        return
    fi
    kill -TERM "$pid"
    # broker_pid, not kill -0: an exited broker nobody has reaped yet is gone all the same.
    while [ -n "$(broker_pid)" ]; do
        if [ "$kill" != kill ]; then
            [ "$waited" -lt $((timeout_s * 10)) ] || die "$SERVICE_NAME (pid $pid) still runs ${timeout_s}s after SIGTERM"
        elif [ "$waited" -eq $((timeout_s * 10)) ]; then
            say "still running ${timeout_s}s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        elif [ "$waited" -ge $(((timeout_s + 10) * 10)) ]; then
            die "$SERVICE_NAME (pid $pid) still runs after SIGKILL"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$SERVICE_PID_FILE"
    say "stopped ($SERVICE_DIR)"
}

# broker_status ADDRESS: say whether the broker runs; print ADDRESS when it does, else exit 3.
broker_status() {
    if running; then
        say "running (pid $(broker_pid), folder $SERVICE_DIR)"
        echo "$1"
    else
        say "not running ($SERVICE_DIR)"
        exit 3
    fi
}

# already_running ADDRESS: when the broker runs, say so and print ADDRESS; else fail.
already_running() {
    running || return 1
    say "already running (pid $(broker_pid), folder $SERVICE_DIR)"
    echo "$1"
}
