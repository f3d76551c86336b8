"""The broker an MQTT source or sink talks to, as a pipeline's YAML writes it, once for both.

::

    url: mqtts://broker.example.com:8883   # mqtt:// (port 1883 by default) or mqtts:// (8883)
    username: plant-7
    password_env: MQTT_PASSWORD            # or password: ..., in the file itself
    ca_file: /etc/ssl/plant-ca.pem         # TLS: whom to trust (default: the system's CAs)
    protocol: "5"                          # or "3.1.1"
    keepalive: 60s
    reconnect_backoff: 1s                  # first wait before reconnecting, doubling up to
    max_reconnect_backoff: 2m

:class:`MqttConnection` is the Pydantic piece :class:`~sensorstream.sources.mqtt.MqttSourceSettings`
and :class:`~sensorstream.sinks.mqtt.MqttSinkSettings` both extend; :meth:`MqttConnection.broker`
turns it into the plain :class:`Broker` that :class:`~sensorstream.brokers.mqtt.link.Link` connects
to, reading the password from the environment at that moment.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from sensorstream.durations import Duration
from sensorstream.errors import ConfigError

__all__ = ["Broker", "MqttConnection", "Protocol", "default_client_id"]

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# YAML reads `protocol: 5` as a number and `protocol: 3.1.1` as text: both mean the version.
Protocol = Annotated[Literal["5", "3.1.1"], BeforeValidator(str)]


@dataclass(frozen=True)
class Broker:
    """Where and how to connect: what a :class:`~sensorstream.brokers.mqtt.link.Link` needs.

    ``url`` is kept to name the broker in messages (it holds no credentials).
    """

    url: str
    host: str
    port: int
    tls: bool = False
    ca_file: Path | None = None
    insecure: bool = False
    username: str | None = None
    password: str | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive: timedelta = timedelta(seconds=60)
    reconnect_backoff: timedelta = timedelta(seconds=1)
    max_reconnect_backoff: timedelta = timedelta(minutes=2)

    @classmethod
    def at(cls, url: str, **options: object) -> Broker:
        """The broker at ``url`` (``mqtt://host:port``), with other settings as given.

        >>> Broker.at("mqtts://example.com").port
        8883
        """
        return MqttConnection.model_validate({"url": url, **options}).broker()


def default_client_id(checkpoints: Path, stream: str) -> str:
    """A client id stable across restarts of one pipeline, and unlikely to clash with another's.

    The broker keeps a persistent session by client id: the same id after a restart finds
    the messages queued meanwhile. The pipeline's checkpoint folder names the pipeline, and
    a hash of its absolute path tells two pipelines of one name on different hosts or
    folders apart.

    >>> default_client_id(Path("/srv/.sensorstream/weather"), "readings")[:29]
    'sensorstream-weather-readings'
    """
    digest = hashlib.sha256(str(checkpoints.absolute()).encode()).hexdigest()[:8]
    return f"sensorstream-{checkpoints.name}-{stream}-{digest}"


class MqttConnection(BaseModel):
    """The broker's address, the login, TLS and reconnecting: shared by the source and the sink."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str
    client_id: str | None = Field(default=None, min_length=1, max_length=65535)
    protocol: Protocol = "5"
    username: str | None = None
    password: str | None = None
    password_env: str | None = Field(default=None, pattern=_ENV_NAME)
    tls: bool = False
    ca_file: Path | None = None
    insecure: bool = False
    keepalive: Duration = Field(default="60s", validate_default=True)
    reconnect_backoff: Duration = Field(default="1s", validate_default=True)
    max_reconnect_backoff: Duration = Field(default="2m", validate_default=True)

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            msg = f"{url!r} is not an mqtt:// or mqtts:// URL with a host, e.g. mqtt://localhost"
            raise ValueError(msg)
        if parts.username is not None or parts.password is not None:
            msg = "put credentials in username and password_env, not in the URL"
            raise ValueError(msg)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            msg = f"{url!r}: an MQTT URL names a host and a port only; topics go under topics"
            raise ValueError(msg)
        try:
            _ = parts.port
        except ValueError:
            msg = f"{url!r} has an invalid port"
            raise ValueError(msg) from None
        return url

    @model_validator(mode="after")
    def _consistent(self) -> MqttConnection:
        if self.password is not None and self.password_env is not None:
            msg = "give the password as password or as password_env, not both"
            raise ValueError(msg)
        if (self.password is not None or self.password_env is not None) and not self.username:
            msg = "a password needs a username"
            raise ValueError(msg)
        if not self.uses_tls and (self.ca_file is not None or self.insecure):
            msg = "ca_file and insecure are TLS settings: use an mqtts:// URL or tls: true"
            raise ValueError(msg)
        if not timedelta(seconds=1) <= self.keepalive <= timedelta(seconds=65535):
            msg = "keepalive must lie between 1s and 65535s (about 18h)"
            raise ValueError(msg)
        if self.reconnect_backoff < timedelta(seconds=1):
            msg = "reconnect_backoff must be at least 1s (paho waits whole seconds)"
            raise ValueError(msg)
        if self.max_reconnect_backoff < self.reconnect_backoff:
            msg = "max_reconnect_backoff must be at least reconnect_backoff"
            raise ValueError(msg)
        return self

    @property
    def uses_tls(self) -> bool:
        """TLS: an ``mqtts://`` URL, or ``tls: true``."""
        return self.tls or urlsplit(self.url).scheme == "mqtts"

    def broker(self) -> Broker:
        """The broker these settings name; the password is read from the environment now."""
        parts = urlsplit(self.url)
        password = self.password
        if self.password_env is not None:
            password = os.environ.get(self.password_env)
            if not password:
                msg = (
                    f"MQTT at {self.url}: environment variable {self.password_env} "
                    "(password_env) is not set; export it, or remove password_env"
                )
                raise ConfigError(msg)
        assert parts.hostname is not None  # the URL's validator saw to it
        return Broker(
            url=self.url,
            host=parts.hostname,
            port=parts.port or DEFAULT_PORTS[parts.scheme],
            tls=self.uses_tls,
            ca_file=self.ca_file,
            insecure=self.insecure,
            username=self.username,
            password=password,
            protocol=self.protocol,
            keepalive=self.keepalive,
            reconnect_backoff=self.reconnect_backoff,
            max_reconnect_backoff=self.max_reconnect_backoff,
        )
