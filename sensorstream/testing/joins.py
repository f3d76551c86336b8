"""Driving a join's operator by hand: two generated streams, their watermarks, its buffers.

:func:`two_streams` makes two interleaved streams of readings with bounded disorder, in
batches (vectorised, so millions of rows are quick to make); :func:`drive_join` feeds
them to an operator of two inputs as a partition task would (each row with its own
stream's watermark before its batch, the step's watermark the minimum of the two) and
records how many rows the operator held at most, which is how a test or a benchmark
tells its state stays bounded.

>>> from datetime import timedelta
>>> from sensorstream.engine.joins.streams import StreamJoinOperator, StreamJoinStep
>>> step = StreamJoinStep("j", "a", "b", ("device_id",), within=timedelta(seconds=1))
>>> run = drive_join(
...     StreamJoinOperator(step, timedelta(0)),
...     two_streams(2_000, devices=10, batch=100, rate_per_s=100.0),
...     out_of_orderness=timedelta(seconds=1),
... )
>>> run.rows_in, run.final_buffered
(2000, 0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import polars as pl

from sensorstream.engine.operator import Operator
from sensorstream.engine.outputs import WATERMARK
from sensorstream.engine.time import micros
from sensorstream.engine.watermarks import MAX_WATERMARK, MIN_WATERMARK
from sensorstream.readings import DEVICE, TS, TS_TYPE
from sensorstream.testing.strategies import STREAM_START_US

Side = int  # 0: the left input, 1: the right one


def two_streams(
    total: int,
    *,
    devices: int = 10_000,
    batch: int = 10_000,
    rate_per_s: float = 2_000.0,
    disorder: timedelta = timedelta(seconds=5),
    seed: int = 0,
) -> Iterator[tuple[Side, pl.DataFrame]]:
    """Batches of two streams, ``total`` readings in all, a left batch then a right one.

    Both streams cover the same event time at ``rate_per_s`` readings a second together,
    each reading of a random device among ``devices`` and late by up to ``disorder``
    behind its place in time (a bounded disorder, as a watermark of that lag tolerates).

    Args:
        total: Readings of both streams together.
        devices: How many devices (``d0``, ``d1``, ...) the readings come from.
        batch: Readings per batch.
        rate_per_s: Readings per second of event time, both streams together.
        disorder: The largest lag of a reading behind its place in time.
        seed: The random generator's seed: the same arguments give the same streams.

    Yields:
        (0 or 1, a batch with ``device_id``, ``ts`` and ``value``).
    """
    generator = np.random.default_rng(seed)
    spacing_us = 2 * 1_000_000 / rate_per_s  # between readings of one stream
    lag_us = micros(disorder)
    made = [0, 0]
    side = 0
    while made[0] + made[1] < total:
        size = min(batch, total - made[0] - made[1])
        places = (made[side] + np.arange(size)) * spacing_us
        lags = generator.integers(0, lag_us + 1, size) if lag_us else np.zeros(size, np.int64)
        frame = pl.DataFrame(
            {
                DEVICE: generator.integers(0, devices, size),
                TS: STREAM_START_US + places.astype(np.int64) - lags,
                "value": generator.standard_normal(size),
            }
        ).with_columns(pl.format("d{}", pl.col(DEVICE)).alias(DEVICE), pl.col(TS).cast(TS_TYPE))
        yield side, frame
        made[side] += size
        side = 1 - side


@dataclass
class JoinRun:
    """What :func:`drive_join` saw: rows in and out, late rows, and the buffers' sizes."""

    rows_in: int = 0
    rows_out: int = 0
    late: int = 0
    peak_buffered: int = 0  # the most rows the operator held after a batch
    final_buffered: int = 0  # what it held after the watermark passed everything


def drive_join(
    operator: Operator,
    feed: Iterable[tuple[Side, pl.DataFrame]],
    *,
    out_of_orderness: timedelta,
    after_batch: Callable[[], object] | None = None,
    finish: bool = True,
) -> JoinRun:
    """Feed two streams' batches to an operator of two inputs, as a partition task would.

    Each stream's watermark is its largest time so far less ``out_of_orderness``; a batch's
    rows carry their stream's watermark before the batch, and the operator is given the
    step's watermark after it, the smaller of the two streams'. The operator must have a
    ``buffered_rows`` attribute (an int), read after every batch.

    Args:
        operator: The join (or relation) operator.
        feed: (input index, batch) pairs in arrival order.
        out_of_orderness: How far behind its stream's latest time a reading may come.
        after_batch: Called after each batch (a benchmark samples its memory there).
        finish: Move the watermark past everything at the end, as at the end of input.

    Returns:
        Counts of rows in, out and late, and the most rows the operator held.
    """
    lag = micros(out_of_orderness)
    watermarks = [MIN_WATERMARK, MIN_WATERMARK]
    run = JoinRun()
    for side, frame in feed:
        rows = frame.with_columns(pl.lit(watermarks[side], pl.Int64).alias(WATERMARK))
        if frame.height:
            latest = frame[TS].cast(pl.Int64).max()
            if isinstance(latest, int):
                watermarks[side] = max(watermarks[side], latest - lag)
        output = operator.process_from(side, rows, min(watermarks))
        run.rows_in += frame.height
        run.rows_out += 0 if output.rows is None else output.rows.height
        run.late += 0 if output.late is None else int(output.late.sum())
        run.peak_buffered = max(run.peak_buffered, _buffered(operator))
        if after_batch is not None:
            after_batch()
    if finish:
        output = operator.on_watermark(MAX_WATERMARK)
        run.rows_out += 0 if output.rows is None else output.rows.height
    run.final_buffered = _buffered(operator)
    return run


def _buffered(operator: Operator) -> int:
    held = getattr(operator, "buffered_rows", None)
    if not isinstance(held, int):
        msg = f"{type(operator).__name__} does not say how many rows it holds (buffered_rows)"
        raise TypeError(msg)
    return held
