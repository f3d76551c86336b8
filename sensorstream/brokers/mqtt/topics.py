"""MQTT topics: checking filters, reading a device id out of a topic, and building topics safely.

A topic is levels separated by ``/``. A *filter* (what a subscription names) may use ``+``
for any one level and ``#``, last, for any levels after. The source reads a device id from
a topic through a *pattern*: a filter in which one whole level is ``{device_id}``
(``devices/{device_id}/telemetry``). The sink builds topics from a *template*
(``sensorstream/{pipeline}/{step}/{key}``) and escapes every value it puts in, so that a
device id holding ``/``, ``+`` or ``#`` can neither add levels nor read as a wildcard.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "DEVICE_PLACEHOLDER",
    "TEMPLATE_FIELDS",
    "TopicPattern",
    "check_filter",
    "check_template",
    "escape_level",
    "fill_template",
    "key_levels",
]

DEVICE_PLACEHOLDER = "{device_id}"
TEMPLATE_FIELDS = ("pipeline", "step", "key")
# Percent-encoded in a topic built from values: the level separator, both wildcards, the
# escape itself, "$" (a leading "$" marks a broker's own topics) and NUL (never allowed).
_ESCAPED = {char: f"%{ord(char):02X}" for char in "%/+#$\0"}
_ESCAPE_TABLE = str.maketrans(_ESCAPED)
NULL_LEVEL = "%null"  # a null key value: no escaped value looks like it ("%nu" is no escape)


def check_filter(topic_filter: str) -> str:
    """``topic_filter`` if it is a valid MQTT topic filter, else ValueError saying why.

    >>> check_filter("devices/+/telemetry")
    'devices/+/telemetry'
    >>> check_filter("devices/#/x")
    Traceback (most recent call last):
    ...
    ValueError: topic filter 'devices/#/x': '#' may only be the last level
    """
    where = f"topic filter {topic_filter!r}"
    if not topic_filter:
        msg = f"{where}: a topic filter is at least one character"
        raise ValueError(msg)
    if "\0" in topic_filter:
        msg = f"{where}: holds a NUL character"
        raise ValueError(msg)
    if len(topic_filter.encode()) > 0xFFFF:
        msg = f"{where}: longer than 65535 bytes"
        raise ValueError(msg)
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            msg = f"{where}: '#' may only be the last level"
            raise ValueError(msg)
        if "+" in level and level != "+":
            msg = f"{where}: '+' must be a whole level, as in devices/+/telemetry"
            raise ValueError(msg)
    return topic_filter


@dataclass(frozen=True)
class TopicPattern:
    """A topic filter one of whose levels names the device: ``devices/{device_id}/telemetry``.

    >>> pattern = TopicPattern.parse("sites/+/devices/{device_id}/#")
    >>> pattern.device_id("sites/north/devices/d-17/telemetry/raw")
    'd-17'
    >>> pattern.filter
    'sites/+/devices/+/#'
    >>> pattern.device_id("sites/north/gateways/g1") is None
    True
    """

    levels: tuple[str, ...]
    device_level: int

    @classmethod
    def parse(cls, pattern: str) -> TopicPattern:
        """The pattern written as ``pattern``; ValueError saying what is wrong with it."""
        levels = tuple(pattern.split("/"))
        found = [index for index, level in enumerate(levels) if level == DEVICE_PLACEHOLDER]
        if len(found) != 1:
            msg = (
                f"topic pattern {pattern!r}: one whole level must be {DEVICE_PLACEHOLDER}, as "
                f"in devices/{DEVICE_PLACEHOLDER}/telemetry"
            )
            raise ValueError(msg)
        if any("{" in level or "}" in level for i, level in enumerate(levels) if i != found[0]):
            msg = (
                f"topic pattern {pattern!r}: {DEVICE_PLACEHOLDER} must be a level of its own, "
                "and the only placeholder"
            )
            raise ValueError(msg)
        made = cls(levels, found[0])
        check_filter(made.filter)
        return made

    @property
    def filter(self) -> str:
        """The pattern as a subscription filter: the device's level becomes ``+``."""
        return "/".join("+" if i == self.device_level else lv for i, lv in enumerate(self.levels))

    def device_id(self, topic: str) -> str | None:
        """The device id ``topic`` holds, or None if the topic does not match the pattern."""
        levels = topic.split("/")
        for index, expected in enumerate(self.levels):
            if expected == "#":
                break
            if index >= len(levels):
                return None
            if expected not in ("+", DEVICE_PLACEHOLDER) and expected != levels[index]:
                return None
        else:
            if len(levels) != len(self.levels):
                return None
        value = levels[self.device_level]
        return value or None


def escape_level(value: object) -> str:
    """A value as text that stays within one topic level and holds no wildcard.

    >>> escape_level("a/b+c#d%e"), escape_level(None), escape_level(7)
    ('a%2Fb%2Bc%23d%25e', '%null', '7')
    """
    if value is None:
        return NULL_LEVEL
    return str(value).translate(_ESCAPE_TABLE)


def key_levels(values: Sequence[object]) -> str:
    """A result's key values as topic levels: each escaped, joined by ``/``.

    >>> key_levels(["north", "dev/1"])
    'north/dev%2F1'
    """
    return "/".join(escape_level(value) for value in values)


def check_template(template: str) -> str:
    """``template`` if it is a topic template the sink can fill, else ValueError saying why.

    >>> check_template("plant/{step}/{key}")
    'plant/{step}/{key}'
    >>> check_template("plant/{device}/{key}")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: topic template 'plant/{device}/{key}': unknown placeholder {device}; use ...
    """
    where = f"topic template {template!r}"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        msg = f"{where}: {error} (write a literal brace as {{{{ or }}}})"
        raise ValueError(msg) from None
    for literal, name, spec, conversion in parts:
        if "+" in literal or "#" in literal or "\0" in literal:
            msg = f"{where}: a published topic holds no '+', '#' or NUL"
            raise ValueError(msg)
        if name is not None and (name not in TEMPLATE_FIELDS or spec or conversion):
            known = ", ".join(f"{{{field}}}" for field in TEMPLATE_FIELDS)
            msg = f"{where}: unknown placeholder {{{name}}}; use {known}"
            raise ValueError(msg)
    if not template:
        msg = f"{where}: a topic is at least one character"
        raise ValueError(msg)
    return template


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """The topic ``template`` names for already escaped ``values``.

    >>> fill_template("s/{pipeline}/{step}/{key}", {"pipeline": "p", "step": "w", "key": "a/b"})
    's/p/w/a/b'
    """
    return template.format_map(values)
