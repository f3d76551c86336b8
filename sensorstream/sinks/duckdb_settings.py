"""The DuckDB sink as written in a pipeline YAML: where, what, how long, how merged.

>>> DuckDBSinkSettings.model_validate({"retention": {"readings": "7d"}}).retention.readings
datetime.timedelta(days=7)
>>> DuckDBSinkSettings.model_validate({"compaction": None}).build().compaction is None
True
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sensorstream.durations import Duration
from sensorstream.sinks.compaction import CompactionPolicy
from sensorstream.sinks.duckdb import DuckDBSink


class RetentionSettings(BaseModel):
    """``retention: {readings: 7d}``: how far behind the newest reading raw ones are kept.

    Counted in event time, per segment: a segment goes once its newest reading is that far
    behind the newest reading stored. Window results, dead letters and late readings stay.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    readings: Duration | None = None

    @field_validator("readings")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            msg = "a retention must be longer than zero, e.g. 7d; leave it out to keep all"
            raise ValueError(msg)
        return value


class CompactionSettings(BaseModel):
    """``compaction: {target_rows: 1048576, fan_in: 8, grace: 60s}``, or ``null`` for none.

    Small reading segments (one per flush) are merged in the background into segments of
    about ``target_rows``, ``fan_in`` or more at a time; merged inputs stay ``grace`` for
    readers that listed them (:mod:`~sensorstream.sinks.compaction`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_rows: int = Field(default=CompactionPolicy.target_rows, gt=0)
    fan_in: int = Field(default=CompactionPolicy.fan_in, ge=2)
    grace: Duration = Field(default=CompactionPolicy.grace, validate_default=True)

    def policy(self) -> CompactionPolicy:
        """The policy the sink applies."""
        return CompactionPolicy(self.target_rows, self.fan_in, self.grace)


class DuckDBSinkSettings(BaseModel):
    """``sink: {type: duckdb, path: ..., store_readings: ..., retention: ..., compaction: ...}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["duckdb"] = "duckdb"
    path: Path = Path("sensorstream.duckdb")
    store_readings: bool = True
    flush_rows: int = Field(default=200_000, gt=0)
    retention: RetentionSettings = RetentionSettings()
    compaction: CompactionSettings | None = CompactionSettings()

    def build(self) -> DuckDBSink:
        """The sink these settings describe."""
        return DuckDBSink(
            self.path,
            self.store_readings,
            flush_rows=self.flush_rows,
            retention=self.retention.readings,
            compaction=self.compaction.policy() if self.compaction is not None else None,
        )
