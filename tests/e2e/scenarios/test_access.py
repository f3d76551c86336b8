"""The access scenario end to end: doors and events in, district alerts and windows stored.

Each run is the shipped pipeline at full speed over eight minutes of event time, its feeds
cut into 20-second batches (so the two streams interleave as they do live), written to a
DuckDB store and read back. The reference is computed here, event by event, from the
feeds' own reports joined in plain Polars.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from sensorstream.pipeline.spec import PipelineSpec
from sensorstream.runtime.runner import Runner
from sensorstream.scenarios import scenario
from sensorstream.sources import FeedSourceSettings
from sensorstream.sources.feeds.base import epoch_us
from sensorstream.store import Store

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[3]

START = datetime(2024, 6, 1, 8, 0, 7, tzinfo=UTC)  # not on a window boundary
LENGTH = timedelta(minutes=8)
BEGINS, ENDS = START + timedelta(minutes=2), START + timedelta(minutes=5)  # the YAML's
SLIDE, SIZE = timedelta(seconds=30), timedelta(minutes=1)


def access_spec(folder: Path, disrupt: str | None) -> PipelineSpec:
    spec = scenario("access").spec(
        live=False,
        duration=LENGTH,
        inject=disrupt,
        changes={
            "sinks": [{"type": "duckdb", "path": str(folder / "access.duckdb")}],
            "checkpoint": {"dir": str(folder / "checkpoints"), "interval": "1s"},
            "api": {"serve": False},
        },
    )
    streams = {}
    for name, stream in spec.streams.items():
        assert isinstance(stream.source, FeedSourceSettings)
        source = stream.source.model_copy(
            update={"start": START, "interval": timedelta(seconds=20)}
        )
        streams[name] = stream.model_copy(update={"source": source})
    return spec.model_copy(update={"streams": streams})


class Run:
    """One run's spec and what its store holds afterwards."""

    def __init__(self, folder: Path, disrupt: str | None) -> None:
        folder.mkdir()
        self.spec = access_spec(folder, disrupt)
        self.summary = Runner(self.spec, fresh=True).run()
        store = Store(folder / "access.duckdb")
        try:
            self.transitions = store.alert_transitions("access", rule="disrupted", limit=None)
            self.windows = store.results("access", "per_district", limit=None)
            self.shares = store.results("access", "district_share", limit=None)
            self.doors = store.results("access", "per_door", limit=None)
            self.dead_letters = store.sql("SELECT count(*) AS n FROM dead_letters")["n"].item()
        finally:
            store.close()

    def reports(self, stream: str) -> pl.DataFrame:
        """The feed's reports over the run, as the source sent them."""
        source = self.spec.streams[stream].source
        assert isinstance(source, FeedSourceSettings)
        feed = source.feed.build().starting_at(epoch_us(START))
        return feed.reports(epoch_us(START), epoch_us(START + LENGTH), source.seed)


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return Run(tmp_path_factory.mktemp("access") / "undisturbed", None)


@pytest.fixture(scope="module")
def disrupted(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return Run(tmp_path_factory.mktemp("access") / "disrupted", "Wiedikon")


def test_undisturbed_doors_raise_no_alert(undisturbed: Run) -> None:
    assert undisturbed.transitions.is_empty()
    assert undisturbed.summary.balanced
    assert undisturbed.dead_letters == 0  # every event's door was announced before it
    assert (undisturbed.shares["rejected_share"] < 0.1).all()  # about 1 % everywhere


def test_a_disruption_alerts_for_its_district_only_and_clears_after_it(disrupted: Run) -> None:
    transitions = disrupted.transitions.sort("event_time", "sequence")
    assert set(transitions["key"]) == {json.dumps({"district": "Wiedikon"})}
    assert transitions["alert_id"].n_unique() == 1  # one episode
    fired = transitions.filter(pl.col("state") == "firing")
    assert fired.height >= 1
    first_fired = fired["event_time"].min()
    assert isinstance(first_fired, datetime)
    assert BEGINS + SLIDE <= first_fired <= ENDS  # during it, two windows of evidence
    assert "rejected_share" in fired["reason"][0]
    last = transitions.row(-1, named=True)
    assert last["state"] == "resolved"
    assert ENDS < last["event_time"] <= ENDS + SIZE + SLIDE  # the first window clear of it
    assert transitions.filter(pl.col("event_time") < BEGINS).is_empty()


def reference_windows(run: Run) -> pl.DataFrame:
    """Each event joined with its door as of its time, then counted per district window."""

    def moment(text: str) -> pl.Expr:
        return pl.col(text).str.to_datetime("%Y-%m-%dT%H:%M:%S%.3fZ", time_zone="UTC")

    doors = (
        run.reports("devices")
        .select(
            "deviceId",
            moment("timestamp").alias("ts"),
            pl.col("payload").struct.field("location").struct.field("region").alias("district"),
        )
        .sort("ts")
    )
    events = (
        run.reports("events")
        .select(
            "deviceId",
            moment("timestamp").alias("ts"),
            (pl.col("payload").struct.field("notificationName") == "accessRejected")
            .cast(pl.Int64)
            .alias("rejected"),
        )
        .sort("ts")
    )
    located = events.join_asof(doors, on="ts", by="deviceId", strategy="backward")
    assert located["district"].null_count() == 0
    starts = located.with_columns(pl.col("ts").dt.truncate("30s").alias("last_start"))
    both = pl.concat(
        [
            starts.with_columns(pl.col("last_start").alias("window_start")),
            starts.with_columns((pl.col("last_start") - SLIDE).alias("window_start")),
        ]
    )
    return (
        both.group_by("district", "window_start")
        .agg(pl.len().cast(pl.Int64).alias("count"), pl.col("rejected").sum())
        .with_columns((pl.col("rejected") / pl.col("count")).alias("rejected_share"))
        .sort("district", "window_start")
    )


@pytest.mark.parametrize("which", ["undisturbed", "disrupted"])
def test_district_windows_equal_a_reference_from_both_feeds(
    which: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(which)
    expected = reference_windows(run)
    stored = run.windows.select("district", "window_start", "count", "rejected").sort(
        "district", "window_start"
    )
    assert stored.height == expected.height > 12 * 15  # 12 districts, 17 windows or so
    assert stored.equals(expected.select("district", "window_start", "count", "rejected"))
    shares = run.shares.select("district", "window_start", "rejected_share").sort(
        "district", "window_start"
    )
    assert shares.equals(expected.select("district", "window_start", "rejected_share"))
    if which == "disrupted":
        inside = expected.filter(
            (pl.col("district") == "Wiedikon")
            & (pl.col("window_start") >= BEGINS)
            & (pl.col("window_start") + SIZE <= ENDS)
        )
        assert inside.height >= 3
        assert (inside["rejected_share"] > 0.9).all()


def test_the_map_has_every_door_at_its_place(disrupted: Run) -> None:
    latest = disrupted.doors.sort("window_start").group_by("device_id").last()
    assert latest.height == 1000
    announced = (
        disrupted.reports("devices")
        .unique("deviceId")
        .select(
            pl.col("deviceId").alias("device_id"),
            pl.col("payload").struct.field("location").struct.field("loc").alias("loc"),
        )
    )
    placed = latest.join(announced, on="device_id").with_columns(
        pl.format("{},{}", "lat", "lon").alias("at")
    )
    assert placed.filter(pl.col("at") != pl.col("loc")).is_empty()


def test_the_demo_runs_disrupted_from_the_command_line(tmp_path: Path) -> None:
    command = ["demo", "access", "--disrupt", "Wiedikon", "--duration", "3s", "--no-serve"]
    demo = subprocess.run(
        [sys.executable, "-m", "sensorstream", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )
    assert demo.returncode == 0, demo.stderr
    assert "iot-streaming-analytics.md" in demo.stdout
    assert "stream devices" in demo.stdout
    assert "all lines accounted for" in demo.stdout
    store = Store(tmp_path / ".sensorstream" / "access.duckdb")
    try:
        counters = store.counters("access")
    finally:
        store.close()
    assert counters["stream:devices:accepted"] >= 1000  # every door announced at the start
    assert counters["stream:events:accepted"] > 0
