"""Durations as people write them in YAML and on the command line: ``500ms``, ``5s``, ``1m``."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

from sensorstream.errors import ConfigError

_UNITS = {
    "us": timedelta(microseconds=1),
    "ms": timedelta(milliseconds=1),
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)\s*$"  # for JSON schemas too
_PATTERN = re.compile(DURATION_PATTERN)


def parse_duration(text: str | float | timedelta) -> timedelta:
    """Parse ``"500ms"``, ``"5s"``, ``"2m"``, ``"1h"``, ``"1d"`` or a number of seconds.

    >>> parse_duration("1.5s")
    datetime.timedelta(seconds=1, microseconds=500000)
    """
    if isinstance(text, timedelta):
        return text
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return timedelta(seconds=text)
    match = _PATTERN.match(str(text))
    if not match:
        msg = f"invalid duration {text!r}: write a number and a unit, e.g. 500ms, 5s, 2m, 1h, 1d"
        raise ConfigError(msg)
    try:
        return float(match.group(1)) * _UNITS[match.group(2)]
    except OverflowError:  # past timedelta's 999,999,999 days
        msg = f"invalid duration {text!r}: too long (at most 999999999d)"
        raise ConfigError(msg) from None


def parse_positive_duration(where: str, text: str) -> timedelta:
    """A duration longer than zero, such as a silence's ``for``; ``where`` names it in a mistake.

    >>> parse_positive_duration("--for", "2h")
    datetime.timedelta(seconds=7200)
    """
    try:
        value = parse_duration(text)
    except ConfigError as error:
        msg = f"{where} {text}: {error}"
        raise ConfigError(msg) from None
    if value <= timedelta(0):
        msg = f"{where} {text}: must be longer than zero"
        raise ConfigError(msg)
    return value


def format_duration(value: timedelta) -> str:
    """The shortest exact spelling of a duration, for YAML round trips.

    >>> format_duration(timedelta(minutes=1))
    '1m'
    """
    micros = value // timedelta(microseconds=1)
    for unit in ("d", "h", "m", "s", "ms", "us"):
        size = _UNITS[unit] // timedelta(microseconds=1)
        if micros % size == 0:
            return f"{micros // size}{unit}"
    return f"{micros}us"  # pragma: no cover - "us" always divides


def _validate(value: object) -> timedelta:
    try:
        return parse_duration(value)  # type: ignore[arg-type]
    except ConfigError as error:
        raise ValueError(str(error)) from None


Duration = Annotated[
    timedelta, BeforeValidator(_validate), PlainSerializer(format_duration, return_type=str)
]
"""A timedelta field that accepts ``5s`` and serialises back to it."""
