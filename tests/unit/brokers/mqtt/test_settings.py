"""The broker's settings, shared by the MQTT source and sink: what is accepted, and why not."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from sensorstream.brokers.mqtt.settings import Broker, MqttConnection, default_client_id
from sensorstream.errors import ConfigError


def connection(**options: object) -> MqttConnection:
    return MqttConnection.model_validate({"url": "mqtt://127.0.0.1", **options})


def test_an_mqtt_url_gives_the_host_and_the_default_port_of_its_scheme() -> None:
    assert (Broker.at("mqtt://broker.local").port, Broker.at("mqtt://broker.local").tls) == (
        1883,
        False,
    )
    secure = Broker.at("mqtts://broker.local")
    assert (secure.host, secure.port, secure.tls) == ("broker.local", 8883, True)
    assert Broker.at("mqtt://127.0.0.1:18830", tls=True).tls


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://broker.local", "is not an mqtt:// or mqtts:// URL"),
        ("mqtt://", "is not an mqtt:// or mqtts:// URL with a host"),
        ("mqtt://user:secret@broker.local", "put credentials in username and password_env"),
        ("mqtt://broker.local/devices/#", "topics go under topics"),
        ("mqtt://broker.local:99999", "has an invalid port"),
    ],
)
def test_a_url_that_is_not_a_broker_address_is_refused_saying_why(url: str, why: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(why)):
        connection(url=url)


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"username": "u", "password": "p", "password_env": "P"}, "not both"),
        ({"password": "p"}, "a password needs a username"),
        ({"ca_file": "ca.pem"}, "ca_file and insecure are TLS settings"),
        ({"insecure": True}, "ca_file and insecure are TLS settings"),
        ({"keepalive": "0s"}, "keepalive must lie between 1s and 65535s"),
        ({"reconnect_backoff": "500ms"}, "reconnect_backoff must be at least 1s"),
        ({"reconnect_backoff": "10s", "max_reconnect_backoff": "5s"}, "at least reconnect_backoff"),
        ({"password_env": "not a name", "username": "u"}, "should match pattern"),
        ({"protocol": "4"}, "Input should be '5' or '3.1.1'"),
    ],
)
def test_inconsistent_settings_are_refused_saying_why(options: dict[str, object], why: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(why)):
        connection(**options)


def test_the_protocol_may_be_written_as_a_number_as_yaml_reads_it() -> None:
    assert connection(protocol=5).protocol == "5"
    assert connection(protocol="3.1.1").protocol == "3.1.1"


def test_the_password_is_read_from_the_environment_when_the_broker_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = connection(username="pipeline", password_env="SENSORSTREAM_TEST_MQTT_PASSWORD")
    monkeypatch.setenv("SENSORSTREAM_TEST_MQTT_PASSWORD", "s3cret")

    assert settings.broker().password == "s3cret"


def test_a_password_env_that_is_not_set_is_a_config_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SENSORSTREAM_TEST_MQTT_PASSWORD", raising=False)
    settings = connection(username="pipeline", password_env="SENSORSTREAM_TEST_MQTT_PASSWORD")

    with pytest.raises(
        ConfigError, match=r"SENSORSTREAM_TEST_MQTT_PASSWORD \(password_env\) is not"
    ):
        settings.broker()


def test_durations_come_through_to_the_broker() -> None:
    broker = connection(
        keepalive="30s", reconnect_backoff="2s", max_reconnect_backoff="1m"
    ).broker()

    assert broker.keepalive == timedelta(seconds=30)
    assert (broker.reconnect_backoff, broker.max_reconnect_backoff) == (
        timedelta(seconds=2),
        timedelta(minutes=1),
    )


def test_the_default_client_id_is_stable_for_a_folder_and_differs_between_folders() -> None:
    here = default_client_id(Path("/srv/a/.sensorstream/weather"), "readings")

    assert here == default_client_id(Path("/srv/a/.sensorstream/weather"), "readings")
    assert here != default_client_id(Path("/srv/b/.sensorstream/weather"), "readings")
    assert here != default_client_id(Path("/srv/a/.sensorstream/weather"), "devices")
    assert here.startswith("sensorstream-weather-readings-")
