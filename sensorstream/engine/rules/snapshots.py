"""A rule's state frames as snapshots hold them: Python-object columns pickled.

A condition may keep a live Python object per key on its carried row (the anomaly kind's
River model, a Polars ``Object`` column). Snapshots are Arrow files, which have no such
type: the objects are pickled into a Binary column on the way out and unpickled on the way
back, by this process's own code, from snapshots it wrote itself.
"""

from __future__ import annotations

import pickle

import polars as pl


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
