"""A rule's state as snapshots hold it: frames, Python-object columns pickled.

The alert bookkeeping (:class:`~.lifecycle.KeyAlert` per key with something to remember)
becomes one row per key with the alert columns (:data:`~.lifecycle.ALERT_COLUMNS`).

A condition may keep a live Python object per key on its carried row (the anomaly kind's
River model, a Polars ``Object`` column). Snapshots are Arrow files, which have no such
type: the objects are pickled into a Binary column on the way out and unpickled on the way
back, by this process's own code, from snapshots it wrote itself.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

import polars as pl

from sensorstream.engine.rules.lifecycle import ALERT_COLUMNS, KeyAlert


def pickled(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with its Python-object columns (a live model) pickled, for Arrow files."""
    objects = [name for name, kind in frame.schema.items() if isinstance(kind, pl.Object)]
    if not objects:
        return frame
    return frame.with_columns(
        pl.Series(name, [_dumps(v) for v in frame.get_column(name).to_list()], pl.Binary)
        for name in objects
    )


def unpickled(frame: pl.DataFrame, carried: dict[str, pl.DataType]) -> pl.DataFrame:
    """The carried object columns back from :func:`pickled` (a snapshot this process wrote)."""
    objects = [
        n for n, kind in carried.items() if isinstance(kind, pl.Object) and n in frame.columns
    ]
    if not objects:
        return frame
    return frame.with_columns(
        pl.Series(name, [_loads(v) for v in frame.get_column(name).to_list()], pl.Object)
        for name in objects
    )


def _dumps(value: object) -> bytes | None:
    return None if value is None else pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def _loads(value: bytes | None) -> object:
    return None if value is None else pickle.loads(value)  # our own snapshot


def alerts_frame(
    alerts: dict[tuple[Any, ...], KeyAlert], key: Sequence[str], carry: pl.DataFrame | None
) -> pl.DataFrame | None:
    """The bookkeeping as a frame: the key's columns (typed as in ``carry``) and the alert's."""
    if not alerts:
        return None
    schema: dict[str, pl.DataType] = {}
    if key and carry is not None:
        schema = {name: carry.schema[name] for name in key}
    schema |= ALERT_COLUMNS
    rows = [
        {**dict(zip(key, values, strict=True)), **alert.columns()}
        for values, alert in alerts.items()
    ]
    return pl.DataFrame(rows, schema=schema, orient="row")


def alerts_of(frame: pl.DataFrame | None, key: Sequence[str]) -> dict[tuple[Any, ...], KeyAlert]:
    """The bookkeeping back from :func:`alerts_frame`."""
    if frame is None:
        return {}
    return {
        tuple(row[name] for name in key): KeyAlert.of(row) for row in frame.iter_rows(named=True)
    }
