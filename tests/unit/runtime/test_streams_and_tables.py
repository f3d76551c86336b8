"""Several streams and reference tables through the runner: joins, accounting, restarts."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sensorstream.errors import ConfigError
from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.sinks import DuckDBSink
from sensorstream.store import Store
from sensorstream.testing import Crash, ListSink, ListSource, ManualClock

START = datetime(2024, 1, 1, tzinfo=UTC)
T0 = int(START.timestamp())


def device(door: str, second: float, district: str, status: str = "active") -> str:
    return json.dumps(
        {
            "deviceId": door,
            "ts": (T0 + second) * 1000,
            "status": status,
            "payload": {"location": {"region": district, "loc": "47.37,8.52"}},
        }
    )


def event(door: str, second: float, kind: str = "accessRejected") -> str:
    return json.dumps({"deviceId": door, "ts": (T0 + second) * 1000, "eventType": kind})


def access_spec(tmp_path: Path, **join: Any) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "access",
            "streams": {
                "devices": {
                    "source": {"type": "simulator"},  # replaced by ListSources below
                    "readings": {
                        "device_field": "deviceId",
                        "measurements": {
                            "status": "string",
                            "loc": {"type": "latlon", "path": "payload.location.loc"},
                        },
                        "tags": {"district": "payload.location.region"},
                    },
                },
                "events": {
                    "source": {"type": "simulator"},
                    "readings": {
                        "device_field": "deviceId",
                        "measurements": {"eventType": "string"},
                    },
                },
            },
            "event_time": {"out_of_orderness": "1s", "idle_timeout": None},
            "dedup": {"enabled": False},
            "steps": [
                {
                    "name": "doors",
                    "input": "devices",
                    "table": {"columns": ["district", "loc"], "delete_when": "status = 'gone'"},
                },
                {
                    "name": "located",
                    "input": "events",
                    "join": {"table": "doors", "mode": "as_of", **join},
                },
                {"name": "rejected", "input": "located", "where": "eventType = 'accessRejected'"},
                {
                    "name": "per_district",
                    "input": "rejected",
                    "key": ["district"],
                    "window": {"type": "tumbling", "size": "10s"},
                    "aggregates": ["count"],
                },
            ],
            "checkpoint": {"dir": str(tmp_path / "ckpt"), "interval": "0s"},
        }
    )


DEVICES = [
    [device("d1", 0, "Wiedikon"), device("d2", 0, "Enge")],
    [device("d1", 15, "Enge"), device("d3", 16, "Wiedikon")],  # d1 moves at 15 s
    [device("d2", 30, "Enge", status="gone")],
]
EVENTS = [
    [event("d1", 1), event("d2", 2), event("d1", 3, "accessGranted")],
    [event("d1", 12), event("d1", 16), event("d3", 18)],
    [event("d2", 31), event("d9", 32)],  # d2 was removed; d9 never announced
]


def run(
    spec: PipelineSpec, sink: ListSink, *, crash_at: int | None = None, fresh: bool = False
) -> Runner:
    runner = Runner(
        spec,
        sources={
            "devices": ListSource(DEVICES),
            "events": ListSource(EVENTS, crash_at=crash_at),
        },
        sinks=[sink],
        clock=ManualClock(START),
        fresh=fresh,
    )
    return runner


def counts(sink: ListSink) -> list[tuple[object, ...]]:
    final = sink.final("per_district")
    return sorted(final.select("district", "window_start", "count").rows(), key=str)


def at(second: int) -> datetime:
    return datetime.fromtimestamp(T0 + second, UTC)


def test_events_joined_as_of_their_time_count_per_district(tmp_path: Path) -> None:
    sink = ListSink()
    summary = run(access_spec(tmp_path), sink).run()
    assert counts(sink) == sorted(
        [
            ("Wiedikon", at(0), 1),  # d1 at 1 s: still in Wiedikon
            ("Enge", at(0), 1),  # d2 at 2 s
            ("Wiedikon", at(10), 2),  # d1 at 12 s (before its move), d3 at 18 s
            ("Enge", at(10), 1),  # d1 at 16 s, after its move
            (None, at(30), 2),  # d2 after its removal, d9 never announced: nulls pass
        ],
        key=str,
    )
    assert summary.balanced
    totals = summary.counters
    assert totals.get("stream:devices:lines") == 5
    assert totals.get("stream:events:lines") == 8
    assert totals.get("stream:events:accepted") == 8


def test_missing_references_become_counted_dead_letters(tmp_path: Path) -> None:
    sink = ListSink()
    summary = run(access_spec(tmp_path, missing="dead_letter"), sink).run()
    dead = pl.concat([frame for _, _, frame in sink.dead_letters])
    assert sorted(dead["reason_code"].to_list()) == ["missing_reference"] * 2
    assert set(dead["origin"].to_list()) == {"step located"}
    assert b'"device_id":"d9"' in b"".join(dead["raw"].to_list())
    assert summary.counters.get("rejected:located") == 2
    assert summary.balanced  # refused after intake: still accepted lines
    assert (None, at(30), 2) not in counts(sink)


@pytest.mark.parametrize("crash_at", [1, 2])
def test_a_crash_mid_stream_changes_no_result(tmp_path: Path, crash_at: int) -> None:
    expected = ListSink()
    run(access_spec(tmp_path / "a"), expected).run()
    sink = ListSink()
    spec = access_spec(tmp_path / "b")
    with pytest.raises(Crash):
        run(spec, sink, crash_at=crash_at).run()
    summary = run(spec, sink).run()
    assert summary.resumed
    assert counts(sink) == counts(expected)
    assert summary.balanced


class TwoPartitions(ListSource):
    def partitions(self) -> list[int]:
        return [0, 1]


def test_a_join_of_streams_partitioned_differently_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="partitioned differently"):
        Runner(
            access_spec(tmp_path),
            sources={"devices": TwoPartitions(DEVICES), "events": ListSource(EVENTS)},
            sinks=[],
        )


# --- reference tables ----------------------------------------------------------------------


def readings_spec(tmp_path: Path, table: Path, **join: Any) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": "enriched",
            "source": {"type": "simulator"},
            "readings": {"measurements": {"t": "float"}},
            "tables": {
                "rooms": {
                    "source": {
                        "type": "file",
                        "path": str(table),
                        "refresh": {"watch": True, "interval": "50ms"},
                    },
                    "columns": {"room": "string"},
                }
            },
            "event_time": {"out_of_orderness": "0s", "idle_timeout": None},
            "steps": [
                {"name": "placed", "join": {"table": "rooms", **join}},
                {
                    "name": "per_room",
                    "input": "placed",
                    "key": ["room"],
                    "window": {"type": "tumbling", "size": "10s"},
                    "aggregates": ["count", "max(t)"],
                },
            ],
            "checkpoint": {"dir": str(tmp_path / "ckpt"), "interval": "0s"},
        }
    )


def reading(device_id: str, second: float, value: float) -> str:
    return json.dumps({"device_id": device_id, "ts": T0 + second, "t": value})


def test_a_file_table_changed_while_running_applies_from_then_on(tmp_path: Path) -> None:
    table = tmp_path / "rooms.csv"
    table.write_text("device_id,room\na,kitchen\nb,hall\n")

    def move_a() -> None:
        table.write_text("device_id,room\na,attic\nb,hall\n")
        deadline = time.monotonic() + 5
        while runner.tables.loads["rooms"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
            runner.tables.poll(runner.tasks.values())

    sink = ListSink()
    source = ListSource(
        [[reading("a", 1, 1.0), reading("b", 2, 2.0)], None, [reading("a", 13, 3.0)]],
        on_idle=move_a,
    )
    runner = Runner(readings_spec(tmp_path, table), source=source, sinks=[sink])
    runner.run()
    final = sink.final("per_room").select("room", "window_start", "count").rows()
    assert sorted(final, key=str) == sorted(
        [("kitchen", at(0), 1), ("hall", at(0), 1), ("attic", at(10), 1)], key=str
    )


def test_a_table_missing_a_declared_column_is_a_clear_error(tmp_path: Path) -> None:
    table = tmp_path / "rooms.csv"
    table.write_text("device_id,floor\na,1\n")
    runner = Runner(
        readings_spec(tmp_path, table), source=ListSource([[reading("a", 1, 1.0)]]), sinks=[]
    )
    with pytest.raises(Exception, match="no column 'room'"):
        runner.run()


def test_every_streams_records_are_stored_with_their_streams_name(tmp_path: Path) -> None:
    store = tmp_path / "access.duckdb"
    runner = Runner(
        access_spec(tmp_path),
        sources={"devices": ListSource(DEVICES), "events": ListSource(EVENTS)},
        sinks=[DuckDBSink(store, store_readings=True)],
        clock=ManualClock(START),
    )
    runner.run()
    with Store(store) as stored:
        rows = stored.sql(
            "SELECT stream, count(*), count(eventType), count(district) FROM readings "
            "GROUP BY stream ORDER BY stream"
        ).rows()
    assert rows == [("devices", 5, 0, 5), ("events", 8, 8, 0)]
