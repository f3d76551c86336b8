"""Metrics over a time range of stored readings: the contract of ``POST /compute/metrics``.

The request is the one of the iot-kafka-spark reference design: each key other than
``from`` and ``to`` names a measurement (a sensor) with a list of metrics to compute over
its readings between the two instants, both included::

    {
        "temperature": ["count", "min"],
        "humidity": ["average", "max"],
        "from": "2020-01-13 15:12:00",
        "to": "2020-01-13 15:13:00",
    }

    {
        "result": {
            "temperature": {"count": 61, "min": 2},
            "humidity": {"average": 48.557377049180324, "max": 98},
        },
        "errors": [],
    }

Unknown keys and metrics do not fail the request: what is valid is computed and each
mistake is listed in ``errors`` in the reference design's words ("Unexpected key wrongKey
in the request body", "Unexpected metric wrongMetric to compute for the sensor
temperature"). Nothing valid to compute, a body that is not a JSON object, a time that is
not ``YYYY-MM-DD HH:MM:SS`` or a range that ends before it starts is a 400 with the reason
and an empty ``result``. Times without a zone are read in the pipeline's zone (UTC).
``count`` is an integer, ``min`` and ``max`` have the measurement's type (integers for an
``int`` one, as the document's sensors send) and ``average`` is a float; over a range
without readings, ``count`` is 0 and the others are null.

The body is JSON, read by :func:`parse_body`, which also takes a comma before a closing
``}`` or ``]``: the reference design's own example request has one.

One SQL query computes every metric asked for: DuckDB does the work, and the column names
in it come only from the stored readings' own columns, never from the request.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

import polars as pl

from sensorstream.readings import TS
from sensorstream.sinks.duckdb_tables import quote
from sensorstream.store.query import Store

__all__ = [
    "METRICS",
    "BodyError",
    "MetricsAnswer",
    "compute_metrics",
    "parse_body",
    "sensors",
]

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
RANGE_KEYS = ("from", "to")
# Metric name -> the SQL aggregate computing it ("average" and "mean" are one).
METRICS: dict[str, str] = {
    "count": "count",
    "average": "avg",
    "mean": "avg",
    "min": "min",
    "max": "max",
}


@dataclass
class MetricsAnswer:
    """What ``POST /compute/metrics`` answers: its status, the metrics and the mistakes."""

    status: int
    result: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The JSON body: ``result`` and ``errors``, as the reference design answers."""
        return {"result": self.result, "errors": self.errors}


# A string (kept as it is), or a comma with only white space before a closing bracket.
_TRAILING_COMMA = re.compile(r'("(?:[^"\\]|\\.)*")|,(\s*[}\]])')


class BodyError(ValueError):
    """A request body that is not JSON, with where it fails (for the 400's ``errors``)."""


def parse_body(data: bytes) -> object:
    """The request body as JSON; a trailing comma before ``}`` or ``]`` is forgiven.

    >>> parse_body(b'{"temperature": ["count", "min",], "to": "x", }')
    {'temperature': ['count', 'min'], 'to': 'x'}
    >>> parse_body(b'{"a": ",}"}')
    {'a': ',}'}
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        msg = f"the body is not UTF-8 text: {error.reason} at byte {error.start}"
        raise BodyError(msg) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        forgiven = _TRAILING_COMMA.sub(
            lambda m: m.group(1) if m.group(1) is not None else m.group(2), text
        )
        if forgiven != text:
            try:
                return json.loads(forgiven)
            except json.JSONDecodeError:
                pass
        msg = f"the body is not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        raise BodyError(msg) from None


def sensors(store: Store, pipeline: str) -> list[str]:
    """The numeric measurements stored for ``pipeline``: what a request may ask about."""
    schema = store.reading_schema()
    return [name for name in store.reading_measurements(pipeline) if schema[name].is_numeric()]


def compute_metrics(
    store: Store, pipeline: str, request: object, *, zone: tzinfo = UTC
) -> MetricsAnswer:
    """Answer one request (the parsed JSON body) over ``pipeline``'s stored readings."""
    if not isinstance(request, dict):
        kind = type(request).__name__
        return MetricsAnswer(400, errors=[f"the request body must be a JSON object, got {kind}"])
    errors: list[str] = []
    span = _span(request, zone, errors)
    known = sensors(store, pipeline)
    wanted: dict[str, list[str]] = {}
    for key, value in request.items():
        if key in RANGE_KEYS:
            continue
        if key not in known:
            errors.append(f"Unexpected key {key} in the request body")
            continue
        if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
            errors.append(f"The metrics for the sensor {key} must be a list of metric names")
            continue
        for metric in value:
            if metric not in METRICS:
                errors.append(f"Unexpected metric {metric} to compute for the sensor {key}")
            elif metric not in wanted.setdefault(key, []):
                wanted[key].append(metric)
    wanted = {key: metrics for key, metrics in wanted.items() if metrics}
    if span is None or not wanted:
        return MetricsAnswer(400, errors=errors)
    return MetricsAnswer(200, _computed(store, pipeline, wanted, span), errors)


def _span(
    request: dict[str, Any], zone: tzinfo, errors: list[str]
) -> tuple[datetime, datetime] | None:
    """The ``from`` and ``to`` instants, or None with the reasons added to ``errors``."""
    found: list[datetime] = []
    for key in RANGE_KEYS:
        value = request.get(key)
        if value is None:
            errors.append(f"Missing key {key} in the request body: give it as YYYY-MM-DD HH:MM:SS")
            continue
        try:
            found.append(datetime.strptime(str(value), TIME_FORMAT).replace(tzinfo=zone))
        except ValueError:
            errors.append(
                f"The key {key} must be a date and time as YYYY-MM-DD HH:MM:SS, got {value!r}"
            )
    if len(found) != len(RANGE_KEYS):
        return None
    start, end = found
    if end < start:
        errors.append(f"The range ends before it starts: from {request['from']} to {request['to']}")
        return None
    return start.astimezone(UTC), end.astimezone(UTC)


def _computed(
    store: Store, pipeline: str, wanted: dict[str, list[str]], span: tuple[datetime, datetime]
) -> dict[str, dict[str, float | int | None]]:
    """Every wanted metric of every wanted sensor, in one query."""
    columns = {
        (sensor, metric): f"{METRICS[metric]}({quote(sensor)})"
        for sensor, metrics in wanted.items()
        for metric in metrics
    }
    selected = ", ".join(
        f"{sql} AS {quote(f'{sensor}/{metric}')}" for (sensor, metric), sql in columns.items()
    )
    row: pl.DataFrame = store.sql(
        f"SELECT {selected} FROM readings WHERE pipeline = ? AND {quote(TS)} BETWEEN ? AND ?",
        [pipeline, *span],
    )
    result: dict[str, dict[str, float | int | None]] = {}
    for sensor, metric in columns:
        value = row[f"{sensor}/{metric}"][0]
        result.setdefault(sensor, {})[metric] = value
    return result
