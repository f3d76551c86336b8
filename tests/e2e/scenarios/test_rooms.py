"""The rooms scenario end to end: the heatmap-alert job's windows, relation and alerts.

The scenario runs at full speed for 150 s of event time from the feed's fixed start (40 s
before an even minute), so the injected room overheats in [40 s, 70 s) once. The reference
is computed here from the feed's own ``reports()`` with plain Polars, reading by reading.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario
from sensorstream.sources.feeds import RoomsFeedSettings
from sensorstream.sources.feeds.base import epoch_us
from sensorstream.sources.synthetic import DEFAULT_START

SECOND = 1_000_000
SECONDS = 150
WINDOW = 5 * SECOND


def run(tmp_path: Path, inject: str | None) -> duckdb.DuckDBPyConnection:
    """The scenario at full speed for SECONDS, stored in a fresh DuckDB file."""
    db = tmp_path / "rooms.duckdb"
    spec = scenario("rooms").spec(
        live=False,
        duration=timedelta(seconds=SECONDS),
        inject=inject,
        changes={
            "sinks": [{"type": "duckdb", "path": str(db)}],
            "checkpoint": {"dir": str(tmp_path / "checkpoints")},
            "api": {"serve": False},
        },
    )
    Runner(spec).run()
    return duckdb.connect(str(db), read_only=True)


def reference_windows(overheat: str | None) -> pl.DataFrame:
    """Each room's and side's 5 s means, computed from the feed's reports."""
    start = epoch_us(DEFAULT_START)
    reports = (
        RoomsFeedSettings(overheat=overheat)
        .build()
        .reports(start, start + SECONDS * SECOND, seed=0)
    )
    parts = pl.col("roomId").str.split("_")
    return (
        reports.with_columns(
            room=parts.list.get(0),
            side=parts.list.get(1),
            window_us=pl.col("timestamp") * 1000 // WINDOW * WINDOW,
        )
        .group_by("room", "side", "window_us")
        .agg(temperature=pl.col("value").mean(), count=pl.len())
        .sort("room", "side", "window_us")
    )


def stored(db: duckdb.DuckDBPyConnection, step: str, side: str) -> pl.DataFrame:
    frame: pl.DataFrame = db.sql(
        f"SELECT room, epoch_us(window_start) AS window_us, temperature, count, final "
        f"FROM results_rooms_{step} ORDER BY room, window_start"
    ).pl()
    assert frame["final"].all()
    return frame.drop("final").with_columns(side=pl.lit(side))


def expected_transitions(windows: pl.DataFrame) -> list[tuple[str, str, int]]:
    """(room, state, window end) per transition: two windows >= 20 C in a row fire."""
    found: list[tuple[str, str, int]] = []
    inside = windows.filter(pl.col("side") == "IN")
    for (room,), rows in inside.group_by("room", maintain_order=True):
        run, state = 0, "ok"
        for window_us, temperature in rows.select("window_us", "temperature").iter_rows():
            end = window_us + WINDOW
            if temperature >= 20:
                run += 1
                if run == 1 and state == "ok":
                    state = "pending"
                    found.append((str(room), state, end))
                elif run == 2 and state == "pending":
                    state = "firing"
                    found.append((str(room), state, end))
            else:
                if state == "firing":
                    found.append((str(room), "resolved", end))
                elif state == "pending":
                    found.append((str(room), "ok", end))
                run, state = 0, "ok"
    return found


def transitions(db: duckdb.DuckDBPyConnection) -> list[tuple[str, str, int]]:
    rows = db.sql(
        "SELECT json_extract_string(key, '$.room'), state, epoch_us(event_time) + 1 "
        "FROM alert_transitions ORDER BY event_time, sequence"
    ).fetchall()
    return [(str(room), str(state), int(end)) for room, state, end in rows]


def test_the_undisturbed_rooms_raise_no_alert(tmp_path: Path) -> None:
    db = run(tmp_path, inject=None)
    assert transitions(db) == []
    assert db.sql("SELECT count(*) FROM results_rooms_rooms_in").fetchall() == [(150,)]


@pytest.mark.parametrize("room", ["room3"])
def test_an_overheated_room_alerts_after_two_warnings_and_resolves(
    tmp_path: Path, room: str
) -> None:
    db = run(tmp_path, inject=room)
    windows = reference_windows(room)
    expected = expected_transitions(windows)
    start = epoch_us(DEFAULT_START)
    # The episode is [40 s, 70 s): past 20 C by 45 s, so firing by the window ending at 55 s,
    # and resolved by the first window after it, ending at 75 s.
    assert [state for _, state, _ in expected] == ["pending", "firing", "resolved"]
    assert {r for r, _, _ in expected} == {room}
    fired = next(end for _, state, end in expected if state == "firing")
    resolved = next(end for _, state, end in expected if state == "resolved")
    assert start + 45 * SECOND < fired <= start + 55 * SECOND
    assert resolved == start + 75 * SECOND
    assert transitions(db) == expected


def test_the_stored_windows_and_relation_equal_the_reference(tmp_path: Path) -> None:
    db = run(tmp_path, inject="room3")
    reference = reference_windows("room3")
    got = pl.concat([stored(db, "rooms_in", "IN"), stored(db, "rooms_out", "OUT")])
    columns = ["room", "side", "window_us", "temperature", "count"]
    assert (
        got.select(columns)
        .sort(columns[:3])
        .equals(
            reference.select(columns).sort(columns[:3]).with_columns(pl.col("count").cast(pl.Int64))
        )
    )
    sides = reference.pivot("side", index=["room", "window_us"], values="temperature")
    relation = db.sql(
        "SELECT room, epoch_us(window_start) AS window_us, difference, ratio "
        "FROM results_rooms_relation ORDER BY room, window_start"
    ).pl()
    joined = relation.join(sides, on=["room", "window_us"], how="full", coalesce=True)
    assert joined.height == relation.height == sides.height == 5 * SECONDS // 5
    for row in joined.iter_rows(named=True):
        assert row["difference"] == pytest.approx(row["OUT"] - row["IN"])
        assert row["ratio"] == pytest.approx(row["OUT"] / row["IN"])
