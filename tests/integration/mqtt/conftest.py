"""A throwaway Mosquitto for the MQTT tests, until the shared ``mosquitto`` fixture lands.

Same shape as the one ``scripts/mosquitto.sh`` will back in tests/conftest.py: ``host``,
``port`` (anonymous), ``auth_port`` (user and password ``sensorstream``), ``tls_port``
(anonymous, a certificate signed by ``ca_file``), ``url``, and ``stop``, ``start``,
``restart``. It runs Debian's ``/usr/sbin/mosquitto`` on 127.0.0.1 ports 18850 to 18852 from
a configuration written to a temporary folder; without it the tests skip (fail under CI).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import _unavailable

MOSQUITTO = Path("/usr/sbin/mosquitto")
BASE_PORT = 18850
USER = PASSWORD = "sensorstream"


@dataclass
class Mosquitto:
    """A Mosquitto broker on the loopback, started and stopped at will."""

    folder: Path
    host: str = "127.0.0.1"
    port: int = BASE_PORT
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def auth_port(self) -> int:
        return self.port + 1

    @property
    def tls_port(self) -> int:
        return self.port + 2

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    def start(self) -> None:
        if self._process is not None:
            return
        log = (self.folder / "mosquitto.log").open("ab")
        self._process = subprocess.Popen(
            [str(MOSQUITTO), "-c", str(self.folder / "mosquitto.conf")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while not all(_listening(self.host, p) for p in (self.port, self.auth_port, self.tls_port)):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.folder / "mosquitto.log").read_text())
            time.sleep(0.02)

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        self._process.wait(10)
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


def _run(*command: str | Path) -> None:
    subprocess.run([str(part) for part in command], check=True, capture_output=True)


def _write_config(folder: Path, port: int) -> None:
    ca_key, ca = folder / "ca.key", folder / "ca.pem"
    key, request, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    openssl = ("openssl", "req", "-newkey", "rsa:2048", "-nodes")
    _run(*openssl, "-x509", "-days", "2", "-subj", "/CN=test CA", "-keyout", ca_key, "-out", ca)
    _run(*openssl, "-subj", "/CN=localhost", "-keyout", key, "-out", request)
    extensions = folder / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    sign = ("openssl", "x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key)
    _run(*sign, "-CAcreateserial", "-days", "2", "-extfile", extensions, "-out", cert)
    passwords = folder / "passwd"
    _run("mosquitto_passwd", "-b", "-c", passwords, USER, PASSWORD)
    (folder / "mosquitto.conf").write_text(
        f"""user root
per_listener_settings true
persistence false
listener {port} 127.0.0.1
allow_anonymous true
listener {port + 1} 127.0.0.1
allow_anonymous false
password_file {passwords}
listener {port + 2} 127.0.0.1
allow_anonymous true
cafile {ca}
certfile {cert}
keyfile {key}
"""
    )


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A Mosquitto for the session (see the module)."""
    if not MOSQUITTO.exists() or shutil.which("openssl") is None:
        _unavailable("Mosquitto not available: apt-get install mosquitto")
    folder = tmp_path_factory.mktemp("mosquitto")
    _write_config(folder, BASE_PORT)
    broker = Mosquitto(folder)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def running_mosquitto(mosquitto: Mosquitto) -> Mosquitto:
    """The session's Mosquitto, started again if a test left it stopped."""
    mosquitto.start()
    return mosquitto
