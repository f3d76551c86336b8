"""The heartwatch scenario as the tests run it, and the references they hold it to.

The scenario runs at full speed for 150 s of event time from the feed's fixed start (40 s
before an even minute), with 2,000 users at 1,600 messages a second (each user every
1.25 s, as with the document's 20,000 at 16,000/s), so injected users collapse in
[40 s, 115 s) once. The references are computed here from the feed's own ``reports()``
with plain Polars and Python, record by record: they never ask the engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario
from sensorstream.sources.feeds import HeartwatchFeedSettings
from sensorstream.sources.feeds.base import epoch_us
from sensorstream.sources.feeds.heartwatch import historical_ranges
from sensorstream.sources.synthetic import DEFAULT_START

SECOND = 1_000_000
SECONDS = 150
USERS, RATE = 2_000, 1_600.0
STILL = 30 * SECOND  # the pipeline's X: unchanged for 30 s
WINDOW = 10 * SECOND
COLLAPSED = ("42", "1500")
START = epoch_us(DEFAULT_START)
EPISODE = (START + 40 * SECOND, START + 115 * SECOND)


def feed(collapse: tuple[str, ...]) -> HeartwatchFeedSettings:
    return HeartwatchFeedSettings(users=USERS, rate=RATE, collapse=collapse)


def spec_in(folder: Path, collapse: tuple[str, ...], **tables: Any) -> PipelineSpec:
    """The scenario at full speed for SECONDS, its store, checkpoint and ranges in ``folder``."""
    source = {
        "type": "feed",
        "feed": feed(collapse).model_dump(mode="json"),
        "live": False,
        "duration": f"{SECONDS}s",
        "interval": "7s",  # batches cut across windows and episodes
    }
    historical = {
        "source": {"type": "file", "path": str(folder / "historical.parquet")},
        "key": ["user_id"],
        "columns": {"min_heart_rate": "int", "max_heart_rate": "int"},
    }
    return scenario("heartwatch").spec(
        changes={
            "source": source,
            "tables": {"historical": historical},
            "sinks": [{"type": "duckdb", "path": str(folder / "heartwatch.duckdb")}],
            "checkpoint": {"dir": str(folder / "checkpoints")},
            "api": {"serve": False},
        },
        **tables,
    )


def run(folder: Path, collapse: tuple[str, ...], **tables: Any) -> duckdb.DuckDBPyConnection:
    """The scenario run to its end; its store, read only."""
    Runner(spec_in(folder, collapse, **tables)).run()
    return duckdb.connect(str(folder / "heartwatch.duckdb"), read_only=True)


def reports(collapse: tuple[str, ...]) -> pl.DataFrame:
    """The feed's records joined with the historical ranges, as the reference sees them."""
    sent = feed(collapse).build().reports(START, START + SECONDS * SECOND, seed=0)
    return sent.join(historical_ranges(USERS, seed=0), on="user_id", how="left").with_columns(
        ts=pl.col("timestamp") * 1000,
        out_of_range=(pl.col("heart_rate") < pl.col("min_heart_rate"))
        | (pl.col("heart_rate") > pl.col("max_heart_rate")),
    )


def reference_transitions(records: pl.DataFrame) -> list[tuple[str, str, int]]:
    """(user, state, event time) per transition, judged record by record in time order."""
    found: list[tuple[str, str, int]] = []
    ordered = records.sort("user_id", "ts").select(
        "user_id", "ts", "latitude", "longitude", "out_of_range"
    )
    for (user,), rows in ordered.group_by("user_id", maintain_order=True):
        last: tuple[float, float] | None = None
        since, firing = 0, False
        for ts, latitude, longitude, out in rows.select(pl.exclude("user_id")).iter_rows():
            if (latitude, longitude) != last:
                last, since = (latitude, longitude), ts
            breach = out and ts - since >= STILL
            if breach and not firing:
                found.append((str(user), "firing", ts))
            elif firing and not breach:
                found.append((str(user), "resolved", ts))
            firing = breach
    return sorted(found, key=lambda row: (row[2], row[0]))


def transitions(db: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    rows = db.sql(
        "SELECT json_extract_string(key, '$.device_id'), state, epoch_us(event_time) "
        "FROM alert_transitions ORDER BY event_time, 1, sequence"
    ).fetchall()
    return [(str(user), str(state), int(at)) for user, state, at in rows]


def stillness(records: pl.DataFrame) -> pl.DataFrame:
    """Each record with ``still_for``: how long its user's location has been what it is."""
    moved = (pl.col("latitude") != pl.col("latitude").shift()) | (
        pl.col("longitude") != pl.col("longitude").shift()
    )
    runs = records.sort("user_id", "ts").with_columns(moved=moved.fill_null(True).over("user_id"))
    runs = runs.with_columns(run=pl.col("moved").cum_sum().over("user_id"))
    return runs.with_columns(still_for=pl.col("ts") - pl.col("ts").min().over("user_id", "run"))
