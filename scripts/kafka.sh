#!/usr/bin/env bash
# A single-node Apache Kafka for the tests and CI: KRaft, broker and controller in one JVM.
#
#   bash scripts/kafka.sh install     # Kafka's jars from Maven Central into <services>/kafka/lib
#   bash scripts/kafka.sh start       # format the storage (first time), start; prints the bootstrap
#   bash scripts/kafka.sh stop        # SIGTERM, SIGKILL after 30 s
#   bash scripts/kafka.sh restart     # stop, then start: topics and offsets survive
#   bash scripts/kafka.sh status      # exit 0 when running, 3 when not
#   bash scripts/kafka.sh bootstrap   # 127.0.0.1:19092
#
# Kafka 4.1.1 comes as Maven artifacts, not the release tarball: install writes a
# tiny pom and lets `mvn dependency:copy-dependencies` put kafka_2.13 and a log4j2 binding for
# its slf4j into lib/ (once; Maven keeps its cache in ~/.m2). It needs java 17+ and mvn, which
# install takes from Debian when they are missing.
#
# The broker listens on 127.0.0.1:${SENSORSTREAM_KAFKA_PORT:-19092} only, its controller on the
# next port. It holds test data: one replica of everything, topics created on first use, and
# retention off (test readings carry event timestamps years old, which time-based retention
# would delete at once). Everything lives in ${SENSORSTREAM_SERVICES:-<repo>/.services}/kafka:
# jars, config, data, logs/server.log and the pid file. Every subcommand is safe to repeat.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SERVICES="${SENSORSTREAM_SERVICES:-$ROOT/.services}"
PORT="${SENSORSTREAM_KAFKA_PORT:-19092}"
CONTROLLER_PORT=$((PORT + 1))
BOOTSTRAP="127.0.0.1:$PORT"
KAFKA_VERSION=4.1.1
LOG4J_VERSION=2.24.3
DIR="$SERVICES/kafka"
LIB="$DIR/lib"
DATA="$DIR/data"
LOGS="$DIR/logs"
CONF="$DIR/server.properties"
LOG4J_CONF="$DIR/log4j2.properties"
PID_FILE="$DIR/kafka.pid"
# What lib/ holds once complete; a lib/ without this stamp, or with another, is fetched anew.
LIB_STAMP="kafka_2.13-$KAFKA_VERSION log4j-$LOG4J_VERSION"
HEAP_OPTS="${SENSORSTREAM_KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
# The first start on a loaded 2-core machine takes tens of seconds (JIT, topic metadata).
START_TIMEOUT_S=120
STOP_TIMEOUT_S=30

say() { echo "kafka.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

java_bin() {
    if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
        echo "$JAVA_HOME/bin/java"
    else
        command -v java || true
    fi
}

# The major version of java ("17"), or nothing when there is none.
java_major() {
    local java
    java="$(java_bin)"
    [ -n "$java" ] || return 0
    "$java" -version 2>&1 | sed -nE '1s/.* version "([0-9]+).*/\1/p'
}

lib_complete() { [ "$(cat "$LIB/.complete" 2>/dev/null || true)" = "$LIB_STAMP" ]; }

# The pid of our broker, or nothing: the pid file's process, if it is a kafka.Kafka on our config.
broker_pid() {
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [ -n "$pid" ] || return 0
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF -- " kafka.Kafka $CONF "; then
        echo "$pid"
    fi
}

running() { [ -n "$(broker_pid)" ]; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# A python that has confluent_kafka, to ask the broker for its metadata; or nothing.
probe_python() {
    local python
    for python in "${SENSORSTREAM_PYTHON:-}" "$ROOT/.venv/bin/python" python3; do
        [ -n "$python" ] || continue
        if "$python" -c 'import confluent_kafka' >/dev/null 2>&1; then
            echo "$python"
            return
        fi
    done
}

# Whether the broker answers a metadata request and lists itself among the brokers.
broker_answers() {
    "$1" - "$BOOTSTRAP" >/dev/null 2>&1 <<'EOF'
import sys

from confluent_kafka.admin import AdminClient

admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
sys.exit(0 if admin.list_topics(timeout=3).brokers else 1)
EOF
}

install_java_and_maven() {
    local packages=()
    [ "$(java_major)" -ge 17 ] 2>/dev/null || packages+=(openjdk-17-jre-headless)
    command -v mvn >/dev/null 2>&1 || packages+=(maven)
    [ "${#packages[@]}" -gt 0 ] || return 0
    is_root || die "Kafka needs ${packages[*]} and installing them needs root: run \`sudo bash scripts/kafka.sh install\`"
    say "installing Debian's ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}

cmd_install() {
    install_java_and_maven
    if lib_complete; then
        say "Kafka $KAFKA_VERSION found in $LIB"
        return
    fi
    say "fetching Kafka $KAFKA_VERSION and log4j $LOG4J_VERSION from Maven Central into $LIB"
    mkdir -p "$DIR"
    # Fetch into a fresh folder beside lib/, then rename: a download cut short leaves no
    # half-filled lib/ for start to trip over.
    local fresh
    fresh="$(mktemp -d "$DIR/.lib.XXXXXX")"
    cat >"$fresh/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by scripts/kafka.sh: the jars a single-node Kafka runs on. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.sensorstream</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- Kafka logs through slf4j 1.7; these send it to log4j2, configured by log4j2.properties. -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
    if ! mvn -B -q -f "$fresh/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$fresh/lib" >"$DIR/mvn.log" 2>&1; then
        tail -n 30 "$DIR/mvn.log" >&2
        rm -rf "$fresh"
        die "mvn could not fetch Kafka's jars (its output is above and in $DIR/mvn.log)"
    fi
    [ -n "$(find "$fresh/lib" -name "kafka_2.13-$KAFKA_VERSION.jar")" ] ||
        die "mvn finished, yet $fresh/lib holds no kafka_2.13-$KAFKA_VERSION.jar"
    mv "$fresh/pom.xml" "$fresh/lib/"
    echo "$LIB_STAMP" >"$fresh/lib/.complete"
    rm -rf "$LIB"
    mv "$fresh/lib" "$LIB"
    rmdir "$fresh"
    say "Kafka $KAFKA_VERSION installed in $LIB ($(find "$LIB" -name '*.jar' | wc -l) jars)"
}

write_config() {
    cat >"$CONF" <<EOF
# Written by scripts/kafka.sh at each start: edit the script, not this file.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
log.dirs=$DATA

# One broker: one replica of everything.
num.partitions=1
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Few partitions for the internal topics: their first use creates them, quicker on 2 cores.
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.num.partitions=1
auto.create.topics.enable=true
# A test's consumer group should not wait 3 s for members that never come.
group.initial.rebalance.delay.ms=0
# Keep every message: test data carries old event timestamps.
log.retention.ms=-1
EOF
    # Kafka logs INFO to a file (rolled at 10 MB), its chattiest loggers only WARN.
    cat >"$LOG4J_CONF" <<EOF
# Written by scripts/kafka.sh at each start: edit the script, not this file.
status = warn
name = sensorstream-kafka
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $LOGS/server.log
appender.file.filePattern = $LOGS/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
logger.storage.name = org.apache.kafka.storage
logger.storage.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
EOF
}

# Run one of Kafka's main classes in the foreground, with our jars and logging.
kafka_java() {
    "$(java_bin)" -Xmx256m -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIB/*" "$@"
}

format_storage() {
    # A data folder without meta.properties was never formatted to the end: nothing to keep.
    rm -rf "$DATA"
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$LOGS/format.log")" ||
        die "StorageTool random-uuid failed (see $LOGS/format.log)"
    say "formatting $DATA (cluster id $cluster_id)"
    if ! kafka_java kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$CONF" \
        >>"$LOGS/format.log" 2>&1; then
        tail -n 20 "$LOGS/format.log" >&2
        die "StorageTool format failed (its output is above and in $LOGS/format.log)"
    fi
}

cmd_start() {
    lib_complete || die "Kafka is not installed in $LIB; run \`bash scripts/kafka.sh install\`"
    [ "$(java_major)" -ge 17 ] 2>/dev/null || die "Kafka needs java 17 or newer; run \`bash scripts/kafka.sh install\`"
    if running; then
        say "already running (pid $(broker_pid), folder $DIR)"
        echo "$BOOTSTRAP"
        return
    fi
    # Else the readiness check below would take another broker's answer for ours.
    local port
    for port in "$PORT" "$CONTROLLER_PORT"; do
        ! port_open "$port" || die "127.0.0.1:$port is taken by another program; set SENSORSTREAM_KAFKA_PORT to use other ports"
    done
    mkdir -p "$LOGS"
    write_config
    [ -f "$DATA/meta.properties" ] || format_storage
    say "starting on $BOOTSTRAP (controller on $CONTROLLER_PORT; log $LOGS/server.log)"
    # setsid: the broker outlives this script, and a Ctrl-C meant for pytest does not reach it.
    # Its own stdout and stderr go to a file, so whoever runs this script gets EOF on return.
    # shellcheck disable=SC2086 # HEAP_OPTS holds several options
    setsid nohup "$(java_bin)" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$LOG4J_CONF" \
        -cp "$LIB/*" kafka.Kafka "$CONF" </dev/null >>"$LOGS/kafka.out" 2>&1 &
    echo "$!" >"$PID_FILE"
    local python waited=0
    python="$(probe_python)"
    [ -n "$python" ] || say "no python with confluent_kafka: waiting for the port alone"
    until port_open "$PORT" && { [ -z "$python" ] || broker_answers "$python"; }; do
        if ! running; then
            tail -n 20 "$LOGS/kafka.out" "$LOGS/server.log" >&2 2>/dev/null || true
            die "Kafka exited while starting (see $LOGS/server.log; if a port is taken, set SENSORSTREAM_KAFKA_PORT)"
        fi
        if [ "$waited" -ge $((START_TIMEOUT_S * 5)) ]; then
            die "Kafka did not answer on $BOOTSTRAP within ${START_TIMEOUT_S}s (see $LOGS/server.log)"
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    say "ready after $((waited / 5)) s"
    echo "$BOOTSTRAP"
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
        if [ "$waited" -eq $((STOP_TIMEOUT_S * 10)) ]; then
            say "still running ${STOP_TIMEOUT_S}s after SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        elif [ "$waited" -ge $(((STOP_TIMEOUT_S + 10) * 10)) ]; then
            die "Kafka (pid $pid) still runs after SIGKILL"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$PID_FILE"
    say "stopped ($DIR)"
}

cmd_status() {
    if running; then
        say "running (pid $(broker_pid), folder $DIR)"
        echo "$BOOTSTRAP"
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
    bootstrap) echo "$BOOTSTRAP" ;;
    *)
        echo "usage: bash scripts/kafka.sh install|start|stop|restart|status|bootstrap" >&2
        exit 2
        ;;
esac
