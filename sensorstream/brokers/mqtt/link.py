"""One paho client kept connected to a broker, telling passing trouble from a refusal.

paho's network thread (``loop_start``) connects, reconnects with a doubling backoff
(``reconnect_backoff`` up to ``max_reconnect_backoff``) and calls back. A :class:`Link`
sorts what happens into two kinds:

- **passing trouble**: the broker cannot be reached, or the connection drops. The link keeps
  trying and logs a warning per failed attempt, at most one every :data:`WARN_EVERY_S`
  seconds (counting the attempts between), so a broker down for an hour costs a few dozen
  lines, never a crashed pipeline;
- **a refusal that retrying cannot fix**: a wrong username or password, a client id the
  broker refuses, a protocol version it does not speak, a TLS certificate that does not
  verify. The link stops trying and keeps a message saying what to change
  (:attr:`Link.failure`); the source or sink raises it as its own error.

``session`` asks for a persistent session (MQTT 5: ``clean_start`` false and a session
expiry interval; 3.1.1: ``clean_session`` false), so that the broker queues QoS 1 messages
while the client is away and sends them again after a reconnect.
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from sensorstream.brokers.mqtt.settings import Broker

__all__ = ["WARN_EVERY_S", "Link", "Session"]

logger = logging.getLogger("sensorstream.brokers.mqtt")

WARN_EVERY_S = 10.0
# CONNACK reason codes that the same request would meet again: stop, and say what to change.
_REFUSALS = {
    129: "the broker could not read the CONNECT packet",
    130: "the broker saw a protocol error",
    132: "the broker does not speak this protocol version: try protocol: 3.1.1",
    133: "the broker refuses the client id: set client_id",
    134: "check username and password (password_env)",
    135: "the broker does not allow this client to connect: check username and password",
    138: "the broker has banned this client",
    140: "the broker wants another authentication method",
}
_LOGIN = (134, 135)
_HOSTNAME_MISMATCH = 62  # OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH


@dataclass(frozen=True)
class Session:
    """What the broker keeps for a client between connections.

    ``persistent`` keeps subscriptions and queued QoS 1 messages across disconnects and
    restarts, for ``expiry`` after a disconnect (MQTT 5; a 3.1.1 broker decides itself).
    Otherwise the first connection of a run starts clean, and later ones resume it.
    """

    persistent: bool = False
    expiry: timedelta = timedelta(0)


class Link:
    """A paho client in its own network thread, connecting and reconnecting; see the module.

    ``on_connected(client, session_present)`` runs in the network thread after each
    successful connection (subscribe there: a subscription made before a reconnect may
    be gone). ``receive_maximum`` caps the QoS 1 messages the broker sends before they are
    acknowledged (MQTT 5), ``max_packet_bytes`` the size of a packet it may send at all.
    """

    def __init__(
        self,
        broker: Broker,
        client_id: str,
        *,
        role: str,
        session: Session = Session(),
        manual_ack: bool = False,
        receive_maximum: int | None = None,
        max_packet_bytes: int | None = None,
        on_connected: Callable[[paho.Client, bool], None] | None = None,
    ) -> None:
        self.broker = broker
        self.client_id = client_id
        self.role = role
        self.session = session
        self.failure: str | None = None  # a refusal: set once, and the link stops trying
        self.connected = threading.Event()
        self.generation = 0  # bumped at each disconnect: acknowledgements of older ones are void
        self.lock = threading.Lock()  # held while bumping generation, and by ackers checking it
        self.on_connected = on_connected
        self._last_warning = 0.0
        self._quiet_attempts = 0
        self._receive_maximum = receive_maximum
        self._max_packet_bytes = max_packet_bytes
        v5 = broker.protocol == "5"
        self.client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else not session.persistent,
            manual_ack=manual_ack,
        )
        if broker.username is not None:
            self.client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            self.client.tls_set(ca_certs=str(broker.ca_file) if broker.ca_file else None)
            self.client.tls_insecure_set(broker.insecure)
        self.client.reconnect_delay_set(
            _whole_seconds(broker.reconnect_backoff), _whole_seconds(broker.max_reconnect_backoff)
        )
        self.client.on_connect = self._connected
        self.client.on_connect_fail = self._connect_failed
        self.client.on_disconnect = self._disconnected

    @property
    def where(self) -> str:
        """The broker and client, for messages: ``mqtt://host:1883 (client sensorstream-x)``."""
        return f"{self.broker.url} (client {self.client_id})"

    def start(self) -> None:
        """Start connecting in the network thread; returns at once (it retries by itself)."""
        v5 = self.broker.protocol == "5"
        properties: Properties | None = None
        clean_start: bool | Literal[3] = paho.MQTT_CLEAN_START_FIRST_ONLY
        if v5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = int(self.session.expiry.total_seconds())
            if self._receive_maximum is not None:
                properties.ReceiveMaximum = self._receive_maximum
            if self._max_packet_bytes is not None:
                properties.MaximumPacketSize = self._max_packet_bytes
            if self.session.persistent:
                clean_start = False
        self.client.connect_async(
            self.broker.host,
            self.broker.port,
            keepalive=_whole_seconds(self.broker.keepalive),
            clean_start=clean_start,
            properties=properties,
        )
        self.client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a connection; False on a timeout or a refusal."""
        deadline = time.monotonic() + timeout
        while not self.connected.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self.failure is not None or time.monotonic() >= deadline:
                return False
        return True

    def stop(self) -> None:
        """Disconnect (what was queued to send goes first) and end the network thread."""
        self.client.disconnect()
        self.client.loop_stop()
        self.client.close()
        self.connected.clear()

    # -- paho's callbacks, in the network thread --------------------------------------------
    def _connected(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        del userdata, properties
        if reason.is_failure:
            hint = _REFUSALS.get(reason.value)
            if hint is None:  # "server unavailable", "server busy", ...: it may pass
                self._warn(f"the MQTT broker at {self.where} turned the connection down ({reason})")
                return
            who = f" of user {self.broker.username!r}" if self.broker.username else ""
            what = f"refused the login{who}" if reason.value in _LOGIN else "refused the connection"
            self._refuse(f"the MQTT broker at {self.where} {what}: {reason}; {hint}")
            return
        if self._quiet_attempts or self._last_warning:
            logger.warning("%s: connected to the MQTT broker at %s", self.role, self.where)
        self._quiet_attempts, self._last_warning = 0, 0.0
        self.connected.set()
        if self.on_connected is not None:
            self.on_connected(client, flags.session_present)

    def _connect_failed(self, client: paho.Client, userdata: Any) -> None:
        del client, userdata
        error = sys.exc_info()[1]  # paho calls this from inside its `except OSError`
        if isinstance(error, ssl.SSLCertVerificationError):
            if error.verify_code == _HOSTNAME_MISMATCH:
                fix = "connect by a name the certificate holds (or insecure: true skips the check)"
            else:
                fix = "give the certificate authority that signed it as ca_file"
            self._refuse(
                f"TLS with the MQTT broker at {self.where} failed: its certificate did not "
                f"verify ({error.verify_message}); {fix}"
            )
            return
        detail = f": {error.strerror or error}" if isinstance(error, OSError) else ""
        self._warn(f"cannot reach the MQTT broker at {self.where}{detail}")

    def _disconnected(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        del client, userdata, flags, properties
        with self.lock:
            self.generation += 1
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and self.failure is None and reason.value != 0:
            self._warn(f"lost the connection to the MQTT broker at {self.where} ({reason})")

    def _warn(self, what: str) -> None:
        """One line per failed attempt, at most one every WARN_EVERY_S seconds."""
        now = time.monotonic()
        if self._last_warning and now - self._last_warning < WARN_EVERY_S:
            self._quiet_attempts += 1
            return
        more = f" ({self._quiet_attempts} more attempts failed)" if self._quiet_attempts else ""
        logger.warning("%s: %s; retrying with backoff%s", self.role, what, more)
        self._last_warning, self._quiet_attempts = now, 0

    def _refuse(self, message: str) -> None:
        # Not logged: the source or sink raises it as its error, which says it once.
        self.failure = message
        self.client.disconnect()  # from inside the loop: it ends, and stops retrying


class _Client(paho.Client):
    """paho's client, closing the socket of a TLS handshake that failed.

    paho 2.1 leaves it open (``_ssl_wrap_socket`` raises from ``do_handshake`` holding it),
    so every failed attempt against a broker whose certificate does not verify, or that
    restarts mid-handshake, would leak a file descriptor.
    """

    def _ssl_wrap_socket(self, tcp_sock: socket.socket) -> ssl.SSLSocket:
        try:
            return super()._ssl_wrap_socket(tcp_sock)
        except BaseException as error:
            trace = error.__traceback__
            while trace is not None:
                wrapped = trace.tb_frame.f_locals.get("ssl_sock")
                if isinstance(wrapped, ssl.SSLSocket):
                    wrapped.close()
                trace = trace.tb_next
            raise

    def close(self) -> None:
        """Close what paho keeps open once its thread has ended (the sockets waking it)."""
        self._reset_sockets()


def _whole_seconds(duration: timedelta) -> int:
    return max(1, round(duration.total_seconds()))
