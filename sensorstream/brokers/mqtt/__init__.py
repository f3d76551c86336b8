"""What the MQTT source and sink share: the broker's settings, the connection, and topics.

- :mod:`~sensorstream.brokers.mqtt.settings`: :class:`MqttConnection`, the url, login, TLS and
  reconnect settings both extend, and :class:`Broker`, what they resolve to;
- :mod:`~sensorstream.brokers.mqtt.link`: :class:`Link`, a paho client kept connected, telling
  passing trouble (logged, retried) from a refusal (a wrong password: it stops);
- :mod:`~sensorstream.brokers.mqtt.topics`: topic filters, a device id read from a topic, and
  topics built from templates with every value escaped.

The source is :mod:`sensorstream.sources.mqtt`, the sink :mod:`sensorstream.sinks.mqtt`;
``docs/connectors.md`` says what each promises.
"""

from __future__ import annotations

from sensorstream.brokers.mqtt.link import Link, Session
from sensorstream.brokers.mqtt.settings import Broker, MqttConnection, default_client_id
from sensorstream.brokers.mqtt.topics import TopicPattern, check_filter, check_template, key_levels

__all__ = [
    "Broker",
    "Link",
    "MqttConnection",
    "Session",
    "TopicPattern",
    "check_filter",
    "check_template",
    "default_client_id",
    "key_levels",
]
