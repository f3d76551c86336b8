"""A pipeline whose rule reads its ranges from PostgreSQL, refreshed while it runs."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from sensorstream.pipeline.spec import parse_spec
from sensorstream.runtime.runner import Runner
from sensorstream.testing import ListSink, ListSource

pytestmark = pytest.mark.integration

T0 = int(datetime(2024, 6, 1, 12, tzinfo=UTC).timestamp())


def beat(user: str, second: float, bpm: float) -> str:
    return json.dumps({"user_id": user, "ts": T0 + second, "heart_rate": bpm})


PIPELINE = """
name: heartwatch
source: {{type: simulator}}
readings:
  device_field: user_id
  measurements: {{heart_rate: float}}
event_time: {{out_of_orderness: 0s, idle_timeout: null}}
tables:
  ranges:
    source:
      type: postgres
      dsn: {dsn}
      query: SELECT user_id, low, high, updated_at FROM ranges
      refresh: {{change_column: updated_at, listen: ranges_changed, interval: 100ms}}
    key: [user_id]
    columns: {{low: float, high: float, updated_at: datetime}}
steps:
  - name: out_of_range
    rule: {{range: heart_rate, table: ranges, low: low, high: high}}
checkpoint: {{dir: {checkpoints}, interval: 0s}}
"""


def test_a_range_changed_in_postgres_while_running_judges_later_readings(
    postgres_db: str, tmp_path: Path
) -> None:
    with psycopg.connect(postgres_db, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE ranges (user_id text PRIMARY KEY, low float8, high float8,"
            " updated_at timestamptz NOT NULL DEFAULT clock_timestamp())"
        )
        connection.execute("INSERT INTO ranges (user_id, low, high) VALUES ('ann', 50, 90)")
    spec = parse_spec(PIPELINE.format(dsn=postgres_db, checkpoints=tmp_path / "ckpt"))

    def widen_the_range() -> None:
        with psycopg.connect(postgres_db, autocommit=True) as connection:
            connection.execute(
                "UPDATE ranges SET high = 120, updated_at = clock_timestamp() WHERE user_id = 'ann'"
            )
            connection.execute("NOTIFY ranges_changed")
        deadline = time.monotonic() + 10
        while runner.tables.loads["ranges"] < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            runner.tables.poll(runner.tasks.values())

    source = ListSource(
        [[beat("ann", 0, 100), beat("ann", 1, 100)], None, [beat("ann", 2, 100)]],
        on_idle=widen_the_range,
    )
    sink = ListSink()
    runner = Runner(spec, source=source, sinks=[sink])
    runner.run()
    assert runner.tables.loads["ranges"] == 2
    states = sink.transitions("out_of_range")["state"].to_list()
    assert states == ["firing", "resolved"]  # 100 > 90 fires; under the new 120 it resolves
