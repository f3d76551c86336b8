"""The real message brokers the tests use: Mosquitto and Kafka, as scripts/ start them.

``tests/conftest.py`` hands them out as the session fixtures ``mosquitto`` (an ``MqttBroker``)
and ``kafka`` (a ``KafkaBroker``). Both brokers live as long as the session, or longer: a
broker that was running before the session (``make services``) is left running after it. Their
``stop()``, ``start()`` and ``restart()`` go through the scripts, so a restart keeps the data: a
test that stops a broker starts it again before it ends, for the tests after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

REPO = Path(__file__).resolve().parent.parent
SERVICES = Path(os.environ.get("SENSORSTREAM_SERVICES", REPO / ".services"))
MOSQUITTO_SCRIPT = REPO / "scripts" / "mosquitto.sh"
KAFKA_SCRIPT = REPO / "scripts" / "kafka.sh"
# The first install fetches Kafka's jars with Maven; a first start formats its storage.
_SCRIPT_TIMEOUT_S = 300
# A new topic has its leaders within a second; a loaded CI machine, several times that.
_TOPIC_TIMEOUT_S = 60


def run_script(script: Path, command: str) -> subprocess.CompletedProcess[str]:
    """Run ``bash SCRIPT COMMAND``; its stdout is the address, its stderr the story.

    The script gets this interpreter as ``SENSORSTREAM_PYTHON``: kafka.sh asks the broker
    whether it answers through it, so start returns once clients can use the broker.
    """
    return subprocess.run(
        ["bash", str(script), command],
        capture_output=True,
        text=True,
        timeout=_SCRIPT_TIMEOUT_S,
        check=False,
        env={**os.environ, "SENSORSTREAM_PYTHON": sys.executable},
    )


def script_complaint(done: subprocess.CompletedProcess[str]) -> str:
    """Return a script's last line on stderr, without its ``name.sh: error:`` prefix."""
    lines = done.stderr.strip().splitlines() or [f"exit code {done.returncode}"]
    return lines[-1].split(": error: ", 1)[-1]


def _run_or_fail(script: Path, command: str) -> str:
    """Run ``bash SCRIPT COMMAND`` inside a test; fail the test if it fails. Return its address."""
    done = run_script(script, command)
    if done.returncode != 0:
        pytest.fail(f"bash {script.relative_to(REPO)} {command} failed: {script_complaint(done)}")
    return done.stdout.strip()


@dataclass(frozen=True)
class MqttBroker:
    """The Mosquitto of scripts/mosquitto.sh: three listeners on 127.0.0.1, one broker behind.

    ``port`` takes anyone; ``auth_port`` wants ``username`` and ``password``; ``tls_port``
    speaks TLS with a certificate that ``ca_file`` signed (for 127.0.0.1 and localhost).
    Persistent sessions and their queued QoS 1 messages survive ``restart()``.
    """

    host: str
    port: int
    auth_port: int
    tls_port: int
    ca_file: Path
    username: str = "sensorstream"
    password: str = "sensorstream"

    @classmethod
    def from_url(cls, url: str) -> MqttBroker:
        """Return the broker that scripts/mosquitto.sh printed as ``url`` (its anonymous port)."""
        parts = urlsplit(url)
        if parts.scheme != "mqtt" or parts.hostname is None or parts.port is None:
            msg = f"scripts/mosquitto.sh printed {url!r}, not mqtt://HOST:PORT"
            raise ValueError(msg)
        return cls(
            host=parts.hostname,
            port=parts.port,
            auth_port=parts.port + 1,
            tls_port=parts.port + 2,
            ca_file=SERVICES / "mosquitto" / "tls" / "ca.crt",
        )

    @property
    def url(self) -> str:
        """Return the anonymous listener's address, as in ``mqtt://127.0.0.1:18830``."""
        return f"mqtt://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the broker (nothing happens if it runs) and wait until it listens."""
        _run_or_fail(MOSQUITTO_SCRIPT, "start")

    def stop(self) -> None:
        """Stop the broker gracefully: it saves its sessions and queues first."""
        _run_or_fail(MOSQUITTO_SCRIPT, "stop")

    def restart(self) -> None:
        """Stop the broker and start it again, keeping its persistent sessions and queues."""
        _run_or_fail(MOSQUITTO_SCRIPT, "restart")


@dataclass(frozen=True)
class KafkaBroker:
    """The single-node Kafka of scripts/kafka.sh (KRaft), at ``bootstrap``: ``127.0.0.1:19092``.

    Every test takes topics of its own from ``create_topic``; messages are kept forever
    (``retention.ms=-1``), whatever their timestamps, and survive ``restart()``.
    """

    bootstrap: str

    def start(self) -> None:
        """Start the broker (nothing happens if it runs) and wait until it answers."""
        _run_or_fail(KAFKA_SCRIPT, "start")

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL if it takes more than 30 s."""
        _run_or_fail(KAFKA_SCRIPT, "stop")

    def restart(self) -> None:
        """Stop the broker and start it again, keeping its topics, messages and offsets."""
        _run_or_fail(KAFKA_SCRIPT, "restart")

    def admin(self) -> AdminClient:
        """Return an admin client of the broker."""
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def create_topic(self, name: str | None = None, partitions: int = 1) -> str:
        """Create a new topic, ``NAME-<12 hex digits>``, and return its name once it is usable.

        ``name`` is the prefix (``test`` when omitted); the random suffix keeps the topics of
        different tests and runs apart. The topic keeps every message (``retention.ms=-1``).
        Returns when each of its ``partitions`` has a leader, so producing to it works at once.
        """
        topic = f"{name or 'test'}-{uuid.uuid4().hex[:12]}"
        admin = self.admin()
        new = NewTopic(topic, partitions, replication_factor=1, config={"retention.ms": "-1"})
        try:
            admin.create_topics([new], operation_timeout=_TOPIC_TIMEOUT_S)[topic].result()
        except KafkaException as error:
            pytest.fail(f"Kafka at {self.bootstrap} did not create topic {topic}: {error}")
        deadline = time.monotonic() + _TOPIC_TIMEOUT_S
        while time.monotonic() < deadline:
            found = admin.list_topics(topic, timeout=5).topics.get(topic)
            if (
                found is not None
                and found.error is None
                and len(found.partitions) == partitions
                and all(partition.leader >= 0 for partition in found.partitions.values())
            ):
                return topic
            time.sleep(0.1)
        pytest.fail(f"topic {topic} has no leader for all {partitions} partitions after 60 s")
